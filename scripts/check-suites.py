"""Fails unless every named backend suite executed tests and none failed or was skipped.

Usage: check-suites.py JUNIT_XML SUITE [SUITE ...]
Reads nextest's JUnit report; a conformance test is named `<suite>::<area>::<case>`.
"""

import sys
import xml.etree.ElementTree as ET


def main() -> int:
    report, suites = sys.argv[1], sys.argv[2:]
    tree = ET.parse(report)
    counts = {suite: {"passed": 0, "failed": 0, "skipped": 0} for suite in suites}
    for case in tree.iter("testcase"):
        name = case.get("name", "")
        suite = name.split("::", 1)[0]
        if suite not in counts:
            continue
        if case.find("failure") is not None or case.find("error") is not None:
            counts[suite]["failed"] += 1
        elif case.find("skipped") is not None:
            counts[suite]["skipped"] += 1
        else:
            counts[suite]["passed"] += 1
    ok = True
    for suite, c in counts.items():
        print(f"suite {suite}: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped")
        if c["passed"] == 0 or c["failed"] or c["skipped"]:
            ok = False
    if not ok:
        print("a backend suite did not run completely", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
