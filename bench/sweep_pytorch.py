#!/usr/bin/python3
"""sweep_pytorch.py - every registered op with a PyTorch equivalent, against PyTorch.

    /usr/bin/python3 bench/sweep_pytorch.py BUILD [--quick] [--only=a,b] [--sizes=small,medium,large]
                                         [--cases=TEXT|...] [--json=FILE] [--jsonl=FILE] [--threads=N]
                                         [--retime=FILE [--pairs=N]]

Takes the op list from BUILD/bench/agrad-bench --list (every op with a test row) and, for
each op the table OPS below maps to PyTorch, times it at a small, a medium and a large
shape (about 4 Ki, 256 Ki and 4 Mi elements in the largest input), along each dim for the
ops that take --dim (2-d dims 0 and 1, the middle dim of a 3-d input), with a
non-contiguous (transposed) inputs at the medium and large sizes for elementwise ops and the
ops timed at their row's shapes scaled (the index family, shape ops...), and with broadcasting for binary ones; forward and forward + backward (the backward of a ones-like
upstream gradient of random values, as agrad-bench does).  Ops without an equivalent, or
whose test row calls them in a way PyTorch cannot reproduce at other shapes, are listed as
skipped with the reason.

agrad's side is agrad-bench --op NAME --shape ... [--dim D] [--noncontig] --no-limits
--json (the call its test row makes, test/cases/); PyTorch's is the same call in one worker
process.  Both run on one thread (agrad-bench --threads 1, torch.set_num_threads(1)) and
both time CPU time (BENCH_CLOCK=cpu, time.process_time): the machine this was written on is
shared, and CPU time is what a one-thread run costs whatever the load.  The two sides
alternate case by case, so a slow spell of the host hits both.  Each side reports the
median of samples of at least a millisecond (--quick: 0.03 s of samples per mode, at least
5 samples, else 0.5 s).

The indexing rows' index or mask (gather, scatter, take, embedding...: the rows' aux,
test/cases/op_cases.h) is made before timing on both sides: agrad-bench makes it once, untimed,
and PyTorch gets it ready-made (INDICES below, the same values).  The sort of searchsorted and
bucketize is inside the call on both sides.

Prints the table sorted by ratio (PyTorch time over agrad time: below 1.0 agrad is the
slower), the cases below 1.0, and a summary; --json=FILE saves every case at the end,
--jsonl=FILE one JSON line a case as it goes (a run cut short keeps what it timed).
--retime=FILE takes a saved --json or --jsonl file and times again each of its cases below 1.0x (in
either mode), alone, --pairs=N times (default 5), agrad and PyTorch alternated: each side's median
and range of the N medians, and the ratio of the medians, which tells a slow path from the load's
noise (--only, --sizes and --cases still narrow it; --json=FILE saves the re-timed figures).
With --quick a whole sweep takes about 15 minutes on a quiet 2-core machine; on a loaded
one each case waits for a CPU, and --sizes=small,medium leaves out the large inputs
(most of the time).  --cases='noncontig|[N,1]' keeps only the cases whose label (the table's case
column: "medium noncontig", "medium [N,1]+[1,N]", "large dim 0"...) contains one of the texts.

Matrix products, linear algebra, distances, attention and the norms take their shapes from
TABLES below instead (small, medium and large, one matrix and a batch of them; matmul with
broadcast and matrix-vector cases, linear at batch 1, the norms on 2-, 3- and 4-d inputs):
their PyTorch side reproduces the row's call (test/cases/linalg.c makes each input the matrix
the op is defined on, A + 2n·I, A·Aᵀ + n·I, A + Aᵀ, and so does the table's function).
`--only=matmul,linear,linear_relu,cdist,scaled_dot_product_attention,layer_norm,batch_norm,
group_norm,linalg_solve,...` sweeps those alone (about 5 minutes with --quick on a quiet machine).
"""

import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
QUICK_BUDGET = 0.03  # --quick: seconds of samples per mode and side (at least 5 samples of >= 1 ms)

# ---- shapes -----------------------------------------------------------------------------------------
TARGETS = {"small": 4096, "medium": 262144, "large": 4194304}
# ops whose output grows faster than their input: smaller inputs
TARGET_OVERRIDE = {"diag_embed": {"small": 64, "medium": 512, "large": 2048}}


def scaled(shapes, target):
    """shapes with every dim above 1 multiplied by the smallest k >= 1 that gives the largest
    input at least target elements (opc_scale in test/cases/inputs.c)."""
    def numel(s):
        return math.prod(s) if s else 1
    k = 1
    while max(numel([d * k if d > 1 else d for d in s]) for s in shapes) < target:
        k += 1
    return [[d * k if d > 1 else d for d in s] for s in shapes]


def square(target):
    n = int(math.sqrt(target))
    return [n, n]


# ---- the PyTorch side of each op ------------------------------------------------------------------------
# Each entry: name -> (kind, fn) where fn(torch, F, xs) makes the op's output from the input
# tensors xs exactly as the test row calls it (for the shapes the kind gives).  Kinds:
#   "unary"   one input, any shape: square 2-d inputs at each size, and non-contiguous at medium
#   "binary"  two inputs: same shape at each size; [N,N] with [N] and [N,1] with [1,N] at medium
#   "ternary" three same-shape inputs
#   "dim"     an op agrad-bench calls with --dim: fn(torch, F, xs, dim)
#   "row"     the row's first registered shapes, scaled (scaled() above); fn reproduces the row's
#             call for that rank
#   a list of (label, shapes per size) overrides: see the pooling, pad and upsample rows
def _u(expr):
    return ("unary", expr)


def _idx(torch, shape, a, b, m):
    """opc_index: value k (row-major) is (a*k + b) mod m."""
    n = math.prod(shape) if shape else 1
    return ((torch.arange(n, dtype=torch.int64) * a + b) % m).reshape(shape)


def _lane_idx(torch, shape, m):
    """opc_lane_index: the sum of the coordinates mod m."""
    total = torch.zeros(shape, dtype=torch.int64)
    for d, n in enumerate(shape):
        view = [1] * len(shape)
        view[d] = n
        total = total + torch.arange(n, dtype=torch.int64).reshape(view)
    return total % m


def _halves(torch, x):
    return torch.round(x * 2) * 0.5


# ---- test/cases/linalg.c, attention.c and norm.c's calls, for PyTorch ------------------------------------
def _eye_like(t, a, c):
    return t.eye(a.shape[-1], dtype=a.dtype) * c


def _invertible(t, a):
    """A + 2n·I (plus_identity of the rows)."""
    return a + _eye_like(t, a, 2.0 * a.shape[-1])


