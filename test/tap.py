"""tap.py - the TAP output the Python checks under test/ print (as test/tap.h does for C):
check(cond, what) prints one numbered ok / not ok line, done() prints the plan and exits
1 when any check failed."""
import sys

_count = 0
_failures = 0


def check(cond, what):
    """Prints the next numbered TAP line for what; returns cond."""
    global _count, _failures
    _count += 1
    print(("ok %d - " % _count if cond else "not ok %d - " % _count) + what)
    if not cond:
        _failures += 1
    return cond


def done():
    """Prints the plan (1..N) and exits: 1 when a check failed, else 0."""
    print("1..%d" % _count)
    sys.exit(1 if _failures else 0)
