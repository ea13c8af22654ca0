#!/usr/bin/env python3
"""Runs an example and checks what it reports, speaking TAP (for meson test).

    check_example.py [--out DIR] [--svg NAME]... [--expect CONDS]... [--needs PATH]... -- PROGRAM [ARGS...]

PROGRAM runs with ARGS (and `--out DIR` when --out is given); it must exit 0,
and the last line of its standard output must be key=value pairs (every
example's final figures).  CONDS is one condition or several separated by
commas; each compares one of the figures with a number or with another key:
`key==0`, `key<0.1`, `key>=0.9`, `key!=-1`, `a<b`.  Each NAME must then be an
SVG file in DIR that parses as XML with an <svg> root.  When a --needs PATH
is missing (data that is not shipped), the test is skipped.
"""
import argparse
import operator
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

OPS = [("==", operator.eq), ("!=", operator.ne), ("<=", operator.le), (">=", operator.ge),
       ("<", operator.lt), (">", operator.gt)]

count = 0
failed = 0


def ok(cond, what):
    global count, failed
    count += 1
    if not cond:
        failed += 1
    print(f"{'ok' if cond else 'not ok'} {count} - {what}", flush=True)
    return cond


def value(text, figures):
    if text in figures:
        return figures[text]
    return float(text)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    parser.add_argument("--svg", action="append", default=[])
    parser.add_argument("--expect", action="append", default=[])
    parser.add_argument("--needs", action="append", default=[])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    for path in args.needs:
        if not os.path.exists(path):
            print(f"1..0 # SKIP {path} is missing")
            return 0
    out = args.out or "."
    os.makedirs(out, exist_ok=True)
    for name in args.svg:  # so that a stale picture cannot pass
        if os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))
    if args.out:
        command += ["--out", args.out]
    run = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in run.stdout.splitlines():
        print(f"# {line}")
    for line in run.stderr.splitlines():
        print(f"# stderr: {line}")
    ok(run.returncode == 0, f"{os.path.basename(command[0])} exits with 0 (got {run.returncode})")
    lines = [l for l in run.stdout.splitlines() if l.strip()]
    figures = {}
    for pair in (lines[-1].split() if lines else []):
        key, sep, text = pair.partition("=")
        if sep:
            try:
                figures[key] = float(text)
            except ValueError:
                pass
    ok(len(figures) > 0, f"the last line holds key=value figures ({len(figures)})")
    for cond in [c for conds in args.expect for c in conds.split(",")]:
        for sym, fn in OPS:
            m = re.fullmatch(rf"\s*([A-Za-z0-9_.]+)\s*{re.escape(sym)}\s*(\S+)\s*", cond)
            if m:
                break
        else:
            ok(False, f"cannot read the condition {cond!r}")
            continue
        key, rhs = m.group(1), m.group(2)
        try:
            left, right = value(key, figures), value(rhs, figures)
        except ValueError:
            ok(False, f"{cond}: {key if key not in figures else rhs} is not reported")
            continue
        ok(fn(left, right), f"{cond} ({key} = {left:g}{'' if rhs not in figures else f', {rhs} = {right:g}'})")
    for name in args.svg:
        path = os.path.join(out, name)
        try:
            root = ET.parse(path).getroot()
            good = root.tag == "{http://www.w3.org/2000/svg}svg"
        except (OSError, ET.ParseError) as e:
            print(f"# {path}: {e}")
            good = False
        ok(good, f"{name} is an SVG document that parses as XML")
    print(f"1..{count}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
