#!/usr/bin/env python3
"""check_same.py - two runs of an example give the same figures (TAP).

    check_same.py KEY,KEY,... TOL -- COMMAND1 ... -- COMMAND2 ...

Runs both commands, reads the key=value pairs of each one's last output line and
checks that every KEY agrees within TOL (absolute).  The mpi suite runs
fashion_mlp as one process and as `mpirun -np 2 ... --distributed mpi` with the
same global batch (examples/meson.build): the same training, so the same losses
and accuracy but for float32 rounding.
"""
import subprocess
import sys


def figures(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    lines = [l for l in out.stdout.splitlines() if "=" in l]
    if out.returncode != 0 or not lines:
        return None, out.stdout + out.stderr
    return dict(kv.split("=", 1) for kv in lines[-1].split() if "=" in kv), lines[-1]


def main():
    keys, tol = sys.argv[1].split(","), float(sys.argv[2])
    rest = sys.argv[3:]
    split = [i for i, a in enumerate(rest) if a == "--"]
    first, second = rest[split[0] + 1:split[1]], rest[split[1] + 1:]
    a, line_a = figures(first)
    b, line_b = figures(second)
    n = 0
    ok_runs = a is not None and b is not None
    n += 1
    print(f"{'ok' if ok_runs else 'not ok'} {n} - both runs end with key=value figures")
    if not ok_runs:
        print("# " + (line_a if a is None else line_b).replace("\n", "\n# "))
        print(f"1..{n}")
        return 1
    bad = 0
    for k in keys:
        n += 1
        same = k in a and k in b and abs(float(a[k]) - float(b[k])) <= tol
        bad += not same
        print(f"{'ok' if same else 'not ok'} {n} - {k}: {a.get(k)} and {b.get(k)} (tolerance {tol})")
    print(f"1..{n}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
