"""ferroloop demo: the asyncio tutorials' programs, run on ferroloop and checked.

    python examples/demo.py            # every program, then the sleep(0) table
    python examples/demo.py --n 1000000 --rounds 5

Each program prints one line, OK or FAIL; the exit status is 1 if any failed.
"""

import argparse
import asyncio
import concurrent.futures
import sys
import threading
import time

import ferroloop
from ferroloop import _bench


def _on_ferroloop():
    """Every program checks that it really runs on a ferroloop loop."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, ferroloop.EventLoop), f"running on {type(loop).__name__}"
    return loop


# -- 1. concurrent tasks: gather and create_task ---------------------------------------------


async def task(name, duration, log):
    log.append(f"{name} started")
    await asyncio.sleep(duration)  # stands for I/O
    log.append(f"{name} finished")
    return f"result of {name}"


async def gather_main():
    _on_ferroloop()
    log = []
    t0 = time.perf_counter()
    results = await asyncio.gather(task("A", 0.06, log), task("B", 0.03, log), task("C", 0.09, log))
    elapsed = time.perf_counter() - t0
    assert results == ["result of A", "result of B", "result of C"], results
    assert log[:3] == ["A started", "B started", "C started"], log
    assert log[3:] == ["B finished", "A finished", "C finished"], log
    assert elapsed < 0.17, f"not concurrent: {elapsed:.3f}s for 0.06+0.03+0.09"
    return f"gather ran A, B, C concurrently in {elapsed * 1000:.0f} ms, B finished first"


async def create_task_main():
    _on_ferroloop()
    log = []
    t0 = time.perf_counter()
    task1 = asyncio.create_task(task("hello", 0.03, log))
    task2 = asyncio.create_task(task("world", 0.06, log))
    log.append("main continues")  # the tasks have not started yet
    r1, r2 = await task1, await task2
    elapsed = time.perf_counter() - t0
    assert log[0] == "main continues" and log[-1] == "world finished", log
    assert (r1, r2) == ("result of hello", "result of world")
    assert elapsed < 0.085, f"not concurrent: {elapsed:.3f}s"
    return f"two background tasks took {elapsed * 1000:.0f} ms (max, not sum, of 30 and 60 ms)"


# -- 2. a Future resolved by another task ---------------------------------------------------


async def set_future_result(future):
    await asyncio.sleep(0.01)
    future.set_result("the future's result")


async def future_main():
    loop = _on_ferroloop()
    future = loop.create_future()
    setter = asyncio.create_task(set_future_result(future))
    result = await future
    await setter
    assert result == "the future's result", result
    return f"awaited a Future set by another task: {result!r}"


# -- 3. async iterator and async context manager -----------------------------------------------


class AsyncCounter:
    def __init__(self, stop):
        self.current = 0
        self.stop = stop

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.current < self.stop:
            await asyncio.sleep(0.001)
            self.current += 1
            return self.current - 1
        raise StopAsyncIteration


class AsyncResource:
    def __init__(self, log):
        self.log = log

    async def __aenter__(self):
        await asyncio.sleep(0.001)
        self.log.append("acquired")
        return self

    async def __aexit__(self, exc_type, exc, tb):
        await asyncio.sleep(0.001)
        self.log.append("released")

    async def use(self):
        await asyncio.sleep(0.001)
        self.log.append("used")


async def async_protocols_main():
    _on_ferroloop()
    items = [i async for i in AsyncCounter(5)]
    log = []
    async with AsyncResource(log) as resource:
        await resource.use()
    assert items == [0, 1, 2, 3, 4], items
    assert log == ["acquired", "used", "released"], log
    return f"async for -> {items}; async with -> {' / '.join(log)}"


# -- 4. a Queue: one producer, three consumers, cancelled at the end --------------------------


async def producer(queue, count):
    for i in range(count):
        await queue.put({"seq": i, "value": i * i})
        await asyncio.sleep(0.001)


async def consumer(queue, name, seen):
    while True:
        item = await queue.get()
        await asyncio.sleep(0.002)  # processing
        seen.append((name, item["seq"]))
        queue.task_done()


async def queue_main():
    _on_ferroloop()
    queue = asyncio.Queue(maxsize=10)
    seen = []
    consumers = [asyncio.create_task(consumer(queue, f"c{i}", seen)) for i in range(3)]
    await producer(queue, 60)
    await queue.join()
    for c in consumers:
        c.cancel()
    outcomes = await asyncio.gather(*consumers, return_exceptions=True)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes
    assert sorted(seq for _, seq in seen) == list(range(60)), seen
    busy = sorted({name for name, _ in seen})
    assert busy == ["c0", "c1", "c2"], f"not all consumers worked: {busy}"
    return f"60 items shared by consumers {busy}, all three cancelled"


# -- 5. run_in_executor: a thread pool and a process pool -------------------------------------


def blocking_io():
    time.sleep(0.05)
    return "io result"


def cpu_bound(n):
    # module level, so a process pool can pickle it by name
    return sum(i * i for i in range(n))


async def executor_main():
    loop = _on_ferroloop()
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor() as pool:
        results = await asyncio.gather(*[loop.run_in_executor(pool, blocking_io) for _ in range(4)])
    threads_elapsed = time.perf_counter() - t0
    assert results == ["io result"] * 4, results
    assert threads_elapsed < 0.18, f"thread pool not concurrent: {threads_elapsed:.3f}s"
    default = await loop.run_in_executor(None, blocking_io)
    assert default == "io result"
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        squares = await asyncio.gather(
            *[loop.run_in_executor(pool, cpu_bound, n) for n in (10**5, 10**4)]
        )
    assert squares == [cpu_bound(10**5), cpu_bound(10**4)], squares
    return (f"4 blocking calls in a thread pool took {threads_elapsed * 1000:.0f} ms; "
            f"process pool computed {squares[0]}")


# -- 6. calling coroutines from synchronous code in other threads -----------------------------


async def async_function(x):
    await asyncio.sleep(0.01)
    return f"async result {x}"


def sync_function_new_loop(x):
    """The tutorial's sync wrapper: a new event loop of its own, in whatever thread."""
    loop = ferroloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(async_function(x))
    finally:
        asyncio.set_event_loop(None)
        loop.close()


