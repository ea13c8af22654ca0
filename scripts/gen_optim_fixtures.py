"""Writes the PyTorch reference runs that test/test_optim.c replays in agrad:

  test/fixtures/optim_trajectories.txt  every optimizer and its main option
      combinations, run on one fixed small problem in float64; the parameters
      after every step.
  test/fixtures/lr_schedules.txt        every scheduler for 100 steps: each
      group's lr (and the momentum / beta1 OneCycleLR cycles) after each step.
  test/fixtures/optim_sparse_factored.txt  SparseAdam on nn.Embedding(sparse=True) and
      Adafactor (HF transformers' definition, written out below) on a 3-d parameter.
  test/fixtures/swa.txt                 AveragedModel (SWA, EMA, EMA with buffers) over an
      SGD run of a small BatchNorm MLP, and update_bn.
  test/fixtures/muon.txt                Muon as published by its authors
      (Keller Jordan's muon.py, re-implemented here in float64 instead of
      bfloat16, since torch 1.13 has no Muon), and one Newton–Schulz result.

Regenerate with Debian's PyTorch (1.13):  apt-get install python3-torch
    /usr/bin/python3 scripts/gen_optim_fixtures.py

The problem: W [3, 2] and b [2] minimise
    L(W, b) = mean((tanh(X·W + b) − Y)²) + 0.1·ΣW² + 0.1·Σ sin(3b)
for fixed X [4, 3] and Y [4, 2] (written to the file, so the test builds the
same loss from agrad ops).  Options are written with agrad's field names
(beta1/beta2 for betas, etaminus/etaplus for etas, step_size_min/max for
step_sizes, line_search=1 for 'strong_wolfe').

One deliberate difference from torch 1.13: its NAdam multiplies mu_t into the
next momentum product twice (mu_product_next = mu_product·mu·mu_next after
mu_product *= mu); PyTorch 2.0 fixed that to mu_product·mu_next, the paper's
formula, which agrad follows.  The NAdam runs below use the fixed function.
"""
import math
import os
import sys

import torch
import torch.optim.nadam as nadam_module

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures")

W0 = [[0.5, -0.3], [0.8, 0.1], [-0.6, 0.4]]
B0 = [0.1, -0.2]
X = [[0.2, -1.0, 0.5], [1.5, 0.3, -0.7], [-0.4, 0.9, 1.1], [0.6, -0.2, -1.3]]
Y = [[0.3, -0.5], [-0.8, 0.2], [0.5, 0.9], [-0.1, -0.6]]


def loss_fn(W, b):
    x, y = torch.tensor(X), torch.tensor(Y)
    return ((torch.tanh(x @ W + b) - y) ** 2).mean() + 0.1 * (W ** 2).sum() + 0.1 * torch.sin(3 * b).sum()


