#!/usr/bin/env python3
"""ddp_model.py - the scaling table of bench/ddp_scaling.sh: reads bench_ddp's
lines on stdin, prints what was measured, and models larger rank counts.

Measured: per model and rank count, the step time with overlap on and off, the
exposed wait for all-reduces, and one all-reduce of the whole gradient buffer.
Weak scaling (each rank its own batch), so the efficiency is T(1) / T(W).

Model, for W ranks each with a core (or GPU) of its own:
  T(W) = C + max(0, A(W) - h * B)      with overlap
  T(W) = C + A(W)                      without
C: the 1-rank step time measured here (no communication); B = 2/3 C, the backward
share of it, during which started buckets can be reduced; h = 0.9 of it usable
(the last bucket starts when backward ends).  A(W): a ring all-reduce of S bytes,
2 (W-1)/W S / BW + 2 (W-1) latency, for an InfiniBand HDR link (BW 25 GB/s,
latency 2 us) and 10 GbE (BW 1.25 GB/s, latency 20 us).  Communication progressing
on its own (a NIC moving the data, as with RDMA) is assumed; on this machine Open
MPI's shared-memory all-reduce copies with the same cores that compute, so overlap
cannot hide it here (see docs/distributed.md#performance).
"""
import sys

rows = {}
for line in sys.stdin:
    kv = dict(x.split("=", 1) for x in line.split() if "=" in x)
    if "model" in kv:
        rows[(kv["model"], int(kv["ranks"]), int(kv["overlap"]))] = kv

print("\nmeasured on this machine (ms per step; weak scaling, 1 thread a rank)")
print("| model | params | ranks | step, overlap on | step, overlap off | exposed wait on | all-reduce time off | one all-reduce alone | efficiency (on) |")
print("|---|---|---|---|---|---|---|---|---|")
for model in ("allreduce", "compute"):
    base = rows.get((model, 1, 1))
    for w in (1, 2, 4):
        on, off = rows.get((model, w, 1)), rows.get((model, w, 0))
        if not on or not off or not base:
            continue
        eff = float(base["step_ms"]) / float(on["step_ms"])
        print(f"| {model} | {int(on['params']) / 1e6:.1f}M | {w} | {float(on['step_ms']):.1f} | {float(off['step_ms']):.1f} "
              f"| {float(on['wait_ms']):.1f} | {float(off['wait_ms']):.1f} | {float(on['allreduce_ms']):.1f} | {eff:.2f} |")

links = (("IB HDR 25 GB/s", 25e9, 2e-6), ("10 GbE 1.25 GB/s", 1.25e9, 20e-6))
print("\nmodelled (C from the 1-rank step above; efficiency T(1)/T(W), overlap on / off)")
print("| model | link | " + " | ".join(f"W={w}" for w in (2, 4, 8, 16, 64)) + " |")
print("|---|---|" + "---|" * 5)
for model in ("allreduce", "compute"):
    base = rows.get((model, 1, 1))
    if not base:
        continue
    c = float(base["step_ms"]) / 1e3
    s = 4 * int(base["params"])
    for name, bw, lat in links:
        cells = []
        for w in (2, 4, 8, 16, 64):
            a = 2 * (w - 1) / w * s / bw + 2 * (w - 1) * lat
            t_on = c + max(0.0, a - 0.9 * (2 / 3) * c)
            t_off = c + a
            cells.append(f"{c / t_on:.2f} / {c / t_off:.2f}")
        print(f"| {model} ({s / 1e6:.0f} MB) | {name} | " + " | ".join(cells) + " |")
