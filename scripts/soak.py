"""Leak soak: many ferroloop loop lifecycles; fd count and memory must stay flat.

Each cycle creates a loop, runs a small coroutine (call_soon, call_later, a task, a
reader on a socketpair, a timer left pending and one cancelled, run_in_executor every 100
cycles), shuts it down and closes it. After a warm-up the open fd count
(/proc/self/fd) and the RSS (/proc/self/statm) are sampled; at the end every loop must be
gone (weakrefs dead and no EventLoop in gc.get_objects() after gc.collect()).

    python scripts/soak.py            # 10,000 cycles
    python scripts/soak.py --short    # 1,000 cycles (the test target)

Exit status 1 on a leak.
"""

import argparse
import asyncio
import gc
import os
import socket
import sys
import time
import weakref

import ferroloop

PAGE = os.sysconf("SC_PAGE_SIZE")


def fd_count():
    return len(os.listdir("/proc/self/fd"))


def rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


async def small_task(x):
    await asyncio.sleep(0)
    return x * 2


async def cycle_main(i):
    loop = asyncio.get_running_loop()
    log = []
    later_fired = loop.create_future()
    readable = loop.create_future()

    loop.call_soon(log.append, "soon")
    loop.call_later(0.0001, later_fired.set_result, "later")
    loop.call_later(3600, log.append, "never")  # still pending when the loop closes
    loop.call_later(0.0001, log.append, "cancelled").cancel()
    task = loop.create_task(small_task(i))

    rsock, wsock = socket.socketpair()
    try:
        rsock.setblocking(False)

        def on_readable():
            loop.remove_reader(rsock.fileno())
            readable.set_result(rsock.recv(16))

        loop.add_reader(rsock.fileno(), on_readable)
        wsock.send(b"ping")
        data = await readable
    finally:
        rsock.close()
        wsock.close()

    executor_result = None
    if i % 100 == 0:
        executor_result = await loop.run_in_executor(None, sum, (i, 1))

    results = (await task, await later_fired, data, log)
    expected = (i * 2, "later", b"ping", ["soon"])
    if results != expected:
        raise AssertionError(f"cycle {i}: {results!r} != {expected!r}")
    if i % 100 == 0 and executor_result != i + 1:
        raise AssertionError(f"cycle {i}: run_in_executor returned {executor_result!r}")


def one_cycle(i):
    """One create/run/close lifecycle; returns a weakref to the (closed) loop."""
    loop = ferroloop.new_event_loop()
    try:
        loop.run_until_complete(cycle_main(i))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
    return weakref.ref(loop)


def live_event_loops():
    return [o for o in gc.get_objects() if isinstance(o, ferroloop.EventLoop)]


def main():
    parser = argparse.ArgumentParser(description="ferroloop leak soak")
    parser.add_argument("--short", action="store_true", help="1,000 cycles instead of 10,000")
    parser.add_argument("--cycles", type=int, help="number of cycles (overrides --short)")
    parser.add_argument("--fd-tolerance", type=int, default=2,
                        help="extra open fds allowed after the warm-up (default 2)")
    parser.add_argument("--rss-tolerance-mb", type=float, default=4.0,
                        help="RSS growth allowed after the warm-up, MiB (default 4)")
    args = parser.parse_args()
    cycles = args.cycles or (1_000 if args.short else 10_000)
    warmup = max(50, cycles // 10)
    sample_every = max(1, (cycles - warmup) // 10)

    print(f"soak: {cycles:,} loop cycles (warm-up {warmup}), ferroloop {ferroloop.__version__}, "
          f"python {sys.version.split()[0]}")
    t0 = time.perf_counter()
    start_fds, start_rss = fd_count(), rss_bytes()
    refs = []
    needed_gc = 0  # loops not freed by reference counting alone (kept by a cycle)
    base_fds = base_rss = None
    samples = []
    for i in range(cycles):
        ref = one_cycle(i)
        if ref() is not None:
            needed_gc += 1
            refs.append(ref)
        if i + 1 == warmup:
            gc.collect()
            base_fds, base_rss = fd_count(), rss_bytes()
        elif i + 1 > warmup and (i + 1 - warmup) % sample_every == 0:
            samples.append((i + 1, fd_count(), rss_bytes()))
    gc.collect()
    end_fds, end_rss = fd_count(), rss_bytes()
    elapsed = time.perf_counter() - t0

    mib = 1024 * 1024
    print(f"  before: {start_fds} fds, RSS {start_rss / mib:.1f} MiB")
    print(f"  after warm-up: {base_fds} fds, RSS {base_rss / mib:.1f} MiB")
    print("  samples (cycle: fds, RSS MiB): "
          + ", ".join(f"{c}: {f}, {r / mib:.1f}" for c, f, r in samples))
    print(f"  end: {end_fds} fds, RSS {end_rss / mib:.1f} MiB; {elapsed:.1f}s "
          f"({elapsed / cycles * 1e3:.2f} ms/cycle)")

    failures = []
    fd_growth = end_fds - base_fds
    rss_growth = end_rss - base_rss
    per_cycle = rss_growth / max(1, cycles - warmup)
    print(f"  fd growth after warm-up: {fd_growth:+d} (tolerance {args.fd_tolerance})")
    print(f"  RSS growth after warm-up: {rss_growth / mib:+.2f} MiB "
          f"({per_cycle:+.0f} B/cycle; tolerance {args.rss_tolerance_mb} MiB)")
    if fd_growth > args.fd_tolerance:
        failures.append(f"fd leak: {fd_growth} more fds after {cycles - warmup} cycles")
    if rss_growth > args.rss_tolerance_mb * mib:
        failures.append(f"memory leak: RSS grew {rss_growth / mib:.2f} MiB "
                        f"({per_cycle:.0f} B/cycle)")

    # The cycle test: after gc.collect() no loop may survive.
    alive_refs = sum(1 for r in refs if r() is not None)
    alive_objs = live_event_loops()
    print(f"  loops freed by refcount alone: {cycles - needed_gc}/{cycles}; "
          f"after gc.collect(): {alive_refs} weakref(s) alive, "
          f"{len(alive_objs)} EventLoop object(s) in gc.get_objects()")
    if alive_refs or alive_objs:
        failures.append(f"{max(alive_refs, len(alive_objs))} EventLoop object(s) still alive "
                        "after gc.collect()")
        for obj in alive_objs[:3]:
            kinds = sorted({type(r).__name__ for r in gc.get_referrers(obj)
                            if r is not alive_objs and not isinstance(r, type(sys._getframe()))})
            print(f"    alive: {obj!r}, referrers: {kinds}")

    if failures:
        for f in failures:
            print(f"FAIL {f}")
        return 1
    print("OK   no fd, memory or loop leak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
