"""What seeing into the loop costs: ferroloop with its counters only (the default), with
the slow-callback report on (one clock read per callback), with the watchdog too, and
asyncio's debug mode (the usual way to find a slow callback) on ferroloop and on asyncio,
alternated in one run with bench_core's cases.

    python benches/bench_monitor.py                      # sleep0, call_soon, timers; 5 rounds
    python benches/bench_monitor.py --rounds 3 --cases call_soon --markdown

Ratios are X time / "ferroloop" time, paired per round: the cost of each mode over the
counters alone. Instruction counts of the same modes: benches/instructions.py with
FERROLOOP_SLOW_CALLBACKS=1 (docs/observability.md).
"""

import argparse
import asyncio
import sys

import bench_core

import ferroloop
from ferroloop import _bench


def _ferroloop_with(report, watchdog=False, debug=False):
    def factory():
        loop = ferroloop.new_event_loop()
        if report:
            loop.set_slow_callback_report(True, watchdog=watchdog)
        loop.set_debug(debug)
        return loop

    return factory


def _asyncio_debug():
    loop = asyncio.new_event_loop()
    loop.set_debug(True)
    return loop


def specs():
    version = ferroloop.__version__
    return [
        _bench.LoopSpec("ferroloop", _ferroloop_with(False), version),
        _bench.LoopSpec("report", _ferroloop_with(True), version),
        _bench.LoopSpec("report+watchdog", _ferroloop_with(True, watchdog=True), version),
        _bench.LoopSpec("ferroloop debug", _ferroloop_with(False, debug=True), version),
        _bench.LoopSpec("asyncio debug", _asyncio_debug, "stdlib"),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cases", default="sleep0,call_soon,timers")
    parser.add_argument("--quick", action="store_true", help="scale every N down 10x")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    chosen = specs()
    print(_bench.versions_line(chosen[:1]) + "; modes: " + ", ".join(s.name for s in chosen))
    rows, _floor, errors = bench_core.run_all(
        cases, chosen, args.rounds, 10 if args.quick else 1, 600,
        lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(bench_core.render(*bench_core.build_table(rows, chosen), args.markdown))
    for (case, name), message in errors.items():
        print(f"error: {case} on {name}: {message}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
