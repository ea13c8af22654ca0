#!/usr/bin/env python3
"""Runs the installed benchmark program (agrad-bench) on small ops and checks its
JSON output: every field docs/benchmarks.md lists, with the right types and the
shapes, dim and threads asked for, and that a GB/s mode carries the bandwidth limit it
was held to, measured with its samples over its own working set (bandwidth_bytes: the
bytes it reports, at least 32 KiB; bandwidth_rounds: 5; bandwidth_passes over it a call,
2 MiB in all) with its fraction the rate over that limit.  Timing values are only checked to be numbers; their size depends on the
machine.  Also checks that bad arguments are refused.

Usage: check_agrad_bench.py PATH/TO/agrad-bench
"""
import json
import os
import subprocess
import sys
import tempfile

from tap import check, done

exe = sys.argv[1]


def run(args, wait_policy=None):
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "out.json")
        p = subprocess.run([exe] + args + ["--quick", "--json", path], capture_output=True, text=True, env=env)
        data = json.load(open(path)) if os.path.exists(path) else None
        return p, data


def number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_result(r, unit, limit, what):
    check(isinstance(r, dict), what + " measured")
    if not isinstance(r, dict):
        return
    for k in ("median_us", "min_us", "max_us", "p10_us", "p90_us", "rate", "limit_fraction"):
        check(number(r.get(k)), "%s %s is a number" % (what, k))
    check(r["min_us"] <= r["median_us"] <= r["max_us"], what + " min <= median <= max")
    check(isinstance(r.get("samples"), int) and r["samples"] >= 5, what + " samples >= 5")
    check(r.get("unit") == unit, what + " unit " + unit)
    check(r.get("limit") in limit, what + " limit is one of " + ", ".join(limit))


STREAM_MIN_BYTES = 32 << 10  # bench/agrad_bench.c: the smallest working set a limit is streamed over
STREAM_CALL_BYTES = 2 << 20  # bench/bench_util.h: the bytes a stream call moves at least (in passes)