def _spd(t, a):
    """A·Aᵀ + n·I."""
    return t.matmul(a, a.mT) + _eye_like(t, a, float(a.shape[-1]))


def _rect_identity(t, a):
    """A + 2·max(m, n)·I[m, n] (plus_rect_identity)."""
    m, n = a.shape[-2], a.shape[-1]
    return a + t.eye(m, n, dtype=a.dtype) * (2.0 * max(m, n))


def _eigh(t, a):
    lam, v = t.linalg.eigh(a + a.mT)
    vv = v * v
    return vv * lam.unsqueeze(-2) + vv


def _qr(t, a):
    q, r = t.linalg.qr(_rect_identity(t, a))
    return t.matmul(q, r * r)


def _svd(t, a):
    u, s, vh = t.linalg.svd(a, full_matrices=False)
    return t.matmul(u * u * s.unsqueeze(-2), vh * vh)


def _vector_norm(t, x):
    """call_vector_norm's cases by the first dim: 3 the 2-norm of all, 2 the 3-norm over dims 0
    and 2 kept, 5 the inf-norm, else the 0.5-norm over the last dim of x + 1/4."""
    if x.shape[0] == 3:
        return t.linalg.vector_norm(x, 2)
    if x.shape[0] == 2:
        return t.linalg.vector_norm(x, 3, (0, 2), True)
    if x.shape[0] == 5:
        return t.linalg.vector_norm(x, math.inf)
    return t.linalg.vector_norm(x + 0.25, 0.5, -1)


def _groups(c):
    """call_group_norm with the row's 2 channels a group."""
    return c // 2 if c % 2 == 0 and c >= 2 else 1


def _sdpa(t, x):
    """softmax(q·kᵀ/√E + mask)·v as a PyTorch 1.13 user writes it (F.scaled_dot_product_attention
    came with 2.0): causal for 3-d inputs, 4-d ones with the row's mask (key j <= query i + 1)."""
    q, k, v = x
    s = t.matmul(q, k.mT) / math.sqrt(q.shape[-1])
    L, S = s.shape[-2], s.shape[-1]
    if q.dim() == 3:
        keep = t.ones(L, S, dtype=t.bool).tril()
    elif q.dim() >= 4:
        keep = t.ones(L, S, dtype=t.bool).tril(1)
    else:
        keep = None
    if keep is not None:
        s = s.masked_fill(~keep, -math.inf)
    return t.matmul(t.softmax(s, -1), v)


