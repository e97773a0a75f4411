"""Sums the per-backend JUnit reports written by scripts/test.sh into one line."""

import sys
import xml.etree.ElementTree as ET

totals = {"passed": 0, "failed": 0, "skipped": 0}
ok = True
for backend in sys.argv[1:]:
    try:
        root = ET.parse(f".test-results/{backend}.xml").getroot()
    except (OSError, ET.ParseError) as err:
        print(f"{backend}: no test report ({err})")
        ok = False
        continue
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    tests, skipped = int(suite.get("tests")), int(suite.get("skipped"))
    failed = int(suite.get("failures")) + int(suite.get("errors"))
    passed = tests - failed - skipped
    print(f"{backend}: {passed} passed, {failed} failed, {skipped} skipped")
    totals["passed"] += passed
    totals["failed"] += failed
    totals["skipped"] += skipped
    ok = ok and failed == 0 and passed > 0
print(f"matrix: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
sys.exit(0 if ok else 1)
