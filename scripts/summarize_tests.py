#!/usr/bin/env python3
"""Combine `swift test` output and pytest's JUnit XML into counts.

usage: summarize_tests.py SWIFT_LOG SWIFT_RC JUNIT_XML PYTEST_RC
Prints one line per source to stderr and, on stdout, "passed failed skipped".
"""

import re
import sys
import xml.etree.ElementTree as ET

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def swift_counts(path, rc):
    try:
        text = ANSI.sub("", open(path, encoding="utf-8", errors="replace").read())
    except OSError:
        text = ""
    passed = failed = skipped = 0
    found = False
    # XCTest: the last "Executed N tests, with [K tests skipped and] M failures" line is the grand total.
    xc = re.findall(r"Executed (\d+) tests?, with (?:(\d+) tests? skipped and )?(\d+) failures?", text)
    if xc:
        n, k, m = xc[-1]
        n, k, m = int(n), int(k or 0), int(m)
        if n:
            passed += n - k - m
            failed += m
            skipped += k
        found = True
    # Swift Testing: "✔ Test run with N tests in S suites passed after ..." /
    #                "✘ Test run with N tests in S suites failed after ... with I issues."
    st = re.findall(r"Test run with (\d+) tests?(?: in \d+ suites?)? (passed|failed)", text)
    if st:
        n, status = int(st[-1][0]), st[-1][1]
        st_failed = len(re.findall(r"^\S+ Test (?!run with ).*? failed after", text, re.M))
        st_skipped = len(re.findall(r"^\S+ (?:Test|Suite) (?!run with ).*? skipped", text, re.M))
        if status == "failed" and st_failed == 0:
            st_failed = 1
        st_failed = min(st_failed, n)
        passed += max(n - st_failed - st_skipped, 0)
        failed += st_failed
        skipped += st_skipped
        found = True
    if not found or (rc != 0 and failed == 0):
        # build error, crash, or a failure the summaries did not count
        failed += 1
    return passed, failed, skipped


def junit_counts(path, rc):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return 0, (1 if rc != 0 else 0), 0
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    tests = failures = errors = skipped = 0
    for s in suites:
        tests += int(s.get("tests", 0))
        failures += int(s.get("failures", 0))
        errors += int(s.get("errors", 0))
        skipped += int(s.get("skipped", 0))
    failed = failures + errors
    passed = max(tests - failed - skipped, 0)
    if rc not in (0,) and failed == 0:
        failed = 1  # internal error / interrupted / no tests collected
    return passed, failed, skipped


def main():
    swift_log, swift_rc, junit, pytest_rc = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    sp, sf, ss = swift_counts(swift_log, swift_rc)
    pp, pf, ps = junit_counts(junit, pytest_rc)
    print(f"swift test: {sp} passed, {sf} failed, {ss} skipped (exit {swift_rc})", file=sys.stderr)
    print(f"pytest:     {pp} passed, {pf} failed, {ps} skipped (exit {pytest_rc})", file=sys.stderr)
    print(sp + pp, sf + pf, ss + ps)


if __name__ == "__main__":
    main()
