"""Fails unless every named suite ran completely.

Usage: check-suites.py JUNIT_XML SUITE [SUITE ...]

Reads nextest's JUnit report, where a test of suite S is named `S::...` (a conformance test
`<suite>::<area>::<case>`). Every named suite must have run at least one test, none failed and
none skipped. The conformance suites must also have run the same tests: `model` (the reference
model) is the reference, and every other named suite whose tests come from the same test binary
(a backend's conformance suite) must have run exactly the tests the model ran, compared by name
after the `<suite>::` prefix; what is missing or extra is printed. Suites of other binaries (the
OAuth flows) have no model counterpart and are only checked for having run completely. A suite
that ran no test at all fails whichever kind it is.
"""

import sys
import xml.etree.ElementTree as ET

REFERENCE = "model"
# Names printed per suite when a list differs from the reference's.
MAX_LISTED = 50


def read_report(path, suites):
    """Per suite: {test name after the prefix: outcome}, and the binaries its tests came from."""
    tests = {suite: {} for suite in suites}
    binaries = {suite: set() for suite in suites}
    tree = ET.parse(path)
    for testsuite in tree.iter("testsuite"):
        binary = testsuite.get("name", "")
        for case in testsuite.iter("testcase"):
            name = case.get("name", "")
            suite, _, rest = name.partition("::")
            if suite not in tests:
                continue
            if case.find("failure") is not None or case.find("error") is not None:
                outcome = "failed"
            elif case.find("skipped") is not None:
                outcome = "skipped"
            else:
                outcome = "passed"
            tests[suite][rest] = outcome
            binaries[suite].add(binary)
    return tests, binaries


def listing(names):
    shown = sorted(names)[:MAX_LISTED]
    more = len(names) - len(shown)
    lines = [f"    {name}" for name in shown]
    if more > 0:
        lines.append(f"    ... and {more} more")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    report, suites = sys.argv[1], sys.argv[2:]
    tests, binaries = read_report(report, suites)
    ok = True
    for suite in suites:
        outcomes = list(tests[suite].values())
        passed = outcomes.count("passed")
        failed = outcomes.count("failed")
        skipped = outcomes.count("skipped")
        print(f"suite {suite}: {passed} passed, {failed} failed, {skipped} skipped")
        if passed == 0 or failed or skipped:
            ok = False

    if REFERENCE in suites and tests[REFERENCE]:
        reference = set(tests[REFERENCE])
        for suite in suites:
            if suite == REFERENCE or not binaries[suite] & binaries[REFERENCE]:
                continue
            ran = set(tests[suite])
            missing, extra = reference - ran, ran - reference
            if missing or extra:
                ok = False
                print(
                    f"suite {suite}: ran {len(ran)} tests, {REFERENCE} ran {len(reference)}: "
                    f"{len(missing)} missing, {len(extra)} extra"
                )
                if missing:
                    print(f"  missing from {suite} (run by {REFERENCE}):\n{listing(missing)}")
                if extra:
                    print(f"  extra in {suite} (not run by {REFERENCE}):\n{listing(extra)}")
            else:
                print(f"suite {suite}: the same {len(ran)} tests as {REFERENCE}")

    if not ok:
        print("a required suite did not run completely", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
