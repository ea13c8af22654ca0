#!/usr/bin/env python3
"""Runs the installed benchmark program (agrad-bench) on small ops and checks its
JSON output: every field docs/benchmarks.md lists, with the right types and the
shapes, dim and threads asked for.  Timing values are only checked to be numbers;
their size depends on the machine.  Also checks that bad arguments are refused.

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
    for k in ("sgemm_gflops", "memory_gbs", "cache_gbs", "memory_read_gbs", "cache_read_gbs", "cache_bytes"):
        check(number(lim.get(k)) and lim[k] > 0, op + ": limits." + k + " measured")
    return True


# softmax along dim 0, float64, one thread: bandwidth-bound, forward and backward.
p, d = run(["--op", "softmax", "--shape", "32,16", "--dim", "0", "--dtype", "f64", "--threads", "1"])
check(p.returncode == 0, "softmax runs: " + p.stderr.strip())
if check_common(d, "softmax", [[32, 16]], 0, 1):
    check(d.get("dtype") == "float64", "softmax: dtype")
    check(d.get("bytes") == 2 * 32 * 16 * 8, "softmax: bytes are input and output")
    check_result(d.get("forward"), "GB/s", ("cache_bandwidth", "memory_bandwidth"), "softmax forward")
    check_result(d.get("forward_backward"), "GB/s", ("cache_bandwidth", "memory_bandwidth"), "softmax fwd+bwd")

# sum along dim 1: the forward reads 64·32 floats and writes 64, so it is held to the read bandwidth;
# the backward writes a gradient as large as the input, so forward + backward to the copy bandwidth.
p, d = run(["--op", "sum", "--shape", "64,32", "--dim", "1", "--threads", "1"])
check(p.returncode == 0, "sum runs: " + p.stderr.strip())
if check_common(d, "sum", [[64, 32]], 1, 1):
    check_result(d.get("forward"), "GB/s", ("cache_read_bandwidth", "memory_read_bandwidth"), "sum forward")
    check_result(d.get("forward_backward"), "GB/s", ("cache_bandwidth", "memory_bandwidth"), "sum fwd+bwd")

# matmul with a second shape: GEMM-bound, against sgemm.
p, d = run(["--op", "matmul", "--shape", "8,16", "--shape2", "16,4", "--threads", "2"])
check(p.returncode == 0, "matmul runs: " + p.stderr.strip())
if check_common(d, "matmul", [[8, 16], [16, 4]], None, 2):
    check(d.get("flops") == 2 * 8 * 16 * 4, "matmul: flops")
    check_result(d.get("forward"), "GFLOP/s", ("sgemm",), "matmul forward")
    check_result(d.get("forward_backward"), "GFLOP/s", ("sgemm",), "matmul fwd+bwd")

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
    check(d["limits"]["sgemm_gflops"] == 0 and d["limits"]["memory_gbs"] == 0, "exp: --no-limits measures none")
    check(d["forward"] and d["forward"].get("limit") == "unmeasured", "exp: the limit is unmeasured")

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
