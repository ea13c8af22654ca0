"""The index and scatter ops timed in PyTorch, as build/bench/bench_index_parts times them in agrad.

Usage: /usr/bin/python3 bench/index_parts.py [--quick] [--threads N] [name-filter]
The same parts, operands and index values (a multiply-shift hash; scatter's a permutation of every
lane); forward: the op called with autograd recording; backward: forward + y.backward(g) less the
forward (median µs per call).  With BENCH_CLOCK=cpu in the environment the clock is the process's
CPU time (as bench_util.h), for a machine loaded by other work."""
import os
import sys
import warnings

os.environ.setdefault("OPENBLAS_CORETYPE", "COOPERLAKE")
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from part_timer import CPU, measure  # noqa: E402
N = 1024
warnings.filterwarnings("ignore", message="scatter_reduce")




def hashed(shape, m):
    n = 1
    for d in shape:
        n *= d
    return ((torch.arange(n, dtype=torch.int64) * 2654435761 % 4294967296 * m) >> 32).reshape(shape)


def perm(n):
    return torch.arange(n, dtype=torch.int64) * 2654435761 % n


def hashed_mask():
    return ((torch.arange(N * N, dtype=torch.int64) * 2654435761 % 4294967296) >> 31).bool().reshape(N, N)


def lane_perm(dim):
    i = torch.arange(N, dtype=torch.int64).reshape(N, 1)
    j = torch.arange(N, dtype=torch.int64).reshape(1, N)
    p, c = (i, j) if dim == 0 else (j, i)
    return (p * 2654435761 + 7 * c) % N


def parts():
    leaf = lambda *s: torch.randn(*s, requires_grad=True)  # noqa: E731
    out = []
    for dim in (0, 1):
        for red in ("sum", "prod", "mean", "amax", "amin"):
            for self in (True, False):
                out.append(("scatter_reduce %s%s d%d" % (red, "" if self else " noself", dim),
                            lambda dim=dim, red=red, self=self: (
                                [leaf(N, N), hashed((N, N), N), leaf(N, N)],
                                lambda x, i, s: x.scatter_reduce(dim, i, s, red, include_self=self))))
    for dim in (0, 1):
        out.append(("scatter d%d" % dim, lambda dim=dim: ([leaf(N, N), lane_perm(dim), leaf(N, N)],
                                                          lambda x, i, s: x.scatter(dim, i, s))))
    for dim in (0, 1):
        out.append(("scatter_add d%d" % dim, lambda dim=dim: ([leaf(N, N), hashed((N, N), N), leaf(N, N)],
                                                              lambda x, i, s: x.scatter_add(dim, i, s))))
    for dim in (0, 1):
        out.append(("gather d%d" % dim, lambda dim=dim: ([leaf(N, N), hashed((N, N), N)],
                                                         lambda x, i: x.gather(dim, i))))
    for dim in (0, 1):
        out.append(("index_select d%d" % dim, lambda dim=dim: ([leaf(N, N), hashed((N,), N)],
                                                               lambda x, i: x.index_select(dim, i))))
    for dim in (0, 1):
        out.append(("index_add d%d" % dim, lambda dim=dim: ([leaf(N, N), hashed((N,), N), leaf(N, N)],
                                                            lambda x, i, s: x.index_add(dim, i, s))))
    out.append(("put_acc", lambda: ([leaf(N, N), hashed((N * N,), N * N), leaf(N * N)],
                                    lambda x, i, s: x.put(i, s, accumulate=True))))
    out.append(("embedding", lambda: ([leaf(8192, 256), hashed((4096,), 8192)],
                                      lambda w, i: torch.nn.functional.embedding(i, w))))
    for dim in (0, 1):
        out.append(("index_copy d%d" % dim, lambda dim=dim: ([leaf(N, N), perm(N), leaf(N, N)],
                                                             lambda x, i, s: x.index_copy(dim, i, s))))
    for dim in (0, 1):
        out.append(("index_fill d%d" % dim, lambda dim=dim: ([leaf(N, N), hashed((N // 4,), N)],
                                                             lambda x, i: x.index_fill(dim, i, -2.5))))
    out.append(("gather mid", lambda: ([leaf(16, 256, 256), hashed((16, 256, 256), 256)],
                                       lambda x, i: x.gather(1, i))))
    out.append(("scatter_add mid", lambda: ([leaf(16, 256, 256), hashed((16, 256, 256), 256), leaf(16, 256, 256)],
                                            lambda x, i, s: x.scatter_add(1, i, s))))
    out.append(("take", lambda: ([leaf(N, N), hashed((N * N,), N * N)], lambda x, i: x.take(i))))
    out.append(("masked_fill", lambda: ([leaf(N, N), hashed_mask()], lambda x, m: x.masked_fill(m, -2.5))))
    out.append(("where", lambda: ([hashed_mask(), leaf(N, N), leaf(N, N)], lambda m, a, b: torch.where(m, a, b))))
    out.append(("masked_select", lambda: ([leaf(N, N), hashed_mask()], lambda x, m: x.masked_select(m))))
    out.append(("masked_scatter", lambda: ([leaf(N, N), hashed_mask(), leaf(N, N)],
                                           lambda x, m, s: x.masked_scatter(m, s))))
    out.append(("nonzero", lambda: ([hashed_mask()], lambda m: torch.nonzero(m))))
    out.append(("repeat_interleave", lambda: ([leaf(N, N)], lambda x: x.repeat_interleave(2, 0))))
    return out


def main():
    quick = "--quick" in sys.argv
    threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 1
    args = [a for k, a in enumerate(sys.argv[1:], 1) if not a.startswith("--") and sys.argv[k - 1] != "--threads"]
    filt = args[0] if args else None
    torch.set_num_threads(threads)
    torch.manual_seed(42)
    budget = 0.2 if quick else 1.0
    print("PyTorch %s, index and scatter ops, [%d, %d] float32, %d threads, %s clock, load average %.2f; µs per call"
          % (torch.__version__, N, N, threads, "cpu" if CPU else "wall", os.getloadavg()[0]))
    print("%-30s %-9s %10s" % ("part", "mode", "median"))
    for name, make in parts():
        if filt and filt not in name:
            continue
        ins, f = make()
        leaves = [t for t in ins if t.requires_grad]
        g = torch.randn_like(f(*ins)) if leaves else None

        def fwd():
            for p in leaves:
                p.grad = None
            f(*ins)

        def fwd_bwd():
            for p in leaves:
                p.grad = None
            f(*ins).backward(g)
        tf = measure(fwd, budget)
        print("%-30s %-9s %10.1f" % (name, "forward", tf))
        if not leaves:  # nonzero: not differentiable
            continue
        tfb = measure(fwd_bwd, budget)
        print("%-30s %-9s %10.1f" % (name, "backward", tfb - tf))


if __name__ == "__main__":
    main()