OPS = {
    # unary (test/cases/unary.c, the row's arguments)
    "neg": _u(lambda t, F, x: t.neg(x[0])),
    "exp": _u(lambda t, F, x: t.exp(x[0])),
    "log": _u(lambda t, F, x: t.log(x[0])),
    "log1p": _u(lambda t, F, x: t.log1p(x[0])),
    "expm1": _u(lambda t, F, x: t.expm1(x[0])),
    "sqrt": _u(lambda t, F, x: t.sqrt(x[0])),
    "rsqrt": _u(lambda t, F, x: t.rsqrt(x[0])),
    "square": _u(lambda t, F, x: t.square(x[0])),
    "reciprocal": _u(lambda t, F, x: t.reciprocal(x[0])),
    "abs": _u(lambda t, F, x: t.abs(x[0])),
    "sign": _u(lambda t, F, x: t.sign(x[0])),
    "sin": _u(lambda t, F, x: t.sin(x[0])),
    "cos": _u(lambda t, F, x: t.cos(x[0])),
    "tan": _u(lambda t, F, x: t.tan(x[0])),
    "tanh": _u(lambda t, F, x: t.tanh(x[0])),
    "sigmoid": _u(lambda t, F, x: t.sigmoid(x[0])),
    "atan": _u(lambda t, F, x: t.atan(x[0])),
    "relu": _u(lambda t, F, x: t.relu(x[0])),
    "erf": _u(lambda t, F, x: t.erf(x[0])),
    "floor": _u(lambda t, F, x: t.floor(x[0])),
    "round": _u(lambda t, F, x: t.round(x[0])),
    "trunc": _u(lambda t, F, x: t.trunc(x[0])),
    "clamp": _u(lambda t, F, x: t.clamp(x[0], -1, 1)),
    "add_scalar": _u(lambda t, F, x: x[0] + 1.5),
    "sub_scalar": _u(lambda t, F, x: x[0] - 1.5),
    "rsub_scalar": _u(lambda t, F, x: 1.5 - x[0]),
    "mul_scalar": _u(lambda t, F, x: x[0] * -2.5),
    "div_scalar": _u(lambda t, F, x: x[0] / -2.5),
    "rdiv_scalar": _u(lambda t, F, x: 1.5 / x[0]),
    "pow_scalar": _u(lambda t, F, x: t.pow(x[0], 2.5)),
    "rpow_scalar": _u(lambda t, F, x: t.pow(1.7, x[0])),
    "leaky_relu": _u(lambda t, F, x: F.leaky_relu(x[0], 0.2)),
    "elu": _u(lambda t, F, x: F.elu(x[0], 1.5)),
    "selu": _u(lambda t, F, x: F.selu(x[0])),
    "celu": _u(lambda t, F, x: F.celu(x[0], 1.5)),
    "softplus": _u(lambda t, F, x: F.softplus(x[0], 1.5, 20)),
    "gelu": _u(lambda t, F, x: F.gelu(x[0])),
    "gelu_tanh": _u(lambda t, F, x: F.gelu(x[0], approximate="tanh")),
    "silu": _u(lambda t, F, x: F.silu(x[0])),
    "mish": _u(lambda t, F, x: F.mish(x[0])),
    "hardtanh": _u(lambda t, F, x: F.hardtanh(x[0], 0, 2.5)),
    "hardsigmoid": _u(lambda t, F, x: F.hardsigmoid(x[0])),
    "hardswish": _u(lambda t, F, x: F.hardswish(x[0])),
    "softsign": _u(lambda t, F, x: F.softsign(x[0])),
    "asin": _u(lambda t, F, x: t.asin(x[0])),
    "acos": _u(lambda t, F, x: t.acos(x[0])),
    "sinh": _u(lambda t, F, x: t.sinh(x[0])),
    "cosh": _u(lambda t, F, x: t.cosh(x[0])),
    "asinh": _u(lambda t, F, x: t.asinh(x[0])),
    "acosh": _u(lambda t, F, x: t.acosh(x[0])),
    "atanh": _u(lambda t, F, x: t.atanh(x[0])),
    "log2": _u(lambda t, F, x: t.log2(x[0])),
    "log10": _u(lambda t, F, x: t.log10(x[0])),
    "exp2": _u(lambda t, F, x: t.exp2(x[0])),
    "logit": _u(lambda t, F, x: t.logit(x[0], 0.1)),
    "erfc": _u(lambda t, F, x: t.erfc(x[0])),
    "sinc": _u(lambda t, F, x: t.sinc(x[0])),
    "ceil": _u(lambda t, F, x: t.ceil(x[0])),
    "frac": _u(lambda t, F, x: t.frac(x[0])),
    "lgamma": _u(lambda t, F, x: t.lgamma(x[0])),
    "digamma": _u(lambda t, F, x: t.digamma(x[0])),
    "polygamma": _u(lambda t, F, x: t.polygamma(2, x[0])),
    "erfinv": _u(lambda t, F, x: t.erfinv(x[0])),
    "nan_to_num": _u(lambda t, F, x: t.nan_to_num(x[0])),
    "isnan": _u(lambda t, F, x: t.isnan(x[0])),
    "isinf": _u(lambda t, F, x: t.isinf(x[0])),
    "isfinite": _u(lambda t, F, x: t.isfinite(x[0])),
    "clone": _u(lambda t, F, x: x[0].clone()),
    "to_dtype": _u(lambda t, F, x: x[0].double()),
    # binary (test/cases/binary.c, compare.c)
    "add": ("binary", lambda t, F, x: x[0] + x[1]),
    "sub": ("binary", lambda t, F, x: x[0] - x[1]),
    "mul": ("binary", lambda t, F, x: x[0] * x[1]),
    "div": ("binary", lambda t, F, x: x[0] / x[1]),
    "pow": ("binary", lambda t, F, x: t.pow(x[0], x[1])),
    "maximum": ("binary", lambda t, F, x: t.maximum(x[0], x[1])),
    "minimum": ("binary", lambda t, F, x: t.minimum(x[0], x[1])),
    "atan2": ("binary", lambda t, F, x: t.atan2(x[0], x[1])),
    "hypot": ("binary", lambda t, F, x: t.hypot(x[0], x[1])),
    "fmod": ("binary", lambda t, F, x: t.fmod(x[0], x[1])),
    "remainder": ("binary", lambda t, F, x: t.remainder(x[0], x[1])),
    "copysign": ("binary", lambda t, F, x: t.copysign(x[0], x[1])),
    "logaddexp": ("binary", lambda t, F, x: t.logaddexp(x[0], x[1])),
    "logaddexp2": ("binary", lambda t, F, x: t.logaddexp2(x[0], x[1])),
    "xlogy": ("binary", lambda t, F, x: t.xlogy(x[0], x[1])),
    "heaviside": ("binary", lambda t, F, x: t.heaviside(x[0], x[1])),
    "eq": ("binary", lambda t, F, x: t.eq(x[0], x[1])),
    "ne": ("binary", lambda t, F, x: t.ne(x[0], x[1])),
    "lt": ("binary", lambda t, F, x: t.lt(x[0], x[1])),
    "le": ("binary", lambda t, F, x: t.le(x[0], x[1])),
    "gt": ("binary", lambda t, F, x: t.gt(x[0], x[1])),
    "ge": ("binary", lambda t, F, x: t.ge(x[0], x[1])),
    # ternary (test/cases/ternary.c)
    "lerp": ("ternary", lambda t, F, x: t.lerp(x[0], x[1], x[2])),
    "clamp_tensor": ("ternary", lambda t, F, x: t.clamp(x[0], x[1], x[2])),
    # along --dim (bench/agrad_bench.c's dim_ops)
    "softmax": ("dim", lambda t, F, x, d: t.softmax(x[0], d)),
    "log_softmax": ("dim", lambda t, F, x, d: t.log_softmax(x[0], d)),
    "sum": ("dim", lambda t, F, x, d: t.sum(x[0], d)),
    "mean": ("dim", lambda t, F, x, d: t.mean(x[0], d)),
    "prod": ("dim", lambda t, F, x, d: t.prod(x[0], d)),
    "var": ("dim", lambda t, F, x, d: t.var(x[0], d, unbiased=True)),
    "std": ("dim", lambda t, F, x, d: t.std(x[0], d, unbiased=True)),
    "logsumexp": ("dim", lambda t, F, x, d: t.logsumexp(x[0], d)),
    "cumsum": ("dim", lambda t, F, x, d: t.cumsum(x[0], d)),
    "cumprod": ("dim", lambda t, F, x, d: t.cumprod(x[0], d)),
    "logcumsumexp": ("dim", lambda t, F, x, d: t.logcumsumexp(x[0], d)),
    # the rows' own calls at their first shapes (2-d unless said), scaled
    "max": ("row", lambda t, F, x: t.max(x[0])),
    "min": ("row", lambda t, F, x: t.min(x[0])),
    "max_dim": ("row", lambda t, F, x: t.max(x[0], -1)[0]),
    "min_dim": ("row", lambda t, F, x: t.min(x[0], -1)[0]),
    "argmax": ("row", lambda t, F, x: t.argmax(x[0], -1)),
    "argmin": ("row", lambda t, F, x: t.argmin(x[0], -1)),
    "prod_dim": ("row", lambda t, F, x: t.prod(x[0], -1)),
    "amax": ("row", lambda t, F, x: t.amax(x[0], (0, -1))),
    "amin": ("row", lambda t, F, x: t.amin(x[0], (0, -1))),
    "any": ("row", lambda t, F, x: t.any(x[0], -1)),
    "all": ("row", lambda t, F, x: t.all(x[0], -1)),
    "count_nonzero": ("row", lambda t, F, x: t.count_nonzero(x[0], (0, -1))),
    "cummax": ("row", lambda t, F, x: t.cummax(x[0], -1)[0]),
    "cummin": ("row", lambda t, F, x: t.cummin(x[0], -1)[0]),
    "sort": ("row", lambda t, F, x: t.sort(x[0], -1, descending=True)[0]),
    "argsort": ("row", lambda t, F, x: t.argsort(x[0], -1, descending=True)),
    "topk": ("row", lambda t, F, x: t.topk(x[0], 2, -1, True, True)[0]),
    "kthvalue": ("row", lambda t, F, x: t.kthvalue(x[0], 2, -1)[0]),
    "median_dim": ("row", lambda t, F, x: t.median(x[0], -1)[0]),
    "median": ("row", lambda t, F, x: t.median(x[0])),
    "nanmedian": ("row", lambda t, F, x: t.nanmedian(x[0])),
    "flip": ("row", lambda t, F, x: t.flip(x[0], [-1])),
    "roll": ("row", lambda t, F, x: t.roll(x[0], 1, 1)),
    "tril": ("row", lambda t, F, x: t.tril(x[0], 1)),
    "triu": ("row", lambda t, F, x: t.triu(x[0], 0)),
    "repeat": ("row", lambda t, F, x: x[0].repeat(2, 3)),
    "repeat_interleave": ("row", lambda t, F, x: t.repeat_interleave(x[0], 3, -1)),
    "reshape": ("row", lambda t, F, x: x[0].reshape(-1, 2)),
    "permute": ("row", lambda t, F, x: x[0].t()),
    "slice": ("row", lambda t, F, x: x[0][:, 1:4:2]),
    "select": ("row", lambda t, F, x: x[0][:, -1]),
    "unsqueeze": ("row", lambda t, F, x: x[0].unsqueeze(1)),
    "squeeze": ("row", lambda t, F, x: x[0].squeeze(1)),
    "diagonal": ("row", lambda t, F, x: t.diagonal(x[0], 1, 0, 1)),
    "diag_embed": ("row", lambda t, F, x: t.diag_embed(x[0], -1, 0, 2)),
    "cat": ("row", lambda t, F, x: t.cat(x, -1)),
    "stack": ("row", lambda t, F, x: t.stack(x, -1)),
    "prelu": ("row", lambda t, F, x: F.prelu(x[0], x[1])),
    "index_select": ("row", lambda t, F, x, p: t.index_select(x[0], 1, p[0])),
    "gather": ("row", lambda t, F, x, p: t.gather(x[0], 1, p[0])),
    "scatter_add": ("row", lambda t, F, x, p: t.scatter_add(x[0], 1, p[0], x[1])),
    "one_hot": ("row", lambda t, F, x, p: F.one_hot(p[0])),
    "embedding": ("row", lambda t, F, x, p: F.embedding(p[0], x[0])),
    "index_add": ("row", lambda t, F, x, p: t.index_add(x[0], 1, p[0], x[1], alpha=1.5)),
    "index_copy": ("row", lambda t, F, x, p: t.index_copy(x[0], 1, p[0], x[1])),
    "index_fill": ("row", lambda t, F, x, p: t.index_fill(x[0], 1, p[0], -2.5)),
    "scatter": ("row", lambda t, F, x, p: t.scatter(x[0], 1, p[0], x[1])),
    "scatter_value": ("row", lambda t, F, x, p: t.scatter(x[0], 1, p[0], 0.75)),
    "scatter_reduce": ("row", lambda t, F, x, p: t.scatter_reduce(x[0] + 1 / 77, 1, p[0], x[1], "prod")),
    "take": ("row", lambda t, F, x, p: t.take(x[0], p[0])),
    "put": ("row", lambda t, F, x, p: x[0].put(p[0], x[1], accumulate=True)),
    "nonzero": ("row", lambda t, F, x: t.nonzero(x[0] > 0)),
    "argwhere": ("row", lambda t, F, x: t.argwhere(x[0] > 0)),
    "searchsorted": ("row", lambda t, F, x: t.searchsorted(t.sort(x[0].reshape(-1))[0], x[1])),
    "bucketize": ("row", lambda t, F, x: t.bucketize(x[1], t.sort(x[0].reshape(-1))[0], right=True)),
    "histc": ("row", lambda t, F, x: t.histc(x[0], 7, -1.5, 1.5)),
    "unique": ("row", lambda t, F, x: t.unique(_halves(t, x[0]), True, True, True)[0]),
    "unique_consecutive": ("row", lambda t, F, x: t.unique_consecutive(_halves(t, x[0]), True, True)[0]),
    "unique_dim": ("row", lambda t, F, x: t.unique(_halves(t, x[0]), True, True, True, dim=0)[0]),
    "huber": ("row", lambda t, F, x: F.smooth_l1_loss(x[0], x[1], reduction="none", beta=0.7)),
    "binary_cross_entropy": ("row", lambda t, F, x: -(x[1] * t.log(x[0]) + (1 - x[1]) * t.log1p(-x[0]))),
    "binary_cross_entropy_with_logits": ("row", lambda t, F, x: F.binary_cross_entropy_with_logits(
        *t.broadcast_tensors(x[0], x[1]), reduction="none")),
    "binary_cross_entropy_with_logits_pos_weight": ("row", lambda t, F, x: F.binary_cross_entropy_with_logits(
        *t.broadcast_tensors(x[0], x[1]), pos_weight=x[2], reduction="none")),
    "poisson_nll_loss": ("row", lambda t, F, x: F.poisson_nll_loss(x[0], x[1], True, True, reduction="none")),
    "poisson_nll_loss_rate": ("row", lambda t, F, x: F.poisson_nll_loss(x[0], x[1], False, True, eps=1e-8,
                                                                          reduction="none")),
    "kl_div": ("row", lambda t, F, x: F.kl_div(x[0], x[1], reduction="none")),
    "kl_div_log_target": ("row", lambda t, F, x: F.kl_div(x[0], x[1], reduction="none", log_target=True)),
    # matrix products, linalg, distances, attention, norms: the shapes of TABLES below
    "matmul": ("table", lambda t, F, x: t.matmul(x[0], x[1])),
    "linear": ("table", lambda t, F, x: F.linear(x[0], x[1], x[2] if len(x) > 2 else None)),
    "linear_relu": ("table", lambda t, F, x: F.relu(F.linear(x[0], x[1], x[2] if len(x) > 2 else None))),
    "layer_norm": ("table", lambda t, F, x: F.layer_norm(x[0], x[1].shape, x[1], x[2], 1e-5)),
    "batch_norm": ("table", lambda t, F, x: F.batch_norm(x[0], None, None, x[1], x[2], True, 0.1, 1e-5)),
    "group_norm": ("table", lambda t, F, x: F.group_norm(x[0], _groups(x[0].shape[1]), x[1], x[2], 1e-5)),
    "cdist": ("table", lambda t, F, x: t.cdist(x[0], x[1], 2)),
    "scaled_dot_product_attention": ("table", lambda t, F, x: _sdpa(t, x)),
    "linalg_solve": ("table", lambda t, F, x: t.linalg.solve(_invertible(t, x[0]), x[1])),
    "linalg_solve_triangular": ("table", lambda t, F, x: t.linalg.solve_triangular(
        _invertible(t, x[0]), x[1], upper=False, left=True, unitriangular=False)),
    "linalg_inv": ("table", lambda t, F, x: t.linalg.inv(_invertible(t, x[0]))),
    "linalg_det": ("table", lambda t, F, x: t.linalg.det(_invertible(t, x[0]))),
    "linalg_slogdet": ("table", lambda t, F, x: sum(t.linalg.slogdet(_invertible(t, x[0])))),
    "linalg_cholesky": ("table", lambda t, F, x: t.linalg.cholesky(_spd(t, x[0]))),
    "cholesky_solve": ("table", lambda t, F, x: t.cholesky_solve(x[0], t.linalg.cholesky(_spd(t, x[1])))),
    "linalg_eigh": ("table", lambda t, F, x: _eigh(t, x[0])),
    "linalg_eigvalsh": ("table", lambda t, F, x: t.linalg.eigvalsh(x[0] + x[0].mT, "U")),
    "linalg_qr": ("table", lambda t, F, x: _qr(t, x[0])),
    "linalg_svd": ("table", lambda t, F, x: _svd(t, x[0])),
    "linalg_pinv": ("table", lambda t, F, x: t.linalg.pinv(_rect_identity(t, x[0]))),
    "linalg_vector_norm": ("table", lambda t, F, x: _vector_norm(t, x[0])),
    # pooling, pad and upsample: NCHW inputs; the row's options (test/cases/pool.c, pad.c, upsample.c)
    "max_pool2d": ("nchw", lambda t, F, x: F.max_pool2d(x[0], (3, 2), (2, 1), (1, 1), (1, 2), ceil_mode=True)),
    "avg_pool2d": ("nchw", lambda t, F, x: F.avg_pool2d(x[0], (3, 2), (2, 1), (1, 1), ceil_mode=True)),
    "adaptive_avg_pool2d": ("nchw", lambda t, F, x: F.adaptive_avg_pool2d(x[0], (3, 2))),
    "adaptive_max_pool2d": ("nchw", lambda t, F, x: F.adaptive_max_pool2d(x[0], (3, 2))),
    "pad": ("pad", None),
    "interpolate": ("interp", None),
}

