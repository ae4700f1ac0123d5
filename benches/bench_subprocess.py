"""Subprocesses and pipes: asyncio vs uvloop vs rloop vs ferroloop, alternated in one run.

Cases (each loop fresh per measurement, loops rotated every round; per-round ratio of
ferroloop's time to the faster of uvloop and rloop, median [min-max]):

* ``spawn``: start and await ``--spawn`` (default 1,000) ``/bin/true`` children,
  ``--parallel`` (default 50) at a time, with ``asyncio.create_subprocess_exec``;
* ``cat``: push ``--megabytes`` (default 64) MiB through ``cat`` (stdin pipe -> stdout
  pipe) in 64 KiB writes with ``drain()``, reading concurrently; MB/s.

    python benches/bench_subprocess.py [--rounds 3] [--markdown]
"""

import argparse
import asyncio
import os
import shlex
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

from ferroloop import _bench  # noqa: E402

REFERENCE = "ferroloop"
BASELINES = ("uvloop", "rloop")
TRUE = "/bin/true"


async def spawn_many(count, parallel):
    sem = asyncio.Semaphore(parallel)

    async def one():
        async with sem:
            proc = await asyncio.create_subprocess_exec(TRUE)
            rc = await proc.wait()
            if rc != 0:
                raise RuntimeError(f"/bin/true returned {rc}")

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return time.perf_counter() - t0


async def through_cat(megabytes):
    chunk = bytes(range(256)) * 256  # 64 KiB
    total = megabytes * 1024 * 1024
    proc = await asyncio.create_subprocess_exec(
        "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )

    async def feed():
        sent = 0
        while sent < total:
            proc.stdin.write(chunk)
            sent += len(chunk)
            await proc.stdin.drain()
        proc.stdin.close()

    async def drain_out():
        got = 0
        while True:
            data = await proc.stdout.read(256 * 1024)
            if not data:
                return got
            got += len(data)

    t0 = time.perf_counter()
    _, got = await asyncio.gather(feed(), drain_out())
    dt = time.perf_counter() - t0
    await proc.wait()
    if got != total:
        raise RuntimeError(f"cat returned {got} of {total} bytes")
    return dt


def measure(spec, case, args):
    with asyncio.Runner(loop_factory=spec.factory) as runner:
        if case == "spawn":
            return runner.run(spawn_many(args.spawn, args.parallel))
        return runner.run(through_cat(args.megabytes))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--spawn", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=50)
    parser.add_argument("--megabytes", type=int, default=64)
    parser.add_argument("--cases", default="spawn,cat")
    parser.add_argument("--loops", default="asyncio,uvloop,rloop,ferroloop")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    specs, skipped = _bench.available_loops([n.strip() for n in args.loops.split(",")])
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print(_bench.versions_line(specs))
    for name, reason in skipped:
        print(f"skipping {name}: {reason}")
    times = {c: {s.name: [] for s in specs} for c in cases}
    errors = {}
    for rnd in range(args.rounds):
        for case in cases:
            for spec in _bench.rotated(specs, rnd):
                try:
                    times[case][spec.name].append(measure(spec, case, args))
                except Exception as exc:  # one loop failing must not stop the others
                    times[case][spec.name].append(None)
                    errors.setdefault((case, spec.name), f"{type(exc).__name__}: {exc}")
        print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    names = [s.name for s in specs]
    headers = ["case"] + names + ([f"{REFERENCE} / best of {','.join(BASELINES)}"] if REFERENCE in names else [])
    rows = []
    for case in cases:
        row = [f"spawn {args.spawn} (x{args.parallel})" if case == "spawn" else f"cat {args.megabytes} MiB"]
        for n in names:
            vals = [v for v in times[case][n] if v is not None]
            if not vals:
                row.append("n/a")
            elif case == "spawn":
                row.append(f"{statistics.median(vals) / args.spawn * 1e6:,.0f} us/process")
            else:
                row.append(f"{args.megabytes * 1.048576 / statistics.median(vals):,.0f} MB/s")
        if REFERENCE in names:
            ratios = []
            for rnd, ref in enumerate(times[case][REFERENCE]):
                others = [times[case][b][rnd] for b in BASELINES if b in names and times[case][b][rnd]]
                if ref and others:
                    ratios.append(min(others) / ref)
            row.append(_bench.fmt_ratio(_bench.ratio_stats(ratios)))
        rows.append(row)
    print()
    if args.markdown:
        print("| " + " | ".join(headers) + " |")
        print("|" + "---|" * len(headers))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        print(_bench._table(headers, rows))
    print("(ratio > 1: ferroloop faster)")
    for (case, name), err in errors.items():
        print(f"error: {case} on {name}: {err}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
