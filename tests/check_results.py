"""Fail unless a pytest run executed enough tests and skipped none.

pytest exits 0 when every collected test is skipped, and a broken import
can make a whole module vanish; this check turns both into failures.
"""

import sys
import xml.etree.ElementTree as ET


def main(path: str, minimum: int) -> int:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    totals = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    passed = totals["tests"] - totals["failures"] - totals["errors"] - totals["skipped"]
    print(f"{passed} passed, {totals['failures'] + totals['errors']} failed, {totals['skipped']} skipped")
    if totals["skipped"]:
        print("skipped tests are not allowed: every test must run")
        return 1
    if totals["tests"] < minimum:
        print(f"only {totals['tests']} tests ran, expected at least {minimum}")
        return 1
    return 0 if passed == totals["tests"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
