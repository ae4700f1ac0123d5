"""The pool worker's core in this process, without worker processes: every message in, every
result out, and nothing kept alive afterwards (the calls' functions, arguments, results,
coroutines and contexts all go through `_native.CallQueue`, so a reference it leaked would
keep them alive). On asyncio's loop and on ferroloop's."""

import asyncio
import gc
import pickle
import weakref

import pytest

import ferroloop
from ferroloop import _pool_wire as wire
from ferroloop._pool_worker import WorkerCore

LOOPS = {"asyncio": asyncio.new_event_loop, "ferroloop": ferroloop.new_event_loop}


class Token:
    """An argument and a result whose lifetime the test follows."""

    alive: "weakref.WeakSet[Token]" = weakref.WeakSet()

    def __init__(self, n):
        self.n = n
        Token.alive.add(self)

    def __reduce__(self):
        return (Token, (self.n,))


async def echo(token):
    return token


async def wait_echo(token):
    await asyncio.sleep(0)
    return token


def echo_sync(token):
    return token


async def fail(token):
    raise ValueError(f"bad {token.n}")


async def wait_forever(token):
    await asyncio.sleep(3600)


async def self_cancel(token):
    asyncio.current_task().cancel()
    return token


class Worker:
    """A WorkerCore fed pickled batches as the parent sends them; collects what it sends."""

    def __init__(self, loop, concurrency):
        self.results = {}
        self.errors = {}
        self.core = WorkerCore(loop, concurrency, self._on_send)
        self.next_id = 0

    def _on_send(self, message):
        message = pickle.loads(wire.frame(message)[wire.HEADER.size:])  # as it crosses
        assert message[0] == wire.OP_RESULTS
        _, runs, payload, errors = message
        values = iter(pickle.loads(payload))
        for first, count in runs:
            for cid in range(first, first + count):
                self.results[cid] = next(values)
        for cid, info in errors:
            self.errors[cid] = info[0]

    def call(self, fn, args):
        first = self.next_id
        self.next_id += len(args)
        payload = pickle.dumps((fn, args), wire.PICKLE_PROTOCOL)
        self.core.on_message((wire.OP_CALLS, [(first, len(args), wire.KIND_ONE, payload)]))
        return list(range(first, first + len(args)))

    async def settle(self, ids):
        for _ in range(2000):
            if all(i in self.results or i in self.errors for i in ids):
                return
            await asyncio.sleep(0.001)
        raise AssertionError("calls did not finish")


@pytest.mark.parametrize("loop_name", list(LOOPS))
def test_every_call_answers_once_and_nothing_stays_alive(loop_name):
    async def main():
        w = Worker(asyncio.get_running_loop(), concurrency=4)
        for _ in range(3):
            quick = w.call(echo, [Token(i) for i in range(600)])
            sync = w.call(echo_sync, [Token(i) for i in range(300)])
            waiting = w.call(wait_echo, [Token(i) for i in range(50)])
            failing = w.call(fail, [Token(i) for i in range(20)])
            selfc = w.call(self_cancel, [Token(i) for i in range(5)])
            forever = w.call(wait_forever, [Token(i) for i in range(6)])  # 4 run, 2 queued
            await w.settle(quick + sync + waiting + failing + selfc)
            w.core.on_message((wire.OP_CANCEL, forever))
            await w.settle(forever)
            assert [w.results[i].n for i in quick] == list(range(600))
            assert [w.results[i].n for i in sync] == list(range(300))
            assert [w.results[i].n for i in waiting] == list(range(50))
            assert {w.errors[i] for i in failing} == {"ValueError"}
            assert {w.errors[i] for i in selfc} == {"asyncio.exceptions.CancelledError"}
            assert {w.errors[i] for i in forever} == {"asyncio.exceptions.CancelledError"}
            assert not set(w.results) & set(w.errors)
        w.core.stop()
        await w.core.drain(grace=1.0)
        w.core.flush()
        return w

    w = asyncio.Runner(loop_factory=LOOPS[loop_name])
    with w as runner:
        worker = runner.run(main())
    del worker, w
    gc.collect()
    assert len(Token.alive) == 0, f"{len(Token.alive)} tokens kept alive"
    coros = [o for o in gc.get_objects() if asyncio.iscoroutine(o)
             and getattr(o, "__qualname__", "") in {"echo", "wait_echo", "fail", "wait_forever"}]
    assert coros == []


@pytest.mark.parametrize("loop_name", list(LOOPS))
def test_stop_cancels_running_and_queued_calls(loop_name):
    async def main():
        w = Worker(asyncio.get_running_loop(), concurrency=2)
        ids = w.call(wait_forever, [Token(i) for i in range(5)])
        await asyncio.sleep(0.01)
        w.core.stop()
        await w.core.drain(grace=1.0)
        w.core.flush()
        # the two running calls are reported cancelled; the queued ones are dropped (the
        # parent fails every call a stopping worker held)
        assert {w.errors[i] for i in ids[:2]} == {"asyncio.exceptions.CancelledError"}
        late = w.call(echo, [Token(9)])
        w.core.flush()
        assert w.errors[late[0]] == "asyncio.exceptions.CancelledError"

    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(main())
    gc.collect()
    assert len(Token.alive) == 0
