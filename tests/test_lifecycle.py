"""run_forever / stop / run_until_complete / close, and what propagates out of them."""

import asyncio
import threading
import time

import pytest

from loop_helpers import run_briefly


def test_initial_state(loop):
    assert not loop.is_running()
    assert not loop.is_closed()
    assert isinstance(loop, asyncio.AbstractEventLoop)


def test_is_running_inside(loop):
    seen = []
    loop.call_soon(lambda: seen.append((loop.is_running(), asyncio.get_running_loop() is loop)))
    run_briefly(loop)
    assert seen == [(True, True)]
    assert not loop.is_running()
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def test_run_until_complete_result(loop):
    async def main(x):
        await asyncio.sleep(0)
        return x * 2

    assert loop.run_until_complete(main(21)) == 42
    assert not loop.is_running()


def test_run_until_complete_future(loop):
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "ok")
    assert loop.run_until_complete(fut) == "ok"


def test_run_until_complete_exception(loop):
    async def main():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        loop.run_until_complete(main())


def test_run_until_complete_stopped_early(loop):
    async def main():
        loop.stop()
        await asyncio.sleep(0.5)

    task = loop.create_task(main())
    with pytest.raises(RuntimeError, match="Event loop stopped before Future completed"):
        loop.run_until_complete(task)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)


def test_run_until_complete_foreign_future(loop_factory, loop):
    other = loop_factory()
    try:
        fut = other.create_future()
        with pytest.raises(ValueError):
            loop.run_until_complete(fut)
    finally:
        other.close()


def test_run_until_complete_non_awaitable(loop):
    with pytest.raises(TypeError):
        loop.run_until_complete(42)


def test_run_forever_stop(loop):
    out = []
    loop.call_soon(out.append, 1)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == [1]
    assert not loop.is_running()
    # run again
    loop.call_soon(out.append, 2)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == [1, 2]


def test_stop_before_run_forever_runs_one_iteration(loop):
    out = []

    def cb():
        out.append("first")
        loop.call_soon(out.append, "second")

    loop.call_soon(cb)
    loop.stop()
    loop.run_forever()
    assert out == ["first"]
    loop.stop()
    loop.run_forever()
    assert out == ["first", "second"]


def test_stop_twice_same_as_once(loop):
    out = []
    loop.call_soon(out.append, 1)
    loop.stop()
    loop.stop()
    loop.run_forever()
    loop.call_soon(out.append, 2)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == [1, 2]


def test_stop_with_pending_io_polls_without_blocking(loop):
    # stop() set before run_forever: one turn, even with a far timer
    h = loop.call_later(30, lambda: None)
    loop.stop()
    t0 = time.monotonic()
    loop.run_forever()
    assert time.monotonic() - t0 < 1
    h.cancel()


def test_close(loop):
    loop.close()
    assert loop.is_closed()
    loop.close()  # idempotent
    assert loop.is_closed()


def test_close_drops_pending_callbacks(loop):
    out = []
    loop.call_soon(out.append, 1)
    loop.call_later(0, out.append, 2)
    loop.close()
    assert out == []


@pytest.mark.parametrize(
    "call",
    [
        lambda lp: lp.call_soon(lambda: None),
        lambda lp: lp.call_later(1, lambda: None),
        lambda lp: lp.call_at(1, lambda: None),
        lambda lp: lp.call_soon_threadsafe(lambda: None),
        lambda lp: lp.run_forever(),
        lambda lp: lp.run_until_complete(lp.create_future()),
    ],
    ids=["call_soon", "call_later", "call_at", "call_soon_threadsafe", "run_forever",
         "run_until_complete"],
)
def test_closed_loop_raises(loop, call):
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        call(loop)


def test_closed_loop_run_until_complete_coroutine(loop):
    loop.close()

    async def main():
        pass

    coro = main()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_until_complete(coro)
    coro.close()


def test_close_running_loop_raises(loop):
    errors = []

    def cb():
        try:
            loop.close()
        except RuntimeError as e:
            errors.append(str(e))
        loop.stop()

    loop.call_soon(cb)
    loop.run_forever()
    assert errors == ["Cannot close a running event loop"]
    assert not loop.is_closed()


def test_run_forever_reentrant_raises(loop):
    errors = []

    def cb():
        try:
            loop.run_forever()
        except RuntimeError as e:
            errors.append(str(e))
        loop.stop()

    loop.call_soon(cb)
    loop.run_forever()
    assert len(errors) == 1
    assert errors[0].lower().rstrip(".") == "this event loop is already running"