def fixed_single_tensor_nadam(params, grads, exp_avgs, exp_avg_sqs, mu_products, state_steps, *,
                              beta1, beta2, lr, weight_decay, momentum_decay, eps):
    """torch 1.13's _single_tensor_nadam with PyTorch 2.0's fix of mu_product_next."""
    for i, param in enumerate(params):
        grad, exp_avg, exp_avg_sq, mu_product, step_t = grads[i], exp_avgs[i], exp_avg_sqs[i], mu_products[i], state_steps[i]
        step_t += 1
        step = step_t.item()
        bias_correction2 = 1 - beta2 ** step
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)
        mu = beta1 * (1. - 0.5 * (0.96 ** (step * momentum_decay)))
        mu_next = beta1 * (1. - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
        mu_product *= mu
        mu_product_next = mu_product * mu_next
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = exp_avg_sq.div(bias_correction2).sqrt().add_(eps)
        param.addcdiv_(grad, denom, value=-lr * (1. - mu) / (1. - mu_product.item()))
        param.addcdiv_(exp_avg, denom, value=-lr * mu_next / (1. - mu_product_next.item()))


nadam_module._single_tensor_nadam = fixed_single_tensor_nadam


class Adafactor(torch.optim.Optimizer):
    """Adafactor (Shazeer & Stern, 2018) as Hugging Face transformers' Adafactor
    (transformers/optimization.py), written out here in float64 since torch 1.13 has
    none: factored second moments (row and column means over the last two dims) for
    parameters of 2+ dims, update clipping to RMS clip_threshold, relative step size
    min(1e-2, 1/√t) (warmup_init: min(1e-6·t, 1/√t)) scaled by max(eps2, RMS(θ)),
    optional first moment (beta1; 0 here stands for HF's None: no first moment)."""

    def __init__(self, params, lr=0.0, eps1=1e-30, eps2=1e-3, clip_threshold=1.0, decay_rate=-0.8, beta1=0.0,
                 weight_decay=0.0, scale_parameter=True, relative_step=True, warmup_init=False):
        assert not (lr and relative_step) and not (warmup_init and not relative_step)
        super().__init__(params, dict(lr=lr, eps1=eps1, eps2=eps2, clip_threshold=clip_threshold,
                                      decay_rate=decay_rate, beta1=beta1, weight_decay=weight_decay,
                                      scale_parameter=scale_parameter, relative_step=relative_step,
                                      warmup_init=warmup_init))

    @staticmethod
    def _rms(t):
        return t.norm(2) / (t.numel() ** 0.5)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad, state = p.grad, self.state[p]
                factored, first = grad.dim() >= 2, group["beta1"] > 0
                if not state:
                    state["step"] = 0
                    if first:
                        state["exp_avg"] = torch.zeros_like(grad)
                    if factored:
                        state["exp_avg_sq_row"] = torch.zeros(grad.shape[:-1])
                        state["exp_avg_sq_col"] = torch.zeros(grad.shape[:-2] + grad.shape[-1:])
                    else:
                        state["exp_avg_sq"] = torch.zeros_like(grad)
                state["step"] += 1
                t = state["step"]
                rho = group["lr"]
                if group["relative_step"]:
                    rho = min(1e-6 * t if group["warmup_init"] else 1e-2, 1.0 / math.sqrt(t))
                scale = max(group["eps2"], self._rms(p).item()) if group["scale_parameter"] else 1.0
                lr = scale * rho
                beta2t = 1.0 - math.pow(t, group["decay_rate"])
                update = grad ** 2 + group["eps1"]
                if factored:
                    row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
                    row.mul_(beta2t).add_(update.mean(dim=-1), alpha=1.0 - beta2t)
                    col.mul_(beta2t).add_(update.mean(dim=-2), alpha=1.0 - beta2t)
                    r_factor = (row / row.mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)
                    c_factor = col.unsqueeze(-2).rsqrt()
                    update = torch.mul(r_factor, c_factor).mul_(grad)
                else:
                    v = state["exp_avg_sq"]
                    v.mul_(beta2t).add_(update, alpha=1.0 - beta2t)
                    update = v.rsqrt().mul_(grad)
                update.div_((self._rms(update) / group["clip_threshold"]).clamp_(min=1.0))
                update.mul_(lr)
                if first:
                    m = state["exp_avg"]
                    m.mul_(group["beta1"]).add_(update, alpha=1 - group["beta1"])
                    update = m
                if group["weight_decay"] != 0:
                    p.add_(p, alpha=-group["weight_decay"] * lr)
                p.add_(-update)
        return loss

CLASSES = {
    "sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad, "rmsprop": torch.optim.RMSprop, "adamax": torch.optim.Adamax,
    "nadam": torch.optim.NAdam, "radam": torch.optim.RAdam, "adadelta": torch.optim.Adadelta,
    "rprop": torch.optim.Rprop, "asgd": torch.optim.ASGD, "lbfgs": torch.optim.LBFGS,
    "adafactor": Adafactor, "sparse_adam": torch.optim.SparseAdam,
}
PAIRS = {"betas": ("beta1", "beta2"), "etas": ("etaminus", "etaplus"),
         "step_sizes": ("step_size_min", "step_size_max")}

# name, algorithm, steps, groups: [(parameters, options)], options in agrad's names.
BOTH = "W,b"
CASES = [
    ("sgd", "sgd", 60, [(BOTH, dict(lr=0.1))]),
    ("sgd_momentum", "sgd", 60, [(BOTH, dict(lr=0.05, momentum=0.9))]),
    ("sgd_dampening_wd", "sgd", 60, [(BOTH, dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01))]),
    ("sgd_nesterov", "sgd", 60, [(BOTH, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.02))]),
    ("sgd_maximize", "sgd", 60, [(BOTH, dict(lr=0.02, momentum=0.5, maximize=True))]),
    ("sgd_groups", "sgd", 60, [("W", dict(lr=0.1, momentum=0.9)), ("b", dict(lr=0.01))]),
    ("adam", "adam", 60, [(BOTH, dict(lr=0.01))]),
    ("adam_betas_eps", "adam", 60, [(BOTH, dict(lr=0.02, beta1=0.8, beta2=0.99, eps=1e-6))]),
    ("adam_l2", "adam", 60, [(BOTH, dict(lr=0.01, weight_decay=0.1))]),
    ("adam_amsgrad", "adam", 60, [(BOTH, dict(lr=0.01, amsgrad=True, weight_decay=0.01))]),
    ("adam_maximize", "adam", 60, [(BOTH, dict(lr=0.005, maximize=True))]),
    ("adam_groups", "adam", 60, [("W", dict(lr=0.02, amsgrad=True)), ("b", dict(lr=0.005, beta1=0.5))]),
    ("adamw", "adamw", 60, [(BOTH, dict(lr=0.01))]),
    ("adamw_wd_amsgrad", "adamw", 60, [(BOTH, dict(lr=0.01, weight_decay=0.1, amsgrad=True))]),
    ("adamw_maximize", "adamw", 60, [(BOTH, dict(lr=0.005, maximize=True))]),
    ("adagrad", "adagrad", 60, [(BOTH, dict(lr=0.1))]),
    ("adagrad_decay_init", "adagrad", 60, [(BOTH, dict(lr=0.1, lr_decay=0.01, weight_decay=0.01,
                                                       initial_accumulator_value=0.1))]),
    ("adagrad_maximize", "adagrad", 60, [(BOTH, dict(lr=0.05, maximize=True, eps=1e-6))]),
    ("rmsprop", "rmsprop", 60, [(BOTH, dict(lr=0.01))]),
    ("rmsprop_centered", "rmsprop", 60, [(BOTH, dict(lr=0.005, centered=True, alpha=0.9))]),
    ("rmsprop_momentum", "rmsprop", 60, [(BOTH, dict(lr=0.005, momentum=0.9, weight_decay=0.01))]),
    ("rmsprop_centered_momentum", "rmsprop", 60, [(BOTH, dict(lr=0.002, centered=True, momentum=0.8,
                                                              maximize=True, eps=1e-6))]),
    ("adamax", "adamax", 60, [(BOTH, dict(lr=0.02))]),
    ("adamax_wd", "adamax", 60, [(BOTH, dict(lr=0.02, weight_decay=0.05, beta1=0.8, maximize=True))]),
    ("nadam", "nadam", 60, [(BOTH, dict(lr=0.02))]),
    ("nadam_wd_decay", "nadam", 60, [(BOTH, dict(lr=0.02, weight_decay=0.05, momentum_decay=0.01))]),
    ("radam", "radam", 60, [(BOTH, dict(lr=0.02))]),
    ("radam_wd", "radam", 60, [(BOTH, dict(lr=0.02, weight_decay=0.05, beta2=0.99))]),
    ("adadelta", "adadelta", 60, [(BOTH, dict())]),
    ("adadelta_rho_wd", "adadelta", 60, [(BOTH, dict(lr=0.5, rho=0.95, weight_decay=0.01, maximize=True))]),
    ("rprop", "rprop", 60, [(BOTH, dict())]),
    ("rprop_etas", "rprop", 60, [(BOTH, dict(lr=0.05, etaminus=0.3, etaplus=1.5, step_size_min=1e-4,
                                             step_size_max=0.2))]),
    ("asgd", "asgd", 60, [(BOTH, dict(lr=0.05))]),
    ("asgd_t0", "asgd", 60, [(BOTH, dict(lr=0.05, t0=10, lambd=1e-3, alpha=0.6, weight_decay=0.01))]),
    ("adafactor", "adafactor", 60, [(BOTH, dict())]),
    ("adafactor_lr_beta1_wd", "adafactor", 60, [(BOTH, dict(lr=0.01, relative_step=False, scale_parameter=False,
                                                             beta1=0.9, weight_decay=0.01))]),
    ("adafactor_warmup_clip", "adafactor", 60, [(BOTH, dict(warmup_init=True, clip_threshold=0.5, decay_rate=-0.6,
                                                            eps2=0.01))]),
    ("adafactor_groups", "adafactor", 60, [("W", dict(lr=0.02, relative_step=False, beta1=0.5)),
                                           ("b", dict(scale_parameter=False))]),
    # SparseAdam is fed each gradient as grad.to_sparse(1): the rows with a nonzero element
    ("sparse_adam", "sparse_adam", 60, [(BOTH, dict(lr=0.01))]),
    ("sparse_adam_betas_maximize", "sparse_adam", 60, [(BOTH, dict(lr=0.005, beta1=0.8, beta2=0.99, eps=1e-6,
                                                                   maximize=True))]),
    ("lbfgs", "lbfgs", 15, [(BOTH, dict(lr=0.5))]),
    ("lbfgs_history", "lbfgs", 15, [(BOTH, dict(lr=0.3, history_size=3, max_iter=7))]),
    ("lbfgs_wolfe", "lbfgs", 15, [(BOTH, dict(line_search=1))]),
    ("lbfgs_wolfe_history", "lbfgs", 15, [(BOTH, dict(line_search=1, history_size=2, max_iter=10,
                                                      tolerance_grad=1e-12, tolerance_change=1e-14))]),
]


