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


def call(fn, args, opts):
    """Calls F.<fn> with the tensor args and the options in PyTorch's spelling."""
    kw = dict(opts)
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

with open(OUT, "w") as f:
    f.write("# Loss fixtures: PyTorch %s, float64.  Regenerate with\n" % torch.__version__)
    f.write("#     /usr/bin/python3 scripts/gen_loss_fixtures.py\n")
    f.write("# Format: see the script's docstring.  %d cases.\n" % len(cases))
    f.write("\n".join(cases) + "\n")
print("wrote %d cases to %s" % (len(cases), os.path.normpath(OUT)))
