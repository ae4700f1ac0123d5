"""The expected-failure list: ``expected_failures.txt``, one ``id: reason`` a line.

Every test of a module that fails, errors or times out on ferroloop must be listed with the
reason, which names the capability it waits for ("streams issue: ...") or starts with
``BUG:``. A reason starting with ``FLAKY`` also accepts a pass. ``--update`` rewrites the
file from a run (grouped per module, sorted); hand-written comments are not kept.
"""

import os

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "expected_failures.txt")
PLACEHOLDER = "TODO: classify"
HEADER = """\
# Tests of CPython's test_asyncio that fail on ferroloop, with the reason.
# Format: module.Class.test: reason   (reason: the issue it waits for, or "BUG: ...").
# A reason starting with FLAKY also accepts a pass. Written by `conformance/run.py --update`
# (reasons are kept; new entries get a placeholder to be replaced by hand).
"""


def load(path=PATH):
    """``{id: reason}`` from the file (empty if there is none)."""
    expected = {}
    if not os.path.exists(path):
        return expected
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            test_id, sep, reason = line.partition(": ")
            if not sep:
                raise SystemExit(f"{path}:{number}: expected 'id: reason', got {line!r}")
            expected[test_id] = reason.strip()
    return expected


def module_of(test_id):
    return test_id.split(".", 1)[0]


def update(expected, results, modules, path=PATH):
    """Rewrite the file: entries of ``modules`` come from ``results``, others are kept."""
    merged = {i: r for i, r in expected.items() if module_of(i) not in modules}
    for test_id, result in results.items():
        if result["outcome"] in FAILING:
            merged[test_id] = expected.get(test_id, PLACEHOLDER)
    with open(path, "w") as f:
        f.write(HEADER)
        current = None
        for test_id in sorted(merged):
            if module_of(test_id) != current:
                current = module_of(test_id)
                f.write(f"\n# {current}\n")
            f.write(f"{test_id}: {merged[test_id]}\n")
    return merged


FAILING = {"failed", "error", "timeout", "crash"}


def check(expected, results, modules):
    """The problems of a run: ``[(kind, id, text)]``.

    kinds: "unexpected failure", "unexpected pass", "unclassified" (placeholder reason),
    "foreign loop" (a test that is not excluded created a loop that is not ferroloop's),
    "stale" (listed, but the test no longer exists; a warning only).
    """
    problems = []
    for test_id, result in sorted(results.items()):
        outcome, reason = result["outcome"], expected.get(test_id)
        if result.get("other_loops") and outcome != "excluded":
            problems.append(("foreign loop", test_id, str(result["other_loops"])))
        if outcome in FAILING and reason is None:
            problems.append(("unexpected failure", test_id, first_line(result["detail"])))
        elif outcome == "passed" and reason is not None and not reason.startswith("FLAKY"):
            problems.append(("unexpected pass", test_id, reason))
        elif outcome in FAILING and reason.startswith(PLACEHOLDER):
            problems.append(("unclassified", test_id, first_line(result["detail"])))
    for test_id in sorted(expected):
        if module_of(test_id) in modules and test_id not in results:
            problems.append(("stale", test_id, expected[test_id]))
    return problems


def first_line(detail):
    """The exception line of a traceback (its last non-empty line)."""
    lines = [line for line in detail.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""
