"""call_soon_threadsafe and run_coroutine_threadsafe from other threads."""

import asyncio
import concurrent.futures
import threading
import time

import pytest

from loop_helpers import run, run_briefly


def test_wakes_a_sleeping_loop(loop, other_thread):
    got = []

    def from_thread():
        time.sleep(0.05)
        loop.call_soon_threadsafe(lambda: (got.append(threading.get_ident()), loop.stop()))

    # a far timer keeps the loop asleep in its poll: only the wake-up can end the run
    far = loop.call_later(30, loop.stop)
    other_thread(from_thread)
    t0 = time.monotonic()
    loop.run_forever()
    assert time.monotonic() - t0 < 2
    assert got == [threading.get_ident()]
    far.cancel()


def test_wakes_loop_with_no_timers(loop, other_thread):
    async def main():
        fut = loop.create_future()

        def from_thread():
            time.sleep(0.02)
            loop.call_soon_threadsafe(fut.set_result, "done")

        other_thread(from_thread)
        return await fut

    assert run(loop, main()) == "done"


def test_args_and_context(loop, other_thread):
    import contextvars

    var = contextvars.ContextVar("v", default="d")
    ctx = contextvars.Context()
    ctx.run(var.set, "ctx")
    out = []

    def from_thread():
        loop.call_soon_threadsafe(lambda a, b: out.append((a, b, var.get())), 1, 2, context=ctx)
        loop.call_soon_threadsafe(loop.stop)

    other_thread(from_thread)
    loop.run_forever()
    assert out == [(1, 2, "ctx")]


def test_many_threads(loop):
    n_threads, per_thread = 8, 200
    results = []
    done = loop.create_future()
    barrier = threading.Barrier(n_threads)

    def add(item):
        results.append(item)
        if len(results) == n_threads * per_thread and not done.done():
            done.set_result(None)

    def worker(tid):
        barrier.wait()
        for i in range(per_thread):
            loop.call_soon_threadsafe(add, (tid, i))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    run(loop, done)
    for t in threads:
        t.join()
    assert len(results) == n_threads * per_thread
    # per-thread FIFO
    for tid in range(n_threads):
        assert [i for (t, i) in results if t == tid] == list(range(per_thread))


def test_from_loop_thread_before_run(loop):
    out = []
    loop.call_soon_threadsafe(out.append, 1)
    loop.call_soon_threadsafe(out.append, 2)
    run_briefly(loop)
    assert out == [1, 2]


def test_interleaved_with_call_soon_is_fifo(loop):
    out = []
    for i in range(10):
        if i % 2:
            loop.call_soon_threadsafe(out.append, i)
        else:
            loop.call_soon(out.append, i)
    run_briefly(loop)
    assert out == list(range(10))


def test_cancel_threadsafe_handle(loop):
    out = []
    h = loop.call_soon_threadsafe(out.append, 1)
    h.cancel()
    loop.call_soon_threadsafe(out.append, 2)
    run_briefly(loop)
    assert out == [2]


def test_closed_loop_raises(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.call_soon_threadsafe(lambda: None)


def test_run_coroutine_threadsafe(loop, other_thread):
    async def add(a, b):
        await asyncio.sleep(0.01)
        return a + b

    results = []

    def from_thread():
        fut = asyncio.run_coroutine_threadsafe(add(1, 2), loop)
        assert isinstance(fut, concurrent.futures.Future)
        results.append(fut.result(timeout=5))
        loop.call_soon_threadsafe(loop.stop)

    other_thread(from_thread)
    loop.run_forever()
    assert results == [3]


def test_run_coroutine_threadsafe_exception(loop, other_thread):
    async def boom():
        raise ZeroDivisionError

    results = []

    def from_thread():
        fut = asyncio.run_coroutine_threadsafe(boom(), loop)
        results.append(type(fut.exception(timeout=5)))
        loop.call_soon_threadsafe(loop.stop)

    other_thread(from_thread)
    loop.run_forever()
    assert results == [ZeroDivisionError]


def test_run_coroutine_threadsafe_cancel(loop, other_thread):
    started = threading.Event()
    state = []

    async def forever():
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            state.append("cancelled")
            raise

    def from_thread():
        fut = asyncio.run_coroutine_threadsafe(forever(), loop)
        assert started.wait(5)
        fut.cancel()
        try:
            fut.result(timeout=5)
        except concurrent.futures.CancelledError:
            state.append("future-cancelled")
        loop.call_soon_threadsafe(loop.stop)

    other_thread(from_thread)
    loop.run_forever()
    run_briefly(loop)
    assert "cancelled" in state and "future-cancelled" in state


def test_loop_running_in_other_thread(loop_factory):
    lp = loop_factory()
    started = threading.Event()

    def runner():
        asyncio.set_event_loop(lp)
        lp.call_soon(started.set)
        lp.run_forever()

    t = threading.Thread(target=runner)
    t.start()
    try:
        assert started.wait(5)
        fut = asyncio.run_coroutine_threadsafe(asyncio.sleep(0.01, result=7), lp)
        assert fut.result(timeout=5) == 7
        ev = threading.Event()
        lp.call_soon_threadsafe(ev.set)
        assert ev.wait(5)
    finally:
        lp.call_soon_threadsafe(lp.stop)
        t.join(5)
    assert not t.is_alive()
    lp.close()