# agrad's row indices, made ready for PyTorch: name -> fn(torch, shapes) -> list of index tensors
INDICES = {
    "index_select": lambda t, s: [_idx(t, [5], 7, 2, s[0][1])],
    "gather": lambda t, s: [_idx(t, [s[0][0] - 1, s[0][1] + 2], 7, 2, s[0][1])],
    "scatter_add": lambda t, s: [_idx(t, [min(s[0][0], s[1][0]), s[1][1]], 7, 2, s[0][1])],
    "one_hot": lambda t, s: [_idx(t, s[0], 1, 0, 4)],
    "embedding": lambda t, s: [_idx(t, [2, s[0][0] + 1], 7, 2, s[0][0] - 1)],
    "index_add": lambda t, s: [_idx(t, [s[1][1]], 7, 2, s[0][1])],
    "index_copy": lambda t, s: [_idx(t, [s[1][1]], 3, 1, s[0][1])],
    "index_fill": lambda t, s: [_idx(t, [3], 2, 1, s[0][1])],
    "scatter": lambda t, s: [_lane_idx(t, [min(a, b) for a, b in zip(s[0], s[1])], s[0][1])],
    "scatter_value": lambda t, s: [_lane_idx(t, [s[0][0], s[0][1] - 1], s[0][1])],
    "scatter_reduce": lambda t, s: [_lane_idx(t, [min(s[0][0], s[1][0]), s[1][1]], s[0][1] - 1)],
    "take": lambda t, s: [_idx(t, [6], 7, 2, math.prod(s[0])).reshape(2, 3)],
    "put": lambda t, s: [_idx(t, [math.prod(s[1])], 7, 2, math.prod(s[0]))],
}