def test_second_loop_in_same_thread_raises(loop_factory, loop):
    other = loop_factory()
    errors = []

    def cb():
        try:
            other.run_forever()
        except RuntimeError as e:
            errors.append(str(e))
        loop.stop()

    loop.call_soon(cb)
    loop.run_forever()
    other.close()
    assert errors == ["Cannot run the event loop while another loop is running"]


def test_loops_on_non_main_threads(loop_factory):
    results = {}
    barrier = threading.Barrier(4)

    def worker(i):
        lp = loop_factory()
        try:
            barrier.wait(5)  # all alive at once: thread idents are distinct

            async def main():
                await asyncio.sleep(0.01)
                return threading.get_ident(), asyncio.get_running_loop() is lp

            results[i] = lp.run_until_complete(main())
            barrier.wait(5)
        finally:
            lp.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(results) == 4
    assert len({tid for tid, _ in results.values()}) == 4
    assert all(ok for _, ok in results.values())


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_callback_propagates_run_forever(loop, exc_type):
    out = []

    def bad():
        raise exc_type()

    loop.call_soon(bad)
    loop.call_soon(out.append, "after")
    with pytest.raises(exc_type):
        loop.run_forever()
    assert not loop.is_running()
    # the loop is usable afterwards; the callback after the failing one still runs
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == ["after"]
    assert loop.run_until_complete(asyncio.sleep(0, result=5)) == 5


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_callback_propagates_run_until_complete(loop, exc_type):
    def bad():
        raise exc_type()

    async def main():
        loop.call_soon(bad)
        await asyncio.sleep(0.05)
        return "done"

    task = loop.create_task(main())
    with pytest.raises(exc_type):
        loop.run_until_complete(task)
    assert not loop.is_running()
    assert asyncio.events._get_running_loop() is None
    assert loop.run_until_complete(task) == "done"


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_task_propagates(loop, exc_type):
    async def main():
        await asyncio.sleep(0)
        raise exc_type()

    with pytest.raises(exc_type):
        loop.run_until_complete(main())
    assert loop.run_until_complete(asyncio.sleep(0, result=1)) == 1


def test_base_exception_in_timer_propagates(loop):
    def bad():
        raise KeyboardInterrupt

    loop.call_later(0.01, bad)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    run_briefly(loop)


def test_running_loop_reset_after_run(loop):
    loop.run_until_complete(asyncio.sleep(0))
    assert asyncio.events._get_running_loop() is None


def test_shutdown_asyncgens(loop):
    state = []

    async def agen():
        try:
            state.append("start")
            yield 1
            yield 2
        finally:
            state.append("finalized")

    async def main():
        g = agen()
        assert await g.__anext__() == 1
        return g

    g = loop.run_until_complete(main())
    assert state == ["start"]
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert state == ["start", "finalized"]
    del g


def test_shutdown_asyncgens_with_await_in_finally(loop):
    state = []

    async def agen():
        try:
            yield 1
        finally:
            await asyncio.sleep(0)
            state.append("cleaned")

    holder = []

    async def main():
        g = agen()
        await g.__anext__()
        holder.append(g)

    loop.run_until_complete(main())
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert state == ["cleaned"]


def test_asyncgen_finalized_by_gc_on_loop(loop):
    state = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            state.append(asyncio.get_running_loop() is loop)

    async def main():
        g = agen()
        await g.__anext__()
        del g
        import gc

        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert state == [True]


def test_asyncgen_after_shutdown_warns(loop):
    async def agen():
        yield 1

    loop.run_until_complete(loop.shutdown_asyncgens())

    async def main():
        g = agen()
        with pytest.warns(ResourceWarning, match="after loop.shutdown_asyncgens"):
            await g.__anext__()
        await g.aclose()

    loop.run_until_complete(main())


def test_shutdown_default_executor(loop):
    res = loop.run_until_complete(loop.run_in_executor(None, lambda: threading.get_ident()))
    assert res != threading.get_ident()
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match="shutdown"):
        loop.run_in_executor(None, lambda: None)


def test_shutdown_default_executor_without_executor(loop):
    loop.run_until_complete(loop.shutdown_default_executor())


def test_asyncio_run_style_teardown(loop):
    async def main():
        return 1

    assert loop.run_until_complete(main()) == 1
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()
    assert loop.is_closed()


def test_get_debug_set_debug(loop):
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_repr_mentions_state(loop):
    r = repr(loop)
    assert "running=False" in r and "closed=False" in r
