"""Writes test/fixtures/losses.txt: PyTorch's values and input gradients of every
loss in torch.nn.functional that agrad implements, for their main option
combinations, on fixed float64 inputs.  test/test_losses.c reads the file and
compares agrad (float64 and float32) with it.

Regenerate with Debian's PyTorch (1.13):  apt-get install python3-torch
    /usr/bin/python3 scripts/gen_loss_fixtures.py

Format: '#' lines are comments; each case is

    case <name> <function>            function: the agrad name without ag_
    opt <key> <value>                 reduction, beta, delta, margin, eps, p, ignore_index,
                                      label_smoothing, log_target, log_input, full, swap,
                                      weight / pos_weight (value: the tensor's name)
    flag <word>                       nogradcheck (at a kink or far out), nof32 (values
                                      that float32 cannot hold)
    tensor <name> <f64|i64> <ndim> <dims...> <values...>
    end

Tensors named grad.<arg> hold d(out)/d(arg) after backward with grad_out as the
seed (grad_out is written for unreduced results, absent for scalars: seed 1).
Values are written with repr(), so they are the exact doubles PyTorch computed.
"""
import math
import os
import warnings

import torch
import torch.nn.functional as F

torch.manual_seed(20250101)
warnings.simplefilter("ignore")  # broadcasting and kl_div "mean" warnings are expected
f64 = torch.float64
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "losses.txt")

# The arguments that are tensors, in the order each function takes them (options go in opt lines).
ARGS = {
    "mse_loss": ["input", "target"],
    "l1_loss": ["input", "target"],
    "smooth_l1_loss": ["input", "target"],
    "huber_loss": ["input", "target"],
    "binary_cross_entropy": ["input", "target"],
    "binary_cross_entropy_with_logits": ["input", "target"],
    "nll_loss": ["input", "target"],
    "cross_entropy": ["input", "target"],
    "kl_div": ["input", "target"],
    "poisson_nll_loss": ["input", "target"],
    "gaussian_nll_loss": ["input", "target", "var"],
    "hinge_embedding_loss": ["input", "target"],
    "margin_ranking_loss": ["input1", "input2", "target"],
    "soft_margin_loss": ["input", "target"],
    "multilabel_soft_margin_loss": ["input", "target"],
    "multi_margin_loss": ["input", "target"],
    "cosine_embedding_loss": ["input1", "input2", "target"],
    "triplet_margin_loss": ["anchor", "positive", "negative"],
    "multilabel_margin_loss": ["input", "target"],
    "triplet_margin_with_distance_loss": ["anchor", "positive", "negative"],
    # Keras's losses (references below): input is y_pred, target y_true
    "log_cosh_loss": ["input", "target"],
    "mean_absolute_percentage_error": ["input", "target"],
    "mean_squared_logarithmic_error": ["input", "target"],
    "hinge_loss": ["input", "target"],
    "squared_hinge_loss": ["input", "target"],
    "categorical_hinge_loss": ["input", "target"],
    "cosine_similarity_loss": ["input", "target"],
    "ctc_loss": ["log_probs", "targets", "input_lengths", "target_lengths"],
}
# Tensors given through options.
OPT_TENSORS = ("weight", "pos_weight")


def randn(*shape):
    return torch.randn(*shape, dtype=f64)


def rand(*shape):
    return torch.rand(*shape, dtype=f64)


def signs(*shape):
    return torch.randint(0, 2, shape).to(f64) * 2 - 1


def classes(c, *shape):
    return torch.randint(0, c, shape)


def tensor_line(name, t):
    t = t.detach()
    kind = "i64" if t.dtype == torch.int64 else "f64"
    vals = t.reshape(-1).tolist()
    text = " ".join(str(int(v)) for v in vals) if kind == "i64" else " ".join(repr(float(v)) for v in vals)
    return "tensor %s %s %d %s %s" % (name, kind, t.dim(), " ".join(str(d) for d in t.shape), text)


# ---- Keras's losses, which PyTorch lacks: their definitions written out in torch, after
# https://keras.io/api/losses/regression_losses/ and .../hinge_losses/ (Keras 2.x, tf.keras.losses:
# each loss is the per-sample value over the last axis, then reduced: "none" keeps the samples,
# "sum_over_batch_size" (our "mean") averages them, "sum" adds them).  EPSILON is
# keras.backend.epsilon().
EPSILON = 1e-7