def check_bandwidth(r, working_set, what):
    """A GB/s mode's limit: a stream over its working set, measured in 5 rounds with its samples."""
    if not isinstance(r, dict):
        return
    want = max(working_set, STREAM_MIN_BYTES)
    check(r.get("bandwidth_bytes") == want, "%s: limit measured over its working set, %d bytes (got %s)"
          % (what, want, r.get("bandwidth_bytes")))
    check(r.get("bandwidth_rounds") == 5, what + ": the limit measured in 5 rounds with the samples")
    passes = -(-STREAM_CALL_BYTES // want)
    check(r.get("bandwidth_passes") == passes, "%s: %d passes over it a stream call, 2 MiB in all (got %s)"
          % (what, passes, r.get("bandwidth_passes")))
    ok = all(number(r.get(k)) and r[k] > 0 for k in ("bandwidth_gbs", "bandwidth_min_gbs", "rate", "limit_fraction"))
    check(ok, what + ": limit, its lowest round, rate and fraction are positive numbers")
    if ok:
        check(r["bandwidth_min_gbs"] <= r["bandwidth_gbs"], what + ": the best round's limit is at least the lowest's")
        # the JSON rounds the limit to 0.01 and rate and fraction to 0.0001
        tol = r["limit_fraction"] * (0.0051 / r["bandwidth_gbs"] + 0.00051 / r["rate"]) + 0.00051
        check(abs(r["limit_fraction"] - r["rate"] / r["bandwidth_gbs"]) <= tol, what + ": fraction = rate / limit")


def check_common(d, op, shapes, dim, threads):
    check(d is not None and d.get("program") == "agrad-bench", op + ": JSON written")
    if d is None:
        return False
    check(d.get("op") == op, op + ": op")
    check(d.get("shapes") == shapes, op + ": shapes %s" % shapes)
    check(d.get("dim") == dim, op + ": dim %s" % dim)
    check(d.get("threads") == threads, op + ": threads %d" % threads)
    check(isinstance(d.get("cpus"), int) and d["cpus"] >= 1, op + ": cpus")
    check(number(d.get("loadavg")) and number(d.get("loadavg_end")), op + ": load averages")
    check(isinstance(d.get("loaded"), bool), op + ": loaded is a boolean")
    check(d["loaded"] == (d["loadavg"] + d["threads"] > d["cpus"] + 0.5), op + ": loaded follows the load average")
    check(d.get("omp_wait_policy") == "passive", op + ": OpenMP waits passively when OMP_WAIT_POLICY is not set")
    lim = d.get("limits", {})
    check(number(lim.get("sgemm_gflops")) and lim["sgemm_gflops"] > 0, op + ": limits.sgemm_gflops measured")
    check(sorted(lim) == ["sgemm_gflops"], op + ": no start-up bandwidths (each mode measures its own)")
    return True


# softmax along dim 0, float64, one thread: bandwidth-bound, forward and backward.
p, d = run(["--op", "softmax", "--shape", "32,16", "--dim", "0", "--dtype", "f64", "--threads", "1"])
check(p.returncode == 0, "softmax runs: " + p.stderr.strip())
if check_common(d, "softmax", [[32, 16]], 0, 1):
    check(d.get("dtype") == "float64", "softmax: dtype")
    check(d.get("bytes") == 2 * 32 * 16 * 8, "softmax: bytes are input and output")
    check_result(d.get("forward"), "GB/s", ("copy_bandwidth",), "softmax forward")
    check_result(d.get("forward_backward"), "GB/s", ("copy_bandwidth",), "softmax fwd+bwd")
    # 8 KiB and 16 KiB: under the smallest stream (32 KiB), which is then the limit's working set
    check_bandwidth(d.get("forward"), d["bytes"], "softmax forward")
    check_bandwidth(d.get("forward_backward"), 2 * d["bytes"], "softmax fwd+bwd")
check("at 0.03 MiB, best of 5 rounds" in p.stdout, "softmax: the limit's size and rounds printed")

# sum along dim 1: the forward reads 256·128 floats and writes 256, so it is held to a read of those
# 129 KiB; the backward writes a gradient as large as the input, so forward + backward (x, y, dy, dx:
# 258 KiB) to a copy of that many bytes.
p, d = run(["--op", "sum", "--shape", "256,128", "--dim", "1", "--threads", "1"])
check(p.returncode == 0, "sum runs: " + p.stderr.strip())
if check_common(d, "sum", [[256, 128]], 1, 1):
    check(d.get("bytes") == 4 * (256 * 128 + 256), "sum: bytes are input and output")
    check_result(d.get("forward"), "GB/s", ("read_bandwidth",), "sum forward")
    check_result(d.get("forward_backward"), "GB/s", ("copy_bandwidth",), "sum fwd+bwd")
    check_bandwidth(d.get("forward"), 4 * (256 * 128 + 256), "sum forward")
    check_bandwidth(d.get("forward_backward"), 8 * (256 * 128 + 256), "sum fwd+bwd")
check("read_bandwidth (" in p.stdout and "at 0.13 MiB, best of 5 rounds" in p.stdout
      and "at 0.25 MiB, best of 5 rounds" in p.stdout, "sum: each mode's limit printed with its size and rounds")

# matmul with a second shape: GEMM-bound, against sgemm.
p, d = run(["--op", "matmul", "--shape", "8,16", "--shape2", "16,4", "--threads", "2"])
check(p.returncode == 0, "matmul runs: " + p.stderr.strip())
if check_common(d, "matmul", [[8, 16], [16, 4]], None, 2):
    check(d.get("flops") == 2 * 8 * 16 * 4, "matmul: flops")
    check_result(d.get("forward"), "GFLOP/s", ("sgemm",), "matmul forward")
    check_result(d.get("forward_backward"), "GFLOP/s", ("sgemm",), "matmul fwd+bwd")
    check(all(isinstance(d.get(m), dict) and "bandwidth_gbs" not in d[m] for m in ("forward", "forward_backward")),
          "matmul: no bandwidth limit (held to sgemm)")

# A binary op: one --shape serves both inputs.
p, d = run(["--op", "add", "--shape", "5,6"])
check(p.returncode == 0, "add runs")
if d:
    check(d.get("shapes") == [[5, 6], [5, 6]], "add: inputs without a --shape take the first")

# --noncontig and --no-limits: a transposed input, no limits measured.
p, d = run(["--op", "exp", "--shape", "6,5", "--noncontig", "--no-limits"])
check(p.returncode == 0 and d is not None, "exp --noncontig --no-limits runs: " + p.stderr.strip())
if d:
    check(d.get("noncontig") is True, "exp: noncontig is true")
    check(d["limits"]["sgemm_gflops"] == 0, "exp: --no-limits measures no sgemm rate")
    check(d["forward"] and d["forward"].get("limit") == "unmeasured", "exp: the limit is unmeasured")
    check(d["forward"] and d["forward"].get("bandwidth_rounds") == 0 and d["forward"].get("bandwidth_gbs") == 0,
          "exp: --no-limits streams no bandwidth")

# --list: one JSON object a line, every op with a test row.
p = subprocess.run([exe, "--list"], capture_output=True, text=True)
rows = [json.loads(line) for line in p.stdout.splitlines()] if p.returncode == 0 else []
check(len(rows) > 100, "--list lists the ops (%d)" % len(rows))
by = {r["op"]: r for r in rows}
check(by.get("softmax", {}).get("dim") is True and by.get("add", {}).get("dim") is False, "--list: which take --dim")
check(by.get("add", {}).get("inputs") == 2 and by.get("add", {}).get("shapes") == [[3, 4], [3, 4]],
      "--list: add's inputs and first shapes")
check(by.get("log", {}).get("domain") == "positive" and by.get("eq", {}).get("backward") is False,
      "--list: domains and backward")

# A wait policy the user set is kept.
p, d = run(["--op", "relu", "--shape", "4"], wait_policy="active")
check(p.returncode == 0 and d and d.get("omp_wait_policy") == "active", "OMP_WAIT_POLICY=active is kept")

# Refusals: unknown op, --dim on an op that takes none, a bad shape, shapes the op rejects.
for args, rc, what in ((["--op", "no_such_op"], 2, "unknown op"), (["--op", "add", "--dim", "0"], 2, "--dim on add"),
                       (["--op", "relu", "--shape", "3,x"], 2, "bad shape"),
                       (["--op", "matmul", "--shape", "3,4", "--shape2", "5,6"], 1, "shapes matmul rejects")):
    p, d = run(args)
    check(p.returncode == rc and d is None, "%s refused with status %d (got %d)" % (what, rc, p.returncode))

done()
