#!/usr/bin/python3
"""Says which BLAS PyTorch runs on, and refuses the reference one.

    /usr/bin/python3 bench/blas_check.py      (exit 0: fine, 2: reference BLAS or too slow)

Debian's python3-torch links libblas.so.3, which the alternatives system points at
whatever BLAS is installed: on a fresh machine that is the reference BLAS (libblas3),
on which PyTorch's matmul runs 30-50x slower than on OpenBLAS, and any comparison
against PyTorch is meaningless.  This reads the libblas this process mapped after a
matmul and times a 1024^3 float32 matmul (best of 3; OpenBLAS gives 100+ GFLOP/s on our
2-core machines, the reference BLAS about 6).  The fix is
`apt-get install libopenblas0-pthread`.  With BENCH_CLOCK=cpu the matmul is timed in
process CPU time (for a machine loaded by other work; the rate is then per core).
"""
import os
import sys
import time

import torch

FLOOR_GFLOPS = 20.0


def mapped_blas():
    """The BLAS/LAPACK shared objects this process has mapped."""
    libs = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            name = path.rsplit("/", 1)[-1]
            if "blas" in name or "mkl" in name:
                libs.add(path)
    return sorted(libs)


def main():
    torch.set_num_threads(1)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    # BENCH_CLOCK=cpu (compare_pytorch.py on a loaded machine): the CPU time of the process, all
    # of OpenBLAS's threads together, which a machine busy with other work does not inflate
    clock = time.process_time if os.environ.get("BENCH_CLOCK") == "cpu" else time.perf_counter
    best = float("inf")
    for _ in range(3):
        t = clock()
        torch.mm(a, b)
        best = min(best, clock() - t)
    gflops = 2 * 1024 ** 3 / best / 1e9
    libs = mapped_blas()
    reference = [p for p in libs if "/blas/libblas.so" in p]  # Debian's libblas3 lives in .../blas/
    print(f"PyTorch {torch.__version__} BLAS: {', '.join(libs) or 'none mapped (MKL or built in)'}; "
          f"1024^3 sgemm {gflops:.1f} GFLOP/s")
    if reference or gflops < FLOOR_GFLOPS:
        why = f"the reference BLAS ({reference[0]})" if reference else f"a matmul at {gflops:.1f} GFLOP/s"
        print(f"blas_check: PyTorch runs on {why}; a comparison would measure that, not PyTorch. "
              "Install OpenBLAS: apt-get install libopenblas0-pthread", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
