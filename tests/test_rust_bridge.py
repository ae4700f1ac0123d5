"""Rust futures on the Python loop (issue 6, item 2): ``ferroloop._native.rust_sleep`` and
``rust_echo`` spawn futures written against the engine crate's Rust API on the very loop
thread that runs the Python coroutines, and hand back ``asyncio.Future``s.

These are ferroloop's own extension points, so the tests run on ferroloop only.
"""

import asyncio
import gc
import threading
import time
import weakref

import pytest

import ferroloop
from ferroloop import _native


@pytest.fixture
def rloop():
    loop = ferroloop.new_event_loop()
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    yield loop
    loop.close()
    assert errors == []


def test_rust_sleep_resolves_with_its_result(rloop):
    async def main():
        t0 = time.monotonic()
        v = await _native.rust_sleep(rloop, 0.02, "slept")
        return v, time.monotonic() - t0

    v, took = rloop.run_until_complete(main())
    assert v == "slept"
    assert 0.02 <= took < 1.0


def test_rust_tasks_interleave_with_python_tasks_on_one_thread(rloop):
    steps = 0
    seen = []  # the spinner's step count when each Rust future resolved

    async def spinner():
        nonlocal steps
        while True:
            steps += 1
            await asyncio.sleep(0)

    async def main():
        spin = asyncio.create_task(spinner())
        await asyncio.sleep(0)
        # many Rust sleeps at once, resolving over 40 ms; Python keeps running meanwhile
        futs = [_native.rust_sleep(rloop, 0.01 * (i % 5), i) for i in range(200)]
        for f in futs:
            f.add_done_callback(lambda _: seen.append(steps))
        results = await asyncio.gather(*futs)
        spin.cancel()
        return results

    results = rloop.run_until_complete(main())
    assert results == list(range(200))
    # the Python task stepped between the first Rust completions and the last ones
    assert seen[-1] > seen[0], seen
    assert rloop._rust_task_count() == 0


class Marker:
    pass


def test_cancelling_the_python_future_drops_the_rust_future(rloop):
    async def main():
        m = Marker()
        alive = weakref.ref(m)
        fut = _native.rust_sleep(rloop, 30, m)  # the Rust future holds the result object
        del m
        await asyncio.sleep(0.01)
        assert rloop._rust_task_count() == 1
        assert alive() is not None
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
        await asyncio.sleep(0)  # the done callback cancels the Rust task: its future is dropped
        assert alive() is None
        await asyncio.sleep(0)  # and the next Rust turn frees its slot
        return rloop._rust_task_count()

    assert rloop.run_until_complete(main()) == 0


def test_wait_for_timeout_cancels_the_rust_task(rloop):
    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(_native.rust_sleep(rloop, 30), 0.01)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return rloop._rust_task_count()

    assert rloop.run_until_complete(main()) == 0


def test_cancelling_on_the_rust_side_cancels_the_python_future(rloop):
    async def main():
        t0 = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await _native.rust_sleep(rloop, 30, rust_cancel_after=0.01)
        return time.monotonic() - t0

    assert rloop.run_until_complete(main()) < 5
    assert rloop._rust_task_count() == 0


def test_closing_the_loop_drops_the_rust_futures_and_leaves_the_python_future_pending():
    loop = ferroloop.new_event_loop()
    m = Marker()
    alive = weakref.ref(m)
    fut = _native.rust_sleep(loop, 30, m)
    del m
    loop.run_until_complete(asyncio.sleep(0.01))
    assert loop._rust_task_count() == 1
    loop.close()
    assert alive() is None
    assert not fut.done()  # as asyncio leaves any future pending at close
    assert loop._rust_task_count() == 0
    with pytest.raises(RuntimeError, match="closed"):
        _native.rust_sleep(loop, 1)


def test_rust_echo_client_against_a_python_server(rloop):
    async def handle(reader, writer):
        data = await reader.read()  # to EOF: the Rust client half-closes
        writer.write(data[::-1])
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        payload = bytes(range(256)) * 4096  # 1 MiB: several reads and writes
        results = await asyncio.gather(*(_native.rust_echo(rloop, "127.0.0.1", port, payload) for _ in range(4)))
        server.close()
        await server.wait_closed()
        return payload, results

    payload, results = rloop.run_until_complete(main())
    assert all(r == payload[::-1] for r in results)


def test_rust_echo_connection_refused_is_python_error(rloop):
    s = __import__("socket").socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()

    async def main():
        with pytest.raises(ConnectionRefusedError):
            await _native.rust_echo(rloop, "127.0.0.1", port, b"x")

    rloop.run_until_complete(main())


def test_wake_from_a_rust_thread_pool_reaches_a_blocked_loop(rloop):
    # the Python loop sleeps in its poll; the Rust sleep's timer must bound that poll
    async def main():
        t0 = time.monotonic()
        await _native.rust_sleep(rloop, 0.05)
        return time.monotonic() - t0

    took = rloop.run_until_complete(main())
    assert 0.05 <= took < 0.5


def test_bad_arguments():
    other = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError, match="ferroloop event loop"):
            _native.rust_sleep(other, 0.1)
    finally:
        other.close()
    loop = ferroloop.new_event_loop()
    try:
        with pytest.raises(ValueError, match="invalid delay"):
            _native.rust_sleep(loop, -1)
    finally:
        loop.close()


def test_loop_on_another_thread():
    out = []

    def run():
        loop = ferroloop.new_event_loop()
        try:
            out.append(loop.run_until_complete(_native.rust_sleep(loop, 0.01, threading.get_ident())))
        finally:
            loop.close()

    th = threading.Thread(target=run)
    th.start()
    th.join()
    assert out and out[0] == th.ident


def test_no_leak_across_many_bridged_futures(rloop):
    async def main():
        for _ in range(3):
            await asyncio.gather(*(_native.rust_sleep(rloop, 0, i) for i in range(2000)))

    rloop.run_until_complete(main())
    gc.collect()
    before = len(gc.get_objects())
    rloop.run_until_complete(main())
    gc.collect()
    assert len(gc.get_objects()) - before < 200


def _epoll_fds():
    import os

    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventpoll]":
                n += 1
        except OSError:
            pass
    return n


def test_rust_tasks_run_on_the_loops_own_scheduler_one_epoll(rloop):
    # issue 14: a Rust task is an entry of the Python loop's scheduler; there is no second
    # loop (and no second epoll) nested in it. (The collector is kept out of the count: it
    # could close a forgotten loop of another test meanwhile.)
    async def main():
        return await asyncio.gather(
            _native.rust_sleep(rloop, 0.01, "a"), _native.rust_sleep(rloop, 0, "b")
        )

    gc.collect()
    gc.disable()
    try:
        before = _epoll_fds()
        assert rloop.run_until_complete(main()) == ["a", "b"]
        after = _epoll_fds()
    finally:
        gc.enable()
    assert after == before


def test_a_rust_task_runs_in_the_turn_it_was_queued(rloop):
    # queued by the call, run in the next turn's run phase beside the handles queued with
    # it: after one turn the zero-delay Rust sleep has resolved its future
    order = []
    rloop.call_soon(order.append, "before")
    fut = _native.rust_sleep(rloop, 0, "rust")
    fut.add_done_callback(lambda f: order.append(f.result()))
    rloop.call_soon(order.append, "after")
    rloop._run_once()
    assert fut.done()
    assert order == ["before", "after"]  # the future's callbacks run next turn
    rloop._run_once()
    assert order == ["before", "after", "rust"]
