"""Counts TAP results in meson test logs and prints "N passed, N failed".

Each argument is a meson testlog.json (one JSON object per test) or a plain
TAP file (*.tap).  Every
"ok"/"not ok" line of a TAP test counts once, a plain test once; a test that
crashed or timed out before its plan counts as one more failure.  A "not ok ... # TODO"
line is TAP's known gap (the ops still on a pending list of test_ops_gradgradcheck and
test_ops_jvp): counted apart as "todo", neither passed nor failed.  Exits 1 if anything
failed.
"""
import json
import re
import sys

passed = failed = skipped = todo = 0
TODO = re.compile(r"^not ok \d+[^\n]*# TODO", re.M)
for path in sys.argv[1:]:
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError:
        print(f"missing log {path}", file=sys.stderr)
        failed += 1
        continue
    if path.endswith(".tap"):
        text = "\n".join(lines)
        passed += len(re.findall(r"^ok \d+", text, re.M))
        todo += len(TODO.findall(text))
        failed += len(re.findall(r"^not ok \d+", text, re.M)) - len(TODO.findall(text))
        continue
    for line in lines:
        if not line.strip():
            continue
        test = json.loads(line)
        out = test.get("stdout", "") or ""
        oks = len(re.findall(r"^ok \d+", out, re.M))
        todos = len(TODO.findall(out))
        bad = len(re.findall(r"^not ok \d+", out, re.M)) - todos
        todo += todos
        passed += oks
        failed += bad
        if test.get("result") == "SKIP" and oks == 0 and bad == 0 and todos == 0:
            skipped += 1  # e.g. an example whose data set has not been fetched
            continue
        ok = test.get("result") in ("OK", "EXPECTEDFAIL")
        if not ok and bad == 0:
            failed += 1
            print(f"{path}: {test.get('name')} ended {test.get('result')}", file=sys.stderr)
        elif ok and oks == 0 and bad == 0 and todos == 0:
            passed += 1  # a plain (non-TAP) test counts once
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "") + (f", {todo} todo" if todo else ""))
sys.exit(1 if failed else 0)
