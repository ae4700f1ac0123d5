"""The per-module table (plain text or Markdown) and the list of problems."""

import collections

import excluded
import expectations

COLUMNS = ["module", "run", "passed", "failed", "errors", "skipped", "excluded",
           "xfail", "ferro loops", "other loops", "note"]


def rows(modules, per_module, expected):
    """One dict per module: the counts of outcomes and of loops created."""
    table = []
    for module in modules:
        if module in excluded.EXCLUDED_MODULES:
            table.append(dict(module=module, note="excluded: " + excluded.EXCLUDED_MODULES[module]))
            continue
        results, note = per_module[module]
        outcomes = collections.Counter(r["outcome"] for r in results.values())
        failing = [i for i, r in results.items() if r["outcome"] in expectations.FAILING]
        table.append({
            "module": module,
            "run": sum(n for o, n in outcomes.items() if o not in ("skipped", "excluded")),
            "passed": outcomes["passed"],
            "failed": outcomes["failed"],
            "errors": outcomes["error"] + outcomes["timeout"] + outcomes["crash"],
            "skipped": outcomes["skipped"],
            "excluded": outcomes["excluded"],
            "xfail": sum(1 for i in failing if i in expected),
            "ferro loops": sum(r.get("ferro_loops", 0) for r in results.values()),
            "other loops": sum(sum(r.get("other_loops", {}).values()) for r in results.values()),
            "note": note,
        })
    return table


def _total(table):
    total = {"module": "total"}
    for column in COLUMNS[1:-1]:
        total[column] = sum(row.get(column, 0) for row in table)
    total["note"] = ""
    return total


def text(table):
    lines = []
    table = table + [_total(table)]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in table)) for c in COLUMNS[:-1]}

    def fmt(r):
        return "  ".join(str(r.get(c, "")).rjust(widths[c]) if c != "module"
                         else str(r.get(c, "")).ljust(widths[c]) for c in COLUMNS[:-1])

    lines.append(fmt({c: c for c in COLUMNS}))
    for row in table:
        lines.append(fmt(row) + ("  " + row["note"] if row.get("note") else ""))
    return "\n".join(lines)


def markdown(table):
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in table + [_total(table)]:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in COLUMNS) + " |")
    return "\n".join(lines)


def print_outcomes(results, expected):
    for test_id, result in sorted(results.items()):
        outcome = result["outcome"]
        if outcome in expectations.FAILING and test_id in expected:
            outcome += " (expected: " + expected[test_id] + ")"
        print(f"{test_id}: {outcome}")


def print_problems(problems):
    if not problems:
        return
    print()
    for kind, test_id, text_ in problems:
        print(f"{kind.upper()}: {test_id}: {text_}")
