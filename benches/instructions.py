"""Instructions per `await asyncio.sleep(0)` step, per fired timer, or per
`call_soon_threadsafe` round trip, counted by callgrind (repeatable on a noisy machine,
unlike wall time).

    .venv/bin/python benches/instructions.py [--n 20000] [floor rloop uvloop ferroloop ...]
    .venv/bin/python benches/instructions.py --case call_soon [rloop uvloop ferroloop ...]
    .venv/bin/python benches/instructions.py --case timers [rloop uvloop ferroloop ...]
    .venv/bin/python benches/instructions.py --case threadsafe [rloop uvloop ferroloop ...]
    .venv/bin/python benches/instructions.py --case gather [rloop uvloop ferroloop ...]

For each loop, runs the case with N and with 0 operations under `valgrind --tool=callgrind`
and prints (total(N) - total(0)) / N. `sleep0`: one task awaiting sleep(0), and that minus
the floor (the same coroutine driven by bare coro.send(None)). `call_soon`: N
`call_soon(cb)` from one task in batches of 1,000, each batch run by one sleep(0) (per
call: schedule and run). `timers`: N `call_later(0,
cb)` scheduled from one task, then awaited until all fired (per timer: schedule and fire).
`gather`: N coroutines through one `asyncio.gather` (per task: create, run, collect).
`threadsafe`: N `call_soon_threadsafe(cb)` from one other thread, awaited until all ran
(per call: schedule from the thread and run on the loop; the thread's start is in both
runs, so it cancels out).
Needs valgrind (Debian's package).
"""

import argparse
import re
import subprocess
import sys

CHILD = r"""
import asyncio, sys
async def sleep0(n):
    for _ in range(n):
        await asyncio.sleep(0)
async def timers(n):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    fired = 0
    def cb():
        nonlocal fired
        fired += 1
        if fired == n:
            done.set_result(None)
    for _ in range(n):
        loop.call_later(0, cb)
    if n:
        await done
async def threadsafe(n):
    import threading
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    count = 0
    def cb():
        nonlocal count
        count += 1
        if count == n:
            done.set_result(None)
    def producer():
        call = loop.call_soon_threadsafe
        for _ in range(n):
            call(cb)
    t = threading.Thread(target=producer)
    t.start()
    if n:
        await done
    t.join()
async def call_soon(n):
    loop = asyncio.get_running_loop()
    call = loop.call_soon
    def cb():
        pass
    for _ in range(n // 1000):
        for _ in range(1000):
            call(cb)
        await asyncio.sleep(0)
async def _job(i):
    return i
async def gather(n):
    await asyncio.gather(*[_job(i) for i in range(n)])
which, n, case = sys.argv[1], int(sys.argv[2]), sys.argv[3]
bench = {"sleep0": sleep0, "call_soon": call_soon, "timers": timers, "threadsafe": threadsafe, "gather": gather}[case]
if which == "floor":
    c = bench(n)
    try:
        while True:
            c.send(None)
    except StopIteration:
        pass
else:
    mod = __import__(which)
    with asyncio.Runner(loop_factory=mod.new_event_loop) as r:
        r.run(bench(n))
"""


def instructions(which, n, case):
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-c", CHILD, which, str(n), case],
        capture_output=True, text=True, check=True,
    ).stderr
    return int(re.search(r"Collected : (\d+)", out).group(1))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--case", choices=["sleep0", "call_soon", "timers", "threadsafe", "gather"], default="sleep0")
    p.add_argument("loops", nargs="*", default=["floor", "rloop", "uvloop", "ferroloop"])
    args = p.parse_args()
    floor = None
    print(f"{'loop':10s} {'instr/op':>10s} {'above floor':>11s}")
    for which in args.loops:
        if which == "floor" and args.case != "sleep0":
            continue
        per = (instructions(which, args.n, args.case) - instructions(which, 0, args.case)) / args.n
        if which == "floor":
            floor = per
        above = "-" if floor is None or which == "floor" else f"{per - floor:.0f}"
        print(f"{which:10s} {per:10.0f} {above:>11s}")


if __name__ == "__main__":
    main()