def keras_labels(y):
    """hinge / squared_hinge: 0/1 labels are turned into -1/1 (keras.losses._maybe_convert_labels)."""
    return 2 * y - 1 if bool(((y == 0) | (y == 1)).all()) else y


def keras_per_sample(fn, y_pred, y_true):
    if fn == "log_cosh_loss":  # mean(x + softplus(-2x) - log 2), x = y_pred - y_true
        x = y_pred - y_true
        return (x + F.softplus(-2.0 * x) - math.log(2.0)).mean(-1)
    if fn == "mean_absolute_percentage_error":  # 100 mean(|(y_true - y_pred) / max(|y_true|, eps)|)
        return 100.0 * ((y_true - y_pred) / y_true.abs().clamp(min=EPSILON)).abs().mean(-1)
    if fn == "mean_squared_logarithmic_error":  # mean((log(max(y_pred, eps) + 1) - log(max(y_true, eps) + 1))^2)
        return (torch.log(y_pred.clamp(min=EPSILON) + 1.0) - torch.log(y_true.clamp(min=EPSILON) + 1.0)).square().mean(-1)
    if fn == "hinge_loss":  # mean(max(1 - y_true y_pred, 0))
        return (1.0 - keras_labels(y_true) * y_pred).clamp(min=0).mean(-1)
    if fn == "squared_hinge_loss":  # mean(max(1 - y_true y_pred, 0)^2)
        return (1.0 - keras_labels(y_true) * y_pred).clamp(min=0).square().mean(-1)
    if fn == "categorical_hinge_loss":  # max(max((1 - y_true) y_pred) - sum(y_true y_pred) + 1, 0)
        pos = (y_true * y_pred).sum(-1)
        neg = ((1.0 - y_true) * y_pred).amax(-1)
        return (neg - pos + 1.0).clamp(min=0)
    if fn == "cosine_similarity_loss":  # -sum(l2_normalize(y_true) l2_normalize(y_pred)), axis -1
        def l2n(v):
            return v * torch.rsqrt(v.square().sum(-1, keepdim=True).clamp(min=1e-12))
        return -(l2n(y_true) * l2n(y_pred)).sum(-1)
    raise KeyError(fn)


def keras_call(fn, y_pred, y_true, reduction="mean"):
    v = keras_per_sample(fn, y_pred, y_true)
    return v.mean() if reduction == "mean" else v.sum() if reduction == "sum" else v


def call(fn, args, opts):
    """Calls F.<fn> (or the Keras reference) with the tensor args and the options in PyTorch's spelling."""
    if fn in ARGS and fn.startswith(("log_cosh", "mean_absolute_percentage", "mean_squared_log", "hinge_loss",
                                     "squared_hinge", "categorical_hinge", "cosine_similarity")):
        return keras_call(fn, *args, **opts)
    kw = dict(opts)
    if kw.get("distance_function") == "cosine":  # the C test passes a callback computing the same
        kw["distance_function"] = lambda u, v: 1.0 - F.cosine_similarity(u, v, dim=-1)
    if fn == "multi_margin_loss" and "p" in kw:
        kw["p"] = int(kw["p"])
    return getattr(F, fn)(*args, **kw)


cases = []


def case(name, fn, tensors, opts=None, flags=(), grads=None):
    """tensors: the function's tensor args by name; opts: PyTorch keyword options
    (weight / pos_weight as tensors); grads: which args get gradients (default:
    every float arg; args PyTorch cannot differentiate are dropped)."""
    opts = dict(opts or {})
    names = ARGS[fn]
    if grads is None:
        grads = [n for n in names if tensors[n].dtype == f64]
    leaves = {n: tensors[n].detach().clone().requires_grad_(n in grads) for n in names}
    try:
        out = call(fn, [leaves[n] for n in names], opts)
        seed = randn(*out.shape) if out.dim() > 0 else None
        out.backward(seed)
    except RuntimeError:  # a target PyTorch cannot differentiate: inputs only
        grads = [n for n in grads if n in ("input", "input1", "input2", "anchor")]
        return case(name, fn, tensors, opts, flags, grads)
    lines = ["case %s %s" % (name, fn)]
    for k, v in opts.items():
        if k in OPT_TENSORS:
            lines.append("opt %s %s" % (k, k))
        elif isinstance(v, bool):
            lines.append("opt %s %d" % (k, int(v)))
        elif isinstance(v, str):
            lines.append("opt %s %s" % (k, v))
        else:
            lines.append("opt %s %s" % (k, repr(v)))
    lines += ["flag %s" % f for f in flags]
    for n in names:
        lines.append(tensor_line(n, tensors[n]))
    for k in OPT_TENSORS:
        if k in opts:
            lines.append(tensor_line(k, opts[k]))
    lines.append(tensor_line("out", out))
    if seed is not None:
        lines.append(tensor_line("grad_out", seed))
    for n in grads:
        g = leaves[n].grad
        lines.append(tensor_line("grad." + n, g if g is not None else torch.zeros_like(leaves[n])))
    lines.append("end")
    cases.append("\n".join(lines))


