"""Writes test/fixtures/elementwise.txt: PyTorch's values and gradients of agrad's
elementwise ops of issue 15 (inverse trigonometric and hyperbolic functions, log2/log10/
exp2, logit, erfc, erfinv, lgamma, digamma, polygamma, sinc, ceil, frac, nan_to_num, the masks
isnan/isinf/isfinite, the binary atan2, hypot, fmod, remainder, copysign, logaddexp,
logaddexp2, xlogy, heaviside and the ternary lerp and clamp with tensor bounds) at edge
inputs: 0 and -0, ±1, the domain edges (±0.999, 1.001, the poles of lgamma/digamma), large
(±100, ±1e10), tiny (±1e-10, ±1e-30), NaN and ±inf; binary and ternary ops on every pair
(triple) of a set of such values.  test/test_elementwise.c reads the file and compares
agrad in float64 and float32 with it.

Regenerate with Debian's PyTorch (1.13):  apt-get install python3-torch
    /usr/bin/python3 scripts/gen_elementwise_fixtures.py
and commit the file.

Format: '#' lines are comments; each case is

    case <label> <function> <a> <b> <c>   function: the agrad name without ag_; a, b, c: its
                                          scalar options in order (0 when it has fewer)
    inputs <k> <n>                        k input tensors of n elements each (no broadcasting:
                                          each is the full length)
    in <i> <n values>                     input i (float32 values, so both dtypes use them exactly)
    f64 y <n values>                      PyTorch's output in float64 (bool masks as 0 and 1)
    f64 d<i> <n values>                   d(sum y)/d(input i); absent for the masks
    f32 y <n values>                      the same computed by PyTorch in float32
    f32 d<i> <n values>
    end

Values are written with repr(), so they are the exact doubles (or floats) PyTorch computed.
heaviside has no derivative in PyTorch: its gradients are written as agrad defines them
(0 in the input, 1 in values where the input is 0).
"""
import itertools
import math
import os

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "elementwise.txt")
NAN, INF = math.nan, math.inf

UNARY_INPUTS = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 0.25, -0.75, 0.1, 0.9, 0.999, -0.999, 1.001, 1.5, -1.5,
                1.4616321449683623, 2.0, -2.0, -2.5, 3.0, -3.5, 10.0, -10.0, 30.0, 100.0, -100.0, 1e10,
                -1e10, 1e-10, -1e-10, 1e-30, -1e-30, NAN, INF, -INF]
PAIR_VALUES = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 7.0, 1e10, -1e-10, NAN, INF, -INF]
LERP_ENDS = [0.0, 1.0, -2.5, 3.0, 1e10, NAN, INF, -INF]
LERP_WEIGHTS = [0.0, 0.25, 0.5, 1.0, -1.0, 2.0, NAN]
CLAMP_VALUES = [-1.0, 0.0, 0.5, 1.0, NAN, INF, -INF]


def f32(values):
    """The values rounded to float32 once, so float32 and float64 see the same numbers."""
    return torch.tensor(values, dtype=torch.float32).to(torch.float64).tolist()


def grid(k, values):
    cols = list(zip(*itertools.product(values, repeat=k)))
    return [f32(list(c)) for c in cols]


def unary(fn):
    return [f32(UNARY_INPUTS)], fn


def heaviside_grads(ins, dtype):
    a = torch.tensor(ins[0], dtype=dtype)
    return [torch.zeros_like(a), (a == 0).to(dtype)]


