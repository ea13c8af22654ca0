"""Writes test/fixtures/tensor_ops.txt: PyTorch's values, indices and gradients of agrad's
scans, sorting and shape ops (cumsum, cumprod, ...) on fixed inputs with ties, NaN, zeros,
odd sizes, non-contiguous layouts, empty and 0-d tensors.  test/test_tensor_ops.c reads the
file and compares agrad (float64 and float32) with it.

Regenerate with Debian's PyTorch (1.13):  apt-get install python3-torch
    /usr/bin/python3 scripts/gen_tensor_op_fixtures.py
and commit the file.

Format: '#' lines are comments; each case is

    case <label> <op> <int args>       op: the agrad name without ag_; the integer arguments
                                       in the order test_tensor_ops.c's table passes them
    x <noncontig> <ndim> <sizes> <values>   the input, row-major; noncontig 1: agrad lays it
                                       out with its dims reversed and permuted back
    y <ndim> <sizes> <values>          PyTorch's output in float64
    i <ndim> <sizes> <values>          its int64 indices (ops that return them), else absent
    w <values>                         weights of the loss sum(w * y) (y's count)
    dx <values>                        d(sum(w * y))/dx, absent for an op without gradient
    end

Inputs are float32 values (so float64 and float32 see the same numbers; ties stay ties).
Values are written with repr(), so they are the exact doubles PyTorch computed.
"""
import math
import os

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "tensor_ops.txt")
torch.manual_seed(15)


def f32(t):
    """t rounded to float32, held in float64."""
    return torch.as_tensor(t, dtype=torch.float32).to(torch.float64)


def randn(*shape):
    return f32(torch.randn(*shape, dtype=torch.float64) * 2)


def num(v):
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(v)


def shape_vals(t):
    return " ".join([str(t.dim())] + [str(s) for s in t.shape] + [num(v) if t.dtype.is_floating_point else str(int(v))
                                                                   for v in t.reshape(-1).tolist()])


# (label, op, int args, input, noncontig, PyTorch function of x giving y or (y, indices), differentiable)
CASES = []


def case(label, op, args, x, fn, noncontig=False, grad=True):
    CASES.append((label, op, args, x, noncontig, fn, grad))


# ---- scans --------------------------------------------------------------------------------------
ZEROS = f32([[1.5, 0.0, 2.0, -3.0, 0.5], [0.0, 0.0, 2.0, 1.0, -1.0], [2.0, -0.5, 1.25, 3.0, 0.0]])
for d in (0, 1, -1):
    case(f"cumsum/{d}", "cumsum", [d], randn(3, 5), lambda x, d=d: torch.cumsum(x, d))
    case(f"cumprod/{d}", "cumprod", [d], randn(3, 5), lambda x, d=d: torch.cumprod(x, d))
    case(f"cumprod/zeros/{d}", "cumprod", [d], ZEROS, lambda x, d=d: torch.cumprod(x, d))
case("cumsum/nc", "cumsum", [1], randn(4, 7), lambda x: torch.cumsum(x, 1), noncontig=True)
case("cumprod/zeros/nc", "cumprod", [0], ZEROS, lambda x: torch.cumprod(x, 0), noncontig=True)
case("cumsum/3d", "cumsum", [-2], randn(2, 3, 5), lambda x: torch.cumsum(x, -2))
case("cumprod/3d", "cumprod", [1], randn(2, 3, 5), lambda x: torch.cumprod(x, 1))
case("cumsum/0d", "cumsum", [0], f32(2.5), lambda x: torch.cumsum(x, 0))
case("cumprod/0d", "cumprod", [-1], f32(0.0), lambda x: torch.cumprod(x, -1))
case("cumsum/empty", "cumsum", [1], torch.zeros(2, 0, 3, dtype=torch.float64), lambda x: torch.cumsum(x, 1))
case("cumprod/empty", "cumprod", [0], torch.zeros(2, 0, dtype=torch.float64), lambda x: torch.cumprod(x, 0))
case("cumsum/nan", "cumsum", [0], f32([1.0, math.nan, 2.0]), lambda x: torch.cumsum(x, 0))


def main():
    lines = [l.rstrip() for l in __doc__.splitlines()]
    out = ["# " + l if l else "#" for l in lines]
    out.append("# torch " + torch.__version__)
    for label, op, args, x, noncontig, fn, grad in CASES:
        x = x.clone().detach().to(torch.float64)
        xg = x.clone().requires_grad_(grad)
        r = fn(xg)
        y, idx = (r if isinstance(r, tuple) else (r, None))
        gen = torch.Generator().manual_seed(len(out))
        w = f32(torch.randn(y.shape, dtype=torch.float64, generator=gen))
        out.append(f"case {label} {op} " + " ".join(str(a) for a in args))
        out.append(f"x {int(noncontig)} " + shape_vals(x))
        out.append("y " + shape_vals(y.detach()))
        if idx is not None:
            out.append("i " + shape_vals(idx))
        out.append("w " + " ".join(num(v) for v in w.reshape(-1).tolist()))
        if grad:
            (dx,) = torch.autograd.grad((y * w).sum(), xg, allow_unused=True)
            if dx is None:
                dx = torch.zeros_like(x)
            out.append("dx " + " ".join(num(v) for v in dx.reshape(-1).tolist()))
        out.append("end")
    with open(OUT, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {len(CASES)} cases to {OUT}")


if __name__ == "__main__":
    main()
