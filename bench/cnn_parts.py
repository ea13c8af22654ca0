"""The parts of the cnn_fashion step timed in PyTorch, as build/bench/bench_cnn_parts times them in agrad.

Usage: /usr/bin/python3 bench/cnn_parts.py [--quick] [--threads N]
Forward: the layer called with autograd recording; backward: forward + y.backward(g) less the
forward (median µs per call).  With BENCH_CLOCK=cpu in the environment the clock is the process's
CPU time (as bench_util.h), for a machine loaded by other work."""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from part_timer import CPU, measure  # noqa: E402




def main():
    quick = "--quick" in sys.argv
    threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 1
    torch.set_num_threads(threads)
    torch.manual_seed(42)
    budget = 0.2 if quick else 1.0
    B = 128

    def leaf(*s):
        return torch.randn(*s, requires_grad=True)

    c1w, c1b, c2w, c2b = leaf(32, 1, 3, 3), leaf(32), leaf(64, 32, 3, 3), leaf(64)
    bnw = {c: (leaf(c), leaf(c), torch.zeros(c), torch.ones(c)) for c in (32, 64)}
    lw, lb = leaf(10, 3136), leaf(10)
    target = torch.zeros(B, dtype=torch.long)

    def bn(x):
        w, b, rm, rv = bnw[x.shape[1]]
        return F.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5)

    parts = [
        ("conv1 1->32 28x28", (B, 1, 28, 28), False, lambda x: F.conv2d(x, c1w, c1b, padding=1)),
        ("bn1 32x28x28", (B, 32, 28, 28), True, bn),
        ("relu1 32x28x28", (B, 32, 28, 28), True, F.relu),
        ("pool1 32x28x28", (B, 32, 28, 28), True, lambda x: F.max_pool2d(x, 2)),
        ("conv2 32->64 14x14", (B, 32, 14, 14), True, lambda x: F.conv2d(x, c2w, c2b, padding=1)),
        ("bn2 64x14x14", (B, 64, 14, 14), True, bn),
        ("relu2 64x14x14", (B, 64, 14, 14), True, F.relu),
        ("pool2 64x14x14", (B, 64, 14, 14), True, lambda x: F.max_pool2d(x, 2)),
        ("dropout 3136", (B, 3136), True, lambda x: F.dropout(x, 0.25, True)),
        ("linear 3136->10", (B, 3136), True, lambda x: F.linear(x, lw, lb)),
        ("cross_entropy 10", (B, 10), True, lambda x: F.cross_entropy(x, target)),
    ]
    print("PyTorch %s, cnn_fashion step by part, batch %d, %d threads, %s clock, load average %.2f; µs per call"
          % (torch.__version__, B, threads, "cpu" if CPU else "wall", os.getloadavg()[0]))
    print("%-22s %-9s %10s" % ("part", "mode", "median"))
    for name, shape, x_grad, f in parts:
        x = torch.randn(*shape, requires_grad=x_grad)
        g = torch.randn_like(f(x)) if name != "cross_entropy 10" else None
        params = [t for t in (x, c1w, c1b, c2w, c2b, lw, lb, *[p for v in bnw.values() for p in v[:2]]) if t.requires_grad]

        def fwd():
            for p in params:
                p.grad = None
            f(x)

        def fwd_bwd():
            for p in params:
                p.grad = None
            f(x).backward(g)
        tf = measure(fwd, budget)
        tfb = measure(fwd_bwd, budget)
        print("%-22s %-9s %10.1f" % (name, "forward", tf))
        print("%-22s %-9s %10.1f" % (name, "backward", tfb - tf))
    ps = [c1w, c1b, *bnw[32][:2], c2w, c2b, *bnw[64][:2], lw, lb]
    for p in ps:
        p.grad = torch.randn_like(p)
    opt = torch.optim.Adam(ps, lr=1e-3)
    print("%-22s %-9s %10.1f" % ("adam step", "step", measure(opt.step, budget)))


if __name__ == "__main__":
    main()
