"""Calls that look at what a pool call sees (its task, its context, cancellation): imported by
name in pool workers; test_pool_calls.py runs each one through the pool and as a task of its
own on asyncio's loop, and expects the same outcome."""

from __future__ import annotations

import asyncio
import contextvars
import time
import types

var = contextvars.ContextVar("var", default="unset")


async def context_isolated(tag):
    """Sets a variable; a later call in the same worker must not see it."""
    before = var.get()
    var.set(tag)
    await asyncio.sleep(0)
    return before, var.get()


def context_isolated_sync(tag):
    """As context_isolated, for a plain function."""
    before = var.get()
    var.set(tag)
    return before, var.get()


async def task_seen(_):
    """current_task() is a Task in the first step and after a suspension; no cancellation is
    pending at the start."""
    first = asyncio.current_task()
    pending = first.cancelling()
    await asyncio.sleep(0)
    later = asyncio.current_task()
    return isinstance(first, asyncio.Task), isinstance(later, asyncio.Task), pending


async def timeout_first_step(delay):
    """asyncio.timeout entered in the first step, expiring."""
    try:
        async with asyncio.timeout(delay):
            await asyncio.sleep(5)
    except TimeoutError:
        return "timed out", asyncio.current_task().cancelling()
    return "not timed out"


async def timeout_not_reached(delay):
    async with asyncio.timeout(delay):
        await asyncio.sleep(0)
    return "done", asyncio.current_task().cancelling()


async def taskgroup_first_step(n):
    async def child(i):
        await asyncio.sleep(0.001 * i)
        return i

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(child(i)) for i in range(n)]
    return sum(t.result() for t in tasks)


async def taskgroup_failing(_):
    async def bad():
        await asyncio.sleep(0)
        raise KeyError("child")

    async def long():
        await asyncio.sleep(5)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(long())
        tg.create_task(bad())


async def self_cancel_sync(x):
    """Cancels its own task and returns without waiting: ends cancelled."""
    asyncio.current_task().cancel()
    return x


async def self_cancel_after_wait(x):
    await asyncio.sleep(0)
    asyncio.current_task().cancel()
    return x


async def self_cancel_swallowed(x):
    """Cancels its own task, catches the CancelledError and returns: ends with its value."""
    asyncio.current_task().cancel()
    try:
        await asyncio.sleep(1)
    except asyncio.CancelledError:
        return "swallowed", x
    return "not cancelled", x


async def cancel_uncancel(x):
    """cancel() then uncancel() on its own task: on 3.11 and 3.12 the request is still
    delivered (the task ends cancelled), on 3.13 it is taken back."""
    task = asyncio.current_task()
    task.cancel()
    task.uncancel()
    return x


async def cancel_then_raise(x):
    """Cancels its own task, then raises: a task ends with the exception."""
    asyncio.current_task().cancel()
    raise ValueError(f"raised {x}")


async def awaits_cancelled_future(_):
    fut = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(fut.cancel)
    await fut


def returns_future(x):
    """A plain function that returns a future: awaited."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.call_soon(fut.set_result, ("future", x))
    return fut


class Awaitable:
    def __init__(self, x):
        self.x = x

    def __await__(self):
        yield from asyncio.sleep(0).__await__()
        return "awaitable", self.x


def returns_awaitable(x):
    return Awaitable(x)


@types.coroutine
def generator_coroutine(x):
    yield from asyncio.sleep(0).__await__()
    return "generator", x


def returns_list(x):
    """A plain function whose value is iterable (not awaitable): returned as it is."""
    return [x, x]


async def raises_first_step(x):
    raise ValueError(f"first step {x}")


async def raises_later(x):
    await asyncio.sleep(0)
    raise ValueError(f"later {x}")


async def many_steps(n):
    for _ in range(n):
        await asyncio.sleep(0)
    return n


async def wait_for_cancel(path):
    """Writes ``path`` when started; swallows a cancellation and returns."""
    with open(path, "w") as f:
        f.write("started")
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        return "swallowed"
    return "finished"


#: (function, argument): each is run as a pool call and as a task of its own
CASES = [
    (context_isolated, "a"),
    (context_isolated_sync, "b"),
    (task_seen, None),
    (timeout_first_step, 0.01),
    (timeout_not_reached, 5),
    (taskgroup_first_step, 4),
    (taskgroup_failing, None),
    (self_cancel_sync, 1),
    (task_seen, None),  # the runner that ran self_cancel_sync left no cancellation behind
    (self_cancel_after_wait, 2),
    (self_cancel_swallowed, 3),
    (task_seen, None),
    (cancel_uncancel, 10),
    (task_seen, None),
    (cancel_then_raise, 11),
    (many_steps, 3),
    (awaits_cancelled_future, None),
    (returns_future, 4),
    (returns_awaitable, 5),
    (generator_coroutine, 6),
    (returns_list, 7),
    (raises_first_step, 8),
    (raises_later, 9),
    (many_steps, 50),
    (context_isolated, "c"),
]


async def exit_now(code):
    raise SystemExit(code)


async def exit_later(code):
    await asyncio.sleep(0)
    raise SystemExit(code)


class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("no str for you")


async def raise_bad_str(_):
    raise BadStr()


def busy(ms):
    """A CPU-bound call (no await) of about ``ms`` milliseconds."""
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass
    return ms


async def late_by(delay):
    """How late a timer of ``delay`` seconds fires in this worker."""
    start = time.perf_counter()
    await asyncio.sleep(delay)
    return time.perf_counter() - start - delay


def eager_factory():
    """An initializer: the worker's loop starts tasks eagerly (3.12+; a wrapping factory
    on 3.11)."""
    loop = asyncio.get_running_loop()
    factory = getattr(asyncio, "eager_task_factory", None)
    if factory is None:
        def factory(loop, coro, **kwargs):
            return asyncio.Task(coro, loop=loop, **kwargs)
    loop.set_task_factory(factory)