REDUCTIONS = ("mean", "sum", "none")

# ---- regression -----------------------------------------------------------------------------
x, y = randn(3, 4), randn(3, 4)
for fn in ("mse_loss", "l1_loss"):
    for r in REDUCTIONS:
        case("%s/%s" % (fn, r), fn, {"input": x, "target": y}, {"reduction": r})
    case(fn + "/broadcast", fn, {"input": x, "target": randn(4)}, {"reduction": "sum"})
for r in REDUCTIONS:
    case("smooth_l1_loss/" + r, "smooth_l1_loss", {"input": x * 1.5, "target": y}, {"reduction": r})
    case("huber_loss/" + r, "huber_loss", {"input": x * 1.5, "target": y}, {"reduction": r})
case("smooth_l1_loss/beta0.5", "smooth_l1_loss", {"input": x, "target": y}, {"beta": 0.5})
case("smooth_l1_loss/beta0", "smooth_l1_loss", {"input": x, "target": y}, {"beta": 0.0, "reduction": "sum"})
case("huber_loss/delta0.7", "huber_loss", {"input": x, "target": y}, {"delta": 0.7, "reduction": "sum"})
# at the kinks: d = 0 and |d| = beta exactly
kx = torch.tensor([0.25, 1.25, -0.75, 0.5, 3.0], dtype=f64)
ky = torch.tensor([0.25, 0.25, 0.25, -0.5, 0.0], dtype=f64)
for fn in ("l1_loss", "mse_loss", "smooth_l1_loss", "huber_loss"):
    case(fn + "/kinks", fn, {"input": kx, "target": ky}, {"reduction": "sum"}, flags=["nogradcheck"])

# ---- binary cross-entropy ---------------------------------------------------------------------
p, t = torch.sigmoid(randn(3, 4)), rand(3, 4)
for r in REDUCTIONS:
    case("binary_cross_entropy/" + r, "binary_cross_entropy", {"input": p, "target": t}, {"reduction": r})
case("binary_cross_entropy/weight", "binary_cross_entropy", {"input": p, "target": t}, {"weight": rand(4) + 0.5})
case("binary_cross_entropy/weight_full", "binary_cross_entropy", {"input": p, "target": t},
     {"weight": rand(3, 4) + 0.5, "reduction": "sum"})
p01 = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1e-30, 0.5], dtype=f64)
t01 = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.3, 0.7, 1.0, 0.5], dtype=f64)
# (agrad's target gradient there is the derivative of the clamped logs, ±100; PyTorch's is ±inf)
case("binary_cross_entropy/exact_0_1", "binary_cross_entropy", {"input": p01, "target": t01}, {"reduction": "none"},
     flags=["nogradcheck"], grads=["input"])

z = randn(3, 4) * 3
z[0, 0] = 0.0  # sigmoid's centre: the stable form's kinks must cancel
for r in REDUCTIONS:
    case("binary_cross_entropy_with_logits/" + r, "binary_cross_entropy_with_logits", {"input": z, "target": t},
         {"reduction": r})
case("binary_cross_entropy_with_logits/pos_weight", "binary_cross_entropy_with_logits", {"input": z, "target": t},
     {"pos_weight": rand(4) * 3})
case("binary_cross_entropy_with_logits/weight", "binary_cross_entropy_with_logits", {"input": z, "target": t},
     {"weight": rand(4) + 0.5, "reduction": "sum"})
case("binary_cross_entropy_with_logits/both", "binary_cross_entropy_with_logits", {"input": z, "target": t},
     {"weight": rand(3, 1) + 0.5, "pos_weight": rand(4) * 3, "reduction": "none"})
