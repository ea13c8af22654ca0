#!/usr/bin/python3
"""Runs bench_steps' workloads in agrad and in PyTorch, in one run, and compares.

    /usr/bin/python3 bench/compare_pytorch.py [BUILD_DIR] [--quick] [--only=NAME]

BUILD_DIR (default: build) holds bench/bench_steps.  --only=NAME runs the
workloads whose names contain NAME (e.g. --only=lstm; --only=sum_,softmax: either).  The PyTorch side runs each
workload in its best thread configuration on a 2-core machine: the defaults
oversubscribe (2 OpenMP + 2 OpenBLAS threads), so every workload is timed with
OPENBLAS_NUM_THREADS=2 + torch.set_num_threads(1) and with OPENBLAS_NUM_THREADS=1
+ torch.set_num_threads(2), each in a fresh process, and the faster is kept
(the two configurations our PyTorch baseline measured best).  Timing follows
bench_util.h: a warm-up, then samples of at least ~1 ms, median / p10 / p90.
Prints workload, agrad µs, PyTorch µs (its configuration), PyTorch/agrad, agrad's
limit (its fraction of the sgemm rate, or of the copy bandwidth, or for reductions of
the read bandwidth, each measured with the row: bench_steps' JSON "bandwidth_limit", and
after it the limit in GFLOP/s, or in GB/s at the row's working set), and each process's peak RSS.
If torch cannot be imported it says so and exits 0.  It refuses to compare (exit 2)
when PyTorch runs on Debian's reference BLAS (`libblas3`, 30-50x slower matmuls than
OpenBLAS): the check reads which libblas.so.3 the PyTorch process mapped and times a
1024^3 float32 matmul (bench/blas_check.py; install libopenblas0-pthread).
With BENCH_CLOCK=cpu in the environment (a machine loaded by other work, where wall
times of a process that is preempted mean little) both sides run on one thread and
are timed in process CPU time (bench_util.h reads the same variable).
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

WORKLOADS = ["tiny_chain", "tanh_sum_4m", "mlp_784_256_10", "mlp_bn_dropout", "mlp_512_b64", "mlp_784_256_10_optbw",
             "mlp_bn_dropout_optbw", "mlp_512_b64_optbw", "mlp_512_b256",
             "mlp_512_b256_bf16", "mlp_1024_b256", "mlp_1024_b256_bf16", "mlp_4_16_3", "mlp_infer_b1", "mlp_infer_b8",
             "conv2d_cnn", "conv2d_cnn_bf16",
             "lstm_64x32x256", "transformer_128x8x256", "index_add_1m", "scatter_reduce_1m", "einsum_bmm", "cdist_1k",
             "rand_1k", "randn_1k", "rand_4k", "randn_4k",
             "sort_1k", "topk_1k", "cumsum_1k", "cnn_fashion", "sum_d0_4096", "sum_d1_4096", "sum_mid_64x1k",
             "softmax_d0_1k", "softmax_d1_1k", "layer_norm_512", "xent_4096x1000", "argmax_d0_4096",
             "argmax_d1_4096", "prod_d0_1k", "prod_d1_1k"]
CONFIGS = [("openblas2_torch1", {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "1"}, 1),
           ("openblas1_torch2", {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "2"}, 2)]
# BENCH_CLOCK=cpu (a machine loaded by other work): both sides run on one thread and are
# timed in process CPU time, which does not count the time the process sat preempted.
CPU_CLOCK = os.environ.get("BENCH_CLOCK") == "cpu"
if CPU_CLOCK:
    CONFIGS = [("cpu_clock_1thread", {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}, 1)]
clock = time.process_time if CPU_CLOCK else time.perf_counter


def measure(fn, warm_s, budget_s, min_samples=7, max_samples=201):
    """Median, p10, p90 in µs per call, as bench_measure in bench_util.h."""
    t0 = clock()
    one, warm = 0.0, 0
    while warm < 2 or clock() - t0 < warm_s:
        a = clock()
        fn()
        one = clock() - a
        warm += 1
    batch = int(1e-3 / one) + 1 if one > 0 else 1000
    batch = min(batch, 100000)
    samples = []
    start = clock()
    while len(samples) < max_samples and (len(samples) < min_samples or clock() - start < budget_s):
        a = clock()
        for _ in range(batch):
            fn()
        samples.append((clock() - a) / batch * 1e6)
    samples.sort()

    def q(p):
        pos = p * (len(samples) - 1)
        i = int(pos)
        return samples[-1] if i + 1 >= len(samples) else samples[i] + (pos - i) * (samples[i + 1] - samples[i])
    return q(0.5), q(0.1), q(0.9)


def peak_rss_mib():
    """VmHWM of this process (ru_maxrss would include the parent's pages from before exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def selected():
    """The workloads --only=NAME keeps (all without it)."""
    only = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--only=")), "")
    return [w for w in WORKLOADS if any(o in w for o in only.split(","))]


def worker(threads, scale):
    """Times every workload in this process's thread configuration; prints JSON lines."""
    import torch
    import torch.nn.functional as F
    import warnings
    warnings.filterwarnings("ignore", message="scatter_reduce")
    torch.set_num_threads(threads)
    torch.manual_seed(42)

    def leaf(n):
        return torch.randn(n, requires_grad=True)

    def tiny():
        x, w, b = leaf(8), leaf(8), leaf(8)

        def step():
            x.grad = w.grad = b.grad = None
            (x * w + b).relu().sum().backward()
        return step

    def tanh_sum():
        x = leaf(1 << 22)

        def step():
            x.grad = None
            torch.tanh(x).sum().backward()
        return step

    def train(model, opt, batch, n_in, classes, bf16=False):
        x = torch.randn(batch, n_in)
        target = (torch.arange(batch) * 7 + 3) % classes

        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x), target)
            loss.backward()
            opt.step()
        return step

    def train_in_backward(model, optim, lr, batch, n_in, classes):
        """The optimizer inside backward: one optimizer a parameter, stepped by a hook once its
        gradient is accumulated, which then drops it (the tutorial "How to save memory by fusing
        the optimizer step into the backward pass").  torch 1.13 has no
        register_post_accumulate_grad_hook (2.1): the hook goes on the parameter's AccumulateGrad
        node, as DistributedDataParallel's did, which runs it after the accumulation."""
        x = torch.randn(batch, n_in)
        target = (torch.arange(batch) * 7 + 3) % classes
        keep = []
        for p in model.parameters():
            opt = optim([p], lr=lr)
            acc = p.expand_as(p).grad_fn.next_functions[0][0]

            def hook(*_, p=p, opt=opt):
                opt.step()
                p.grad = None
            acc.register_hook(hook)
            keep.append((acc, opt))  # the node must live for its hook to stay

        def step():
            F.cross_entropy(model(x), target).backward()
        step.keep = keep
        return step

    def mlp_model(n_in, hidden, n_out):
        return torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n_out))

    def mlp(batch, n_in, hidden, n_out, optim, lr, bf16=False, in_backward=False):
        model = mlp_model(n_in, hidden, n_out)
        if in_backward:
            return train_in_backward(model, optim, lr, batch, n_in, n_out)
        return train(model, optim(model.parameters(), lr=lr), batch, n_in, n_out, bf16)

    def mlp_infer(batch):
        """mlp_784_256_10's model, forward alone in inference mode."""
        model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
        x = torch.randn(batch, 784)

        def step():
            with torch.inference_mode():
                model(x)
        return step

    def bn_mlp(batch, in_backward=False):
        layers, n_in = [], 784
        for _ in range(3):
            layers += [torch.nn.Linear(n_in, 512), torch.nn.BatchNorm1d(512), torch.nn.ReLU(), torch.nn.Dropout(0.1)]
            n_in = 512
        model = torch.nn.Sequential(*layers, torch.nn.Linear(512, 10))
        if in_backward:
            return train_in_backward(model, torch.optim.AdamW, 1e-3, batch, 784, 10)
        return train(model, torch.optim.AdamW(model.parameters(), lr=1e-3), batch, 784, 10)

    def conv(bf16=False):
        x = torch.randn(64, 32, 14, 14, requires_grad=True)
        w = torch.randn(64, 32, 3, 3, requires_grad=True)
        b = leaf(64)

        def step():
            x.grad = w.grad = b.grad = None
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.conv2d(x, w, b, padding=1).float().sum()
            loss.backward()
        return step

    def lstm():
        layer = torch.nn.LSTM(256, 256)
        x = torch.randn(64, 32, 256, requires_grad=True)

        def step():
            layer.zero_grad(set_to_none=True)
            x.grad = None
            layer(x)[0].sum().backward()
        return step

    def transformer():
        layer = torch.nn.TransformerEncoderLayer(256, 4, 1024, dropout=0.0)
        x = torch.randn(128, 8, 256, requires_grad=True)

        def step():
            layer.zero_grad(set_to_none=True)
            x.grad = None
            layer(x).sum().backward()
        return step

    def hashed(shape, m):
        n = 1
        for d in shape:
            n *= d
        return ((torch.arange(n, dtype=torch.int64) * 2654435761) % 4294967296 % m).reshape(shape)

    def pair(shape):
        return torch.randn(shape, requires_grad=True), torch.randn(shape, requires_grad=True)

    def index_add():
        (x, src), index = pair((4096, 256)), hashed((4096,), 4096)

        def step():
            x.grad = src.grad = None
            x.index_add(0, index, src).sum().backward()
        return step

    def scatter_reduce():
        (x, src), index = pair((1024, 1024)), hashed((1024, 1024), 1024)

        def step():
            x.grad = src.grad = None
            x.scatter_reduce(1, index, src, "amax").sum().backward()
        return step

    def einsum_bmm():
        a, b = pair((64, 128, 128))

        def step():
            a.grad = b.grad = None
            torch.einsum("bij,bjk->bik", a, b).sum().backward()
        return step

    def sort():
        x, w = torch.randn((1024, 1024), requires_grad=True), torch.randn((1024, 1024))

        def step():
            x.grad = None
            (torch.sort(x, dim=1).values * w).sum().backward()
        return step

    def topk():
        x, w = torch.randn((1024, 1024), requires_grad=True), torch.randn((1024, 32))

        def step():
            x.grad = None
            (torch.topk(x, 32, dim=1).values * w).sum().backward()
        return step

    def cumsum():
        x, w = torch.randn((1024, 1024), requires_grad=True), torch.randn((1024, 1024))

        def step():
            x.grad = None
            (torch.cumsum(x, dim=1) * w).sum().backward()
        return step

    def cdist():
        a, b = pair((1024, 64))

        def step():
            a.grad = b.grad = None
            torch.cdist(a, b).sum().backward()
        return step

    def cnn(batch):
        """The CNN of examples/fashion_cnn.py (width 32), Adam."""
        def block(c_in, c_out):
            return [torch.nn.Conv2d(c_in, c_out, 3, padding=1), torch.nn.BatchNorm2d(c_out), torch.nn.ReLU(),
                    torch.nn.MaxPool2d(2)]
        model = torch.nn.Sequential(*block(1, 32), *block(32, 64), torch.nn.Flatten(), torch.nn.Dropout(0.25),
                                    torch.nn.Linear(64 * 7 * 7, 10))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = torch.randn(batch, 1, 28, 28)
        target = (torch.arange(batch) * 7 + 3) % 10

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), target).backward()
            opt.step()
        return step

    def reduce_sum(shape, dim):
        x = torch.randn(shape)
        return lambda: x.sum(dim)

    def argmax(dim):
        x = torch.randn(4096, 4096)
        return lambda: x.argmax(dim)

    def prod(dim):
        x, g = (1 + torch.randn(1000, 1000) / 100).requires_grad_(), torch.randn(1000)

        def step():
            x.grad = None
            x.prod(dim).backward(g)
        return step

    def softmax(dim):
        x, g = torch.randn(1000, 1000, requires_grad=True), torch.randn(1000, 1000)

        def step():
            x.grad = None
            torch.softmax(x, dim).backward(g)
        return step

    def layer_norm():
        x, g = torch.randn(512, 1024, requires_grad=True), torch.randn(512, 1024)
        w, b = leaf(1024), leaf(1024)

        def step():
            x.grad = w.grad = b.grad = None
            F.layer_norm(x, (1024,), w, b, 1e-5).backward(g)
        return step

    def xent():
        x, target = torch.randn(4096, 1000, requires_grad=True), hashed((4096,), 1000)

        def step():
            x.grad = None
            F.cross_entropy(x, target).backward()
        return step

    sgd, adam = torch.optim.SGD, torch.optim.Adam
    makers = {
        "tiny_chain": (tiny, 1.0),
        "tanh_sum_4m": (tanh_sum, 1.5),
        "mlp_784_256_10": (lambda: mlp(1024, 784, 256, 10, sgd, 0.01), 2.0),
        "mlp_bn_dropout": (lambda: bn_mlp(256), 2.0),
        "mlp_512_b64": (lambda: mlp(64, 512, 512, 512, sgd, 0.01), 1.0),
        "mlp_784_256_10_optbw": (lambda: mlp(1024, 784, 256, 10, sgd, 0.01, in_backward=True), 2.0),
        "mlp_bn_dropout_optbw": (lambda: bn_mlp(256, True), 2.0),
        "mlp_512_b64_optbw": (lambda: mlp(64, 512, 512, 512, sgd, 0.01, in_backward=True), 1.0),
        "mlp_512_b256": (lambda: mlp(256, 512, 512, 512, sgd, 0.01), 2.0),
        "mlp_512_b256_bf16": (lambda: mlp(256, 512, 512, 512, sgd, 0.01, True), 2.0),
        "mlp_1024_b256": (lambda: mlp(256, 1024, 1024, 1024, sgd, 0.01), 2.0),
        "mlp_1024_b256_bf16": (lambda: mlp(256, 1024, 1024, 1024, sgd, 0.01, True), 2.0),
        "mlp_4_16_3": (lambda: mlp(150, 4, 16, 3, adam, 1e-3), 1.0),
        "mlp_infer_b1": (lambda: mlp_infer(1), 1.0),
        "mlp_infer_b8": (lambda: mlp_infer(8), 1.0),
        "conv2d_cnn": (conv, 2.0),
        "conv2d_cnn_bf16": (lambda: conv(True), 2.0),
        "lstm_64x32x256": (lstm, 3.0),
        "transformer_128x8x256": (transformer, 3.0),
        "index_add_1m": (index_add, 1.0),
        "scatter_reduce_1m": (scatter_reduce, 1.0),
        "einsum_bmm": (einsum_bmm, 1.0),
        "cdist_1k": (cdist, 1.0),
        "sort_1k": (sort, 1.0),
        "topk_1k": (topk, 1.0),
        "cumsum_1k": (cumsum, 1.0),
        "rand_1k": (lambda: lambda: torch.rand(1000, 1000), 1.0),
        "randn_1k": (lambda: lambda: torch.randn(1000, 1000), 1.0),
        "rand_4k": (lambda: lambda: torch.rand(4096, 4096), 1.0),
        "randn_4k": (lambda: lambda: torch.randn(4096, 4096), 1.0),
        "cnn_fashion": (lambda: cnn(128), 3.0),
        "sum_d0_4096": (lambda: reduce_sum((4096, 4096), 0), 1.0),
        "sum_d1_4096": (lambda: reduce_sum((4096, 4096), 1), 1.0),
        "sum_mid_64x1k": (lambda: reduce_sum((64, 1024, 64), 1), 1.0),
        "softmax_d0_1k": (lambda: softmax(0), 1.0),
        "softmax_d1_1k": (lambda: softmax(1), 1.0),
        "layer_norm_512": (layer_norm, 1.0),
        "xent_4096x1000": (xent, 1.0),
        "argmax_d0_4096": (lambda: argmax(0), 1.0),
        "argmax_d1_4096": (lambda: argmax(1), 1.0),
        "prod_d0_1k": (lambda: prod(0), 1.0),
        "prod_d1_1k": (lambda: prod(1), 1.0),
    }
    for name in selected():
        make, budget = makers[name]
        med, p10, p90 = measure(make(), 0.1 * scale + 0.02, budget * scale)
        print(json.dumps({"name": name, "median_us": med, "p10_us": p10, "p90_us": p90}), flush=True)
    print(json.dumps({"name": "_process", "peak_rss_mib": peak_rss_mib(), "torch": torch.__version__}), flush=True)