def torch_options(algo, opts):
    cls = CLASSES[algo]
    defaults = cls.__init__.__defaults__ or ()
    names = cls.__init__.__code__.co_varnames[2:2 + len(defaults)]
    kw_defaults = dict(zip(names, defaults))
    kw_defaults.update(cls.__init__.__kwdefaults__ or {})
    out = {}
    for k, v in opts.items():
        pair = [p for p, (a, b) in PAIRS.items() if k in (a, b) and p in kw_defaults]
        if pair:
            p = pair[0]
            cur = list(out.get(p, kw_defaults[p]))
            cur[PAIRS[p].index(k)] = v
            out[p] = tuple(cur)
        elif k == "line_search":
            out["line_search_fn"] = "strong_wolfe" if v else None
        else:
            out[k] = v
    return out


def fmt(v):
    return repr(float(v))


def run_case(name, algo, steps, groups, f):
    W = torch.tensor(W0, requires_grad=True)
    b = torch.tensor(B0, requires_grad=True)
    by_name = {"W": W, "b": b}
    param_groups = [dict(params=[by_name[p] for p in ps.split(",")], **torch_options(algo, o)) for ps, o in groups]
    extra = {"lr": 1e-3} if algo == "sgd" else {}  # torch 1.13's SGD has no default lr
    if len(groups) == 1:  # the usual call; also Adagrad reads initial_accumulator_value from here only
        extra.update(param_groups[0])
        param_groups = extra.pop("params")
    opt = CLASSES[algo](param_groups, **extra)

    def closure():
        opt.zero_grad()
        loss = loss_fn(W, b)
        loss.backward()
        if algo == "sparse_adam":
            for p in (W, b):
                p.grad = p.grad.to_sparse(1)
        return loss

    f.write("case %s %s %d %d\n" % (name, algo, steps, len(groups)))
    for ps, o in groups:
        f.write("group %s%s\n" % (ps, "".join(" %s=%s" % (k, fmt(v)) for k, v in o.items())))
    for _ in range(steps):
        opt.step(closure)
        vals = list(W.detach().flatten()) + list(b.detach().flatten())
        f.write(" ".join(fmt(v) for v in vals) + "\n")
    f.write("end\n")


