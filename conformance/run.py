#!/usr/bin/env python3
"""Run CPython's own ``test_asyncio`` against ferroloop.

    .venv/bin/python conformance/run.py                 # every module (what `make conformance` runs)
    .venv/bin/python conformance/run.py --quick         # the loop core only
    .venv/bin/python conformance/run.py --module test_tasks --verbose
    .venv/bin/python conformance/run.py --update        # rewrite expected_failures.txt
    .venv/bin/python conformance/run.py --markdown      # the table for docs/compatibility.md
    .venv/bin/python conformance/run.py --last --markdown   # the last run's table, no rerun

Each interpreter runs its own ``test_asyncio`` (``targets.py``), so run it with each
``.venv-X.Y/bin/python``; ``make conformance`` does so for every supported CPython.

Each module runs in its own process (``child.py``) with the tests bound to ferroloop
(``bindings.py``); what is not run and why is in ``excluded.py``. The run fails on a failure
that is not in ``expected_failures.txt``, on an expected failure that passes, and on a test
that created an event loop other than ferroloop's. Per-test outcomes are written to
``target/conformance-X.Y/results.json``, the modules' output to ``target/conformance-X.Y/logs/``.
"""

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import excluded  # noqa: E402
import expectations  # noqa: E402
import report  # noqa: E402
import targets  # noqa: E402

OUT_DIR = os.path.join(os.path.dirname(HERE), "target", "conformance-{}.{}".format(*sys.version_info[:2]))


def run_module(module, module_timeout, test_timeout):
    """Run ``module`` in child processes until it is done; ``{id: result}`` and a note.

    A child that hangs in a test exits after recording it as a timeout, one that crashes
    leaves its current test without an end record (recorded here as a crash); either way
    a new child continues with the tests not yet recorded, while the module's time lasts.
    """
    results, planned, note = {}, set(), ""
    deadline = time.monotonic() + module_timeout
    log_path = os.path.join(OUT_DIR, "logs", module + ".log")
    with tempfile.TemporaryDirectory() as tmp, open(log_path, "w") as log:
        out_path, skip_path = os.path.join(tmp, "out.jsonl"), os.path.join(tmp, "skip.txt")
        while True:
            with open(skip_path, "w") as f:
                f.write("".join(test_id + "\n" for test_id in results))
            command = [sys.executable, os.path.join(HERE, "child.py"), module,
                       "--out", out_path, "--skip", skip_path,
                       "--test-timeout", str(test_timeout)]
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            open(out_path, "w").close()
            try:
                code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL,
                                      timeout=max(1, deadline - time.monotonic())).returncode
            except subprocess.TimeoutExpired:
                code = None
            before = len(results)
            done, running = read_records(out_path, results, planned)
            if done:
                break
            if running is not None:
                outcome = "timeout" if code is None else "crash"
                results[running] = dict(outcome=outcome, ferro_loops=0, other_loops={},
                                        detail=f"child process ended (exit {code})", seconds=0)
            if code is None or time.monotonic() >= deadline:
                note = f"module time limit ({module_timeout:.0f} s) reached"
                break
            if len(results) == before:
                note = f"child exited with {code} before running a test (see the log)"
                break
    for test_id in planned - results.keys():
        results[test_id] = dict(outcome="timeout", detail=f"not run: {note}",
                                ferro_loops=0, other_loops={}, seconds=0)
    if not planned and not done:  # the module could not even be loaded
        results[module + ".load"] = dict(outcome="crash", detail=note, ferro_loops=0,
                                         other_loops={}, seconds=0)
    return results, note


def read_records(path, results, planned):
    """Add the child's records to ``results`` and the tests it will run to ``planned``;
    return (module done?, id of a test left running)."""
    done, running = False, None
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            event = record.pop("event")
            if event == "loaded":
                planned.update(record["tests"])
                for test_id, reason in record["excluded"].items():
                    results[test_id] = dict(outcome="excluded", detail=reason,
                                            ferro_loops=0, other_loops={}, seconds=0)
            elif event == "start":
                running = record["id"]
            elif event == "end":
                results[record.pop("id")] = record
                running = None
            elif event == "done":
                done = True
    return done, running


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", metavar="NAME",
                        help="run only this module (repeatable; 'test_' may be left out)")
    parser.add_argument("--quick", action="store_true",
                        help="only the loop-core modules: " + ", ".join(targets.QUICK))
    parser.add_argument("--update", action="store_true",
                        help="rewrite expected_failures.txt from this run's failures")
    parser.add_argument("--markdown", action="store_true", help="print the table in Markdown")
    parser.add_argument("--last", action="store_true",
                        help="print the table of this interpreter's last run (results.json), run nothing")
    parser.add_argument("--verbose", action="store_true", help="print every test's outcome")
    parser.add_argument("--jobs", type=int, default=2, help="modules run at once (default 2)")
    parser.add_argument("--module-timeout", type=float, default=300,
                        help="seconds for a whole module, restarts included (default 300)")
    parser.add_argument("--test-timeout", type=float, default=20,
                        help="seconds before a test counts as hung (default 20; the slowest passing test takes ~2.5 s)")
    return parser.parse_args()


def selected_modules(args):
    if args.module:
        names = [m if m.startswith("test_") else "test_" + m for m in args.module]
        unknown = [m for m in names if m not in targets.MODULES]
        if unknown:
            raise SystemExit(f"unknown module(s): {', '.join(unknown)}")
        return names
    return targets.QUICK if args.quick else targets.MODULES


def print_last(args, modules):
    """The table of the last run of this interpreter, from its results.json."""
    with open(os.path.join(OUT_DIR, "results.json")) as f:
        results = json.load(f)
    per_module = {m: ({}, "") for m in modules}
    for test_id, result in results.items():
        module = expectations.module_of(test_id)
        if module in per_module:
            per_module[module][0][test_id] = result
    rows = report.rows(modules, per_module, expectations.load())
    print(report.markdown(rows) if args.markdown else report.text(rows))


def main():
    args = parse_args()
    modules = selected_modules(args)
    if args.last:
        print_last(args, modules)
        return
    os.makedirs(os.path.join(OUT_DIR, "logs"), exist_ok=True)
    started = time.monotonic()

    to_run = [m for m in modules if m not in excluded.EXCLUDED_MODULES]
    per_module = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_module, m, args.module_timeout, args.test_timeout): m
                   for m in to_run}
        for future in concurrent.futures.as_completed(futures):
            module = futures[future]
            per_module[module] = future.result()
            print(f"  {module}: {len(per_module[module][0])} tests, "
                  f"{time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)

    results = {}
    for module in to_run:
        results.update(per_module[module][0])
    with open(os.path.join(OUT_DIR, "results.json"), "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)

    expected = expectations.load()
    if args.update:
        expected = expectations.update(expected, results, set(to_run))
    problems = expectations.check(expected, results, set(to_run))
    elapsed = time.monotonic() - started

    rows = report.rows(modules, per_module, expected)
    print(report.markdown(rows) if args.markdown else report.text(rows))
    if args.verbose:
        report.print_outcomes(results, expected)
    report.print_problems(problems)
    print(f"\n{len(to_run)} modules in {elapsed:.0f} s")
    fatal = [p for p in problems if p[0] != "stale"]
    sys.exit(1 if fatal else 0)


if __name__ == "__main__":
    main()
