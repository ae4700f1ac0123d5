"""Run one CPython ``test_asyncio`` module on ferroloop; the runner starts this per module.

    python conformance/child.py test_tasks --out results.jsonl [--skip done.txt]

Writes one JSON object per line to ``--out`` (flushed at once, so the runner keeps what was
recorded when this process hangs or crashes):

* ``{"event": "loaded", "excluded": {id: reason}, "tests": [id]}`` once, after the tests
  are collected (``tests``: the ones this process will run);
* ``{"event": "start", "id": id}`` before each test;
* ``{"event": "end", "id", "outcome", "detail", "ferro_loops", "other_loops", "seconds"}``
  after each test; ``outcome`` is passed, failed, error, skipped, excluded or timeout;
* ``{"event": "done"}`` when the module has finished.

A test running longer than ``--test-timeout`` is recorded as ``timeout`` and the process
exits at once (the runner then starts a new one that skips the tests already recorded).
"""

import argparse
import collections
import faulthandler
import importlib
import json
import os
import re
import sys
import threading
import time
import traceback
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bindings  # noqa: E402
import excluded  # noqa: E402
import targets  # noqa: E402

TIMEOUT_EXIT = 3


def short_id(test_id):
    """``test.test_asyncio.test_x.Class.test`` -> ``test_x.Class.test``."""
    return test_id.removeprefix(targets.PACKAGE + ".")


class LoopCounter:
    """Counts event loops created, split into ferroloop's and any other class's."""

    def __init__(self):
        self.ferro = 0
        self.other = collections.Counter()

    def install(self):
        from asyncio import base_events

        import ferroloop

        counter = self
        ferro_init = ferroloop.EventLoop.__init__
        base_init = base_events.BaseEventLoop.__init__

        def counted_ferro_init(self, *args, **kwargs):
            counter.ferro += 1
            ferro_init(self, *args, **kwargs)

        def counted_base_init(self, *args, **kwargs):
            if not isinstance(self, ferroloop.EventLoop):
                counter.other[type(self).__qualname__] += 1
            base_init(self, *args, **kwargs)

        ferroloop.EventLoop.__init__ = counted_ferro_init
        base_events.BaseEventLoop.__init__ = counted_base_init

    def snapshot(self):
        return self.ferro, self.other.copy()


class RecordingResult(unittest.TestResult):
    """A ``TestResult`` that writes each test's outcome to the JSON-lines file."""

    RANK = {"passed": 0, "skipped": 1, "excluded": 1, "failed": 2, "error": 3}

    def __init__(self, out, loops):
        super().__init__()
        self.out = out
        self.loops = loops
        self.current = None
        self.started = None

    def emit(self, **record):
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    # -- per test --------------------------------------------------------------------

    def startTest(self, test):
        super().startTest(test)
        self.current = short_id(test.id())
        self.outcome, self.detail = "passed", ""
        self.loops_before = self.loops.snapshot()
        self.emit(event="start", id=self.current)
        self.started = time.monotonic()

    def stopTest(self, test):
        seconds = time.monotonic() - self.started
        self.started = None
        ferro0, other0 = self.loops_before
        ferro1, other1 = self.loops.snapshot()
        self.emit(event="end", id=self.current, outcome=self.outcome, detail=self.detail,
                  ferro_loops=ferro1 - ferro0, other_loops=dict(other1 - other0),
                  seconds=round(seconds, 3))
        self.current = None
        super().stopTest(test)

    def _set(self, outcome, detail):
        if self.RANK[outcome] >= self.RANK[self.outcome]:
            self.outcome, self.detail = outcome, detail

    def _format(self, test, err):
        return "".join(traceback.format_exception(*err))[-6000:]

    def addError(self, test, err):
        super().addError(test, err)
        if self.current is None or not hasattr(test, "_testMethodName"):
            self._fixture_error(test, err)
        else:
            self._set("error", self._format(test, err))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._set("failed", self._format(test, err))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._set("excluded" if reason == bindings.FAKE_CLOCK else "skipped", reason)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._set("failed" if failed else "error",
                      f"{subtest.id()}\n{self._format(test, err)}")

    def addExpectedFailure(self, test, err):  # @unittest.expectedFailure in CPython's tests
        super().addExpectedFailure(test, err)

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._set("failed", "unexpected success of a CPython @expectedFailure test")

    def _fixture_error(self, test, err):
        """An error in setUpModule/setUpClass/tearDown...: recorded as its own id."""
        description = str(test)
        match = re.match(r"(\w+) \((.+)\)", description)
        test_id = f"{short_id(match[2])}.{match[1]}" if match else short_id(description)
        outcome = "skipped" if issubclass(err[0], unittest.SkipTest) else "error"
        self.emit(event="end", id=test_id, outcome=outcome, detail=self._format(test, err),
                  ferro_loops=0, other_loops={}, seconds=0)


def watchdog(result, limit):
    """Record a test that runs longer than ``limit`` seconds as timed out, then exit."""
    while True:
        time.sleep(1)
        started, current = result.started, result.current
        if started is not None and time.monotonic() - started > limit:
            result.emit(event="end", id=current, outcome="timeout",
                        detail=f"still running after {limit} s (tracebacks in the log)",
                        ferro_loops=0, other_loops={}, seconds=limit)
            faulthandler.dump_traceback(all_threads=True)
            os._exit(TIMEOUT_EXIT)


def iter_tests(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from iter_tests(item)
        else:
            yield item


def collect(module_name, skip):
    """The module's tests to run (a flat suite) and the excluded ones ``{id: reason}``."""
    module = importlib.import_module(f"{targets.PACKAGE}.{module_name}")
    bindings.bind(module_name, module)
    to_run, excluded_ids = [], {}
    for test in iter_tests(unittest.defaultTestLoader.loadTestsFromModule(module)):
        test_id = short_id(test.id())
        reason = excluded.reason_for(test_id)
        if reason is not None:
            excluded_ids[test_id] = reason
        elif test_id not in skip:
            to_run.append(test)
    return unittest.TestSuite(to_run), excluded_ids


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module")
    parser.add_argument("--out", required=True)
    parser.add_argument("--skip", help="file with the ids already recorded, one a line")
    parser.add_argument("--test-timeout", type=float, default=20)
    args = parser.parse_args()

    skip = set()
    if args.skip:
        with open(args.skip) as f:
            skip = {line.strip() for line in f if line.strip()}

    from test import support
    support.verbose = False
    faulthandler.enable()
    bindings.install()
    loops = LoopCounter()
    loops.install()

    with open(args.out, "a") as out:
        result = RecordingResult(out, loops)
        suite, excluded_ids = collect(args.module, skip)
        result.emit(event="loaded", excluded=excluded_ids,
                    tests=[short_id(test.id()) for test in suite])
        threading.Thread(target=watchdog, args=(result, args.test_timeout),
                         daemon=True).start()
        suite.run(result)
        result.emit(event="done")


if __name__ == "__main__":
    main()
