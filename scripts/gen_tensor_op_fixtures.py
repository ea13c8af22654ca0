"""Writes test/fixtures/tensor_ops.txt: PyTorch's values, indices and gradients of agrad's
scans, sorting, shape and indexing ops (cumsum, cumprod, logcumsumexp, cummax, sort, topk, flip, scatter, ...) on fixed inputs with ties, NaN, zeros,
odd sizes, non-contiguous layouts, empty and 0-d tensors.  test/test_tensor_ops.c reads the
file and compares agrad (float64 and float32) with it.

Regenerate with Debian's PyTorch (1.13):  apt-get install python3-torch
    /usr/bin/python3 scripts/gen_tensor_op_fixtures.py
and commit the file.

Format: '#' lines are comments; each case is

    case <label> <op> <int args>       op: the agrad name without ag_; the integer arguments
                                       in the order test_tensor_ops.c's table passes them
    x <noncontig> <ndim> <sizes> <values>   an input, row-major (one line per input, in the
                                       op's order); noncontig 1: agrad lays it out with
                                       its dims reversed and permuted back
    y <ndim> <sizes> <values>          PyTorch's output in float64
    i <ndim> <sizes> <values>          its int64 indices (ops that return them), else absent
    w <values>                         weights of the loss sum(w * y) (y's count)
    dx <values>                        d(sum(w * y))/dx, one line per input in order;
                                       absent for an op without gradient
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


# (label, op, int args, input or tuple of inputs, noncontig, PyTorch function of the inputs giving
#  y or (y, indices), differentiable)
CASES = []


def case(label, op, args, x, fn, noncontig=False, grad=True, values_only=False):
    """values_only: PyTorch's choice among tied values is unspecified, so only the values are
    compared (no indices, and no gradient, which goes to the chosen element)."""
    if values_only:
        grad = False
        fn = (lambda f: lambda x: f(x)[0])(fn)
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
# args: logcumsumexp <dim>; cummax/cummin <dim>
LARGE = f32([[1e3, 1e3 + 1, -5.0, 800.0, 1e3 - 2], [-1e3, -990.0, -1e3, 20.0, -30.0]])
for d in (0, 1, -1):
    case(f"logcumsumexp/{d}", "logcumsumexp", [d], randn(3, 5), lambda x, d=d: torch.logcumsumexp(x, d))
case("logcumsumexp/large", "logcumsumexp", [1], LARGE, lambda x: torch.logcumsumexp(x, 1))
case("logcumsumexp/nc", "logcumsumexp", [0], randn(4, 3), lambda x: torch.logcumsumexp(x, 0), noncontig=True)
# PyTorch 1.13's gradient at an input of -inf is NaN (exp(-inf - (-inf))); agrad's is 0: values only
case("logcumsumexp/inf", "logcumsumexp", [0], f32([-math.inf, -math.inf, 1.0, math.inf, 2.0, math.nan]),
     lambda x: torch.logcumsumexp(x, 0), grad=False)
case("logcumsumexp/0d", "logcumsumexp", [0], f32(0.5), lambda x: torch.logcumsumexp(x, 0))
case("logcumsumexp/empty", "logcumsumexp", [0], torch.zeros(0, 2, dtype=torch.float64),
     lambda x: torch.logcumsumexp(x, 0))
CUM_TIES = f32([[1.0, 3.0, 3.0, 2.0, 3.0, -math.inf, 5.0], [0.0, -0.0, 0.0, -1.0, -1.0, 4.0, -1.0]])
CUM_NAN = f32([[1.0, math.nan, 2.0, 3.0, math.nan, 0.0], [-2.0, -3.0, -3.0, math.nan, 1.0, -5.0]])
for name, fn in (("cummax", torch.cummax), ("cummin", torch.cummin)):
    case(f"{name}/ties", name, [1], CUM_TIES, lambda x, f=fn: f(x, 1))
    case(f"{name}/nan", name, [-1], CUM_NAN, lambda x, f=fn: f(x, -1))
    case(f"{name}/dim0/nc", name, [0], randn(5, 3), lambda x, f=fn: f(x, 0), noncontig=True)
    case(f"{name}/3d", name, [1], randn(2, 6, 3), lambda x, f=fn: f(x, 1))
    case(f"{name}/0d", name, [0], f32(4.0), lambda x, f=fn: f(x, 0))
    case(f"{name}/empty", name, [1], torch.zeros(3, 0, dtype=torch.float64), lambda x, f=fn: f(x, 1))

# ---- flip, roll, tril, triu, repeat, tile ----------------------------------------------------------
# args: flip <n> <dims>; roll <n> <shifts> <dims> (roll_flat <shift>); tril/triu <k>;
# repeat/tile <n> <repeats>
case("flip/0", "flip", [1, 0], randn(3, 5), lambda x: torch.flip(x, [0]))
case("flip/-1,0/nc", "flip", [2, -1, 0], randn(4, 3), lambda x: torch.flip(x, [-1, 0]), noncontig=True)
case("flip/3d", "flip", [2, 0, 2], randn(2, 3, 5), lambda x: torch.flip(x, [0, 2]))
case("flip/none", "flip", [0], randn(2, 3), lambda x: torch.flip(x, []))
case("flip/0d", "flip", [1, 0], f32(1.5), lambda x: torch.flip(x, [0]))
case("flip/empty", "flip", [1, 1], torch.zeros(3, 0, dtype=torch.float64), lambda x: torch.flip(x, [1]))
case("roll/1", "roll", [1, 2, 1], randn(3, 5), lambda x: torch.roll(x, 2, 1))
case("roll/neg/nc", "roll", [2, -1, 7, 0, 1], randn(4, 3), lambda x: torch.roll(x, (-1, 7), (0, 1)), noncontig=True)
case("roll/3d", "roll", [3, 1, -2, 4, 0, 1, 2], randn(2, 3, 5), lambda x: torch.roll(x, (1, -2, 4), (0, 1, 2)))
case("roll/twice", "roll", [2, 1, 2, 1, 1], randn(3, 5), lambda x: torch.roll(x, (1, 2), (1, 1)))
case("roll/flat", "roll_flat", [4], randn(3, 5), lambda x: torch.roll(x, 4))
case("roll/flat/nc", "roll_flat", [-3], randn(3, 4), lambda x: torch.roll(x, -3), noncontig=True)
case("roll/0d", "roll_flat", [2], f32(1.5), lambda x: torch.roll(x, 2))
case("roll/empty", "roll", [1, 3, 0], torch.zeros(0, 3, dtype=torch.float64), lambda x: torch.roll(x, 3, 0))
for k in (0, 1, -1, 3, -5):
    case(f"tril/{k}", "tril", [k], randn(4, 5), lambda x, k=k: torch.tril(x, k))
    case(f"triu/{k}", "triu", [k], randn(5, 4), lambda x, k=k: torch.triu(x, k))
case("tril/3d/nc", "tril", [0], randn(2, 3, 4), lambda x: torch.tril(x), noncontig=True)
case("triu/3d/nc", "triu", [-1], randn(2, 4, 3), lambda x: torch.triu(x, -1), noncontig=True)
case("tril/empty", "tril", [0], torch.zeros(2, 0, 3, dtype=torch.float64), lambda x: torch.tril(x))
case("repeat/2d", "repeat", [2, 2, 3], randn(2, 3), lambda x: x.repeat(2, 3))
case("repeat/lead/nc", "repeat", [3, 2, 1, 2], randn(3, 2), lambda x: x.repeat(2, 1, 2), noncontig=True)
case("repeat/0d", "repeat", [2, 3, 2], f32(1.25), lambda x: x.repeat(3, 2))
case("repeat/zero", "repeat", [2, 0, 2], randn(2, 3), lambda x: x.repeat(0, 2))
case("repeat/3d", "repeat", [3, 2, 1, 3], randn(2, 3, 2), lambda x: x.repeat(2, 1, 3))
case("tile/short", "tile", [1, 3], randn(2, 3), lambda x: torch.tile(x, (3,)))
case("tile/long", "tile", [3, 2, 1, 2], randn(3), lambda x: torch.tile(x, (2, 1, 2)))

# ---- sort, argsort, topk ---------------------------------------------------------------------------
# args: sort/argsort <dim> <descending>; topk <k> <dim> <largest>
TIES = f32([[3.0, 1.0, 3.0, -0.0, 1.0, 0.0, 3.0], [2.0, 2.0, 2.0, 2.0, -1.0, 5.0, -1.0]])
WITH_NAN = f32([[1.0, math.nan, -2.0, 4.0, math.nan, 0.5], [math.nan, 3.0, 3.0, -1.0, 2.0, 7.0]])
for desc in (0, 1):
    sort = lambda x, d, desc=desc: torch.sort(x, dim=d, descending=bool(desc), stable=True)
    case(f"sort/ties/{desc}", "sort", [1, desc], TIES, lambda x, s=sort: s(x, 1))
    case(f"sort/nan/{desc}", "sort", [-1, desc], WITH_NAN, lambda x, s=sort: s(x, -1))
    case(f"sort/dim0/nc/{desc}", "sort", [0, desc], randn(5, 3), lambda x, s=sort: s(x, 0), noncontig=True)
    case(f"sort/3d/{desc}", "sort", [1, desc], randn(2, 7, 3), lambda x, s=sort: s(x, 1))
    case(f"argsort/ties/{desc}", "argsort", [-1, desc], TIES,
         lambda x, s=sort: (s(x, -1)[1].to(torch.float64), s(x, -1)[1]), grad=False)
    case(f"argsort/nan/{desc}", "argsort", [1, desc], WITH_NAN,
         lambda x, s=sort: (s(x, 1)[1].to(torch.float64), s(x, 1)[1]), grad=False)
case("sort/0d", "sort", [0, 1], f32(2.5), lambda x: torch.sort(x, dim=0, stable=True))
case("sort/empty", "sort", [1, 0], torch.zeros(2, 0, dtype=torch.float64), lambda x: torch.sort(x, dim=1, stable=True))
case("sort/odd", "sort", [0, 0], randn(13), lambda x: torch.sort(x, dim=0, stable=True))
DISTINCT = f32(torch.randperm(24, generator=torch.Generator().manual_seed(3)).reshape(4, 6) * 0.75 - 8)
for largest in (0, 1):
    case(f"topk/3/{largest}", "topk", [3, -1, largest], DISTINCT, lambda x, l=largest: torch.topk(x, 3, -1, bool(l)))
    case(f"topk/dim0/nc/{largest}", "topk", [2, 0, largest], DISTINCT,
         lambda x, l=largest: torch.topk(x, 2, 0, bool(l)), noncontig=True)
    case(f"topk/all/{largest}", "topk", [6, 1, largest], DISTINCT, lambda x, l=largest: torch.topk(x, 6, 1, bool(l)))
case("topk/nan", "topk", [2, 0, 1], f32([1.0, math.nan, 3.0, -1.0]), lambda x: torch.topk(x, 2, 0))
case("topk/k0", "topk", [0, 1, 1], DISTINCT, lambda x: torch.topk(x, 0, 1))
case("topk/0d", "topk", [1, 0, 1], f32(-1.5), lambda x: torch.topk(x, 1, 0))
case("topk/3d", "topk", [2, 1, 0], randn(2, 5, 3), lambda x: torch.topk(x, 2, 1, False))

# ---- diagonal, diag_embed, diag, movedim -----------------------------------------------------------
# args: diagonal/diag_embed <offset> <dim1> <dim2>; diag <offset>; movedim <n> <sources> <destinations>
for off in (0, 2, -1, 7, -9):
    case(f"diagonal/{off}", "diagonal", [off, 0, 1], randn(4, 5), lambda x, o=off: torch.diagonal(x, o, 0, 1))
case("diagonal/3d/nc", "diagonal", [1, 2, 0], randn(3, 2, 4), lambda x: torch.diagonal(x, 1, 2, 0), noncontig=True)
case("diagonal/empty", "diagonal", [0, -1, -2], torch.zeros(2, 0, 3, dtype=torch.float64),
     lambda x: torch.diagonal(x, 0, -1, -2))
for off in (0, 1, -2):
    case(f"diag_embed/{off}", "diag_embed", [off, -2, -1], randn(2, 3), lambda x, o=off: torch.diag_embed(x, o))
case("diag_embed/dims/nc", "diag_embed", [1, 2, 0], randn(3, 4), lambda x: torch.diag_embed(x, 1, 2, 0), noncontig=True)
case("diag_embed/empty", "diag_embed", [0, 0, 1], torch.zeros(0, dtype=torch.float64), lambda x: torch.diag_embed(x))
case("diag/1d", "diag", [1], randn(4), lambda x: torch.diag(x, 1))
case("diag/2d", "diag", [-1], randn(4, 3), lambda x: torch.diag(x, -1))
case("diag/2d/nc", "diag", [0], randn(3, 5), lambda x: torch.diag(x), noncontig=True)
case("movedim/1", "movedim", [1, 0, -1], randn(2, 3, 4), lambda x: torch.movedim(x, 0, -1))
case("movedim/2", "movedim", [2, 0, 1, 2, 0], randn(2, 3, 4, 5), lambda x: torch.movedim(x, (0, 1), (2, 0)))
case("movedim/nc", "movedim", [1, 1, 0], randn(3, 4), lambda x: torch.movedim(x, 1, 0), noncontig=True)

# ---- kthvalue, median ------------------------------------------------------------------------------
# args: kthvalue <k> <dim> <keepdim>; median_dim <dim> <keepdim>; median (none)
for k in (1, 3, 6):
    case(f"kthvalue/{k}", "kthvalue", [k, 1, 0], DISTINCT, lambda x, k=k: torch.kthvalue(x, k, 1))
case("kthvalue/dim0/keep/nc", "kthvalue", [2, 0, 1], DISTINCT, lambda x: torch.kthvalue(x, 2, 0, True), noncontig=True)
case("kthvalue/ties", "kthvalue", [3, 1, 0], TIES, lambda x: torch.kthvalue(x, 3, 1), values_only=True)
case("kthvalue/0d", "kthvalue", [1, 0, 0], f32(3.0), lambda x: torch.kthvalue(x, 1, 0))
case("kthvalue/3d", "kthvalue", [4, -2, 0], randn(2, 5, 3), lambda x: torch.kthvalue(x, 4, -2))
case("median_dim/odd", "median_dim", [1, 0], DISTINCT[:, :5], lambda x: torch.median(x, 1))
case("median_dim/even/keep", "median_dim", [-1, 1], DISTINCT, lambda x: torch.median(x, -1, True))
case("median_dim/dim0/nc", "median_dim", [0, 0], DISTINCT, lambda x: torch.median(x, 0), noncontig=True)
case("median_dim/nan", "median_dim", [1, 0], WITH_NAN, lambda x: torch.median(x, 1))
case("median_dim/ties", "median_dim", [1, 0], TIES, lambda x: torch.median(x, 1), values_only=True)
case("median_dim/0d", "median_dim", [0, 0], f32(-2.0), lambda x: torch.median(x, 0))
case("median/odd", "median", [], DISTINCT[:3, :5], lambda x: torch.median(x))
case("median/even/nc", "median", [], DISTINCT, lambda x: torch.median(x), noncontig=True)
case("median/ties", "median", [], TIES, lambda x: torch.median(x))
case("median/nan", "median", [], WITH_NAN, lambda x: torch.median(x))
case("median/0d", "median", [], f32(1.5), lambda x: torch.median(x))
case("median/empty", "median", [], torch.zeros(2, 0, dtype=torch.float64), lambda x: torch.median(x), grad=False)

# ---- amax, amin over several dims ------------------------------------------------------------------
# args: amax/amin <keepdim> <n> <dims>
AM = f32([[[1.0, 3.0, 3.0], [2.0, -1.0, 3.0]], [[0.5, 0.5, -2.0], [0.5, -3.0, 0.25]]])
AM_NAN = f32([[1.0, math.nan, 2.0], [3.0, 4.0, -1.0]])
for name, fn in (("amax", torch.amax), ("amin", torch.amin)):
    case(f"{name}/ties/01", name, [0, 2, 0, 1], AM, lambda x, f=fn: f(x, (0, 1)))
    case(f"{name}/ties/all", name, [0, 0], AM, lambda x, f=fn: f(x, ()))
    case(f"{name}/keep/-1,0/nc", name, [1, 2, -1, 0], AM, lambda x, f=fn: f(x, (-1, 0), True), noncontig=True)
    # PyTorch 1.13's gradient of a NaN result is NaN over its whole lane (x == NaN counts no tie,
    # 0/0); agrad's goes to the NaNs, as its max and median and PyTorch's max do: values only
    case(f"{name}/nan", name, [0, 1, 1], AM_NAN, lambda x, f=fn: f(x, 1), grad=False)
    case(f"{name}/nan/all", name, [1, 0], AM_NAN, lambda x, f=fn: f(x, (), True), grad=False)
    case(f"{name}/0d", name, [0, 1, 0], f32(2.0), lambda x, f=fn: f(x, 0))
    case(f"{name}/empty/kept", name, [0, 1, 1], torch.zeros(0, 3, dtype=torch.float64), lambda x, f=fn: f(x, 1))

# ---- any, all, count_nonzero -----------------------------------------------------------------------
# args: any/all (none: all elements); any_dim/all_dim <dim> <keepdim>; count_nonzero <n> <dims>
BOOLISH = f32([[0.0, 1.0, -0.0, math.nan], [0.0, 0.0, -0.0, 0.0], [2.0, -1.0, 0.5, 3.0]])
for name in ("any", "all"):
    fn = getattr(torch, name)
    case(f"{name}/all", name, [], BOOLISH, lambda x, f=fn: f(x), grad=False)
    case(f"{name}/ones", name, [], f32([[1.0, 2.0], [math.nan, -3.0]]), lambda x, f=fn: f(x), grad=False)
    case(f"{name}/dim1", f"{name}_dim", [1, 0], BOOLISH, lambda x, f=fn: f(x, 1), grad=False)
    case(f"{name}/dim0/keep/nc", f"{name}_dim", [0, 1], BOOLISH, lambda x, f=fn: f(x, 0, True), grad=False,
         noncontig=True)
    case(f"{name}/empty", name, [], torch.zeros(0, 3, dtype=torch.float64), lambda x, f=fn: f(x), grad=False)
    case(f"{name}/empty/dim0", f"{name}_dim", [0, 0], torch.zeros(0, 3, dtype=torch.float64),
         lambda x, f=fn: f(x, 0), grad=False)
    case(f"{name}/0d", name, [], f32(0.0), lambda x, f=fn: f(x), grad=False)
case("count_nonzero/all", "count_nonzero", [0], BOOLISH, lambda x: torch.count_nonzero(x), grad=False)
case("count_nonzero/1", "count_nonzero", [1, 1], BOOLISH, lambda x: torch.count_nonzero(x, 1), grad=False)
case("count_nonzero/-1,0/nc", "count_nonzero", [2, -1, 0], BOOLISH.reshape(3, 2, 2),
     lambda x: torch.count_nonzero(x, (-1, 0)), grad=False, noncontig=True)
case("count_nonzero/empty", "count_nonzero", [1, 0], torch.zeros(0, 3, dtype=torch.float64),
     lambda x: torch.count_nonzero(x, 0), grad=False)

# ---- bmm, addmm, baddbmm, outer --------------------------------------------------------------------
# args: bmm, outer (none); addmm/baddbmm <beta·4> <alpha·4> (quarters, so that they are integers)
case("bmm", "bmm", [], (randn(3, 2, 4), randn(3, 4, 5)), torch.bmm)
case("bmm/nc", "bmm", [], (randn(2, 3, 3), randn(2, 3, 2)), torch.bmm, noncontig=True)
case("bmm/empty", "bmm", [], (randn(2, 3, 0), randn(2, 0, 4)), torch.bmm)
case("addmm", "addmm", [4, 4], (randn(2, 5), randn(2, 3), randn(3, 5)), torch.addmm)
case("addmm/scaled/bcast", "addmm", [-2, 6], (randn(5), randn(2, 3), randn(3, 5)),
     lambda i, a, b: torch.addmm(i, a, b, beta=-0.5, alpha=1.5))
case("addmm/beta0/nan", "addmm", [0, 4], (f32([[math.nan, 1.0], [2.0, math.nan]]), randn(2, 3), randn(3, 2)),
     lambda i, a, b: torch.addmm(i, a, b, beta=0))
case("addmm/nc", "addmm", [2, 4], (randn(4, 3), randn(4, 2), randn(2, 3)),
     lambda i, a, b: torch.addmm(i, a, b, beta=0.5), noncontig=True)
case("baddbmm", "baddbmm", [4, 4], (randn(2, 3, 4), randn(2, 3, 5), randn(2, 5, 4)), torch.baddbmm)
case("baddbmm/scaled/bcast", "baddbmm", [3, -1], (randn(3, 1), randn(2, 3, 2), randn(2, 2, 4)),
     lambda i, a, b: torch.baddbmm(i, a, b, beta=0.75, alpha=-0.25))
case("outer", "outer", [], (randn(4), randn(3)), torch.outer)
case("outer/empty", "outer", [], (randn(0), randn(3)), torch.outer)

# ---- repeat_interleave -----------------------------------------------------------------------------
# args: repeat_interleave <repeats> <dim>; repeat_interleave_tensor <dim> <n> <counts>
case("repeat_interleave/2/0", "repeat_interleave", [2, 0], randn(3, 2), lambda x: torch.repeat_interleave(x, 2, 0))
case("repeat_interleave/3/-1/nc", "repeat_interleave", [3, -1], randn(2, 4),
     lambda x: torch.repeat_interleave(x, 3, -1), noncontig=True)
case("repeat_interleave/0", "repeat_interleave", [0, 1], randn(2, 3), lambda x: torch.repeat_interleave(x, 0, 1))
case("repeat_interleave/3d", "repeat_interleave", [2, 1], randn(2, 3, 2), lambda x: torch.repeat_interleave(x, 2, 1))
case("repeat_interleave/tensor", "repeat_interleave_tensor", [0, 3, 1, 0, 3], randn(3, 2),
     lambda x: torch.repeat_interleave(x, torch.tensor([1, 0, 3]), 0))
case("repeat_interleave/tensor/one/nc", "repeat_interleave_tensor", [1, 1, 2], randn(3, 4),
     lambda x: torch.repeat_interleave(x, torch.tensor([2]), 1), noncontig=True)
case("repeat_interleave/empty", "repeat_interleave", [2, 1], torch.zeros(2, 0, dtype=torch.float64),
     lambda x: torch.repeat_interleave(x, 2, 1))


# ---- index_add, index_copy, index_fill, scatter, scatter_reduce --------------------------------------
# args: index_add <dim> <alpha·4> <n> <index>; index_copy <dim> <n> <index>;
# index_fill <dim> <value·4> <n> <index>; scatter <dim> <ndim> <index shape> <index values>;
# scatter_value <dim> <value·4> <ndim> <shape> <values>;
# scatter_reduce <dim> <reduce: 0 sum, 1 prod, 2 mean, 3 amax, 4 amin> <include_self> <ndim> <shape> <values>
def I(v):
    return torch.tensor(v, dtype=torch.int64)


def flat(t):
    return [int(v) for v in t.reshape(-1).tolist()]


def index_args(t):
    return [t.dim()] + list(t.shape) + flat(t)


case("index_add/1", "index_add", [1, 4, 4, 4, 0, 4, 2], (randn(3, 5), randn(3, 4)),
     lambda x, s: x.index_add(1, I([4, 0, 4, 2]), s))
case("index_add/-2/nc", "index_add", [-2, -2, 2, 3, 3], (randn(4, 3), randn(2, 3)),
     lambda x, s: x.index_add(-2, I([3, 3]), s, alpha=-0.5), noncontig=True)
case("index_add/3d", "index_add", [2, 6, 2, 3, 0], (randn(2, 3, 4), randn(2, 3, 2)),
     lambda x, s: x.index_add(2, I([3, 0]), s, alpha=1.5))
case("index_add/0d", "index_add", [0, 4, 1, 0], (f32(1.5), f32(2.0)), lambda x, s: x.index_add(0, I([0]), s))
case("index_add/empty", "index_add", [0, 4, 2, 1, 1], (torch.zeros(2, 0, 3, dtype=torch.float64),
                                                       torch.zeros(2, 0, 3, dtype=torch.float64)),
     lambda x, s: x.index_add(0, I([1, 1]), s))
case("index_copy/0", "index_copy", [0, 3, 4, 0, 2], (randn(5, 3), randn(3, 3)), lambda x, s: x.index_copy(0, I([4, 0, 2]), s))
case("index_copy/-1/nc", "index_copy", [-1, 2, 1, 3], (randn(3, 4), randn(3, 2)),
     lambda x, s: x.index_copy(-1, I([1, 3]), s), noncontig=True)
case("index_copy/none", "index_copy", [1, 0], (randn(2, 3), torch.zeros(2, 0, dtype=torch.float64)),
     lambda x, s: x.index_copy(1, I([]), s))
case("index_fill/1", "index_fill", [1, 10, 3, 0, -1, 0], randn(3, 5), lambda x: x.index_fill(1, I([0, -1, 0]), 2.5))
case("index_fill/0/nc", "index_fill", [0, -4, 1, 2], randn(4, 3), lambda x: x.index_fill(0, I([2]), -1.0), noncontig=True)
case("index_fill/3d", "index_fill", [-2, 0, 2, 2, -3], randn(2, 3, 2), lambda x: x.index_fill(-2, I([2, -3]), 0.0))
case("index_fill/0d", "index_fill", [0, 2, 1, -1], f32(3.0), lambda x: x.index_fill(0, I([-1]), 0.5))
case("index_fill/empty", "index_fill", [1, 4, 1, 0], torch.zeros(0, 2, dtype=torch.float64),
     lambda x: x.index_fill(1, I([0]), 1.0))

SC0 = I([[0, 1, 2, 0, 1], [2, 0, 1, 1, 0]])
case("scatter/0", "scatter", [0] + index_args(SC0), (randn(3, 5), randn(2, 5)), lambda x, s: x.scatter(0, SC0, s))
SC1 = I([[3, 0], [1, 2], [0, 3]])
case("scatter/-1/nc", "scatter", [-1] + index_args(SC1), (randn(3, 4), randn(3, 2)),
     lambda x, s: x.scatter(-1, SC1, s), noncontig=True)
SC3 = I([[[0, 1, 2], [2, 0, 1]], [[1, 2, 0], [0, 1, 2]]])
case("scatter/3d", "scatter", [1] + index_args(SC3), (randn(2, 3, 4), randn(2, 2, 3)), lambda x, s: x.scatter(1, SC3, s))
SCE = torch.zeros(2, 0, dtype=torch.int64)
# (src as large as index: PyTorch 1.13's scatter gradient fails for a larger src; agrad's
# gives 0 outside index's region, gradchecked by its test row)
case("scatter/empty", "scatter", [1] + index_args(SCE), (randn(2, 3), torch.zeros(2, 0, dtype=torch.float64)),
     lambda x, s: x.scatter(1, SCE, s))
case("scatter/0d", "scatter", [0] + index_args(I(0)), (f32(1.0), f32(5.0)), lambda x, s: x.scatter(0, I(0), s))
SV = I([[0, 3], [2, 2], [1, 0]])
case("scatter_value/1", "scatter_value", [1, -6] + index_args(SV), randn(3, 4), lambda x: x.scatter(1, SV, -1.5))
case("scatter_value/0/nc", "scatter_value", [0, 0] + index_args(SC0), randn(3, 5), lambda x: x.scatter(0, SC0, 0.0),
     noncontig=True)

REDUCTIONS = ("sum", "prod", "mean", "amax", "amin")
# ties within src and between x and src (include_self), repeated targets, a target nothing is sent to
SR_X = f32([[1.0, 5.0, 2.0, 0.0, 3.0], [-1.0, 4.0, 4.0, 2.0, 0.5]])
SR_SRC = f32([[5.0, 3.0, 2.0, 2.0, 0.0, 7.0], [4.0, -2.0, 6.0, 4.0, 0.0, 1.5]])
SR_I = I([[1, 0, 2, 2, 0, 0], [2, 2, 0, 1, 1, 4]])
# x apart from every src value: without include_self, x ties nothing (PyTorch 1.13's amax/amin
# gradient counts a tie with x even where x is not included)
SR_X2 = f32([[1.25, 5.25, 2.25, 0.25, 3.25], [-1.25, 4.25, 4.75, 2.25, 0.75]])
for r, name in enumerate(REDUCTIONS):
    case(f"scatter_reduce/{name}/self", "scatter_reduce", [1, r, 1] + index_args(SR_I), (SR_X, SR_SRC),
         lambda x, s, n=name: x.scatter_reduce(1, SR_I, s, n, include_self=True))
    case(f"scatter_reduce/{name}/noself", "scatter_reduce", [-1, r, 0] + index_args(SR_I), (SR_X2, SR_SRC),
         lambda x, s, n=name: x.scatter_reduce(-1, SR_I, s, n, include_self=False))
SR_I0 = I([[0, 2, 0], [0, 0, 1]])
for r, name in ((0, "sum"), (2, "mean"), (3, "amax")):
    case(f"scatter_reduce/{name}/dim0/nc", "scatter_reduce", [0, r, 1] + index_args(SR_I0), (randn(3, 3), randn(2, 3)),
         lambda x, s, n=name: x.scatter_reduce(0, SR_I0, s, n), noncontig=True)
SR_I3 = I([[[1, 1], [0, 1]], [[0, 0], [1, 0]]])
case("scatter_reduce/prod/3d", "scatter_reduce", [2, 1, 0] + index_args(SR_I3), (randn(2, 2, 3), randn(2, 2, 2)),
     lambda x, s: x.scatter_reduce(2, SR_I3, s, "prod", include_self=False))
case("scatter_reduce/mean/0d", "scatter_reduce", [0, 2, 1] + index_args(I(0)), (f32(1.0), f32(4.0)),
     lambda x, s: x.scatter_reduce(0, I(0), s, "mean"))
case("scatter_reduce/sum/empty", "scatter_reduce", [1, 0, 1] + index_args(SCE),
     (randn(2, 3), torch.zeros(2, 0, dtype=torch.float64)), lambda x, s: x.scatter_reduce(1, SCE, s, "sum"))
# NaN wins; PyTorch 1.13's gradient of a NaN result is NaN (agrad's goes to the NaNs): values only
SR_NAN = f32([[1.0, math.nan, 2.0, 0.0, -1.0, 3.0]])
for r, name in ((1, "prod"), (3, "amax"), (4, "amin")):
    case(f"scatter_reduce/{name}/nan", "scatter_reduce", [1, r, 1] + index_args(SR_I[:1]), (SR_X[:1], SR_NAN),
         lambda x, s, n=name: x.scatter_reduce(1, SR_I[:1], s, n), grad=False)
# without include_self, a tie of x with the result: PyTorch 1.13 counts x in the split (it
# gives src half), agrad does not (x takes no part): values only
case("scatter_reduce/amax/noself/xtie", "scatter_reduce", [1, 3, 0] + index_args(SR_I), (SR_X, SR_SRC),
     lambda x, s: x.scatter_reduce(1, SR_I, s, "amax", include_self=False), grad=False)

# ---- take, put, masked_select, masked_scatter, nonzero ----------------------------------------------
# args: take <ndim> <shape> <index>; put <accumulate> <ndim> <shape> <index>;
# masked_select/masked_scatter <ndim> <mask shape> <mask 0/1>; nonzero/argwhere (none)
TK = I([[0, -1, 5], [11, -12, 5]])
case("take/2d", "take", index_args(TK), randn(3, 4), lambda x: torch.take(x, TK))
case("take/nc", "take", index_args(I([1, 2, -3, 1])), randn(3, 4), lambda x: torch.take(x, I([1, 2, -3, 1])), noncontig=True)
case("take/0d", "take", index_args(I([0, -1, 0])), f32(2.0), lambda x: torch.take(x, I([0, -1, 0])))
case("take/0d/index", "take", index_args(I(4)), randn(2, 3), lambda x: torch.take(x, I(4)))
case("take/empty", "take", index_args(torch.zeros(0, dtype=torch.int64)), randn(2, 3),
     lambda x: torch.take(x, torch.zeros(0, dtype=torch.int64)))
PT = I([[1, -1], [1, 5]])
case("put/acc", "put", [1] + index_args(PT), (randn(3, 4), randn(2, 2)), lambda x, s: x.put(PT, s, accumulate=True))
case("put/set", "put", [0] + index_args(I([0, 7, -2])), (randn(3, 4), randn(3)), lambda x, s: x.put(I([0, 7, -2]), s))
case("put/set/nc", "put", [0] + index_args(I([[3, -6], [0, 2]])), (randn(2, 3), randn(2, 2)),
     lambda x, s: x.put(I([[3, -6], [0, 2]]), s), noncontig=True)
case("put/0d", "put", [1] + index_args(I([0, -1])), (f32(1.0), randn(2)), lambda x, s: x.put(I([0, -1]), s, accumulate=True))


def B(v):
    return torch.tensor(v, dtype=torch.bool)


def mask_args(m):
    return [m.dim()] + list(m.shape) + [int(v) for v in m.reshape(-1).tolist()]


M34 = B([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 0, 1]])
M31 = B([[1], [0], [1]])
M4 = B([0, 1, 1, 0])
case("masked_select/2d", "masked_select", mask_args(M34), randn(3, 4), lambda x: torch.masked_select(x, M34))
case("masked_select/nc", "masked_select", mask_args(M34), randn(3, 4), lambda x: torch.masked_select(x, M34), noncontig=True)
case("masked_select/bcast/x", "masked_select", mask_args(M34), randn(3, 1), lambda x: torch.masked_select(x, M34))
case("masked_select/bcast/mask", "masked_select", mask_args(M4), randn(2, 3, 4), lambda x: torch.masked_select(x, M4))
case("masked_select/0d", "masked_select", mask_args(M4), f32(1.5), lambda x: torch.masked_select(x, M4))
case("masked_select/empty", "masked_select", mask_args(B([1, 0, 1])), torch.zeros(0, 3, dtype=torch.float64),
     lambda x: torch.masked_select(x, B([1, 0, 1])))
case("masked_scatter/2d", "masked_scatter", mask_args(M34), (randn(3, 4), randn(4, 4)),
     lambda x, s: x.masked_scatter(M34, s))
case("masked_scatter/bcast", "masked_scatter", mask_args(M31), (randn(4), randn(3, 5)),
     lambda x, s: x.masked_scatter(M31, s))
case("masked_scatter/nc", "masked_scatter", mask_args(M4), (randn(2, 4), randn(2, 2)),
     lambda x, s: x.masked_scatter(M4, s), noncontig=True)
NZ = f32([[0.0, 1.5, -0.0], [math.nan, 0.0, -2.0]])
for name, fn in (("nonzero", torch.nonzero), ("argwhere", torch.argwhere)):
    case(f"{name}/2d", name, [], NZ, lambda x, f=fn: (f(x).to(torch.float64), f(x)), grad=False)
    case(f"{name}/3d/nc", name, [], NZ.reshape(3, 1, 2), lambda x, f=fn: (f(x).to(torch.float64), f(x)), grad=False,
         noncontig=True)
    case(f"{name}/0d", name, [], f32(2.0), lambda x, f=fn: (f(x).to(torch.float64), f(x)), grad=False)
    case(f"{name}/0d/zero", name, [], f32(0.0), lambda x, f=fn: (f(x).to(torch.float64), f(x)), grad=False)
    case(f"{name}/empty", name, [], torch.zeros(2, 0, dtype=torch.float64),
         lambda x, f=fn: (f(x).to(torch.float64), f(x)), grad=False)


# ---- einsum, tensordot, kron, rot90, unbind, meshgrid, narrow_copy -----------------------------------
# args: einsum <n chars> <the equation's character codes>; tensordot <ndims> <lists?> <dims_a> <dims_b>;
# kron (none); rot90 <k> <dim0> <dim1>; unbind <dim> (compared as torch.cat of the pieces along 0);
# meshgrid <xy> (compared as torch.stack of the grids); narrow_copy <dim> <start> <length>
def eq_args(eq):
    return [len(eq)] + [ord(c) for c in eq]


def einsum_case(label, eq, xs, noncontig=False):
    case(f"einsum/{label}", "einsum", eq_args(eq), xs, lambda *t, e=eq: torch.einsum(e, *t), noncontig=noncontig)


einsum_case("trace", "ii", randn(4, 4))
einsum_case("diag", "ii->i", randn(3, 3))
einsum_case("batch_trace/nc", "bii->b", randn(2, 3, 3), noncontig=True)
einsum_case("bmm", "bij,bjk->bik", (randn(2, 3, 4), randn(2, 4, 5)))
einsum_case("bmm/nc", "bij,bjk->bik", (randn(3, 2, 3), randn(3, 3, 2)), noncontig=True)
einsum_case("outer", "i,j->ij", (randn(3), randn(4)))
einsum_case("dot", "i,i", (randn(5), randn(5)))
einsum_case("frobenius", "ij,ij->", (randn(3, 4), randn(3, 4)))
einsum_case("transpose", "ij->ji", randn(2, 3))
einsum_case("permute3", "ijk->kji", randn(2, 3, 4))
einsum_case("ellipsis", "...ij,...jk", (randn(2, 1, 3, 4), randn(5, 4, 2)))
einsum_case("ellipsis/out", "b...i->...b", randn(2, 3, 4, 5))
einsum_case("ellipsis/sum", "...ij->ij", randn(5, 2, 3))
einsum_case("implicit/upper", "ba,Ab", (randn(2, 3), randn(4, 2)))
einsum_case("chain3", "ij,jk,kl->il", (randn(2, 3), randn(3, 4), randn(4, 2)))
einsum_case("bcast1", "ij,jk->ik", (randn(2, 1), randn(3, 4)))
einsum_case("spaces", " i j , j k -> i k ", (randn(2, 3), randn(3, 4)))
einsum_case("diag_mul", "ii,i->i", (randn(3, 3), randn(3)))
einsum_case("empty", "ij,jk->ik", (torch.zeros(2, 0, dtype=torch.float64), torch.zeros(0, 3, dtype=torch.float64)))
einsum_case("0d", ",->", (f32(1.5), f32(-2.0)))
einsum_case("sum_all", "...->", randn(2, 3))

case("tensordot/2", "tensordot", [2, 0], (randn(2, 3, 4), randn(3, 4, 5)), lambda a, b: torch.tensordot(a, b, 2))
case("tensordot/lists/nc", "tensordot", [2, 1, 0, -1, 1, 0], (randn(3, 2, 4), randn(4, 3, 2)),
     lambda a, b: torch.tensordot(a, b, ([0, -1], [1, 0])), noncontig=True)
case("tensordot/0", "tensordot", [0, 0], (randn(2), randn(3)), lambda a, b: torch.tensordot(a, b, 0))
case("kron/2d", "kron", [], (randn(2, 3), randn(3, 2)), torch.kron)
case("kron/ranks/nc", "kron", [], (randn(3, 2), randn(2, 2, 3)), torch.kron, noncontig=True)
case("kron/empty", "kron", [], (randn(2), torch.zeros(0, dtype=torch.float64)), torch.kron)
for k in (1, 2, 3, -1, 4):
    case(f"rot90/{k}", "rot90", [k, 0, 1], randn(3, 4), lambda x, k=k: torch.rot90(x, k, [0, 1]))
case("rot90/3d/nc", "rot90", [1, 2, -3], randn(2, 3, 4), lambda x: torch.rot90(x, 1, [2, -3]), noncontig=True)
case("unbind/1", "unbind", [1], randn(3, 4), lambda x: torch.cat(torch.unbind(x, 1), 0))
case("unbind/-1/nc", "unbind", [-1], randn(2, 3, 2), lambda x: torch.cat(torch.unbind(x, -1), 0), noncontig=True)
case("meshgrid/ij", "meshgrid", [0], (randn(3), randn(4), randn(2)),
     lambda *t: torch.stack(torch.meshgrid(*t, indexing="ij"), 0))
case("meshgrid/xy", "meshgrid", [1], (randn(3), randn(4)), lambda *t: torch.stack(torch.meshgrid(*t, indexing="xy"), 0))
case("meshgrid/0d", "meshgrid", [1], (f32(2.0), randn(3)), lambda *t: torch.stack(torch.meshgrid(*t, indexing="xy"), 0))
# (PyTorch 1.13 has no derivative for narrow_copy; agrad's flows through narrow: values only)
case("narrow_copy/1", "narrow_copy", [1, 1, 2], randn(3, 4), lambda x: x.narrow_copy(1, 1, 2), grad=False)
case("narrow_copy/nc", "narrow_copy", [0, 2, 0], randn(3, 4), lambda x: x.narrow_copy(0, 2, 0), noncontig=True,
     grad=False)

# ---- cdist, pairwise_distance, cosine_similarity, normalize ----------------------------------------
# args: cdist <p·4, -4 for inf>; pairwise_distance <p·4> <keepdim> (eps 1e-6);
# cosine_similarity <dim> (eps 1e-8); normalize <p·4> <dim> (eps 1e-12)
def P(code):
    return math.inf if code == -4 else code / 4


DUP = f32([[1.0, 2.0, -1.0], [0.5, 0.0, 3.0], [1.0, 2.0, -1.0], [-2.0, 1.0, 0.0]])
for code in (8, 4, 12, 0, -4, 6):
    case(f"cdist/{code}", "cdist", [code], (DUP, f32([[1.0, 2.0, -1.0], [2.0, -1.0, 0.5]])),
         lambda a, b, c=code: torch.cdist(a, b, P(c)), grad=code != 0)
case("cdist/batch/nc", "cdist", [8], (randn(2, 3, 4), randn(1, 5, 4)), lambda a, b: torch.cdist(a, b), noncontig=True)
# p = 2 with more than 25 rows: PyTorch's matmul form (‖a‖² + ‖b‖² - 2a·b), which agrad follows there
case("cdist/mm", "cdist", [8], (randn(30, 5), randn(7, 5)), lambda a, b: torch.cdist(a, b))
case("cdist/mm/batch/nc", "cdist", [8], (randn(2, 4, 3), randn(2, 27, 3)), lambda a, b: torch.cdist(a, b), noncontig=True)
case("cdist/empty", "cdist", [8], (randn(0, 3), randn(2, 3)), lambda a, b: torch.cdist(a, b))
for code in (8, 4, -4):
    case(f"pairwise_distance/{code}", "pairwise_distance", [code, 0], (randn(3, 4), randn(3, 4)),
         lambda a, b, c=code: torch.nn.functional.pairwise_distance(a, b, P(c)))
case("pairwise_distance/bcast/keep", "pairwise_distance", [8, 1], (randn(3, 4), randn(4)),
     lambda a, b: torch.nn.functional.pairwise_distance(a, b, keepdim=True))
COS = f32([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0], [-3.0, 1.0, 2.0]])
case("cosine_similarity/1", "cosine_similarity", [1], (COS, f32([[2.0, -1.0, 1.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]])),
     lambda a, b: torch.nn.functional.cosine_similarity(a, b, 1))
# norms below eps: PyTorch 1.13 clamps them in place under no_grad, so its gradient ignores the
# clamp; agrad's clamp passes no gradient there: values only
TINY = f32([[1e-9, 0.0, 0.0], [2e-9, 1e-9, 0.0]])
case("cosine_similarity/tiny", "cosine_similarity", [1], (TINY, TINY.flip(0)),
     lambda a, b: torch.nn.functional.cosine_similarity(a, b, 1), grad=False)
case("cosine_similarity/0/bcast", "cosine_similarity", [-1], (randn(2, 3), randn(3)),
     lambda a, b: torch.nn.functional.cosine_similarity(a, b, -1))
case("cosine_similarity/nc", "cosine_similarity", [0], (randn(4, 3), randn(4, 3)),
     lambda a, b: torch.nn.functional.cosine_similarity(a, b, 0), noncontig=True)
for code, d in ((8, 1), (4, 0), (12, -1)):
    case(f"normalize/{code}/{d}", "normalize", [code, d], COS, lambda x, c=code, d=d: torch.nn.functional.normalize(x, P(c), d))
case("normalize/nc", "normalize", [8, 0], randn(3, 4), lambda x: torch.nn.functional.normalize(x, 2, 0), noncontig=True)


# ---- searchsorted, bucketize, bincount, histc, unique, unique_consecutive ---------------------------
# args: searchsorted/bucketize <right>; bincount <minlength> <weighted> <n> <values> (x: the weights);
# histc <bins> <min·4> <max·4>; unique/unique_consecutive (indices: the inverse),
# unique_counts/unique_consecutive_counts (the counts, as values and indices);
# quantile/nanquantile <q·100> <dim, 99: all> <keepdim> <interpolation 0..4>; nanmedian_dim <dim> <keepdim>
SEQ = f32([-1.0, 0.5, 0.5, 0.5, 2.0, 3.5])
VALS = f32([[0.5, -2.0, 4.0], [2.0, 1.0, math.nan]])
for right in (0, 1):
    case(f"searchsorted/1d/{right}", "searchsorted", [right], (SEQ, VALS),
         lambda a, v, r=right: (torch.searchsorted(a, v, right=bool(r)).to(torch.float64), torch.searchsorted(a, v, right=bool(r))),
         grad=False)
    case(f"bucketize/{right}", "bucketize", [right], (VALS, SEQ),
         lambda x, b, r=right: (torch.bucketize(x, b, right=bool(r)).to(torch.float64), torch.bucketize(x, b, right=bool(r))),
         grad=False)
SEQ2 = f32([[0.0, 1.0, 2.0, 3.0], [-3.0, -1.0, -1.0, 5.0]])
case("searchsorted/2d", "searchsorted", [0], (SEQ2, f32([[1.5, -1.0, 3.0], [-1.0, 9.0, -5.0]])),
     lambda a, v: (torch.searchsorted(a, v).to(torch.float64), torch.searchsorted(a, v)), grad=False)
case("searchsorted/empty", "searchsorted", [1], (SEQ, torch.zeros(0, 2, dtype=torch.float64)),
     lambda a, v: (torch.searchsorted(a, v, right=True).to(torch.float64), torch.searchsorted(a, v, right=True)), grad=False)
BC = [0, 3, 3, 1, 7, 3]
case("bincount/plain", "bincount", [0, 0, len(BC)] + BC, randn(len(BC)),
     lambda w: torch.bincount(I(BC)).to(torch.float64), grad=False)
case("bincount/weights/min", "bincount", [10, 1, len(BC)] + BC, randn(len(BC)),
     lambda w: torch.bincount(I(BC), weights=w, minlength=10), grad=False)
case("bincount/empty", "bincount", [3, 0, 0], torch.zeros(0, dtype=torch.float64),
     lambda w: torch.bincount(torch.zeros(0, dtype=torch.int64), minlength=3).to(torch.float64), grad=False)
HX = f32([[1.0, 2.0, 3.0, 3.0], [5.0, 8.0, -1.0, 9.0]])
case("histc/range", "histc", [4, 0, 32], HX, lambda x: torch.histc(x, 4, 0, 8), grad=False)
# (a NaN with an explicit range: PyTorch 1.13 counts it in bin 0 (its bin of NaN is undefined
# behaviour); agrad does not count it - test_deviations)
case("histc/data", "histc", [5, 0, 0], f32([[1.0, 2.0, 3.0], [0.5, 7.0, 2.5]]), lambda x: torch.histc(x, 5), grad=False)
case("histc/flat", "histc", [4, 0, 0], f32([2.0, 2.0]), lambda x: torch.histc(x, 4), grad=False)
case("histc/nc", "histc", [3, -8, 8], randn(3, 4), lambda x: torch.histc(x, 3, -2, 2), grad=False, noncontig=True)
UQ = f32([[2.0, -1.0, 2.0, 0.5], [0.5, 0.5, -1.0, 3.0]])


def uq(fn, part):
    def f(x):
        r = fn(x, return_inverse=True, return_counts=True)
        if part == "counts":
            return r[2].to(torch.float64), r[2]
        return r[0], r[1]
    return f


for name, fn in (("unique", lambda x, **k: torch.unique(x, sorted=True, **k)), ("unique_consecutive", torch.unique_consecutive)):
    case(f"{name}/2d", name, [], UQ, uq(fn, "values"), grad=False)
    case(f"{name}/2d/counts", f"{name}_counts", [], UQ, uq(fn, "counts"), grad=False)
    case(f"{name}/nc", name, [], UQ, uq(fn, "values"), grad=False, noncontig=True)
    case(f"{name}/0d", name, [], f32(1.5), uq(fn, "values"), grad=False)
    case(f"{name}/empty", name, [], torch.zeros(0, 2, dtype=torch.float64), uq(fn, "values"), grad=False)

# ---- quantile, nanquantile, nanmedian -------------------------------------------------------------
INTERP = ("linear", "lower", "higher", "nearest", "midpoint")
QX = randn(3, 5)
for i, how in enumerate(INTERP):
    for q in (0, 37, 50, 100):
        case(f"quantile/{how}/{q}", "quantile", [q, 1, 0, i], QX,
             lambda x, q=q, h=how: torch.quantile(x, q / 100, dim=1, interpolation=h))
case("quantile/all/keep", "quantile", [25, 99, 1, 0], QX, lambda x: torch.quantile(x, 0.25, keepdim=True))
case("quantile/dim0/nc", "quantile", [60, 0, 1, 0], QX, lambda x: torch.quantile(x, 0.6, dim=0, keepdim=True), noncontig=True)
case("quantile/-1/3d", "quantile", [75, -1, 0, 4], randn(2, 3, 4), lambda x: torch.quantile(x, 0.75, dim=-1, interpolation="midpoint"))
case("quantile/0d", "quantile", [50, 0, 0, 0], f32(2.5), lambda x: torch.quantile(x, 0.5, dim=0))
QN = f32([[1.0, math.nan, 3.0, -2.0, 0.5], [4.0, 5.0, 6.0, -1.0, 2.5], [math.nan] * 5])
case("quantile/nan", "quantile", [50, 1, 0, 0], QN, lambda x: torch.quantile(x, 0.5, dim=1), grad=False)
for i, how in enumerate(INTERP):
    case(f"nanquantile/{how}", "nanquantile", [30, 1, 0, i], QN, lambda x, h=how: torch.nanquantile(x, 0.3, dim=1, interpolation=h),
         grad=False)
case("nanquantile/grad", "nanquantile", [40, 1, 1, 0], QN[:2], lambda x: torch.nanquantile(x, 0.4, dim=1, keepdim=True))
case("nanmedian_dim/1", "nanmedian_dim", [1, 0], QN[:2], lambda x: torch.nanmedian(x, 1))
case("nanmedian_dim/0/keep/nc", "nanmedian_dim", [0, 1], f32([[1.0, math.nan], [math.nan, 2.0], [3.0, -1.0]]),
     lambda x: torch.nanmedian(x, 0, True), noncontig=True)
case("nanmedian_dim/allnan", "nanmedian_dim", [1, 0], QN[2:], lambda x: torch.nanmedian(x, 1), grad=False)

# nanmedian (all elements): the lower median of the non-NaN; the gradient split over ties (over
# the NaN when all are)
case("nanmedian/ties", "nanmedian", [], f32([1.0, math.nan, 3.0, 2.0, 2.0]), lambda x: torch.nanmedian(x))
case("nanmedian/2d/nc", "nanmedian", [], QN[:2], lambda x: torch.nanmedian(x), noncontig=True)
case("nanmedian/allnan", "nanmedian", [], QN[2:], lambda x: torch.nanmedian(x))
case("nanmedian/0d", "nanmedian", [], f32(2.5), lambda x: torch.nanmedian(x))
case("nanmedian/empty", "nanmedian", [], torch.zeros(0, 3, dtype=torch.float64), lambda x: torch.nanmedian(x), grad=False)

# ---- take_along_dim, mode, unique(dim) --------------------------------------------------------------
# args: take_along_dim <dim, 99: None> <index>; mode <dim> <keepdim>; unique_dim <dim>
TA = I([[0, 2, 2, 1]])
case("take_along_dim/bcast", "take_along_dim", [1] + index_args(TA), randn(2, 3), lambda x: torch.take_along_dim(x, TA, 1))
TA0 = I([[1], [0], [1]])
case("take_along_dim/0/bcast", "take_along_dim", [0] + index_args(TA0), randn(2, 3), lambda x: torch.take_along_dim(x, TA0, 0))
TAN = I([[3, 0], [1, 1], [2, 3]])
case("take_along_dim/-1/nc", "take_along_dim", [-1] + index_args(TAN), randn(3, 4), lambda x: torch.take_along_dim(x, TAN, -1),
     noncontig=True)
case("take_along_dim/none", "take_along_dim", [99] + index_args(I([[5, 0], [3, 5]])), randn(2, 3),
     lambda x: torch.take_along_dim(x, I([[5, 0], [3, 5]])))
case("take_along_dim/none/0d", "take_along_dim", [99] + index_args(I(4)), randn(2, 3), lambda x: torch.take_along_dim(x, I(4)))
TAE = torch.zeros(2, 0, dtype=torch.int64)
case("take_along_dim/empty", "take_along_dim", [1] + index_args(TAE), randn(2, 3), lambda x: torch.take_along_dim(x, TAE, 1))
# ties: the smallest of the most frequent values, at its last index (PyTorch's CPU kernel)
MODE = f32([[1.0, 2.0, 2.0, 3.0, 3.0, 1.0], [5.0, 5.0, 4.0, 4.0, 7.0, 7.0], [0.0, -1.0, 2.0, -1.0, 0.0, 9.0]])
case("mode/ties", "mode", [1, 0], MODE, lambda x: torch.mode(x, 1))
case("mode/0/keep/nc", "mode", [0, 1], f32([[1.0, 2.0], [1.0, 3.0], [2.0, 3.0]]), lambda x: torch.mode(x, 0, True), noncontig=True)
case("mode/3d", "mode", [-2, 0], f32([[[1, 2], [1, 2], [3, 2]], [[0, 0], [1, 1], [0, 1]]]), lambda x: torch.mode(x, -2))
case("mode/0d", "mode", [0, 0], f32(3.0), lambda x: torch.mode(x, 0))
case("mode/empty", "mode", [1, 0], torch.zeros(0, 3, dtype=torch.float64), lambda x: torch.mode(x, 1))


def uqd(d, part):
    def f(x):
        r = torch.unique(x, dim=d, return_inverse=True, return_counts=True)
        if part == "counts":
            return r[2].to(torch.float64), r[2]
        return r[0], r[1]
    return f


UQD = f32([[1.0, 2.0], [0.0, 1.0], [1.0, 2.0], [0.0, 1.5], [-1.0, 9.0], [0.0, 1.0]])
case("unique_dim/0", "unique_dim", [0], UQD, uqd(0, "values"), grad=False)
case("unique_dim/0/counts", "unique_dim_counts", [0], UQD, uqd(0, "counts"), grad=False)
case("unique_dim/1/nc", "unique_dim", [1], UQD.T.contiguous(), uqd(1, "values"), grad=False, noncontig=True)
case("unique_dim/3d", "unique_dim", [-2], f32([[[1, 2], [1, 2], [0, 2]], [[0, 0], [0, 0], [0, 1]]]), uqd(-2, "values"), grad=False)
case("unique_dim/empty", "unique_dim", [0], torch.zeros(0, 3, dtype=torch.float64), uqd(0, "values"), grad=False)

# ---- linalg.solve(left=False) -------------------------------------------------------------------
# args: solve_right (none): X with X·A = B
def well_conditioned(*shape):
    return randn(*shape) + 4 * torch.eye(shape[-1], dtype=torch.float64)


case("solve_right/matrix", "solve_right", [], (well_conditioned(3, 3), randn(2, 3)),
     lambda a, b: torch.linalg.solve(a, b, left=False))
case("solve_right/batch/nc", "solve_right", [], (well_conditioned(2, 3, 3), randn(2, 5, 3)),
     lambda a, b: torch.linalg.solve(a, b, left=False), noncontig=True)
case("solve_right/bcast", "solve_right", [], (well_conditioned(3, 3), randn(2, 4, 3)),
     lambda a, b: torch.linalg.solve(a, b, left=False))


# ---- cdist's direct form (every p but 2 past 25 rows, ops/distance.c's cdist_p), added last so that the
# cases above keep their inputs and weights: ties of the largest |d| (inf: each gets the gradient, as
# PyTorch), zero distances and zero differences (p < 1: 0 there), broadcast batch dims, a transposed
# input, empty inputs and rows of no columns.  Its own generator, so the draws above stay as they were.
GEN16 = torch.Generator().manual_seed(16)


def randn16(*shape):
    return f32(torch.randn(*shape, dtype=torch.float64, generator=GEN16) * 2)


TIES_A = f32([[0.0, 0.0, 0.0], [1.0, 2.0, -1.0], [3.0, 3.0, 3.0], [0.5, -1.5, 2.0]])
TIES_B = f32([[1.0, -1.0, 1.0], [1.0, 2.0, -1.0], [0.0, 2.0, 2.0]])
for code in (0, 2, 4, 6, 8, 12, -4):
    case(f"cdist/ties/{code}", "cdist", [code], (TIES_A, TIES_B), lambda a, b, c=code: torch.cdist(a, b, P(c)))
for code in (0, 4, 6, 12, -4):
    case(f"cdist/bcast/{code}", "cdist", [code], (randn16(2, 1, 3, 4), randn16(3, 5, 4)),
         lambda a, b, c=code: torch.cdist(a, b, P(c)))
for code in (4, 6, -4):
    case(f"cdist/nc/{code}", "cdist", [code], (randn16(5, 37), randn16(40, 37)),
         lambda a, b, c=code: torch.cdist(a, b, P(c)), noncontig=True)
    case(f"cdist/empty/{code}", "cdist", [code], (randn16(0, 3), randn16(2, 3)), lambda a, b, c=code: torch.cdist(a, b, P(c)))
    case(f"cdist/nocols/{code}", "cdist", [code], (randn16(3, 0), randn16(2, 0)), lambda a, b, c=code: torch.cdist(a, b, P(c)))

def main():
    lines = [l.rstrip() for l in __doc__.splitlines()]
    out = ["# " + l if l else "#" for l in lines]
    out.append("# torch " + torch.__version__)
    for label, op, args, x, noncontig, fn, grad in CASES:
        xs = [t.clone().detach().to(torch.float64) for t in (x if isinstance(x, tuple) else (x,))]
        xgs = [t.clone().requires_grad_(grad) for t in xs]
        r = fn(*xgs)
        y, idx = (r if isinstance(r, tuple) else (r, None))
        gen = torch.Generator().manual_seed(len(out))
        w = f32(torch.randn(y.shape, dtype=torch.float64, generator=gen))
        out.append(f"case {label} {op} " + " ".join(str(a) for a in args))
        out.extend(f"x {int(noncontig)} " + shape_vals(t) for t in xs)
        out.append("y " + shape_vals(y.detach()))
        if idx is not None:
            out.append("i " + shape_vals(idx))
        out.append("w " + " ".join(num(v) for v in w.reshape(-1).tolist()))
        if grad:
            dxs = torch.autograd.grad((y * w).sum(), xgs, allow_unused=True)
            for t, dx in zip(xs, dxs):
                dx = torch.zeros_like(t) if dx is None else dx
                out.append("dx " + " ".join(num(v) for v in dx.reshape(-1).tolist()))
        out.append("end")
    with open(OUT, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {len(CASES)} cases to {OUT}")


if __name__ == "__main__":
    main()
