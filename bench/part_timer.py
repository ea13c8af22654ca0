"""The clock and the per-call timer of the part-by-part PyTorch scripts (cnn_parts.py,
index_parts.py), as bench_util.h's bench_measure times agrad's parts.

With BENCH_CLOCK=cpu in the environment the clock is the process's CPU time, for a machine
loaded by other work; otherwise wall time."""
import os
import time

CPU = os.environ.get("BENCH_CLOCK") == "cpu"
clock = time.process_time if CPU else time.perf_counter


def measure(fn, budget):
    """Median µs per call of fn: three warm-up calls, then batches of about 1 ms each for about
    budget seconds (at least 5 batches, at most 101)."""
    for _ in range(3):
        fn()
    a = clock()
    fn()
    one = clock() - a
    batch = max(1, int(1e-3 / max(one, 1e-9)) + 1)
    samples = []
    start = clock()
    while len(samples) < 5 or (clock() - start < budget and len(samples) < 101):
        a = clock()
        for _ in range(batch):
            fn()
        samples.append((clock() - a) / batch * 1e6)
    samples.sort()
    return samples[len(samples) // 2]