zl = torch.tensor([100.0, -100.0, 1e4, -1e4, 100.0, -1e4, 0.0, 1e4], dtype=f64)
tl = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.5, 0.25], dtype=f64)
case("binary_cross_entropy_with_logits/large", "binary_cross_entropy_with_logits", {"input": zl, "target": tl},
     {"reduction": "none"}, flags=["nogradcheck"])
case("binary_cross_entropy_with_logits/large_pos_weight", "binary_cross_entropy_with_logits",
     {"input": zl, "target": tl}, {"reduction": "sum", "pos_weight": torch.tensor([2.0], dtype=f64)},
     flags=["nogradcheck"])

# ---- logistic margins ---------------------------------------------------------------------------
for r in REDUCTIONS:
    case("soft_margin_loss/" + r, "soft_margin_loss", {"input": z, "target": signs(3, 4)}, {"reduction": r})
mt = torch.randint(0, 2, (3, 4)).to(f64)
for r in REDUCTIONS:
    case("multilabel_soft_margin_loss/" + r, "multilabel_soft_margin_loss", {"input": z, "target": mt},
         {"reduction": r})
case("multilabel_soft_margin_loss/weight", "multilabel_soft_margin_loss", {"input": z, "target": mt},
     {"weight": rand(4) + 0.5})

# ---- class indices: nll_loss --------------------------------------------------------------------
logp = F.log_softmax(randn(5, 4), 1)
tgt = torch.tensor([1, 0, 3, -100, 2])
cw = rand(4) + 0.5
for r in REDUCTIONS:
    case("nll_loss/" + r, "nll_loss", {"input": logp, "target": tgt}, {"reduction": r})
    case("nll_loss/weight_" + r, "nll_loss", {"input": logp, "target": tgt}, {"weight": cw, "reduction": r})
case("nll_loss/ignore_index", "nll_loss", {"input": logp, "target": torch.tensor([1, 0, 3, 1, 2])},
     {"ignore_index": 1, "weight": cw})
lp3 = F.log_softmax(randn(2, 4, 3), 1)
t3 = torch.tensor([[0, 3, -100], [2, 2, 1]])
for r in REDUCTIONS:
    case("nll_loss/spatial_" + r, "nll_loss", {"input": lp3, "target": t3}, {"reduction": r, "weight": cw})
case("nll_loss/unbatched", "nll_loss", {"input": logp[0], "target": torch.tensor(2)}, {"reduction": "none"})
case("nll_loss/unbatched_mean", "nll_loss", {"input": logp[0], "target": torch.tensor(3)}, {"weight": cw})
case("nll_loss/all_ignored", "nll_loss", {"input": logp[:2], "target": torch.tensor([-100, -100])},
     flags=["nogradcheck"])

# ---- cross_entropy -------------------------------------------------------------------------------
lg = randn(5, 4) * 2
for r in REDUCTIONS:
    case("cross_entropy/" + r, "cross_entropy", {"input": lg, "target": tgt}, {"reduction": r})
    case("cross_entropy/weight_" + r, "cross_entropy", {"input": lg, "target": tgt}, {"weight": cw, "reduction": r})
    case("cross_entropy/smoothing_" + r, "cross_entropy", {"input": lg, "target": tgt},
         {"label_smoothing": 0.1, "reduction": r})
    case("cross_entropy/smoothing_weight_" + r, "cross_entropy", {"input": lg, "target": tgt},
         {"label_smoothing": 0.25, "weight": cw, "reduction": r})
case("cross_entropy/ignore_index", "cross_entropy", {"input": lg, "target": torch.tensor([1, 0, 3, 1, 2])},
     {"ignore_index": 1, "label_smoothing": 0.2, "weight": cw})
lg3 = randn(2, 4, 3)
for r in REDUCTIONS:
    case("cross_entropy/spatial_" + r, "cross_entropy", {"input": lg3, "target": t3},
         {"reduction": r, "weight": cw, "label_smoothing": 0.15})
case("cross_entropy/unbatched", "cross_entropy", {"input": lg[0], "target": torch.tensor(2)},
     {"reduction": "none", "label_smoothing": 0.1})
probs = F.softmax(randn(5, 4), 1)
for r in REDUCTIONS:
    case("cross_entropy/probs_" + r, "cross_entropy", {"input": lg, "target": probs}, {"reduction": r})
case("cross_entropy/probs_weight_smoothing", "cross_entropy", {"input": lg, "target": probs},
     {"weight": cw, "label_smoothing": 0.3})