# ---- shape tables: name -> [(size, label, shapes)], sizes as --sizes names them ----------------------------
def _square_linalg(extra=None):
    """Square matrices (and a right-hand side when extra gives its columns): small, medium and
    large, one and batched.  Sizes 4 and 5 are avoided: linalg.c's rows switch options on them."""
    out = []
    for size, n, batch in (("small", 8, None), ("small", 16, 8), ("medium", 128, None), ("medium", 32, 64),
                           ("large", 512, None), ("large", 64, 128)):
        a = [n, n] if batch is None else [batch, n, n]
        label = f"{size} {n}x{n}" if batch is None else f"{size} batched {batch}x{n}x{n}"
        shapes = [a] if extra is None else [a, a[:-1] + [extra(n)]]
        out.append((size, label, shapes))
    return out


def _rect_linalg():
    """Tall matrices (m = 2n), one and batched."""
    out = []
    for size, n, batch in (("small", 8, None), ("small", 8, 16), ("medium", 64, None), ("medium", 16, 64),
                           ("large", 256, None), ("large", 32, 64)):
        a = [2 * n, n] if batch is None else [batch, 2 * n, n]
        out.append((size, f"{size} {'x'.join(map(str, a))}", [a]))
    return out


def _norm_nd():
    return [("small", "small [64,64]", [[64, 64]]), ("small", "small [2,4,16,32]", [[2, 4, 16, 32]]),
            ("medium", "medium [512,512]", [[512, 512]]), ("medium", "medium [8,16,32,64]", [[8, 16, 32, 64]]),
            ("medium", "medium [32,64,128]", [[32, 64, 128]]),
            ("large", "large [4096,1024]", [[4096, 1024]]), ("large", "large [16,64,64,64]", [[16, 64, 64, 64]])]


def _with_affine(cases, last):
    """each case's input with weight and bias shaped last(shape)."""
    return [(size, label, [s[0], last(s[0]), last(s[0])]) for size, label, s in cases]


