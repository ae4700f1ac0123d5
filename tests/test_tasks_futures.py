"""Futures and tasks on the loop: create_future/create_task, task factory, gather, cancel,
asyncio.timeout, TaskGroup, wait_for."""

import asyncio
import contextvars

import pytest

from loop_helpers import run, xfail_on


def test_create_future(loop):
    fut = loop.create_future()
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is loop
    assert not fut.done()
    loop.call_soon(fut.set_result, 5)
    assert loop.run_until_complete(fut) == 5


def test_future_callbacks_run_via_loop(loop):
    fut = loop.create_future()
    out = []
    fut.add_done_callback(lambda f: out.append(f.result()))
    fut.set_result(1)
    assert out == []  # scheduled with call_soon, not called synchronously
    loop.run_until_complete(asyncio.sleep(0))
    assert out == [1]


def test_create_task_name(loop):
    async def coro():
        return asyncio.current_task().get_name()

    t = loop.create_task(coro(), name="my-task")
    assert t.get_name() == "my-task"
    assert loop.run_until_complete(t) == "my-task"
    t2 = loop.create_task(coro())
    assert t2.get_name().startswith("Task-")
    loop.run_until_complete(t2)


def test_create_task_context(loop):
    var = contextvars.ContextVar("v", default="d")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in-ctx")

    async def coro():
        await asyncio.sleep(0)
        return var.get()

    t = loop.create_task(coro(), context=ctx)
    assert loop.run_until_complete(t) == "in-ctx"
    assert var.get() == "d"


def test_task_copies_context(loop):
    var = contextvars.ContextVar("v", default="d")

    async def child():
        var.set("child")

    async def main():
        var.set("parent")
        await loop.create_task(child())
        return var.get()

    assert run(loop, main()) == "parent"


def test_task_factory(loop):
    assert loop.get_task_factory() is None
    made = []

    def factory(lp, coro, **kwargs):
        made.append(lp)
        return asyncio.Task(coro, loop=lp, **kwargs)

    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory

    async def coro():
        return 1

    t = loop.create_task(coro(), name="n")
    assert made == [loop]
    assert t.get_name() == "n"
    assert loop.run_until_complete(t) == 1
    loop.set_task_factory(None)
    assert loop.get_task_factory() is None


def test_task_factory_not_callable(loop):
    with pytest.raises(TypeError):
        loop.set_task_factory(1)


def test_gather_many(loop):
    async def work(i):
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return i

    async def main():
        return await asyncio.gather(*(work(i) for i in range(2000)))

    assert run(loop, main()) == list(range(2000))


def test_gather_exceptions(loop):
    async def ok():
        return 1

    async def bad():
        raise ValueError("x")

    async def main():
        return await asyncio.gather(ok(), bad(), return_exceptions=True)

    res = run(loop, main())
    assert res[0] == 1 and isinstance(res[1], ValueError)


def test_cancel_task(loop):
    state = []

    async def sleeper():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            state.append("cancelled")
            raise

    async def main():
        t = loop.create_task(sleeper())
        await asyncio.sleep(0)
        t.cancel("why")
        with pytest.raises(asyncio.CancelledError):
            await t
        return t

    t = run(loop, main())
    assert t.cancelled()
    assert state == ["cancelled"]


def test_cancel_is_delivered_to_awaited_future(loop):
    async def main():
        fut = loop.create_future()
        t = loop.create_task(asyncio.wait_for(fut, None))
        await asyncio.sleep(0)
        t.cancel()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return fut.cancelled(), t.cancelled()

    assert run(loop, main()) == (True, True)


def test_timeout_expires(loop):
    async def main():
        t0 = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await asyncio.sleep(10)
        return loop.time() - t0

    dt = run(loop, main())
    assert 0.015 <= dt < 1


def test_timeout_not_expired(loop):
    async def main():
        async with asyncio.timeout(1) as cm:
            await asyncio.sleep(0)
        return cm.expired()

    assert run(loop, main()) is False


def test_timeout_at(loop):
    async def main():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout_at(loop.time() + 0.01):
                await asyncio.sleep(10)
        return True

    assert run(loop, main())


def test_task_group(loop):
    async def child(i):
        await asyncio.sleep(0.001 * i)
        return i

    async def main():
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(child(i)) for i in range(10)]
        return [t.result() for t in tasks]

    assert run(loop, main()) == list(range(10))