case("cross_entropy/probs_spatial", "cross_entropy", {"input": lg3, "target": F.softmax(randn(2, 4, 3), 1)},
     {"reduction": "sum", "weight": cw})
case("cross_entropy/probs_unbatched", "cross_entropy", {"input": lg[0], "target": probs[0]}, {"reduction": "none"})
# far-out logits: finite loss and gradient (log_softmax subtracts the row max; -inf only in other classes)
big = torch.tensor([[1e4, -1e4, 0.0, 5.0], [-1e4, 1e4, 1e4, -3.0], [1e8, -1e8, 0.0, 1e8],
                    [-math.inf, 2.0, -math.inf, 1.0], [3.0, -math.inf, 1e4, -1e8]], dtype=f64)
bt = torch.tensor([0, 2, 3, 1, 2])
for r in REDUCTIONS:
    case("cross_entropy/extreme_" + r, "cross_entropy", {"input": big, "target": bt}, {"reduction": r},
         flags=["nogradcheck"])
case("cross_entropy/extreme_weight", "cross_entropy", {"input": big, "target": bt}, {"weight": cw},
     flags=["nogradcheck"])
case("cross_entropy/extreme_wrong_class", "cross_entropy", {"input": big, "target": torch.tensor([1, 3, 1, 3, 3])},
     {"reduction": "none"}, flags=["nogradcheck"])

# ---- divergences and likelihoods -----------------------------------------------------------------
lq = F.log_softmax(randn(3, 5), 1)
pt = F.softmax(randn(3, 5), 1)
pt0 = pt.clone()
pt0[0, 1] = 0.0
pt0[2, 4] = 0.0
for r in REDUCTIONS + ("batchmean",):
    case("kl_div/" + r, "kl_div", {"input": lq, "target": pt}, {"reduction": r})
# PyTorch's target gradient at y = 0 is NaN (xlogy's 0/0); agrad's is 0: compare the input's only
case("kl_div/zero_target", "kl_div", {"input": lq, "target": pt0}, {"reduction": "sum"}, grads=["input"])
case("kl_div/zero_target_values", "kl_div", {"input": lq, "target": pt0}, {"reduction": "batchmean"},
     flags=["nogradcheck"], grads=["input"])
case("kl_div/log_target", "kl_div", {"input": lq, "target": torch.log(pt)}, {"log_target": True, "reduction": "batchmean"})
case("kl_div/log_target_none", "kl_div", {"input": lq, "target": torch.log(pt)}, {"log_target": True, "reduction": "none"})
case("kl_div/broadcast", "kl_div", {"input": lq, "target": pt[0]}, {"reduction": "sum"})

rate = randn(3, 4) * 0.5
counts = torch.tensor([[0, 1, 2, 5], [3, 0, 1, 7], [1, 4, 0, 2]], dtype=f64)
for r in REDUCTIONS:
    case("poisson_nll_loss/" + r, "poisson_nll_loss", {"input": rate, "target": counts}, {"reduction": r})
case("poisson_nll_loss/rate", "poisson_nll_loss", {"input": torch.exp(rate), "target": counts}, {"log_input": False})
case("poisson_nll_loss/rate_eps", "poisson_nll_loss", {"input": torch.exp(rate), "target": counts},
     {"log_input": False, "eps": 0.01, "reduction": "sum"})
# full: PyTorch's target gradient is NaN at y = 0 (0·log 0 under masked_fill); compare the input's
case("poisson_nll_loss/full", "poisson_nll_loss", {"input": rate, "target": counts}, {"full": True}, grads=["input"])
case("poisson_nll_loss/full_rate", "poisson_nll_loss", {"input": torch.exp(rate), "target": counts},
     {"full": True, "log_input": False, "reduction": "none"}, grads=["input"])
case("poisson_nll_loss/full_positive", "poisson_nll_loss", {"input": rate, "target": counts + 0.5},
     {"full": True, "reduction": "sum"})

mu, obs = randn(4, 3), randn(4, 3)
var = rand(4, 3) + 0.1
for r in REDUCTIONS:
    case("gaussian_nll_loss/" + r, "gaussian_nll_loss", {"input": mu, "target": obs, "var": var}, {"reduction": r})
case("gaussian_nll_loss/full", "gaussian_nll_loss", {"input": mu, "target": obs, "var": var}, {"full": True})
case("gaussian_nll_loss/var_one_short", "gaussian_nll_loss", {"input": mu, "target": obs, "var": rand(4) + 0.1},
     {"reduction": "sum"})