def write_trajectories():
    path = os.path.join(OUT, "optim_trajectories.txt")
    with open(path, "w") as f:
        f.write("# Generated by scripts/gen_optim_fixtures.py with torch %s; do not edit.\n" % torch.__version__)
        f.write("# problem: name rows cols values (row-major); case: name algorithm steps groups;\n")
        f.write("# group: parameters options; then one line per step: W (row-major) then b.\n")
        for nm, v in (("W", W0), ("b", [B0]), ("X", X), ("Y", Y)):
            flat = [x for row in v for x in row]
            f.write("problem %s %d %d %s\n" % (nm, len(v), len(v[0]), " ".join(fmt(x) for x in flat)))
        for case in CASES:
            run_case(*case, f)
    print("wrote", path)


# ---- schedulers -------------------------------------------------------------------------------
S = torch.optim.lr_scheduler
MAKERS = {
    "step_lr": lambda o, a: S.StepLR(o, a["step_size"], a["gamma"]),
    "multistep_lr": lambda o, a: S.MultiStepLR(o, a["milestones"], a["gamma"]),
    "exponential_lr": lambda o, a: S.ExponentialLR(o, a["gamma"]),
    "cosine_annealing_lr": lambda o, a: S.CosineAnnealingLR(o, a["T_max"], a["eta_min"]),
    "cosine_annealing_warm_restarts": lambda o, a: S.CosineAnnealingWarmRestarts(o, a["T_0"], a["T_mult"], a["eta_min"]),
    "linear_lr": lambda o, a: S.LinearLR(o, a["start_factor"], a["end_factor"], a["total_iters"]),
    "polynomial_lr": lambda o, a: S.PolynomialLR(o, a["total_iters"], a["power"]),
    # group 0: 1/(1 + 0.05·epoch), group 1: 0.97^epoch (test_lr_scheduler.c has the same two)
    "lambda_lr": lambda o, a: S.LambdaLR(o, [lambda e: 1 / (1 + 0.05 * e), lambda e: 0.97 ** e]),
    "one_cycle_lr": lambda o, a: S.OneCycleLR(o, a["max_lr"], total_steps=a["total_steps"], pct_start=a["pct_start"],
                                              anneal_strategy=a["anneal"], div_factor=a["div_factor"],
                                              final_div_factor=a["final_div_factor"], three_phase=a["three_phase"]),
    "constant_lr": lambda o, a: S.ConstantLR(o, a["factor"], a["total_iters"]),
    # group 0: ×0.95 every epoch, group 1: ×(1 − 0.002·(epoch mod 5)) (test_lr_scheduler.c has the same two)
    "multiplicative_lr": lambda o, a: S.MultiplicativeLR(o, [lambda e: 0.95, lambda e: 1 - 0.002 * (e % 5)]),
    # the course's power schedule η₀(1 + t/s)^c and Vaswani et al.'s warm-up schedule, as LambdaLR
    "power_lr": lambda o, a: S.LambdaLR(o, lambda e: (1 + e / a["s"]) ** a["c"]),
    "noam_lr": lambda o, a: S.LambdaLR(o, lambda e: a["d_model"] ** -0.5 * min((e + 1) ** -0.5,
                                                                              (e + 1) * a["warmup_steps"] ** -1.5)),
    "cyclic_lr": lambda o, a: S.CyclicLR(o, a["base_lr"], a["max_lr"], step_size_up=a["step_size_up"],
                                         step_size_down=a["step_size_down"] or None, mode=a["mode"], gamma=a["gamma"],
                                         cycle_momentum=a["cycle_momentum"], base_momentum=a["base_momentum"],
                                         max_momentum=a["max_momentum"]),
    "swa_lr": lambda o, a: torch.optim.swa_utils.SWALR(o, a["swa_lr"], anneal_epochs=a["anneal_epochs"],
                                                       anneal_strategy=a["anneal"]),
    "reduce_lr_on_plateau": lambda o, a: S.ReduceLROnPlateau(o, mode=a["mode"], factor=a["factor"],
                                                             patience=a["patience"], threshold=a["threshold"],
                                                             threshold_mode=a["threshold_mode"],
                                                             cooldown=a["cooldown"], min_lr=a["min_lr"]),
}
CYCLIC = dict(base_lr=0.01, max_lr=0.1, step_size_up=10, step_size_down=0, mode="triangular", gamma=1.0,
              cycle_momentum=True, base_momentum=0.8, max_momentum=0.9)
ONE_CYCLE = dict(max_lr=0.5, total_steps=100, pct_start=0.3, anneal="cos", div_factor=25.0, final_div_factor=1e4,
                 three_phase=False)


