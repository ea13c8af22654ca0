#!/usr/bin/python3
"""Times bench_functional's workloads in agrad and in torch.autograd.functional, in one run.

    /usr/bin/python3 bench/compare_functional.py [BUILD_DIR] [--quick]

BUILD_DIR (default: build) holds bench/bench_functional.  The PyTorch side runs in
the two thread configurations of compare_pytorch.py (each in a fresh process) and
keeps the faster, timed as bench_util.h times (compare_pytorch.measure).  Workloads:

  hvp_mlp      torch.autograd.functional.hvp of the MSE loss of Linear(32, 64)-tanh-
               Linear(64, 10) on a batch of 64 over its four parameters (float32); vhp too
               (agrad's hvp is forward-over-reverse, its vhp reverse-over-reverse);
  jac_rev_NxM  jacobian(f, x) of f(x) = tanh(W x), R^N -> R^M, reverse mode row by row
               (vectorize=False, PyTorch's default and agrad's algorithm);
  jac_fwd_NxM  jacobian(..., vectorize=True, strategy="forward-mode") (PyTorch's forward
               mode needs vmap: all columns in one batched pass).
If torch cannot be imported it says so and exits 0.
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_pytorch import CONFIGS, measure, peak_rss_mib  # noqa: E402

SIZES = [(8, 128), (128, 8), (32, 32)]


def blas_info(torch):
    """BLAS_INFO of the build, and the libblas it loaded (Debian's is 'generic': the alternative)."""
    cfg = torch.__config__.show()
    info = cfg.split("BLAS_INFO=")[1].split(",")[0] if "BLAS_INFO=" in cfg else "?"
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({line.split()[-1] for line in f if "blas" in line.lower() and "/" in line})
    except OSError:
        libs = []
    return info + (" -> " + ", ".join(os.path.realpath(p) for p in libs) if libs else "")


def worker(threads, scale):
    import torch
    from torch.autograd import functional as AF
    torch.set_num_threads(threads)
    torch.manual_seed(42)
    x, target = torch.randn(64, 32), torch.randn(64, 10)
    params = (torch.randn(64, 32), torch.randn(64), torch.randn(10, 64), torch.randn(10))
    vs = tuple(torch.randn_like(p) for p in params)

    def loss(w1, b1, w2, b2):
        out = torch.nn.functional.linear(torch.tanh(torch.nn.functional.linear(x, w1, b1)), w2, b2)
        return torch.nn.functional.mse_loss(out, target)

    rows = {"hvp_mlp": lambda: AF.hvp(loss, params, vs), "vhp_mlp": lambda: AF.vhp(loss, params, vs)}
    for n, m in SIZES:
        w, xv = torch.randn(m, n) / n ** 0.5, torch.randn(n)

        def f(x, w=w):
            return torch.tanh(w @ x)
        rows["jac_rev_%dx%d" % (n, m)] = lambda f=f, xv=xv: AF.jacobian(f, xv)
        rows["jac_fwd_%dx%d" % (n, m)] = lambda f=f, xv=xv: AF.jacobian(f, xv, vectorize=True,
                                                                        strategy="forward-mode")
    for name, fn in rows.items():
        med, p10, p90 = measure(fn, 0.1 * scale + 0.02, 1.0 * scale)
        print(json.dumps({"name": name, "median_us": med, "p10_us": p10, "p90_us": p90}), flush=True)
    print(json.dumps({"name": "_process", "peak_rss_mib": peak_rss_mib(), "torch": torch.__version__,
                      "blas": blas_info(torch)}),
          flush=True)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    quick = "--quick" in sys.argv
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True)
    if probe.returncode != 0:
        print("compare_functional: PyTorch is not importable; nothing to compare")
        return 0
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from blas_check import checked_blas
    blas = checked_blas()  # refuses the reference BLAS; sets OPENBLAS_CORETYPE when OpenBLAS chose too low
    print(blas.stdout.strip())
    if blas.returncode != 0:
        print(blas.stderr.strip())
        return 2
    build = args[0] if args else "build"
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as f:
        path = f.name
    try:
        subprocess.run([os.path.join(build, "bench", "bench_functional"), "--json", path] + (["--quick"] if quick else []),
                       check=True, stdout=subprocess.DEVNULL)
        with open(path) as f:
            agrad = {r["name"]: r for r in map(json.loads, f) if r}
    finally:
        os.unlink(path)
    runs = {}
    for label, env, threads in CONFIGS:
        out = subprocess.run([sys.executable, __file__, "--worker", str(threads), "0.2" if quick else "1"],
                             env=dict(os.environ, **env), check=True, capture_output=True, text=True).stdout
        runs[label] = {r["name"]: r for r in map(json.loads, out.splitlines()) if r}
    proc = next(iter(runs.values()))["_process"]
    print(f"agrad vs torch.autograd.functional (PyTorch {proc['torch']}, BLAS {proc['blas']}), µs per call "
          f"(median; p10-p90), PyTorch in its best thread config, load average {os.getloadavg()[0]:.2f}")
    print(f"{'workload':<15} {'agrad':>22} {'PyTorch':>22}  {'config':<17} {'PyTorch/agrad':>13}")
    names = ["hvp_mlp", "vhp_mlp"] + [f"jac_{k}_{n}x{m}" for n, m in SIZES for k in ("rev", "fwd")]
    for name in names:
        a = agrad.get(name)
        best = min(((label, r[name]) for label, r in runs.items() if name in r), key=lambda t: t[1]["median_us"],
                   default=None)
        if not best:
            continue
        label, t = best
        ft = f"{t['median_us']:.1f} ({t['p10_us']:.1f}-{t['p90_us']:.1f})"
        if not a:
            print(f"{name:<15} {'-':>22} {ft:>22}  {label:<17} {'-':>13}")
            continue
        fa = f"{a['median_us']:.1f} ({a['p10_us']:.1f}-{a['p90_us']:.1f})"
        print(f"{name:<15} {fa:>22} {ft:>22}  {label:<17} {t['median_us'] / a['median_us']:>12.2f}x")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), float(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())
