"""Writes test/fixtures/activations.txt: PyTorch's values and derivatives of every
activation agrad implements, for several option values, on fixed inputs that include
large magnitudes (±100, ±1e4), the kinks (0, ±1, ±3, 6, the softplus thresholds, the
hardtanh bounds) and NaN.  test/test_activations.c reads the file and compares agrad
(float64 and float32) with it, and checks each module's printing against PyTorch's repr.

Regenerate with Debian's PyTorch (1.13):  apt-get install python3-torch
    /usr/bin/python3 scripts/gen_activation_fixtures.py
and commit the file.

Format: '#' lines are comments; first one line

    input <n> <x_1> ... <x_n>          the inputs, float32 values (so both dtypes use them exactly)

then each case is

    case <label> <function> <a> <b>    function: the agrad name without ag_; a, b: its scalar
                                       options in order (0 when it has fewer)
    module <repr>                      PyTorch's repr of the module with these options (absent
                                       when PyTorch's module would refuse them)
    f64 y <n values>                   PyTorch's output in float64
    f64 dx <n values>                  d(sum y)/dx, i.e. the derivative at each input
    f32 y <n values>                   the same computed by PyTorch in float32
    f32 dx <n values>
    end

Values are written with repr(), so they are the exact doubles (or floats) PyTorch computed.
binary_step is not in PyTorch: its values are torch.heaviside(x, 0) and its derivative 0
(agrad's convention), and its module repr is written by hand; so are those of gaussian
(exp(-x²)) and gelu_sigmoid (x·σ(1.702x)), computed with PyTorch's ops.  rrelu is in eval
mode (slope (lower + upper)/2).
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "activations.txt")

KINKS = [0.0, -1.0, 1.0, -3.0, 3.0, 6.0, 20.0, 5.0, 2.0, -2.0, 0.5]
POINTS = [-1e4, -100.0, -88.5, -30.0, -20.5, -10.0, -8.0, -6.0, -5.0, -3.5, -2.5, -1.5, -0.75, -0.5,
          -0.25, -0.1, -1e-3, -1e-10, 1e-10, 1e-3, 0.1, 0.25, 0.75, 1.5, 2.5, 3.5, 6.5, 8.0, 10.0,
          19.5, 20.5, 30.0, 88.5, 100.0, 1e4]
torch.manual_seed(1)
RANDOM = (torch.randn(16, dtype=torch.float64) * 3).tolist()
NAN = [math.nan]
# Rounded to float32 once: float32 and float64 see the same numbers.
INPUTS = torch.tensor(sorted(KINKS + POINTS + RANDOM) + NAN, dtype=torch.float32).to(torch.float64)


def num(v):
    """An option as PyTorch's module would be given it: an int where the default is an int."""
    return int(v) if v == int(v) else v


def heaviside(x):
    """Binary step: PyTorch's heaviside has no derivative; agrad's is 0 everywhere."""
    return torch.heaviside(x, torch.zeros((), dtype=x.dtype))