async def threadsafe_main():
    loop = _on_ferroloop()
    results = {}

    def sync_caller():
        # synchronous code in another thread, borrowing the running loop
        fut = asyncio.run_coroutine_threadsafe(async_function("threadsafe"), loop)
        results["threadsafe"] = fut.result(timeout=5)

    def own_loop_caller():
        results["own loop"] = sync_function_new_loop("own loop")

    threads = [threading.Thread(target=sync_caller), threading.Thread(target=own_loop_caller)]
    for t in threads:
        t.start()
    await asyncio.to_thread(lambda: [t.join(5) for t in threads])
    assert results == {"threadsafe": "async result threadsafe",
                       "own loop": "async result own loop"}, results
    return ("run_coroutine_threadsafe from a thread -> 'async result threadsafe'; "
            "a thread's own ferroloop loop -> 'async result own loop'")


# -- running the programs ---------------------------------------------------------------------


def run_with_runner(coro_fn):
    with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
        return runner.run(coro_fn())


def run_old_style(coro_fn):
    # the older tutorial style: an explicit loop and run_until_complete
    loop = ferroloop.new_event_loop()
    try:
        return loop.run_until_complete(coro_fn())
    finally:
        loop.close()


PROGRAMS = [
    ("gather", lambda: ferroloop.run(gather_main())),
    ("create_task", lambda: run_with_runner(create_task_main)),
    ("Future", lambda: ferroloop.run(future_main())),
    ("async for / async with", lambda: run_old_style(async_protocols_main)),
    ("Queue + 3 consumers", lambda: ferroloop.run(queue_main())),
    ("run_in_executor", lambda: ferroloop.run(executor_main())),
    ("threads", lambda: ferroloop.run(threadsafe_main())),
    ("sync caller, main thread", lambda: sync_function_new_loop("main") == "async result main"
     and "a new ferroloop loop in the main thread ran the coroutine"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="sleep(0) steps (default 200,000)")
    parser.add_argument("--rounds", type=int, default=3, help="table rounds (default 3)")
    parser.add_argument("--no-bench", action="store_true", help="skip the sleep(0) table")
    args = parser.parse_args()

    failures = 0
    for name, program in PROGRAMS:
        t0 = time.perf_counter()
        try:
            detail = program()
            ok = bool(detail)
            if not ok:
                detail = "returned a wrong result"
        except BaseException as exc:  # noqa: BLE001 - report and keep going
            if isinstance(exc, KeyboardInterrupt):
                raise
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        failures += not ok
        print(f"{'OK  ' if ok else 'FAIL'} {name:<26} {detail} [{time.perf_counter() - t0:.2f}s]",
              flush=True)

    if not args.no_bench:
        specs, skipped = _bench.available_loops()
        print()
        print(_bench.versions_line(specs))
        for loop_name, reason in skipped:
            print(f"(skipping {loop_name}: {reason})")
        results = _bench.compare_sleep0(args.n, args.rounds, specs)
        print(_bench.sleep0_table(results, args.n))

    print()
    print(f"{len(PROGRAMS) - failures}/{len(PROGRAMS)} programs OK")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
