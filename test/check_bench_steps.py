#!/usr/bin/env python3
"""Runs bench_steps --quick on a few small rows and checks its JSON lines: a memory-bound row
carries the bandwidth limit it was held to, measured with the row at the row's own working set
(bandwidth_bytes: its distinct tensors' bytes; bandwidth_rounds measurements, the best
bandwidth_gbs, the lowest bandwidth_min_gbs), and its fraction is its rate over that limit;
a GEMM-bound row carries its sgemm rate; the table prints each limit next to its fraction.
Timing values are only checked to be positive numbers: their size depends on the machine.

Usage: check_bench_steps.py PATH/TO/bench_steps
"""
import json
import os
import subprocess
import sys
import tempfile

from tap import check, done

exe = sys.argv[1]


def number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# the working sets bench_steps documents: prod x and dx [1000, 1000]; layer_norm x, y, g and dx
# [512, 1024]; rand_1k the new [1000, 1000] tensor
FOOTPRINT = {"prod_d1_1k": ("copy", 4 * 2 * 1000 * 1000), "layer_norm_512": ("copy", 4 * 4 * 512 * 1024),
             "rand_1k": ("copy", 4 * 1000 * 1000)}

with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "steps.json")
    p = subprocess.run([exe, "--quick", "--json", path, "prod_d1_1k,layer_norm_512,rand_1k,mlp_4_16_3,mlp_infer_b1"],
                       capture_output=True, text=True)
    check(p.returncode == 0, "bench_steps exits 0 (%d: %s)" % (p.returncode, p.stderr.strip()[-200:]))
    rows = {}
    if os.path.exists(path):
        rows = {r["name"]: r for r in map(json.loads, open(path)) if r}

for name, (kind, footprint) in FOOTPRINT.items():
    r = rows.get(name)
    check(r is not None, name + ": JSON row written")
    if r is None:
        continue
    check(r.get("bandwidth_limit") == kind, name + ": held to the " + kind + " bandwidth")
    check(r.get("bandwidth_bytes") == footprint, "%s: limit measured over its working set, %d bytes (got %s)" %
          (name, footprint, r.get("bandwidth_bytes")))
    check(r.get("bandwidth_rounds") == 5, name + ": the limit measured in 5 rounds with the row")
    for k in ("median_us", "gbytes_per_s", "bandwidth_gbs", "bandwidth_min_gbs", "bandwidth_fraction"):
        check(number(r.get(k)) and r[k] > 0, "%s: %s is a positive number" % (name, k))
    if all(number(r.get(k)) for k in ("bandwidth_gbs", "bandwidth_min_gbs", "gbytes_per_s", "bandwidth_fraction")):
        check(r["bandwidth_min_gbs"] <= r["bandwidth_gbs"], name + ": the best round's limit is at least the lowest's")
        # within the rounding of the JSON's figures (2 decimals of the limit, 3 of the rate, 4 of the fraction)
        tol = r["bandwidth_fraction"] * (0.0051 / r["bandwidth_gbs"] + 0.00051 / r["gbytes_per_s"]) + 0.00051
        check(abs(r["bandwidth_fraction"] - r["gbytes_per_s"] / r["bandwidth_gbs"]) <= tol, name + ": fraction = rate / limit")
    check(isinstance(r.get("samples"), int) and r["samples"] >= 10, name + ": at least 2 samples a round")
    line = next((l for l in p.stdout.splitlines() if l.startswith(name + " ")), "")
    check(("%% of %s (" % kind) in line and " GB/s at " in line and line.rstrip().endswith(" MiB)"),
          name + ": the table prints the limit and its working set: " + line.strip())

r = rows.get("mlp_infer_b1")
check(r is not None and number(r.get("sgemm_fraction")) and number(r.get("sgemm_gflops")) and r["sgemm_gflops"] > 0
      and "bandwidth_fraction" not in r, "mlp_infer_b1: held to the sgemm rate measured with it")
r = rows.get("mlp_4_16_3")
check(r is not None and "sgemm_fraction" not in r and "bandwidth_fraction" not in r, "mlp_4_16_3: no limit")
proc = rows.get("_process", {})
check(all(number(proc.get(k)) and proc[k] > 0 for k in ("copy_bandwidth_gbs", "read_bandwidth_gbs", "sgemm_peak_gflops")),
      "_process: the start-up limits, for reference")

done()
