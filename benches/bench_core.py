"""Core event-loop benchmarks: asyncio, uvloop, rloop and ferroloop alternated in one run.

Each round runs every selected case on every installed loop, the loop order rotated each
round; each measurement uses a fresh loop (``asyncio.Runner(loop_factory=...)``) and is
timed inside the coroutine. Ratios are paired per round (X time / ferroloop time, so > 1
means ferroloop is faster) and summarised as median [min-max].

    python benches/bench_core.py                      # all cases, 5 rounds
    python benches/bench_core.py --quick --rounds 1   # N / 10, one round
    python benches/bench_core.py --cases sleep0,queue --markdown --json out.json
"""

import argparse
import asyncio
import faulthandler
import gc
import json
import platform
import shlex
import statistics
import sys
import threading
import time
from collections import OrderedDict

from ferroloop import _bench

REFERENCE = "ferroloop"
perf_counter = time.perf_counter


# -- the cases: each is run inside a fresh loop and returns {row: seconds per op} ---------


async def case_sleep0(n):
    """`await asyncio.sleep(0)` n times in one task (the floor is measured beside it)."""
    return {"sleep(0)": await _bench.sleep0(n) / n}


async def case_call_soon(n, batch=1000):
    """`loop.call_soon(cb)` n times, in batches of `batch`, each batch run by one yield."""
    loop = asyncio.get_running_loop()
    count = 0

    def cb():
        nonlocal count
        count += 1

    call_soon = loop.call_soon
    batches = max(1, n // batch)
    t0 = perf_counter()
    for _ in range(batches):
        for _ in range(batch):
            call_soon(cb)
        await asyncio.sleep(0)
    elapsed = perf_counter() - t0
    _check(count == batches * batch, f"ran {count} of {batches * batch} callbacks")
    return {"call_soon()": elapsed / (batches * batch)}


async def case_call_soon_args(n, batch=1000):
    """`loop.call_soon(cb, a, b)` n times, in batches, each batch run by one yield."""
    loop = asyncio.get_running_loop()
    count = 0

    def cb(a, b):
        nonlocal count
        count += a

    call_soon = loop.call_soon
    batches = max(1, n // batch)
    t0 = perf_counter()
    for _ in range(batches):
        for _ in range(batch):
            call_soon(cb, 1, 2)
        await asyncio.sleep(0)
    elapsed = perf_counter() - t0
    _check(count == batches * batch, f"ran {count} of {batches * batch} callbacks")
    return {"call_soon(cb, a, b)": elapsed / (batches * batch)}


async def case_timers(n):
    """n `call_later` timers (delays 0-1 ms), every other one cancelled: the time to
    schedule + cancel (per timer scheduled), then until the rest fired (per timer fired)."""
    loop = asyncio.get_running_loop()
    target = n - (n + 1) // 2  # the odd indices survive
    all_fired = loop.create_future()
    fired = 0

    def cb():
        nonlocal fired
        fired += 1
        if fired == target:
            all_fired.set_result(None)

    call_later = loop.call_later
    t0 = perf_counter()
    handles = [call_later((i % 1000) * 1e-6, cb) for i in range(n)]
    for handle in handles[::2]:
        handle.cancel()
    t1 = perf_counter()
    await all_fired
    t2 = perf_counter()
    await asyncio.sleep(0.002)  # a cancelled timer must not fire late either
    _check(fired == target, f"{fired} timers fired, expected {target}")
    return {"call_later: schedule+cancel": (t1 - t0) / n, "call_later: fire": (t2 - t1) / target}


async def case_threadsafe(n):
    """`call_soon_threadsafe(cb)` n times from one other thread; the loop counts to n."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    count = 0

    def cb():
        nonlocal count
        count += 1
        if count == n:
            done.set_result(None)

    def producer():
        call_soon_threadsafe = loop.call_soon_threadsafe
        for _ in range(n):
            call_soon_threadsafe(cb)

    thread = threading.Thread(target=producer)
    t0 = perf_counter()
    thread.start()
    await done
    elapsed = perf_counter() - t0
    thread.join()
    return {"call_soon_threadsafe": elapsed / n}


async def _job(i):
    return i


async def case_gather(n):
    """n coroutines turned into tasks and awaited through one `asyncio.gather`."""
    t0 = perf_counter()
    results = await asyncio.gather(*[_job(i) for i in range(n)])
    elapsed = perf_counter() - t0
    _check(len(results) == n and results[-1] == n - 1, "gather returned wrong results")
    return {"gather (per task)": elapsed / n}


async def case_queue(n, maxsize=100):
    """n items through a bounded `asyncio.Queue`, one producer task, one consumer."""
    queue = asyncio.Queue(maxsize=maxsize)

    async def producer():
        for i in range(n):
            await queue.put(i)
        await queue.put(None)

    t0 = perf_counter()
    producer_task = asyncio.create_task(producer())
    received = 0
    while await queue.get() is not None:
        received += 1
    await producer_task
    elapsed = perf_counter() - t0
    _check(received == n, f"received {received} of {n} items")
    return {"Queue put/get (per item)": elapsed / n}


async def case_getaddrinfo(n):
    """`await loop.getaddrinfo('127.0.0.1', 80)` n times (numeric host: no DNS query)."""
    loop = asyncio.get_running_loop()
    expected = await loop.getaddrinfo("127.0.0.1", 80)  # warm-up (executor threads)
    t0 = perf_counter()
    for _ in range(n):
        result = await loop.getaddrinfo("127.0.0.1", 80)
    elapsed = perf_counter() - t0
    _check(sorted(result) == sorted(expected), "getaddrinfo result changed")
    return {"getaddrinfo numeric": elapsed / n}


def _identity(x):
    return x


async def case_executor(n):
    """`await loop.run_in_executor(None, f, i)` n times, f trivial, default thread pool."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, _identity, 0)  # warm-up: start the pool
    t0 = perf_counter()
    for i in range(n):
        result = await loop.run_in_executor(None, _identity, i)
    elapsed = perf_counter() - t0
    _check(result == n - 1, "run_in_executor returned a wrong result")
    return {"run_in_executor round trip": elapsed / n}


class BenchError(AssertionError):
    pass


def _check(ok, message):
    if not ok:
        raise BenchError(message)


# name -> (function, default N)
CASES = OrderedDict(
    [
        ("sleep0", (case_sleep0, 1_000_000)),
        ("call_soon", (case_call_soon, 1_000_000)),
        ("call_soon_args", (case_call_soon_args, 1_000_000)),
        ("timers", (case_timers, 200_000)),
        ("threadsafe", (case_threadsafe, 200_000)),
        ("gather", (case_gather, 100_000)),
        ("queue", (case_queue, 200_000)),
        ("getaddrinfo", (case_getaddrinfo, 100_000)),
        ("executor", (case_executor, 20_000)),
    ]
)


# -- running ----------------------------------------------------------------------------


def run_all(cases, specs, rounds, scale, timeout, log):
    """Returns (rows, floor, errors):
    rows[row] = {"case", "n", "times": {loop: [seconds/op per round, None on error]}};
    floor = [seconds/step per round] for sleep0 (empty if not selected);
    errors = {(case, loop): first error message}."""
    rows = OrderedDict()
    floor = []
    errors = {}
    for rnd in range(rounds):
        for case in cases:
            fn, default_n = CASES[case]
            n = max(1, default_n // scale)
            if case == "sleep0":
                gc.collect()
                floor.append(_bench.floor_sleep0(n) / n)
            for spec in _bench.rotated(specs, rnd):
                faulthandler.dump_traceback_later(timeout, exit=True)
                try:
                    out = _bench.run_timed(spec.factory, fn, n)
                except Exception as exc:  # one loop failing must not stop the others
                    out = None
                    if (case, spec.name) not in errors:
                        errors[(case, spec.name)] = f"{type(exc).__name__}: {exc}"
                        log(f"  ERROR {case} on {spec.name}: {type(exc).__name__}: {exc}")
                finally:
                    faulthandler.cancel_dump_traceback_later()
                for row_name, per_op in (out or {}).items():
                    row = rows.setdefault(
                        row_name,
                        {"case": case, "n": n, "times": {s.name: [] for s in specs}},
                    )
                    _pad(row["times"][spec.name], rnd).append(per_op)
        log(f"round {rnd + 1}/{rounds} done")
    for row in rows.values():  # failed measurements stay None, so rounds stay paired
        for times in row["times"].values():
            _pad(times, rounds)
    return rows, floor, errors


def _pad(times, length):
    times.extend([None] * (length - len(times)))
    return times


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def speedups(times, ref_times):
    """Paired per-round ratios X / reference (None where either is missing)."""
    return [
        (x / r) if x is not None and r is not None and r > 0 else None
        for x, r in zip(times, ref_times)
    ]


def build_table(rows, specs):
    """(headers, body) for the main table."""
    names = [s.name for s in specs]
    others = [name for name in names if name != REFERENCE]
    headers = ["case", "N"] + [f"{name} /op" for name in names]
    if REFERENCE in names:
        headers += [f"{REFERENCE} vs {name}" for name in others]
    body = []
    for row_name, row in rows.items():
        line = [row_name, f"{row['n']:,}"]
        line += [_bench.fmt_time(_median(row["times"][name])) for name in names]
        if REFERENCE in names:
            ref = row["times"][REFERENCE]
            for name in others:
                line.append(_bench.fmt_ratio(_bench.ratio_stats(speedups(row["times"][name], ref))))
        body.append(line)
    return headers, body


def build_floor_table(rows, floor, specs):
    """(headers, body): sleep(0) per-step overhead above the bare coro.send() floor."""
    row = rows.get("sleep(0)")
    if row is None or not floor:
        return None
    headers = ["loop", "time/step", "above floor (ns/step)", "min-max"]
    body = [["floor (coro.send)", _bench.fmt_time(_median(floor)), "-", "-"]]
    for spec in specs:
        times = row["times"][spec.name]
        above = [(t - f) * 1e9 for t, f in zip(times, floor) if t is not None]
        if not above:
            body.append([spec.name, "n/a", "n/a", "n/a"])
            continue
        body.append([
            spec.name,
            _bench.fmt_time(_median(times)),
            f"{statistics.median(above):.0f}",
            f"{min(above):.0f}-{max(above):.0f}",
        ])
    return headers, body


def render(headers, body, markdown):
    if markdown:
        out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        out += ["| " + " | ".join(str(c) for c in line) + " |" for line in body]
        return "\n".join(out)
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *body)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in body]
    return "\n".join(out)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="asyncio vs uvloop vs rloop vs ferroloop, alternated in one run."
    )
    parser.add_argument("--quick", action="store_true", help="scale every N down 10x")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--cases", default=",".join(CASES),
                        help="comma-separated cases (default all): " + ",".join(CASES))
    parser.add_argument("--loops", default="asyncio,uvloop,rloop,ferroloop",
                        help="comma-separated loops (default asyncio,uvloop,rloop,ferroloop)")
    parser.add_argument("--json", metavar="FILE", help="write the raw results to FILE")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument("--timeout", type=float, default=600,
                        help="abort (with tracebacks) if one measurement takes longer (s)")
    args = parser.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    specs, skipped = _bench.available_loops([n.strip() for n in args.loops.split(",") if n.strip()])
    scale = 10 if args.quick else 1
    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print(_bench.versions_line(specs))
    print(f"platform: {platform.platform()}; rounds: {args.rounds}; "
          f"scale: 1/{scale}; cases: {','.join(args.cases)}")
    for name, reason in skipped:
        print(f"skipping {name}: {reason}")
    if REFERENCE not in [s.name for s in specs]:
        print(f"note: {REFERENCE} not measured, no speedup columns")
    sys.stdout.flush()

    rows, floor, errors = run_all(args.cases, specs, args.rounds, scale, args.timeout, log)

    print()
    print("time per operation (median of rounds); "
          f"{REFERENCE} vs X = X time / {REFERENCE} time, paired per round, median [min-max]")
    print(render(*build_table(rows, specs), args.markdown))
    floor_table = build_floor_table(rows, floor, specs)
    if floor_table:
        print()
        print("await asyncio.sleep(0): overhead above the floor (same coroutine, bare coro.send(None))")
        print(render(*floor_table, args.markdown))
    for (case, loop), message in errors.items():
        print(f"error: {case} on {loop}: {message}")

    if args.json:
        raw = {
            "argv": sys.argv,
            "python": sys.version,
            "platform": platform.platform(),
            "loops": {s.name: s.version for s in specs},
            "skipped": dict(skipped),
            "rounds": args.rounds,
            "scale": scale,
            "unit": "seconds per operation",
            "floor_sleep0": floor,
            "rows": rows,
            "errors": {f"{c}/{name}": m for (c, name), m in errors.items()},
        }
        with open(args.json, "w") as fh:
            json.dump(raw, fh, indent=1)
        print(f"raw results written to {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
