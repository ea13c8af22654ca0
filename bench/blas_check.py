#!/usr/bin/python3
"""Says which BLAS PyTorch runs on, and refuses the reference one.

    /usr/bin/python3 bench/blas_check.py      (exit 0: fine, 2: reference BLAS or too slow,
                                               3: OpenBLAS chose a core below the CPU)

Debian's python3-torch links libblas.so.3, which the alternatives system points at
whatever BLAS is installed: on a fresh machine that is the reference BLAS (libblas3),
on which PyTorch's matmul runs 30-50x slower than on OpenBLAS, and any comparison
against PyTorch is meaningless.  This reads the libblas this process mapped after a
matmul and times a 1024^3 float32 matmul (best of 3; OpenBLAS gives 100+ GFLOP/s on our
2-core machines, the reference BLAS about 6).  The fix is
`apt-get install libopenblas0-pthread`.  With BENCH_CLOCK=cpu the matmul is timed in
process CPU time (for a machine loaded by other work; the rate is then per core).

OpenBLAS can also pick a kernel below the CPU: OpenBLAS 0.3.21 (Debian 12) does not
know Sapphire Rapids and, under some hypervisors, falls back to its generic "Prescott"
kernel, which ran a 1024^3 sgemm at 30-60 GFLOP/s where its AVX-512 kernel ran 145-240
on the same 2 cores.  So the check reads the core OpenBLAS chose
(`openblas_get_corename`) and, when it is below what /proc/cpuinfo's flags allow and
OPENBLAS_CORETYPE is not set, exits 3 and prints `OPENBLAS_CORETYPE=<core>` as its
last line.  `checked_blas()` (used by compare_pytorch.py and compare_functional.py)
then sets that variable for every PyTorch process it starts and checks again.
"""
import ctypes
import os
import subprocess
import sys
import time

FLOOR_GFLOPS = 20.0
AVX512_CORES = {"skylakex", "cooperlake", "sapphirerapids"}
AVX2_CORES = AVX512_CORES | {"haswell", "zen", "skylake"}


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


def openblas_core(libs):
    """The kernel family OpenBLAS chose at load time ("Prescott", "SkylakeX"...), or None."""
    for path in libs:
        if "openblas" in path.rsplit("/", 1)[-1]:
            try:
                fn = ctypes.CDLL(path).openblas_get_corename
            except (OSError, AttributeError):
                return None
            fn.restype = ctypes.c_char_p
            return fn().decode()
    return None


def best_core():
    """The OpenBLAS core the CPU's flags allow: COOPERLAKE (AVX-512 BF16), SKYLAKEX, HASWELL or None."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return None
    if "avx512f" in flags:
        return "COOPERLAKE" if "avx512_bf16" in flags else "SKYLAKEX"
    return "HASWELL" if "avx2" in flags and "fma" in flags else None


def checked_blas():
    """Runs this check in a child (so the caller need not import torch); when OpenBLAS
    chose a core below the CPU's, sets OPENBLAS_CORETYPE in os.environ (inherited by every
    process the caller starts after) and checks again.  Returns the final
    CompletedProcess: returncode 0 when a comparison is meaningful."""
    cmd = [sys.executable, os.path.abspath(__file__)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode == 3:
        core = run.stdout.strip().splitlines()[-1].split("=", 1)[1]
        os.environ["OPENBLAS_CORETYPE"] = core
        note = run.stderr.strip()
        run = subprocess.run(cmd, capture_output=True, text=True)
        run.stdout = f"{note}\n{run.stdout}"
    return run


def main():
    import torch
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
    core = openblas_core(libs)
    print(f"PyTorch {torch.__version__} BLAS: {', '.join(libs) or 'none mapped (MKL or built in)'}"
          f"{f' (OpenBLAS core {core})' if core else ''}; 1024^3 sgemm {gflops:.1f} GFLOP/s")
    want = best_core()
    avx = AVX512_CORES if want in ("COOPERLAKE", "SKYLAKEX") else AVX2_CORES if want else None
    if core and avx and core.lower() not in avx and not os.environ.get("OPENBLAS_CORETYPE"):
        print(f"blas_check: OpenBLAS chose its {core} kernels on a CPU that runs {want}'s; "
              f"PyTorch's timings would measure that.  Using OPENBLAS_CORETYPE={want}.", file=sys.stderr)
        print(f"OPENBLAS_CORETYPE={want}")
        return 3
    if reference or gflops < FLOOR_GFLOPS:
        why = f"the reference BLAS ({reference[0]})" if reference else f"a matmul at {gflops:.1f} GFLOP/s"
        print(f"blas_check: PyTorch runs on {why}; a comparison would measure that, not PyTorch. "
              "Install OpenBLAS: apt-get install libopenblas0-pthread", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