def plateau_metric_min(k):
    if k < 15:
        return 1 / (1 + k)
    if k < 60:
        return 0.0625 + 0.001 * math.sin(k)
    return 0.06 - 0.0005 * (k - 60)


def plateau_metric_max(k):
    return 1 - math.exp(-k / 8) + 0.002 * math.cos(k)


# name, optimizer, how they step (single, chain: stepped in a loop, chained: ChainedScheduler,
# sequential [milestones], plateau [metric]), [(kind, args)]
SCHEDULES = [
    ("step", "sgd", "single", None, [("step_lr", dict(step_size=7, gamma=0.5))]),
    ("multistep", "sgd", "single", None, [("multistep_lr", dict(milestones=[10, 25, 25, 60], gamma=0.5))]),
    ("exponential", "adam", "single", None, [("exponential_lr", dict(gamma=0.97))]),
    ("cosine", "sgd", "single", None, [("cosine_annealing_lr", dict(T_max=30, eta_min=0.001))]),
    ("cosine_warm_restarts", "sgd", "single", None,
     [("cosine_annealing_warm_restarts", dict(T_0=10, T_mult=2, eta_min=0.001))]),
    ("cosine_warm_restarts_t1", "adam", "single", None,
     [("cosine_annealing_warm_restarts", dict(T_0=15, T_mult=1, eta_min=0.0))]),
    ("linear_warmup", "sgd", "single", None, [("linear_lr", dict(start_factor=0.25, end_factor=1.0, total_iters=20))]),
    ("linear_decay", "adam", "single", None, [("linear_lr", dict(start_factor=1.0, end_factor=0.1, total_iters=40))]),
    ("polynomial", "sgd", "single", None, [("polynomial_lr", dict(total_iters=50, power=2.0))]),
    ("lambda", "sgd", "single", None, [("lambda_lr", dict())]),
    ("one_cycle", "sgd", "single", None, [("one_cycle_lr", ONE_CYCLE)]),
    ("one_cycle_three_phase_linear", "adam", "single", None,
     [("one_cycle_lr", dict(ONE_CYCLE, max_lr=0.05, total_steps=120, pct_start=0.25, anneal="linear",
                            div_factor=10.0, final_div_factor=100.0, three_phase=True))]),
    ("sequential_warmup_cosine", "sgd", "sequential", [10],
     [("linear_lr", dict(start_factor=0.1, end_factor=1.0, total_iters=10)),
      ("cosine_annealing_lr", dict(T_max=90, eta_min=0.0))]),
    ("sequential_three", "adam", "sequential", [20, 50],
     [("exponential_lr", dict(gamma=0.9)), ("step_lr", dict(step_size=5, gamma=0.5)),
      ("cosine_annealing_warm_restarts", dict(T_0=10, T_mult=2, eta_min=0.0))]),
    ("chained_step_exponential", "sgd", "chain", None,
     [("step_lr", dict(step_size=10, gamma=0.5)), ("exponential_lr", dict(gamma=0.98))]),
    ("chained_cosine_multistep", "adam", "chain", None,
     [("cosine_annealing_lr", dict(T_max=25, eta_min=0.0)), ("multistep_lr", dict(milestones=[30, 60], gamma=0.3))]),
    ("constant", "sgd", "single", None, [("constant_lr", dict(factor=0.25, total_iters=8))]),
    ("multiplicative", "adam", "single", None, [("multiplicative_lr", dict())]),
    ("power", "sgd", "single", None, [("power_lr", dict(s=10.0, c=-0.5))]),
    ("noam", "adam", "single", None, [("noam_lr", dict(d_model=512, warmup_steps=20))]),
    ("cyclic_triangular", "sgd", "single", None, [("cyclic_lr", CYCLIC)]),
    ("cyclic_triangular2", "sgd", "single", None,
     [("cyclic_lr", dict(CYCLIC, step_size_up=7, step_size_down=13, mode="triangular2", base_momentum=0.85,
                         max_momentum=0.95))]),
    ("cyclic_exp_range", "adam", "single", None,
     [("cyclic_lr", dict(CYCLIC, base_lr=0.001, max_lr=0.02, step_size_up=5, step_size_down=15, mode="exp_range",
                         gamma=0.98, cycle_momentum=False))]),
    ("swa_cos", "sgd", "single", None, [("swa_lr", dict(swa_lr=0.02, anneal_epochs=10, anneal="cos"))]),
    ("swa_linear", "adam", "single", None, [("swa_lr", dict(swa_lr=0.005, anneal_epochs=15, anneal="linear"))]),
    ("swa_no_anneal", "sgd", "single", None, [("swa_lr", dict(swa_lr=0.03, anneal_epochs=0, anneal="cos"))]),
    ("chained_scheduler_constant_exponential", "sgd", "chained", None,
     [("constant_lr", dict(factor=0.5, total_iters=10)), ("exponential_lr", dict(gamma=0.97))]),
    ("chained_scheduler_power_multiplicative", "adam", "chained", None,
     [("power_lr", dict(s=5.0, c=-1.0)), ("multiplicative_lr", dict())]),
    ("sequential_constant_power", "sgd", "sequential", [10],
     [("constant_lr", dict(factor=0.1, total_iters=10)), ("power_lr", dict(s=20.0, c=-0.5))]),
    ("plateau_min_rel", "sgd", "plateau", plateau_metric_min,
     [("reduce_lr_on_plateau", dict(mode="min", factor=0.5, patience=3, threshold=1e-4, threshold_mode="rel",
                                    cooldown=2, min_lr=0.01))]),
    ("plateau_max_abs", "adam", "plateau", plateau_metric_max,
     [("reduce_lr_on_plateau", dict(mode="max", factor=0.3, patience=5, threshold=0.01, threshold_mode="abs",
                                    cooldown=0, min_lr=0.0))]),
]
EPOCHS = 100