# (label, agrad function, a, b, functional, module or None)
CASES = [
    ("relu", "relu", 0, 0, F.relu, nn.ReLU()),
    ("sigmoid", "sigmoid", 0, 0, torch.sigmoid, nn.Sigmoid()),
    ("tanh", "tanh", 0, 0, torch.tanh, nn.Tanh()),
    ("atan", "atan", 0, 0, torch.atan, None),
    ("leaky_relu", "leaky_relu", 0.01, 0, lambda x: F.leaky_relu(x, 0.01), nn.LeakyReLU(0.01)),
    ("leaky_relu/0.2", "leaky_relu", 0.2, 0, lambda x: F.leaky_relu(x, 0.2), nn.LeakyReLU(0.2)),
    ("leaky_relu/-0.5", "leaky_relu", -0.5, 0, lambda x: F.leaky_relu(x, -0.5), nn.LeakyReLU(-0.5)),
    ("leaky_relu/0", "leaky_relu", 0.0, 0, lambda x: F.leaky_relu(x, 0.0), nn.LeakyReLU(0.0)),
    ("elu", "elu", 1.0, 0, lambda x: F.elu(x, 1.0), nn.ELU(1.0)),
    ("elu/0.5", "elu", 0.5, 0, lambda x: F.elu(x, 0.5), nn.ELU(0.5)),
    ("elu/2", "elu", 2.0, 0, lambda x: F.elu(x, 2.0), nn.ELU(2.0)),
    ("selu", "selu", 0, 0, F.selu, nn.SELU()),
    ("celu", "celu", 1.0, 0, lambda x: F.celu(x, 1.0), nn.CELU(1.0)),
    ("celu/2", "celu", 2.0, 0, lambda x: F.celu(x, 2.0), nn.CELU(2.0)),
    ("celu/0.5", "celu", 0.5, 0, lambda x: F.celu(x, 0.5), nn.CELU(0.5)),
    ("softplus", "softplus", 1, 20, lambda x: F.softplus(x, 1, 20), nn.Softplus(1, 20)),
    ("softplus/2,10", "softplus", 2, 10, lambda x: F.softplus(x, 2, 10), nn.Softplus(2, 10)),
    ("softplus/0.5,1", "softplus", 0.5, 1, lambda x: F.softplus(x, 0.5, 1), nn.Softplus(0.5, 1)),
    ("softplus/1.5,20.5", "softplus", 1.5, 20.5, lambda x: F.softplus(x, 1.5, 20.5), nn.Softplus(1.5, 20.5)),
    ("gelu", "gelu", 0, 0, F.gelu, nn.GELU()),
    ("gelu_tanh", "gelu_tanh", 0, 0, lambda x: F.gelu(x, approximate="tanh"), nn.GELU(approximate="tanh")),
    ("silu", "silu", 0, 0, F.silu, nn.SiLU()),
    ("mish", "mish", 0, 0, F.mish, nn.Mish()),
    ("hardtanh", "hardtanh", -1.0, 1.0, lambda x: F.hardtanh(x, -1.0, 1.0), nn.Hardtanh(-1.0, 1.0)),
    ("hardtanh/-2,3", "hardtanh", -2.0, 3.0, lambda x: F.hardtanh(x, -2.0, 3.0), nn.Hardtanh(-2.0, 3.0)),
    ("hardtanh/0.5,0.5", "hardtanh", 0.5, 0.5, lambda x: F.hardtanh(x, 0.5, 0.5), None),
    ("relu6", "relu6", 0, 0, F.relu6, nn.ReLU6()),
    ("hardsigmoid", "hardsigmoid", 0, 0, F.hardsigmoid, nn.Hardsigmoid()),
    ("hardswish", "hardswish", 0, 0, F.hardswish, nn.Hardswish()),
    ("softsign", "softsign", 0, 0, F.softsign, nn.Softsign()),
    ("binary_step", "binary_step", 0, 0, heaviside, "BinaryStep()"),
    ("logsigmoid", "logsigmoid", 0, 0, F.logsigmoid, nn.LogSigmoid()),
    ("tanhshrink", "tanhshrink", 0, 0, F.tanhshrink, nn.Tanhshrink()),
    ("softshrink", "softshrink", 0.5, 0, lambda x: F.softshrink(x, 0.5), nn.Softshrink(0.5)),
    ("softshrink/2", "softshrink", 2.0, 0, lambda x: F.softshrink(x, 2.0), nn.Softshrink(2.0)),
    ("softshrink/0", "softshrink", 0.0, 0, lambda x: F.softshrink(x, 0.0), nn.Softshrink(0.0)),
    ("hardshrink", "hardshrink", 0.5, 0, lambda x: F.hardshrink(x, 0.5), nn.Hardshrink(0.5)),
    ("hardshrink/3", "hardshrink", 3.0, 0, lambda x: F.hardshrink(x, 3.0), nn.Hardshrink(3.0)),
    ("threshold", "threshold", 1.0, 20.0, lambda x: F.threshold(x, 1.0, 20.0), nn.Threshold(1.0, 20.0)),
    ("threshold/-2,0.5", "threshold", -2.0, 0.5, lambda x: F.threshold(x, -2.0, 0.5), nn.Threshold(-2.0, 0.5)),
    # eval mode: the slope is (lower + upper)/2 (the training draws are tested in C)
    ("rrelu", "rrelu", 0.125, 1 / 3, lambda x: F.rrelu(x, 0.125, 1 / 3, training=False), nn.RReLU(0.125, 1 / 3)),
    ("rrelu/0.1,0.3", "rrelu", 0.1, 0.3, lambda x: F.rrelu(x, 0.1, 0.3, training=False), nn.RReLU(0.1, 0.3)),
    # the course material's, not in PyTorch: written with PyTorch's ops
    ("gaussian", "gaussian", 0, 0, lambda x: torch.exp(-x * x), "Gaussian()"),
    ("gelu_sigmoid", "gelu_sigmoid", 0, 0, lambda x: x * torch.sigmoid(1.702 * x), "GELUSigmoid()"),
]


def values(t):
    return " ".join(repr(v) for v in t.detach().reshape(-1).tolist())


def run(fn, dtype):
    x = INPUTS.to(dtype).clone().requires_grad_(True)
    if fn is heaviside:
        return heaviside(x.detach()), torch.zeros_like(x)
    y = fn(x)
    (dx,) = torch.autograd.grad(y.sum(), x)
    return y, dx


lines = [
    f"# Activation fixtures: PyTorch {torch.__version__}.  Regenerate with",
    "#     /usr/bin/python3 scripts/gen_activation_fixtures.py",
    f"# Format: see the script's docstring.  {len(CASES)} cases.",
    f"input {INPUTS.numel()} {values(INPUTS)}",
]
for label, fn_name, a, b, fn, module in CASES:
    lines.append(f"case {label} {fn_name} {a!r} {b!r}")
    if module is not None:
        lines.append(f"module {module if isinstance(module, str) else repr(module)}")
    for dtype, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
        y, dx = run(fn, dtype)
        lines.append(f"{tag} y {values(y)}")
        lines.append(f"{tag} dx {values(dx)}")
    lines.append("end")

with open(OUT, "w") as f:
    f.write("\n".join(lines) + "\n")
print(f"wrote {OUT}: {len(CASES)} cases on {INPUTS.numel()} inputs")
