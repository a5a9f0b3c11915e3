"""Fail CI when unittest ran zero tests (a discovery bug must not pass as green).

Usage: python .ci/check_test_count.py LOGFILE
"""

import re
import sys

text = open(sys.argv[1], errors="replace").read()
counts = [int(n) for n in re.findall(r"^Ran (\d+) tests? in", text, flags=re.M)]
if not counts or counts[-1] == 0:
    print("CI: no test ran - check that every tests/ folder has an __init__.py", file=sys.stderr)
    sys.exit(1)
print(f"CI: {counts[-1]} tests ran")
