"""check_keys.py - runs an example and checks the key=value pairs of its last
output line, for the meson tests of examples/.

    python3 check_keys.py 'test_acc>=0.95,train_s<60' ./iris_mlp --data data/iris.csv

Prints the output, then one TAP line per condition; exits 1 if one fails or
the program fails.
"""
import operator
import re
import subprocess
import sys

OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, ">": operator.gt, "<": operator.lt}
conditions, command = sys.argv[1].split(","), sys.argv[2:]
run = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
lines = run.stdout.strip().splitlines() or [""]
for line in lines:
    print("# " + line)
values = dict(kv.split("=", 1) for kv in lines[-1].split() if "=" in kv)
print(f"1..{len(conditions) + 1}")
print(f"{'ok' if run.returncode == 0 else 'not ok'} 1 - {command[0]} exits 0 (got {run.returncode})")
failed = run.returncode != 0
for i, cond in enumerate(conditions, 2):
    key, op, want = re.fullmatch(r"(\w+)(>=|<=|==|>|<)(.+)", cond).groups()
    got = values.get(key)
    good = got is not None and OPS[op](float(got), float(want))
    failed |= not good
    print(f"{'ok' if good else 'not ok'} {i} - {key}={got} {op} {want}")
sys.exit(1 if failed else 0)
