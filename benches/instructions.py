"""Instructions per `await asyncio.sleep(0)` step, counted by callgrind (repeatable on a noisy
machine, unlike wall time).

    .venv/bin/python benches/instructions.py [--n 20000] [floor rloop uvloop ferroloop ...]

For each loop, runs one task awaiting sleep(0) N times and 0 times under
`valgrind --tool=callgrind` and prints (total(N) - total(0)) / N, and that minus the floor
(the same coroutine driven by bare coro.send(None)). Needs valgrind (Debian's package).
"""

import argparse
import re
import subprocess
import sys

CHILD = r"""
import asyncio, sys
async def bench(n):
    for _ in range(n):
        await asyncio.sleep(0)
which, n = sys.argv[1], int(sys.argv[2])
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


def instructions(which, n):
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-c", CHILD, which, str(n)],
        capture_output=True, text=True, check=True,
    ).stderr
    return int(re.search(r"Collected : (\d+)", out).group(1))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("loops", nargs="*", default=["floor", "rloop", "uvloop", "ferroloop"])
    args = p.parse_args()
    floor = None
    print(f"{'loop':10s} {'instr/step':>10s} {'above floor':>11s}")
    for which in args.loops:
        per = (instructions(which, args.n) - instructions(which, 0)) / args.n
        if which == "floor":
            floor = per
        above = "-" if floor is None or which == "floor" else f"{per - floor:.0f}"
        print(f"{which:10s} {per:10.0f} {above:>11s}")


if __name__ == "__main__":
    main()