# (label, agrad function, options, inputs, torch function, kind); kind: "grad" (autograd),
# "mask" (no gradient), or a function giving the gradients by hand.
CASES = [
    ("asin", "asin", (), *unary(torch.asin), "grad"),
    ("acos", "acos", (), *unary(torch.acos), "grad"),
    ("sinh", "sinh", (), *unary(torch.sinh), "grad"),
    ("cosh", "cosh", (), *unary(torch.cosh), "grad"),
    ("asinh", "asinh", (), *unary(torch.asinh), "grad"),
    ("acosh", "acosh", (), *unary(torch.acosh), "grad"),
    ("atanh", "atanh", (), *unary(torch.atanh), "grad"),
    ("log2", "log2", (), *unary(torch.log2), "grad"),
    ("log10", "log10", (), *unary(torch.log10), "grad"),
    ("exp2", "exp2", (), *unary(torch.exp2), "grad"),
    ("logit", "logit", (-1.0,), *unary(torch.logit), "grad"),
    ("logit/0.1", "logit", (0.1,), *unary(lambda x: torch.logit(x, eps=0.1)), "grad"),
    ("logit/0.5", "logit", (0.5,), *unary(lambda x: torch.logit(x, eps=0.5)), "grad"),
    ("erfc", "erfc", (), *unary(torch.erfc), "grad"),
    ("erfinv", "erfinv", (), *unary(torch.erfinv), "grad"),
    ("lgamma", "lgamma", (), *unary(torch.lgamma), "grad"),
    ("digamma", "digamma", (), *unary(torch.digamma), "grad"),
    ("polygamma/0", "polygamma", (0.0,), *unary(lambda x: torch.polygamma(0, x)), "grad"),
    ("polygamma/1", "polygamma", (1.0,), *unary(lambda x: torch.polygamma(1, x)), "grad"),
    ("polygamma/2", "polygamma", (2.0,), *unary(lambda x: torch.polygamma(2, x)), "grad"),
    ("polygamma/3", "polygamma", (3.0,), *unary(lambda x: torch.polygamma(3, x)), "grad"),
    ("sinc", "sinc", (), *unary(torch.sinc), "grad"),
    ("ceil", "ceil", (), *unary(torch.ceil), "grad"),
    ("frac", "frac", (), *unary(torch.frac), "grad"),
    ("nan_to_num", "nan_to_num", (0.0, NAN, NAN), *unary(torch.nan_to_num), "grad"),
    ("nan_to_num/1.5,2,-3", "nan_to_num", (1.5, 2.0, -3.0),
     *unary(lambda x: torch.nan_to_num(x, nan=1.5, posinf=2.0, neginf=-3.0)), "grad"),
    ("isnan", "isnan", (), *unary(torch.isnan), "mask"),
    ("isinf", "isinf", (), *unary(torch.isinf), "mask"),
    ("isfinite", "isfinite", (), *unary(torch.isfinite), "mask"),
    ("atan2", "atan2", (), grid(2, PAIR_VALUES), torch.atan2, "grad"),
    ("hypot", "hypot", (), grid(2, PAIR_VALUES), torch.hypot, "grad"),
    ("fmod", "fmod", (), grid(2, PAIR_VALUES), torch.fmod, "grad"),
    ("remainder", "remainder", (), grid(2, PAIR_VALUES), torch.remainder, "grad"),
    ("copysign", "copysign", (), grid(2, PAIR_VALUES), torch.copysign, "grad"),
    ("logaddexp", "logaddexp", (), grid(2, PAIR_VALUES), torch.logaddexp, "grad"),
    ("logaddexp2", "logaddexp2", (), grid(2, PAIR_VALUES), torch.logaddexp2, "grad"),
    ("xlogy", "xlogy", (), grid(2, PAIR_VALUES), torch.xlogy, "grad"),
    ("heaviside", "heaviside", (), grid(2, PAIR_VALUES), torch.heaviside, heaviside_grads),
    ("lerp", "lerp", (), [f32(list(c)) for c in zip(*itertools.product(LERP_ENDS, LERP_ENDS, LERP_WEIGHTS))],
     torch.lerp, "grad"),
    ("clamp_tensor", "clamp_tensor", (), grid(3, CLAMP_VALUES), torch.clamp, "grad"),
]


def values(t):
    return " ".join(repr(v) for v in t.detach().reshape(-1).tolist())


def run(fn, kind, ins, dtype):
    xs = [torch.tensor(v, dtype=dtype).requires_grad_(kind == "grad") for v in ins]
    y = fn(*xs)
    if kind == "mask":
        return y.to(dtype), None
    if kind == "grad":
        return y, list(torch.autograd.grad(y.sum(), xs))
    return y, kind(ins, dtype)


lines = [
    f"# Elementwise fixtures: PyTorch {torch.__version__}.  Regenerate with",
    "#     /usr/bin/python3 scripts/gen_elementwise_fixtures.py",
    f"# Format: see the script's docstring.  {len(CASES)} cases.",
]
for label, fn_name, opts, ins, fn, kind in CASES:
    opts = list(opts) + [0] * (3 - len(opts))
    lines.append(f"case {label} {fn_name} {opts[0]!r} {opts[1]!r} {opts[2]!r}")
    lines.append(f"inputs {len(ins)} {len(ins[0])}")
    for i, v in enumerate(ins):
        lines.append(f"in {i} {' '.join(repr(x) for x in v)}")
    for dtype, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
        y, grads = run(fn, kind, ins, dtype)
        lines.append(f"{tag} y {values(y)}")
        for i, g in enumerate(grads or []):
            lines.append(f"{tag} d{i} {values(g)}")
    lines.append("end")

with open(OUT, "w") as f:
    f.write("\n".join(lines) + "\n")
print(f"wrote {OUT}: {len(CASES)} cases")