def arg_text(args):
    out = []
    for k, v in args.items():
        if isinstance(v, list):
            v = ",".join(str(x) for x in v)
        elif isinstance(v, bool):
            v = int(v)
        out.append("%s=%s" % (k, v))
    return " ".join(out)


def write_schedules():
    import warnings
    warnings.simplefilter("ignore")  # SequentialLR's step(0) and the no-gradient steps warn
    path = os.path.join(OUT, "lr_schedules.txt")
    with open(path, "w") as f:
        f.write("# Generated by scripts/gen_optim_fixtures.py with torch %s; do not edit.\n" % torch.__version__)
        f.write("# sched: name optimizer stepping; make: a scheduler and its arguments in the order made;\n")
        f.write("# milestones (sequential) / metric (plateau); then after making and after each of %d steps:\n" % EPOCHS)
        f.write("# lr of group 0, lr of group 1, momentum (SGD) or beta1 (Adam) of groups 0 and 1.\n")
        for name, optname, how, extra, makes in SCHEDULES:
            W = torch.zeros(3, 2, requires_grad=True)
            b = torch.zeros(2, requires_grad=True)
            if optname == "sgd":
                opt = torch.optim.SGD([dict(params=[W], lr=0.1), dict(params=[b], lr=0.05)], lr=0.1, momentum=0.9)
            else:
                opt = torch.optim.Adam([dict(params=[W], lr=0.01), dict(params=[b], lr=0.002)])
            f.write("sched %s %s %s\n" % (name, optname, how))
            scheds = []
            for kind, args in makes:
                f.write("make %s %s\n" % (kind, arg_text(args)))
                scheds.append(MAKERS[kind](opt, args))
            if how == "sequential":
                f.write("milestones %s\n" % " ".join(str(m) for m in extra))
                scheds = [S.SequentialLR(opt, scheds, extra)]
            if how == "chained":
                scheds = [S.ChainedScheduler(scheds)]
            if how == "plateau":
                f.write("metric %s\n" % " ".join(fmt(extra(k)) for k in range(EPOCHS)))

            def record():
                mom = [g["momentum"] if optname == "sgd" else g["betas"][0] for g in opt.param_groups]
                lrs = [g["lr"] for g in opt.param_groups]
                assert how == "plateau" or lrs == list(scheds[-1].get_last_lr())
                f.write(" ".join(fmt(v) for v in lrs + mom) + "\n")

            record()
            for k in range(EPOCHS):
                opt.step()
                for s in scheds:
                    if how == "plateau":
                        s.step(extra(k))
                    else:
                        s.step()
                record()
            f.write("end\n")
    print("wrote", path)


# ---- Muon, as published (Keller Jordan's muon.py), in float64 -------------------------------------
def newton_schulz5(G, steps):
    """Quintic Newton–Schulz orthogonalisation: X/(‖X‖_F + 1e-7), then X ← aX + (bA + cA²)X, A = XXᵀ."""
    a, b, c = 3.4445, -4.7750, 2.0315
    tall = G.size(0) > G.size(1)
    X = G.T if tall else G
    X = X / (X.norm() + 1e-7)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if tall else X


def muon_reference_step(params, state, o):
    """One step of the authors' Muon (momentum lerp, Nesterov lerp, Newton–Schulz, √max(1, rows/cols)
    scale, decoupled decay) for matrices and of their auxiliary AdamW for the rest."""
    with torch.no_grad():
        for p in params:
            g = p.grad
            st = state.setdefault(id(p), {})
            if p.ndim >= 2:
                m = st.setdefault("momentum_buffer", torch.zeros_like(p))
                m.lerp_(g, 1 - o["momentum"])
                u = g.lerp(m, o["momentum"]) if o["nesterov"] else m
                u2 = u.reshape(p.shape[0], -1)
                O = newton_schulz5(u2, o["ns_steps"]) * max(1, u2.size(0) / u2.size(1)) ** 0.5
                p.mul_(1 - o["lr"] * o["weight_decay"])
                p.add_(O.reshape(p.shape), alpha=-o["lr"])
            else:
                m = st.setdefault("exp_avg", torch.zeros_like(p))
                v = st.setdefault("exp_avg_sq", torch.zeros_like(p))
                st["step"] = st.get("step", 0) + 1
                m.lerp_(g, 1 - o["adamw_beta1"])
                v.lerp_(g.square(), 1 - o["adamw_beta2"])
                upd = (m / (1 - o["adamw_beta1"] ** st["step"])) / (
                    (v / (1 - o["adamw_beta2"] ** st["step"])).sqrt() + o["adamw_eps"])
                p.mul_(1 - o["adamw_lr"] * o["adamw_weight_decay"])
                p.add_(upd, alpha=-o["adamw_lr"])