case("gaussian_nll_loss/var_last_1", "gaussian_nll_loss", {"input": mu, "target": obs, "var": rand(4, 1) + 0.1},
     {"reduction": "none"})
vsmall = var.clone()
vsmall[0, 0] = 0.0
vsmall[1, 2] = 1e-9
case("gaussian_nll_loss/eps_clamp", "gaussian_nll_loss", {"input": mu, "target": obs, "var": vsmall},
     {"eps": 1e-6, "reduction": "sum"}, flags=["nogradcheck"])
# var below eps is clamped without stopping its gradient (as PyTorch): not the derivative of the value
case("gaussian_nll_loss/eps", "gaussian_nll_loss", {"input": mu, "target": obs, "var": var}, {"eps": 0.5},
     flags=["nogradcheck"])

# ---- margins and embeddings -------------------------------------------------------------------------
hx = randn(3, 4)
hy = signs(3, 4)
for r in REDUCTIONS:
    case("hinge_embedding_loss/" + r, "hinge_embedding_loss", {"input": hx, "target": hy}, {"reduction": r})
case("hinge_embedding_loss/margin", "hinge_embedding_loss", {"input": hx, "target": hy}, {"margin": 0.5})
case("hinge_embedding_loss/other_targets", "hinge_embedding_loss",
     {"input": hx[0], "target": torch.tensor([1.0, -1.0, 0.5, 0.0], dtype=f64)}, {"reduction": "sum"})

x1, x2, ry = randn(6), randn(6), signs(6)
for r in REDUCTIONS:
    case("margin_ranking_loss/" + r, "margin_ranking_loss", {"input1": x1, "input2": x2, "target": ry},
         {"reduction": r})
case("margin_ranking_loss/margin", "margin_ranking_loss", {"input1": x1, "input2": x2, "target": ry}, {"margin": 0.3})

mx = randn(4, 5)
my = torch.tensor([0, 4, 2, 2])
for r in REDUCTIONS:
    case("multi_margin_loss/" + r, "multi_margin_loss", {"input": mx, "target": my}, {"reduction": r})
case("multi_margin_loss/p2", "multi_margin_loss", {"input": mx, "target": my}, {"p": 2})
case("multi_margin_loss/margin_weight", "multi_margin_loss", {"input": mx, "target": my},
     {"margin": 0.5, "weight": rand(5) + 0.5, "reduction": "sum"})
case("multi_margin_loss/p2_weight_none", "multi_margin_loss", {"input": mx, "target": my},
     {"p": 2, "weight": rand(5) + 0.5, "reduction": "none"})
case("multi_margin_loss/unbatched", "multi_margin_loss", {"input": mx[1], "target": torch.tensor(4)},
     {"reduction": "none"})

c1, c2 = randn(5, 6), randn(5, 6)
cy = torch.tensor([1.0, -1.0, 1.0, -1.0, -1.0], dtype=f64)
for r in REDUCTIONS:
    case("cosine_embedding_loss/" + r, "cosine_embedding_loss", {"input1": c1, "input2": c2, "target": cy},
         {"reduction": r})
case("cosine_embedding_loss/margin", "cosine_embedding_loss", {"input1": c1, "input2": c2, "target": cy},
     {"margin": -0.2})
case("cosine_embedding_loss/unbatched", "cosine_embedding_loss",
     {"input1": c1[0], "input2": c2[0], "target": torch.tensor(-1.0, dtype=f64)}, {"margin": -0.5})

an, po, ne = randn(4, 5), randn(4, 5), randn(4, 5)
for r in REDUCTIONS:
    case("triplet_margin_loss/" + r, "triplet_margin_loss", {"anchor": an, "positive": po, "negative": ne},
         {"reduction": r, "margin": 3.0})
for pp in (1.0, 3.0):
    case("triplet_margin_loss/p%g" % pp, "triplet_margin_loss", {"anchor": an, "positive": po, "negative": ne},
         {"p": pp, "margin": 4.0})
case("triplet_margin_loss/pinf", "triplet_margin_loss", {"anchor": an, "positive": po, "negative": ne},
     {"p": math.inf, "margin": 2.0, "reduction": "none"})
case("triplet_margin_loss/swap", "triplet_margin_loss", {"anchor": an, "positive": po, "negative": ne},
     {"swap": True, "margin": 3.0, "eps": 1e-3, "reduction": "none"})