TABLES = {
    "matmul": [("small", "small 64^3", [[64, 64], [64, 64]]),
               ("small", "small matvec 256", [[256, 256], [256]]),
               ("small", "small batched 64x8x8", [[64, 8, 8], [64, 8, 8]]),
               ("medium", "medium 256^3", [[256, 256], [256, 256]]),
               ("medium", "medium batched 32x128x64", [[32, 128, 64], [32, 64, 128]]),
               ("medium", "medium bcast 8x64x64", [[8, 64, 64], [64, 64]]),
               ("medium", "medium 4d 4x8x64x32", [[4, 8, 64, 32], [4, 8, 32, 64]]),
               ("large", "large 1024^3", [[1024, 1024], [1024, 1024]]),
               ("large", "large batched 64x256x64", [[64, 256, 64], [64, 64, 256]])],
    "linear": [("small", "small batch-1 784->256", [[1, 784], [256, 784], [256]]),
               ("small", "small 16x64->64", [[16, 64], [64, 64], [64]]),
               ("medium", "medium 128x512->512", [[128, 512], [512, 512], [512]]),
               ("medium", "medium 3d 8x64x256", [[8, 64, 256], [256, 256], [256]]),
               ("large", "large 1024^3", [[1024, 1024], [1024, 1024], [1024]])],
    "layer_norm": _with_affine([c for c in _norm_nd() if len(c[2][0]) != 4], lambda s: s[-1:])
    + [("medium", "medium [8,64,512] over 2", [[8, 64, 512], [64, 512], [64, 512]]),
       ("medium", "medium [512,1024]", [[512, 1024], [1024], [1024]])],
    "batch_norm": _with_affine(_norm_nd(), lambda s: s[1:2]),
    "group_norm": _with_affine([c for c in _norm_nd() if len(c[2][0]) > 2], lambda s: s[1:2]),
    "cdist": [("small", "small 20x8 (diff form)", [[20, 8], [20, 8]]),
              ("small", "small 64x16 (mm form)", [[64, 16], [48, 16]]),
              ("medium", "medium 512x64", [[512, 64], [512, 64]]),
              ("medium", "medium batched 16x128x32", [[16, 128, 32], [16, 128, 32]]),
              ("large", "large 2048x64", [[2048, 64], [2048, 64]])],
    "scaled_dot_product_attention": [
        ("small", "small 2x4x32x16 mask", [[2, 4, 32, 16]] * 3),
        ("small", "small 64x16 plain", [[64, 16]] * 3),
        ("medium", "medium 4x8x128x64 mask", [[4, 8, 128, 64]] * 3),
        ("medium", "medium 32x128x64 causal", [[32, 128, 64]] * 3),
        ("large", "large 8x8x512x64 mask", [[8, 8, 512, 64]] * 3)],
    "linalg_solve": _square_linalg(lambda n: 16),
    "linalg_solve_triangular": _square_linalg(lambda n: 16),
    "linalg_inv": _square_linalg(),
    "linalg_det": _square_linalg(),
    "linalg_slogdet": _square_linalg(),
    "linalg_cholesky": _square_linalg(),
    "cholesky_solve": [(size, label, [s[0][:-1] + [16], s[0]]) for size, label, s in _square_linalg()],
    "linalg_eigh": _square_linalg(),
    "linalg_eigvalsh": _square_linalg(),
    "linalg_qr": _rect_linalg(),
    "linalg_svd": _rect_linalg(),
    "linalg_pinv": _rect_linalg(),
    "linalg_vector_norm": [("small", "small 2-norm [3,1365]", [[3, 1365]]),
                           ("small", "small 0.5-norm dim -1 [64,64]", [[64, 64]]),
                           ("medium", "medium 2-norm [3,87381]", [[3, 87381]]),
                           ("medium", "medium 3-norm dims 0,2 [2,128,1024]", [[2, 128, 1024]]),
                           ("medium", "medium inf-norm [5,52428]", [[5, 52428]]),
                           ("medium", "medium 0.5-norm dim -1 [512,512]", [[512, 512]]),
                           ("large", "large 2-norm [3,1398101]", [[3, 1398101]])],
}
TABLES["linear_relu"] = TABLES["linear"]

SKIPPED = {
    "binary_step": "not in PyTorch",
    "where": "the row's mask is a fixed [3, 1]: it does not scale",
    "masked_fill": "the row's mask is a fixed [3, 1]: it does not scale",
    "masked_select": "the row's mask is a fixed [3, 1]: it does not scale",
    "masked_scatter": "the row's mask is a fixed [3, 1]: it does not scale",
    "expand": "the row expands to a fixed shape",
    "max_unpool2d": "the row builds its own indices (no PyTorch pooling made them)",
    "bincount": "the row's weights and minlength do not map one to one",
    "pad_backward": "an adjoint op: timed through pad's forward + backward",
    "avg_pool2d_backward": "an adjoint op: timed through avg_pool2d's forward + backward",
    "adaptive_avg_pool2d_backward": "an adjoint op: timed through adaptive_avg_pool2d's forward + backward",
    "interpolate_backward": "an adjoint op: timed through interpolate's forward + backward",
    "conv2d_weight": "an adjoint op: timed through conv2d's forward + backward",
    "cross_entropy": "the row's targets and class weights are built inside the call (compare_pytorch.py has xent rows)",
    "ctc_loss": "the row builds its targets inside the call",
}


def shape_cases(name, kind, base, sizes):
    """[(label, shapes, dim, noncontig)] for one op."""
    out = []
    for size in sizes:
        t = TARGET_OVERRIDE.get(name, TARGETS)[size]
        if kind == "unary":
            out.append((size, [square(t)], None, False))
            if size != "small":
                out.append((size + " noncontig", [square(t)], None, True))
        elif kind == "binary":
            out.append((size, [square(t)] * 2, None, False))
            if size == "medium":
                n = square(t)[0]
                out.append((size + " [N,N]+[N]", [[n, n], [n]], None, False))
                out.append((size + " [N,1]+[1,N]", [[n, 1], [1, n]], None, False))
            if size != "small":
                out.append((size + " noncontig", [square(t)] * 2, None, True))
        elif kind == "ternary":
            out.append((size, [square(t)] * 3, None, False))
        elif kind == "dim":
            for d in (0, 1):
                out.append((f"{size} dim {d}", [square(t)], d, False))
            if size != "small":
                c = round(t ** (1 / 3))
                out.append((f"{size} dim 1 of 3", [[c, c, c]], 1, False))
        elif kind == "nchw":
            c = {"small": [2, 4, 16, 32], "medium": [8, 16, 32, 64], "large": [16, 64, 64, 64]}[size]
            out.append((size, [c], None, False))
        elif kind == "pad":  # the row's mode follows the batch: 1 constant, 2 reflect, 3 replicate, 4 circular
            hw = {"small": [32, 32], "medium": [128, 128], "large": [256, 256]}[size]
            for n, mode in ((1, "constant"), (2, "reflect"), (3, "replicate"), (4, "circular")):
                out.append((f"{size} {mode}", [[n, 16] + hw], None, False))
        elif kind == "interp":  # batch 2: nearest x(2, 1.5); batch 3: bilinear x(1.7, 0.8)
            hw = {"small": [16, 16], "medium": [64, 64], "large": [128, 128]}[size]
            for n, mode in ((2, "nearest"), (3, "bilinear")):
                out.append((f"{size} {mode}", [[n, 16] + hw], None, False))
        elif kind == "table":
            out += [(label, shapes, None, False) for key, label, shapes in TABLES[name] if key == size]
        else:
            out.append((size, scaled(base, t), None, False))
            if kind == "row" and size != "small":  # inputs of 2+ dims as transposed views
                out.append((size + " noncontig", scaled(base, t), None, True))
    return out


# ---- the PyTorch worker ---------------------------------------------------------------------------------
PAD = {1: ((-1, 2, 1, 0, 0, 1), "constant"), 2: ((2, 1, 1, 2), "reflect"), 3: ((2, 1, 0, 3), "replicate"),
       4: ((1, 3, 2, 0), "circular")}