MUON_DEFAULTS = dict(lr=0.02, momentum=0.95, weight_decay=0.0, nesterov=True, ns_steps=5, adamw_lr=3e-4,
                     adamw_beta1=0.9, adamw_beta2=0.95, adamw_eps=1e-10, adamw_weight_decay=0.0)
MUON_PROBLEM = dict(
    W=[[0.5, -0.3, 0.2], [0.8, 0.1, -0.4], [-0.6, 0.4, 0.3], [0.1, 0.7, -0.2]],
    V=[[0.3, -0.2, 0.5, 0.1, -0.4], [0.6, 0.2, -0.1, 0.3, 0.2], [-0.5, 0.4, 0.2, -0.3, 0.1]],
    b=[[0.05, -0.1, 0.2]],
    X=[[0.2, -1.0, 0.5, 0.3], [1.5, 0.3, -0.7, 0.2], [-0.4, 0.9, 1.1, -0.6], [0.6, -0.2, -1.3, 0.8],
       [0.0, 0.4, -0.5, 1.2], [-1.1, 0.7, 0.3, -0.2]],
    Y=[[0.3, -0.5, 0.1, 0.2, -0.1], [-0.8, 0.2, 0.4, -0.3, 0.5], [0.5, 0.9, -0.2, 0.1, 0.3],
       [-0.1, -0.6, 0.7, 0.2, -0.4], [0.2, 0.1, -0.3, 0.6, 0.0], [0.4, -0.2, 0.2, -0.5, 0.3]])
MUON_CASES = [
    ("muon", 30, dict(adamw_lr=3e-3)),
    ("muon_plain_momentum_wd", 30, dict(lr=0.05, momentum=0.9, nesterov=False, ns_steps=3, weight_decay=0.1,
                                        adamw_lr=1e-2, adamw_beta1=0.8, adamw_weight_decay=0.1)),
]
NS_G = [[1.0, 0.2, -0.5], [0.3, -1.2, 0.4], [0.8, 0.5, 0.9], [-0.2, 0.7, 0.1], [0.6, -0.3, -0.8]]


def write_muon():
    path = os.path.join(OUT, "muon.txt")
    P = MUON_PROBLEM
    with open(path, "w") as f:
        f.write("# Generated by scripts/gen_optim_fixtures.py (torch %s, float64); do not edit.\n" % torch.__version__)
        f.write("# Muon as published (https://github.com/KellerJordan/Muon muon.py), loss mean((tanh(X·W + b)·V − Y)²).\n")
        f.write("# ns: a matrix G and its 5-step Newton–Schulz orthogonalisation; case: name steps; group: options;\n")
        f.write("# then one line per step: W, V, b (row-major).\n")
        for nm in ("W", "V", "b", "X", "Y"):
            v = P[nm]
            f.write("problem %s %d %d %s\n" % (nm, len(v), len(v[0]), " ".join(fmt(x) for row in v for x in row)))
        G = torch.tensor(NS_G)
        f.write("ns %d %d %s\n" % (G.size(0), G.size(1), " ".join(fmt(x) for x in G.flatten())))
        f.write("ns_out %s\n" % " ".join(fmt(x) for x in newton_schulz5(G, 5).flatten()))
        for name, steps, opts in MUON_CASES:
            o = dict(MUON_DEFAULTS, **opts)
            W = torch.tensor(P["W"], requires_grad=True)
            V = torch.tensor(P["V"], requires_grad=True)
            b = torch.tensor(P["b"][0], requires_grad=True)
            x, y = torch.tensor(P["X"]), torch.tensor(P["Y"])
            state = {}
            f.write("case %s muon %d 1\n" % (name, steps))
            f.write("group W,V,b%s\n" % "".join(" %s=%s" % (k, fmt(v)) for k, v in opts.items()))
            for _ in range(steps):
                for p in (W, V, b):
                    p.grad = None
                ((torch.tanh(x @ W + b) @ V - y) ** 2).mean().backward()
                muon_reference_step([W, V, b], state, o)
                f.write(" ".join(fmt(v) for p in (W, V, b) for v in p.detach().flatten()) + "\n")
            f.write("end\n")
    print("wrote", path)