def run_agrad(build, quick):
    exe = os.path.join(build, "bench", "bench_steps")
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as f:
        path = f.name
    try:
        only = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--only=")), None)
        args = [exe, "--json", path] + (["--quick"] if quick else []) + ([only] if only else [])
        env = dict(os.environ, OMP_NUM_THREADS="1") if CPU_CLOCK else None
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, env=env)
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    finally:
        os.unlink(path)
    return {r["name"]: r for r in rows}


def run_torch(quick):
    results = {}
    for label, env, threads in CONFIGS:
        e = dict(os.environ, **env)
        out = subprocess.run([sys.executable, __file__, "--worker", str(threads), "0.2" if quick else "1"] +
                             [a for a in sys.argv if a.startswith("--only=")],
                             env=e, check=True, capture_output=True, text=True).stdout
        results[label] = {r["name"]: r for r in map(json.loads, out.splitlines()) if r}
    return results


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    quick = "--quick" in sys.argv
    # Checked in a child, so that this process stays small for the ones it starts.
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True)
    if probe.returncode != 0:
        err = (probe.stderr.strip().splitlines() or ["unknown error"])[-1]
        print(f"compare_pytorch: PyTorch is not importable ({err}); nothing to compare")
        return 0
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from blas_check import checked_blas
    blas = checked_blas()  # refuses the reference BLAS; sets OPENBLAS_CORETYPE when OpenBLAS chose too low
    print(blas.stdout.strip())
    if blas.returncode != 0:
        print(blas.stderr.strip())
        return 2
    build = args[0] if args else "build"
    agrad = run_agrad(build, quick)
    torch_runs = run_torch(quick)
    version = next(iter(torch_runs.values()))["_process"]["torch"]
    print(f"agrad vs PyTorch {version}, µs per step (median; p10-p90), PyTorch in its best thread config, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'workload':<16} {'agrad':>22} {'PyTorch':>22}  {'config':<17} {'PyTorch/agrad':>13}  agrad's limit")
    for name in selected():
        a = agrad.get(name)
        best = min(((label, runs[name]) for label, runs in torch_runs.items() if name in runs),
                   key=lambda lr: lr[1]["median_us"], default=None)
        if not a or not best:
            print(f"{name:<16} missing")
            continue
        label, t = best
        fa = f"{a['median_us']:.2f} ({a['p10_us']:.1f}-{a['p90_us']:.1f})"
        ft = f"{t['median_us']:.2f} ({t['p10_us']:.1f}-{t['p90_us']:.1f})"
        limit = (f"{100 * a['sgemm_fraction']:.0f}% of sgemm ({a['sgemm_gflops']:.0f})" if "sgemm_fraction" in a else
                 f"{100 * a['bandwidth_fraction']:.0f}% of {a['bandwidth_limit']} ({a['bandwidth_gbs']:.0f} GB/s"
                 # a bench_steps before session 18 measured no working set (one start-up limit for all rows)
                 + (f" at {a['bandwidth_bytes'] / 2**20:.1f} MiB)" if "bandwidth_bytes" in a else " at start-up)")
                 if "bandwidth_fraction" in a else "")
        print(f"{name:<16} {fa:>22} {ft:>22}  {label:<17} {t['median_us'] / a['median_us']:>12.2f}x  {limit}")
    rss_t = max(runs["_process"]["peak_rss_mib"] for runs in torch_runs.values())
    print(f"peak RSS: agrad {agrad['_process']['peak_rss_mib']:.0f} MiB (threads {agrad['_process']['threads']}), "
          f"PyTorch {rss_t:.0f} MiB")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), float(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())