case("triplet_margin_loss/unbatched", "triplet_margin_loss", {"anchor": an[0], "positive": po[0], "negative": ne[0]},
     {"margin": 5.0})

# ---- Keras's losses --------------------------------------------------------------------------
kp, kt = randn(4, 5), randn(4, 5)
for r in REDUCTIONS:
    case("log_cosh_loss/" + r, "log_cosh_loss", {"input": kp * 3, "target": kt}, {"reduction": r})
    case("mean_absolute_percentage_error/" + r, "mean_absolute_percentage_error", {"input": kp, "target": kt},
         {"reduction": r})
    case("mean_squared_logarithmic_error/" + r, "mean_squared_logarithmic_error",
         {"input": rand(4, 5) * 3, "target": rand(4, 5) * 3}, {"reduction": r})
    case("hinge_loss/" + r, "hinge_loss", {"input": kp, "target": signs(4, 5)}, {"reduction": r})
    case("squared_hinge_loss/" + r, "squared_hinge_loss", {"input": kp, "target": signs(4, 5)}, {"reduction": r})
    onehot = F.one_hot(classes(5, 4), 5).to(f64)
    case("categorical_hinge_loss/" + r, "categorical_hinge_loss", {"input": kp, "target": onehot}, {"reduction": r})
    case("cosine_similarity_loss/" + r, "cosine_similarity_loss", {"input": kp, "target": kt}, {"reduction": r})
case("log_cosh_loss/large", "log_cosh_loss", {"input": kp * 400, "target": kt}, {"reduction": "none"})
case("log_cosh_loss/broadcast", "log_cosh_loss", {"input": kp, "target": kt[0]}, {"reduction": "sum"})
case("log_cosh_loss/vector", "log_cosh_loss", {"input": kp[0], "target": kt[0]}, {"reduction": "none"})
case("mean_absolute_percentage_error/zero_target", "mean_absolute_percentage_error",
     {"input": kp[:2], "target": torch.tensor([[0.0, 1.0, -2.0, 0.5, 3.0], [1e-9, -1.0, 2.0, 4.0, 0.25]], dtype=f64)},
     {"reduction": "none"}, flags=["nof32", "nogradcheck"])  # the target's clamp at 1e-7 is within ε
case("mean_squared_logarithmic_error/negative", "mean_squared_logarithmic_error",
     {"input": kp * 2, "target": rand(4, 5) * 3}, {"reduction": "none"}, flags=["nogradcheck"])
# 0/1 labels are converted only while all are 0 or 1: no gradient in the target
case("hinge_loss/binary_labels", "hinge_loss", {"input": kp, "target": (signs(4, 5) + 1) / 2}, {"reduction": "none"},
     grads=["input"])
case("squared_hinge_loss/binary_labels", "squared_hinge_loss", {"input": kp, "target": (signs(4, 5) + 1) / 2},
     {"reduction": "none"}, grads=["input"])

# ---- multilabel_margin_loss: each row's classes, ended by the first -1 -------------------------------
mlx = randn(4, 5)
mly = torch.tensor([[3, 0, -1, 1, 4], [1, 2, 3, 4, 0], [-1, 2, 2, 1, 0], [2, 2, -1, 0, 0]])  # all 5, none, a repeat
for r in REDUCTIONS:
    case("multilabel_margin_loss/" + r, "multilabel_margin_loss", {"input": mlx, "target": mly}, {"reduction": r})
case("multilabel_margin_loss/unbatched", "multilabel_margin_loss", {"input": mlx[0], "target": mly[0]},
     {"reduction": "none"})
case("multilabel_margin_loss/unbatched_mean", "multilabel_margin_loss", {"input": mlx[1] * 0.2, "target": mly[0]})

# ---- triplet_margin_with_distance_loss: the default distance and a callback (1 - cosine similarity) --
ta, tp, tn = randn(5, 4), randn(5, 4), randn(5, 4)
for r in REDUCTIONS:
    case("triplet_margin_with_distance_loss/" + r, "triplet_margin_with_distance_loss",
         {"anchor": ta, "positive": tp, "negative": tn}, {"reduction": r, "margin": 2.0})
case("triplet_margin_with_distance_loss/swap", "triplet_margin_with_distance_loss",
     {"anchor": ta, "positive": tp, "negative": tn}, {"swap": True, "margin": 1.5, "reduction": "none"})