INTERP = {2: dict(scale_factor=(2, 1.5), mode="nearest"), 3: dict(scale_factor=(1.7, 0.8), mode="bilinear")}


def draw(torch, shape, domain):
    """Values from the row's domain (test/cases/inputs.c), float32."""
    n = math.prod(shape) if shape else 1
    u = torch.rand(n, dtype=torch.float64)
    if domain == "positive":
        v = 0.5 + 1.5 * u
    elif domain == "unit":
        v = (u * 1.8 - 0.9)
        v = torch.where(v.abs() < 0.05, torch.full_like(v, 0.05), v)
    elif domain == "distinct":
        v = (torch.randperm(n, dtype=torch.float64) - n / 2) / max(n, 1) * 4 + 0.001
    elif domain == "probability":
        v = 0.05 + 0.9 * u
    elif domain == "above_one":
        v = 1.2 + 1.8 * u
    else:
        v = u * 4 - 2
        v = torch.where(v.abs() < 0.05, torch.full_like(v, 0.05), v)
    return v.float().reshape(shape)


def worker():
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(1)
    torch.manual_seed(1)
    clock = time.process_time
    quick = "--quick" in sys.argv
    warm_s, budget_s = (QUICK_BUDGET / 5, QUICK_BUDGET) if quick else (0.1, 0.5)

    def measure(fn):
        t0, one, n = clock(), 0, 0
        while n < 2 or clock() - t0 < warm_s:
            a = clock()
            fn()
            one = clock() - a
            n += 1
        batch = min(int(1e-3 / one) + 1 if one > 0 else 1000, 100000)
        samples, start = [], clock()
        while len(samples) < 201 and (len(samples) < 5 or clock() - start < budget_s):
            a = clock()
            for _ in range(batch):
                fn()
            samples.append((clock() - a) / batch * 1e6)
        samples.sort()
        return samples[len(samples) // 2]

    for line in sys.stdin:
        case = json.loads(line)
        name, shapes, dim, noncontig = case["op"], case["shapes"], case["dim"], case["noncontig"]
        kind, fn = OPS[name]
        res = {"forward_us": None, "forward_backward_us": None, "error": None}
        try:
            xs = []
            for s in shapes:
                x = draw(torch, list(reversed(s)) if noncontig and len(s) >= 2 else s, case["domain"])
                if noncontig and len(s) >= 2:
                    x = x.permute(*reversed(range(len(s))))
                xs.append(x)
            if kind == "dim":
                call = lambda: fn(torch, F, xs, dim)
            elif kind == "pad":
                pads, mode = PAD[shapes[0][0]]
                call = lambda: F.pad(xs[0], pads, mode=mode, value=0.5) if mode == "constant" else F.pad(xs[0], pads, mode=mode)
            elif kind == "interp":
                opts = INTERP[shapes[0][0]]
                call = lambda: F.interpolate(xs[0], **opts)
            elif name in INDICES:
                p = INDICES[name](torch, shapes)
                call = lambda: fn(torch, F, xs, p)
            else:
                call = lambda: fn(torch, F, xs)
            with torch.no_grad():
                y = call()
            res["forward_us"] = measure(lambda: call())
            if case["backward"] and y.is_floating_point():
                for x in xs:
                    x.requires_grad_(True)
                y = call()
                if y.requires_grad:
                    g = draw(torch, list(y.shape), "any").to(y.dtype)

                    def both():
                        for x in xs:
                            x.grad = None
                        call().backward(g)
                    try:
                        res["forward_backward_us"] = measure(both)
                    except RuntimeError as e:  # no derivative in PyTorch
                        res["error"] = "backward: " + str(e).splitlines()[0][:80]
        except Exception as e:  # noqa: BLE001 - reported per case
            res["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"
        print(json.dumps(res), flush=True)


# ---- the driver -----------------------------------------------------------------------------------------
def agrad_case(bench, case, quick, threads, tmp):
    cmd = [bench, "--op", case["op"], "--threads", str(threads), "--no-limits", "--json", tmp]
    for k, s in enumerate(case["shapes"]):
        cmd += ["--shape", ",".join(map(str, s)) if s else "scalar"]
    if case["dim"] is not None:
        cmd += ["--dim", str(case["dim"])]
    if case["noncontig"]:
        cmd.append("--noncontig")
    if quick:
        cmd += ["--budget", str(QUICK_BUDGET)]
    env = dict(os.environ, BENCH_CLOCK="cpu", OMP_NUM_THREADS=str(threads))
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if run.returncode != 0 and not os.path.exists(tmp):
        return {"forward_us": None, "forward_backward_us": None,
                "error": (run.stderr.strip().splitlines() or ["failed"])[-1][:120]}
    with open(tmp) as f:
        j = json.load(f)
    os.unlink(tmp)
    fw, fb = j.get("forward"), j.get("forward_backward")
    return {"forward_us": fw and fw["median_us"], "forward_backward_us": fb and fb["median_us"],
            "error": None if run.returncode == 0 else (run.stderr.strip().splitlines() or [""])[-1][:120]}


def retime(opts, cases, w, bench, quick, threads, tmp):
    """--retime=FILE: each case of a saved --json (or --jsonl) below 1.0x in either mode timed again
    alone, --pairs=N times (default 5) alternating agrad and PyTorch; prints each side's median and
    range of the N medians and the ratio of the medians, and saves them with --json=FILE."""
    pairs = int(opts.get("pairs", "5"))
    with open(opts["retime"]) as f:
        text = f.read()
    try:
        saved = json.loads(text)["cases"]  # --json's file
    except json.JSONDecodeError:  # --jsonl's: one case a line
        saved = [json.loads(l) for l in text.splitlines() if l.strip()]
    slow = {(r["op"], r["case"]) for r in saved if r["ratio"] is not None and r["ratio"] < 1.0}
    todo = [c for c in cases if (c["op"], c["label"]) in slow]
    print(f"re-timing {len(todo)} cases below 1.0x in {opts['retime']}, {pairs} alternated pairs each")
    print(f"{'op':<22} {'case':<22} {'mode':<8} {'agrad med':>10} {'range':>19} {'PyTorch med':>11} "
          f"{'range':>19} {'ratio':>6}")
    out = []
    for case in todo:
        got = {"fwd": ([], []), "fwd+bwd": ([], [])}
        for _ in range(pairs):
            a = agrad_case(bench, case, quick, threads, tmp)
            w.stdin.write(json.dumps(case) + "\n")
            w.stdin.flush()
            line = w.stdout.readline()
            p = json.loads(line) if line else {"forward_us": None, "forward_backward_us": None}
            for mode, key in (("fwd", "forward_us"), ("fwd+bwd", "forward_backward_us")):
                if a[key] and p[key]:
                    got[mode][0].append(a[key])
                    got[mode][1].append(p[key])
        for mode, (ag, pt) in got.items():
            if not ag:
                continue
            ma, mp = sorted(ag)[len(ag) // 2], sorted(pt)[len(pt) // 2]
            r = {"op": case["op"], "case": case["label"], "shapes": case["shapes"], "mode": mode,
                 "agrad_us": ag, "torch_us": pt, "agrad_median": ma, "torch_median": mp, "ratio": mp / ma}
            out.append(r)
            print(f"{case['op']:<22} {case['label']:<22} {mode:<8} {ma:>10.2f} {min(ag):>9.2f}-{max(ag):<9.2f} "
                  f"{mp:>11.2f} {min(pt):>9.2f}-{max(pt):<9.2f} {mp / ma:>6.2f}", flush=True)
    w.stdin.close()
    w.wait()
    still = [r for r in out if r["ratio"] < 1.0]
    print(f"\n{len(still)} of {len(out)} re-timed case x mode still below 1.0x")
    if "json" in opts:
        with open(opts["json"], "w") as f:
            json.dump({"retimed": out, "pairs": pairs, "quick": quick, "threads": threads}, f, indent=1)
    return 0


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    opts = dict(a[2:].split("=", 1) if "=" in a else (a[2:], "1") for a in sys.argv[1:] if a.startswith("--"))
    if "torch-worker" in opts:
        return worker()
    if not args:
        print(__doc__)
        return 2
    bench = os.path.join(args[0], "bench", "agrad-bench")
    quick = "quick" in opts
    threads = int(opts.get("threads", "1"))
    only = set(opts["only"].split(",")) if "only" in opts else None
    sizes = opts.get("sizes", "small,medium,large").split(",")
    labels = opts["cases"].split("|") if "cases" in opts else None  # labels hold commas

    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True)
    if probe.returncode != 0:
        print("sweep_pytorch: PyTorch is not importable; nothing to compare")
        return 0
    sys.path.insert(0, HERE)
    os.environ["BENCH_CLOCK"] = "cpu"  # the check's sgemm too: CPU time, which the load does not inflate
    from blas_check import checked_blas
    blas = checked_blas()
    print(blas.stdout.strip())
    if blas.returncode != 0:
        print(blas.stderr.strip())
        return 2

    rows = [json.loads(l) for l in subprocess.run([bench, "--list"], capture_output=True, text=True,
                                                   check=True).stdout.splitlines()]
    cases, skipped = [], []
    for row in rows:
        name = row["op"]
        if only and name not in only:
            continue
        if name not in OPS:
            skipped.append((name, SKIPPED.get(name, "no PyTorch mapping in sweep_pytorch.py yet")))
            continue
        kind = OPS[name][0]
        for label, shapes, dim, noncontig in shape_cases(name, kind, row["shapes"], sizes):
            if labels and not any(text in label for text in labels):
                continue
            cases.append({"op": name, "label": label, "shapes": shapes, "dim": dim, "noncontig": noncontig,
                          "domain": row["domain"], "backward": row["backward"]})

    env = dict(os.environ, OMP_NUM_THREADS=str(threads), BENCH_CLOCK="cpu")
    wcmd = [sys.executable, os.path.abspath(__file__), "--torch-worker"] + (["--quick"] if quick else [])
    w = subprocess.Popen(wcmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    tmp = f"/tmp/sweep_pytorch.{os.getpid()}.json"
    if "retime" in opts:
        return retime(opts, cases, w, bench, quick, threads, tmp)
    results = []
    t0 = time.time()
    stream = open(opts["jsonl"], "w") if "jsonl" in opts else None  # one line a case as it is timed
    for i, case in enumerate(cases):
        a = agrad_case(bench, case, quick, threads, tmp)
        w.stdin.write(json.dumps(case) + "\n")
        w.stdin.flush()
        line = w.stdout.readline()
        p = json.loads(line) if line else {"forward_us": None, "forward_backward_us": None, "error": "worker died"}
        for mode, key in (("fwd", "forward_us"), ("fwd+bwd", "forward_backward_us")):
            r = {"op": case["op"], "case": case["label"], "shapes": case["shapes"], "dim": case["dim"],
                 "noncontig": case["noncontig"], "mode": mode, "agrad_us": a[key], "torch_us": p[key],
                 "agrad_error": a["error"], "torch_error": p["error"]}
            r["ratio"] = r["torch_us"] / r["agrad_us"] if r["agrad_us"] and r["torch_us"] else None
            results.append(r)
            if stream:
                stream.write(json.dumps(r) + "\n")
                stream.flush()
        if (i + 1) % 50 == 0:
            print(f"... {i + 1}/{len(cases)} cases, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    w.stdin.close()
    w.wait()

    timed = sorted((r for r in results if r["ratio"]), key=lambda r: r["ratio"])
    print(f"\nagrad vs PyTorch, one thread, CPU time, µs per call (median); ratio = PyTorch / agrad "
          f"(below 1.0: agrad slower); {len(cases)} op x shape cases, {len(timed)} timed op x shape x mode")
    print(f"{'op':<22} {'case':<22} {'shapes':<28} {'mode':<8} {'agrad':>11} {'PyTorch':>11} {'ratio':>7}")
    for r in timed:
        shapes = " ".join("x".join(map(str, s)) or "()" for s in r["shapes"])
        print(f"{r['op']:<22} {r['case']:<22} {shapes:<28} {r['mode']:<8} {r['agrad_us']:>11.2f} "
              f"{r['torch_us']:>11.2f} {r['ratio']:>7.2f}")
    slow = [r for r in timed if r["ratio"] < 1.0]
    untimed = [r for r in results if not r["ratio"] and (r["agrad_error"] or r["torch_error"])]
    print(f"\n{len(slow)} of {len(timed)} timed cases below 1.0x; {len(set(r['op'] for r in slow))} ops among them")
    if untimed:
        print(f"{len(untimed)} cases not timed on one side:")
        seen = set()
        for r in untimed:
            key = (r["op"], r["agrad_error"], r["torch_error"])
            if key not in seen:
                seen.add(key)
                print(f"  {r['op']} {r['case']} {r['mode']}: agrad: {r['agrad_error']}; PyTorch: {r['torch_error']}")
    print(f"skipped {len(skipped)} ops:")
    for name, why in skipped:
        print(f"  {name}: {why}")
    if "json" in opts:
        with open(opts["json"], "w") as f:
            json.dump({"cases": results, "skipped": skipped, "quick": quick, "threads": threads}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
