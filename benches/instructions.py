"""Instructions per `await asyncio.sleep(0)` step, per fired timer, or per
`call_soon_threadsafe` round trip, counted by callgrind (repeatable on a noisy machine,
unlike wall time).

    .venv/bin/python benches/instructions.py [--n 20000] [floor rloop uvloop ferroloop ...]
    .venv/bin/python benches/instructions.py --case call_soon [rloop uvloop ferroloop ...]
    .venv/bin/python benches/instructions.py --case timers [rloop uvloop ferroloop ...]
    .venv/bin/python benches/instructions.py --case threadsafe [rloop uvloop ferroloop ...]
    .venv/bin/python benches/instructions.py --case gather [rloop uvloop ferroloop ...]
    .venv/bin/python benches/instructions.py --case queue [rloop uvloop ferroloop ...]
    .venv/bin/python benches/instructions.py --own --case gather rloop ferroloop

For each loop, runs the case with N and with 0 operations under `valgrind --tool=callgrind`
and prints (total(N) - total(0)) / N. `sleep0`: one task awaiting sleep(0), and that minus
the floor (the same coroutine driven by bare coro.send(None)). `call_soon`: N
`call_soon(cb)` from one task in batches of 1,000, each batch run by one sleep(0) (per
call: schedule and run). `timers`: N `call_later(0,
cb)` scheduled from one task, then awaited until all fired (per timer: schedule and fire).
`gather`: N coroutines through one `asyncio.gather` (per task: create, run, collect).
`protocol_echo`: N round trips of a 1 KiB message between two `asyncio.Protocol`s over a
socketpair (both transports' readiness, read, `data_received` and write paths, per message).
`queue`: N items through an `asyncio.Queue(maxsize=100)` from a producer task (per item).
`executor`: N `run_in_executor(None, f, i)` round trips, f trivial (both threads' work).
`threadsafe`: N `call_soon_threadsafe(cb)` from one other thread, awaited until all ran
(per call: schedule from the thread and run on the loop; the thread's start is in both
runs, so it cancels out).
`--own` also estimates ferroloop's own share of its count (the extension's code and what
it calls, not the callbacks and Task steps it runs: see `own_instructions`), and what each
other loop's count is over ferroloop's with that share at zero: the most any loop built on
CPython's own Task, Future and Queue could gain on the case.
Needs valgrind (Debian's package).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

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
def _identity(x):
    return x
async def executor(n):
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, _identity, 0)  # the pool's thread starts in both runs
    for i in range(n):
        await loop.run_in_executor(None, _identity, i)
async def queue(n):
    q = asyncio.Queue(maxsize=100)
    async def producer():
        for i in range(n):
            await q.put(i)
        await q.put(None)
    t = asyncio.create_task(producer())
    while await q.get() is not None:
        pass
    await t
async def gather(n):
    await asyncio.gather(*[_job(i) for i in range(n)])
async def protocol_echo(n):
    import socket
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    msg = b"x" * 1024
    done = loop.create_future()
    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
        def data_received(self, data):
            self.transport.write(data)
    class Client(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.left = n
            self.got = 0
        def data_received(self, data):
            self.got += len(data)
            if self.got >= len(msg):
                self.got -= len(msg)
                self.left -= 1
                if self.left <= 0:
                    done.set_result(None)
                else:
                    self.transport.write(msg)
    st, _ = await loop.connect_accepted_socket(Echo, a)
    ct, client = await loop.connect_accepted_socket(Client, b)
    if n:
        ct.write(msg)
        await done
    st.close()
    ct.close()
    await asyncio.sleep(0)
which, n, case = sys.argv[1], int(sys.argv[2]), sys.argv[3]
bench = {"sleep0": sleep0, "call_soon": call_soon, "timers": timers, "threadsafe": threadsafe, "gather": gather, "queue": queue, "executor": executor, "protocol_echo": protocol_echo}[case]
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


CASES = ["sleep0", "call_soon", "timers", "threadsafe", "gather", "queue", "executor", "protocol_echo"]

# Calls through which ferroloop's code runs somebody else's code (a callback, a Task's step,
# a Python method) or frees what it released (`_Py_Dealloc`: when a handle lets go of a
# callback, whatever dies with it, a finished Task and its coroutine, is CPython's teardown,
# paid by every loop): their inclusive cost is not ferroloop's own.
FOREIGN_CALLS = ("PyObject_Vectorcall", "PyObject_Call", "_PyObject_Call", "_PyObject_MakeTpCall",
                 "PyObject_VectorcallMethod", "PyObject_VectorcallDict", "_PyObject_FastCall",
                 "_Py_Dealloc")


def instructions(which, n, case, out_file="/dev/null"):
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
         sys.executable, "-c", CHILD, which, str(n), case],
        capture_output=True, text=True, check=True,
    ).stderr
    return int(re.search(r"Collected : (\d+)", out).group(1))


def own_instructions(path, native="_native."):
    """Instructions of ferroloop's own work in a callgrind profile: the self cost of every
    function of the extension, plus the inclusive cost of what those functions call outside
    it (allocation, freeing, context switches, syscalls' user side), except calls that run
    other code or free objects (FOREIGN_CALLS: callbacks, Task steps, what dies when a
    handle lets go of its callback). An estimate of the loop's share, not exact: CPython's
    dispatch into the extension is not counted, nor is freeing a handle that was not
    recycled."""
    names = {"ob": {}, "fn": {}}
    ob = cob = cfn = None
    own = 0
    pending_call = False

    def name(kind, rest):
        m = re.match(r"\((\d+)\)(?: (.*))?", rest)
        if not m:
            return rest
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2)
        return names[kind].get(m.group(1), "?")

    with open(path) as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                continue
            head = line[0]
            if head.isdigit() or head in "+-*":
                if pending_call:
                    pending_call = False
                    caller_native = native in (ob or "")
                    callee_native = native in (cob or "")
                    if caller_native and not callee_native and not cfn.startswith(FOREIGN_CALLS):
                        own += int(line.split()[-1])
                    cob = None
                elif native in (ob or ""):
                    parts = line.split()
                    if len(parts) > 1:
                        own += int(parts[-1])
                continue
            key, _, rest = line.partition("=")
            if key == "ob":
                ob = name("ob", rest)
            elif key == "fn":
                name("fn", rest)
            elif key == "cob":
                cob = name("ob", rest)
            elif key == "cfn":
                cfn = name("fn", rest)
            elif key == "calls":
                if cob is None:
                    cob = ob
                pending_call = True
    return own


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--case", choices=CASES, default="sleep0")
    p.add_argument("--own", action="store_true",
                   help="also estimate ferroloop's own share per op (see own_instructions) "
                        "and what each other loop's count is over ferroloop's without it")
    p.add_argument("loops", nargs="*", default=["floor", "rloop", "uvloop", "ferroloop"])
    args = p.parse_args()
    floor = None
    totals = {}
    own = None
    print(f"{'loop':10s} {'instr/op':>10s} {'above floor':>11s}")
    for which in args.loops:
        if which == "floor" and args.case != "sleep0":
            continue
        if args.own and which == "ferroloop":
            with tempfile.TemporaryDirectory() as tmp:
                full, empty = os.path.join(tmp, "n.out"), os.path.join(tmp, "0.out")
                per = (instructions(which, args.n, args.case, full)
                       - instructions(which, 0, args.case, empty)) / args.n
                own = (own_instructions(full) - own_instructions(empty)) / args.n
        else:
            per = (instructions(which, args.n, args.case) - instructions(which, 0, args.case)) / args.n
        totals[which] = per
        if which == "floor":
            floor = per
        above = "-" if floor is None or which == "floor" else f"{per - floor:.0f}"
        print(f"{which:10s} {per:10.0f} {above:>11s}")
    if own is not None:
        rest = totals["ferroloop"] - own
        print(f"\nferroloop's own share: {own:.0f} of {totals['ferroloop']:.0f} per op; "
              f"without it, {rest:.0f}")
        for which, per in totals.items():
            if which not in ("floor", "ferroloop"):
                print(f"  {which} / ferroloop now {per / totals['ferroloop']:.2f}x; "
                      f"/ ferroloop with no cost of its own {per / rest:.2f}x")


if __name__ == "__main__":
    main()