case("triplet_margin_with_distance_loss/cosine", "triplet_margin_with_distance_loss",
     {"anchor": ta, "positive": tp, "negative": tn}, {"distance_function": "cosine", "margin": 0.8, "reduction": "none"})
case("triplet_margin_with_distance_loss/cosine_swap", "triplet_margin_with_distance_loss",
     {"anchor": ta, "positive": tp, "negative": tn}, {"distance_function": "cosine", "swap": True, "margin": 0.5})
case("triplet_margin_with_distance_loss/unbatched", "triplet_margin_with_distance_loss",
     {"anchor": ta[0], "positive": tp[0], "negative": tn[0]}, {"margin": 3.0})

# ---- ctc_loss: log-probabilities from log_softmax (PyTorch's adjoint, exp(lp) minus the occupancies, is
# the gradient of the loss only along normalised log-probabilities, so these cases are flagged
# nogradcheck: test_ops_gradcheck checks the op through log_softmax).  Both target layouts, every
# reduction, a blank other than 0, repeated labels, an empty target, a target no alignment fits (inf,
# NaN gradient; 0 and a zero gradient with zero_infinity), odd sizes, unbatched.
def log_probs(*shape):
    return F.log_softmax(randn(*shape) * 1.5, dim=-1)


def ctc_case(name, lp, tg, il, tl, **opts):
    case(name, "ctc_loss", {"log_probs": lp, "targets": tg, "input_lengths": il, "target_lengths": tl}, opts,
         flags=["nogradcheck"])


def concatenated(tg, tl):
    return torch.cat([tg[n, :int(tl[n])] for n in range(tg.shape[0])])


clp = log_probs(6, 3, 5)
ctg = torch.tensor([[1, 2, 2], [3, 1, 4], [2, 0, 0]])  # a repeat (2 2) needs a blank between
cil, ctl = torch.tensor([6, 5, 6]), torch.tensor([3, 3, 1])
for r in REDUCTIONS:
    ctc_case("ctc_loss/padded_" + r, clp, ctg, cil, ctl, reduction=r)
    ctc_case("ctc_loss/concatenated_" + r, clp, concatenated(ctg, ctl), cil, ctl, reduction=r)
ctc_case("ctc_loss/blank_last", clp, torch.tensor([[0, 2, 2], [3, 1, 0], [2, 2, 2]]), cil, torch.tensor([3, 3, 0]),
         blank=4, reduction="sum")
imp_tl = torch.tensor([3, 3, 2])
imp_tg = torch.tensor([[1, 1, 1], [3, 1, 4], [2, 3, 0]])  # sample 0 needs 5 steps (1 _ 1 _ 1), has 4
imp_il = torch.tensor([4, 6, 6])
ctc_case("ctc_loss/impossible_none", clp, imp_tg, imp_il, imp_tl, reduction="none")
for r in REDUCTIONS:
    ctc_case("ctc_loss/zero_infinity_" + r, clp, imp_tg, imp_il, imp_tl, reduction=r, zero_infinity=True)
olp = log_probs(11, 5, 7)
otg = torch.tensor([[6, 1, 1, 5], [2, 3, 4, 5], [1, 0, 0, 0], [5, 5, 5, 5], [3, 6, 0, 0]])
oil, otl = torch.tensor([11, 9, 3, 10, 1]), torch.tensor([4, 4, 0, 4, 1])
for r in REDUCTIONS:
    ctc_case("ctc_loss/odd_sizes_" + r, olp, otg, oil, otl, reduction=r)
ctc_case("ctc_loss/odd_sizes_concatenated", olp, concatenated(otg, otl), oil, otl, reduction="mean")
ctc_case("ctc_loss/unbatched", clp[:, 1], ctg[1], cil[1], ctl[1], reduction="none")
ctc_case("ctc_loss/unbatched_mean", clp[:, 0], ctg[0], cil[0], ctl[0])

with open(OUT, "w") as f:
    f.write("# Loss fixtures: PyTorch %s, float64.  Regenerate with\n" % torch.__version__)
    f.write("#     /usr/bin/python3 scripts/gen_loss_fixtures.py\n")
    f.write("# Format: see the script's docstring.  %d cases.\n" % len(cases))
    f.write("\n".join(cases) + "\n")
print("wrote %d cases to %s" % (len(cases), os.path.normpath(OUT)))