# ---- SparseAdam on an embedding, Adafactor on a 3-d parameter -------------------------------------
def write_sparse_and_factored():
    """SparseAdam on nn.Embedding(10, 3, sparse=True): each step looks up 5 indices (repeats,
    rows never looked up), loss mean((E[idx] − T)²) + 0.1·Σ sin(E[idx]); and Adafactor on a
    parameter P [2, 3, 4] (two factored [3, 4] blocks), loss mean((tanh(P) − Q)²)."""
    path = os.path.join(OUT, "optim_sparse_factored.txt")
    g = torch.Generator().manual_seed(20)
    E0 = torch.randn(10, 3, generator=g)
    T = torch.randn(5, 3, generator=g)
    idx = [torch.randint(0, 7, (5,), generator=g).tolist() for _ in range(30)]  # rows 7-9 never looked up
    P0 = torch.randn(2, 3, 4, generator=g)
    Q = torch.randn(2, 3, 4, generator=g) * 0.5
    with open(path, "w") as f:
        f.write("# Generated by scripts/gen_optim_fixtures.py (torch %s, float64); do not edit.\n" % torch.__version__)
        f.write("# tensor: name ndim sizes values; idx: step's 5 indices; case: name steps options;\n")
        f.write("# then one line per step: the parameter after it.\n")
        for nm, t in (("E", E0), ("T", T), ("P", P0), ("Q", Q)):
            f.write("tensor %s %d %s %s\n" % (nm, t.dim(), " ".join(str(d) for d in t.shape),
                                              " ".join(fmt(v) for v in t.flatten())))
        for k, ix in enumerate(idx):
            f.write("idx %d %s\n" % (k, " ".join(str(i) for i in ix)))
        for name, opts in (("sparse_adam_embedding", dict(lr=0.05)),
                           ("sparse_adam_embedding_maximize", dict(lr=0.02, betas=(0.5, 0.9), maximize=True))):
            emb = torch.nn.Embedding(10, 3, sparse=True)
            with torch.no_grad():
                emb.weight.copy_(E0)
            opt = torch.optim.SparseAdam(emb.parameters(), **opts)
            flat = dict(opts)
            if "betas" in flat:
                flat["beta1"], flat["beta2"] = flat.pop("betas")
            f.write("case %s %d%s\n" % (name, len(idx), "".join(" %s=%s" % (k, fmt(v)) for k, v in flat.items())))
            for ix in idx:
                opt.zero_grad()
                e = emb(torch.tensor(ix))
                (((e - T) ** 2).mean() + 0.1 * torch.sin(e).sum()).backward()
                opt.step()
                f.write(" ".join(fmt(v) for v in emb.weight.detach().flatten()) + "\n")
            f.write("end\n")
        for name, opts in (("adafactor_3d", dict()), ("adafactor_3d_beta1_lr", dict(lr=0.05, relative_step=False,
                                                                                     beta1=0.8, weight_decay=0.02))):
            P = P0.clone().requires_grad_(True)
            opt = Adafactor([P], **opts)
            f.write("case %s 30%s\n" % (name, "".join(" %s=%s" % (k, fmt(v)) for k, v in opts.items())))
            for _ in range(30):
                opt.zero_grad()
                ((torch.tanh(P) - Q) ** 2).mean().backward()
                opt.step()
                f.write(" ".join(fmt(v) for v in P.detach().flatten()) + "\n")
            f.write("end\n")
    print("wrote", path)


# ---- AveragedModel (SWA, EMA, with buffers) and update_bn -----------------------------------------
def write_swa():
    """Sequential(Linear(3, 4), BatchNorm1d(4), Tanh(), Linear(4, 2)) in float64 trained 12 full-batch
    SGD steps (lr 0.1, momentum 0.9) on mean((f(X) − Y)²); an AveragedModel (SWA) updated after steps
    4-11, EMAs (decay 0.8, given as avg_fn as torch 1.13 needs) of the parameters and of parameters
    and buffers after every step; then update_bn over X in batches of 4 on the SWA model, and its
    eval-mode output on X."""
    from torch.optim.swa_utils import AveragedModel, update_bn
    path = os.path.join(OUT, "swa.txt")
    g = torch.Generator().manual_seed(21)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.7)
    X, Y = torch.randn(10, 3, generator=g), torch.randn(10, 2, generator=g)
    ema_fn = lambda avg, cur, n: 0.8 * avg + (1 - 0.8) * cur  # noqa: E731
    with open(path, "w") as f:
        f.write("# Generated by scripts/gen_optim_fixtures.py (torch %s, float64); do not edit.\n" % torch.__version__)
        f.write("# tensor: name ndim sizes values (state-dict names; initial.* before training).\n")

        def put(name, t):
            t = t.detach().double()
            f.write("tensor %s %d %s %s\n" % (name, t.dim(), " ".join(str(d) for d in t.shape),
                                              " ".join(fmt(v) for v in t.flatten())))

        for k, v in model.state_dict().items():
            put("initial." + k, v)
        put("X", X)
        put("Y", Y)
        swa = AveragedModel(model)
        ema = AveragedModel(model, avg_fn=ema_fn)
        ema_buf = AveragedModel(model, avg_fn=ema_fn, use_buffers=True)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for step in range(12):
            opt.zero_grad()
            ((model(X) - Y) ** 2).mean().backward()
            opt.step()
            if step >= 4:
                swa.update_parameters(model)
            ema.update_parameters(model)
            ema_buf.update_parameters(model)
        for k, v in model.state_dict().items():
            put("model." + k, v)
        for tag, avg in (("swa", swa), ("ema", ema), ("ema_buffers", ema_buf)):
            put(tag + ".n_averaged", avg.n_averaged)
            for k, v in avg.module.state_dict().items():
                put(tag + "." + k, v)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=4)
        update_bn(loader, swa)
        for k, v in swa.module.state_dict().items():
            put("swa_bn." + k, v)
        swa.eval()
        put("swa_bn.y", swa(X))
    print("wrote", path)


if __name__ == "__main__":
    write_trajectories()
    write_swa()
    write_sparse_and_factored()
    write_schedules()
    write_muon()
    sys.exit(0)