def test_task_group_error_cancels_siblings(loop):
    state = []

    async def slow():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            state.append("sibling-cancelled")
            raise

    async def bad():
        await asyncio.sleep(0.01)
        raise ValueError("bad")

    async def main():
        with pytest.raises(ExceptionGroup) as ei:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(slow())
                tg.create_task(bad())
        return ei.value

    eg = run(loop, main())
    assert [type(e) for e in eg.exceptions] == [ValueError]
    assert state == ["sibling-cancelled"]


def test_wait_for_timeout(loop):
    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 0.01)
        return await asyncio.wait_for(asyncio.sleep(0, result="ok"), 1)

    assert run(loop, main()) == "ok"


def test_wait_first_completed(loop):
    async def main():
        a = loop.create_task(asyncio.sleep(0.01, result="a"))
        b = loop.create_task(asyncio.sleep(10, result="b"))
        done, pending = await asyncio.wait({a, b}, return_when=asyncio.FIRST_COMPLETED)
        b.cancel()
        await asyncio.gather(b, return_exceptions=True)
        return done == {a}, pending == {b}

    assert run(loop, main()) == (True, True)


def test_shield(loop):
    async def main():
        inner = loop.create_task(asyncio.sleep(0.01, result=1))
        outer = asyncio.ensure_future(asyncio.shield(inner))
        await asyncio.sleep(0)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        return await inner

    assert run(loop, main()) == 1


def test_current_and_all_tasks(loop):
    async def main():
        me = asyncio.current_task()
        others = [loop.create_task(asyncio.sleep(0)) for _ in range(3)]
        tasks = asyncio.all_tasks()
        await asyncio.gather(*others)
        return me in tasks and all(o in tasks for o in others)

    assert run(loop, main())


def test_never_retrieved_exception_reported(loop, handler_calls):
    import gc

    async def bad():
        raise ValueError("unretrieved")

    t = loop.create_task(bad())
    loop.run_until_complete(asyncio.sleep(0.01))
    assert t.done()
    del t
    gc.collect()
    assert len(handler_calls) == 1
    ctx = handler_calls[0]
    assert isinstance(ctx["exception"], ValueError)
    assert ctx["message"] == "Task exception was never retrieved"


def test_debug_source_traceback_ends_at_the_create_task_call(loop):
    """In debug mode a task's `_source_traceback` ends with the line that called
    `create_task` (asyncio drops its own frame); a future's has the line that called
    `create_future` last or, on asyncio, just before asyncio's own `create_future` frame."""
    import sys

    async def child():
        pass

    async def main():
        loop.set_debug(True)
        try:
            task = loop.create_task(child()); task_line = sys._getframe().f_lineno  # noqa: E702
            fut = loop.create_future(); fut_line = sys._getframe().f_lineno  # noqa: E702
            await task
            fut.cancel()
        finally:
            loop.set_debug(False)
        last = task._source_traceback[-1]
        assert (last.name, last.lineno) == ("main", task_line)
        tail = [(f.name, f.lineno) for f in fut._source_traceback[-2:]]
        assert tail[-1] == ("main", fut_line) or (tail[0] == ("main", fut_line) and tail[1][0] == "create_future")

    run(loop, main())


@xfail_on("uvloop", "uvloop differs: the task factory gets context=None when no context is given")
def test_create_task_with_a_factory_name_and_context(loop):
    made = []

    def factory(lp, coro, **kwargs):
        made.append(kwargs)
        return asyncio.Task(coro, loop=lp, **kwargs)

    async def child():
        return 7

    async def main():
        loop.set_task_factory(factory)
        try:
            ctx = contextvars.copy_context()
            t1 = loop.create_task(child(), name="plain")
            t2 = loop.create_task(child(), name="with-context", context=ctx)
            assert (await t1, await t2) == (7, 7)
            assert (t1.get_name(), t2.get_name()) == ("plain", "with-context")
            assert made == [{}, {"context": ctx}]
        finally:
            loop.set_task_factory(None)

    run(loop, main())


def test_create_task_on_a_closed_loop_raises(loop):
    async def child():
        pass

    loop.close()
    coro = child()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.create_task(coro)
    coro.close()
