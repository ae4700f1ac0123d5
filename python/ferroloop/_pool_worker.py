"""A pool worker: one ferroloop loop running up to ``concurrency`` of the pool's calls at once.

``WorkerCore`` is the part every kind of worker shares (a local process here, a Dask worker in
``_pool_dask.py``): it takes the parent's messages (``_pool_wire``), runs the calls, cancels
the calls the parent cancels, and sends the results back in batches.

How calls run: up to ``concurrency`` *runner* tasks take the worker's queued calls one after
another (``_native.CallQueue.run``). A runner runs a call and, when the call makes a
coroutine, the coroutine's first step: a call that never waits finishes there, with no task of
its own and no loop turn, and the next call runs without going back to Python. A call that
suspends is awaited by its runner (its later steps through a ``_native.CallSteps``, inside the
call's context), and another runner takes the rest of the queue. So at most
``concurrency`` calls are in flight, as with a task per call, at a fraction of a task's cost.
What a task per call gave a call is kept: each call runs in its own copy of the context
(``contextvars`` set by one call are not seen by the next), ``asyncio.current_task()`` is a
task (its runner), so ``asyncio.timeout`` and ``TaskGroup`` work in any step, and the parent's
cancellation of one call cancels that call alone (its runner is cancelled while it awaits that
call, then uncancelled). docs/pool.md says what a call sees differently from a task of its own.

``process_main`` is a local worker process: it reads the parent's frames from one pipe and
writes its own to another, both through its loop's pipe transports. It stops on ``OP_STOP``,
on the end of its input pipe (the parent is gone: no worker outlives its pool) and on
SIGTERM; SIGINT is ignored (a Ctrl-C reaches every process of the terminal's group: the
parent decides how its workers stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import pickle
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from . import _compat, _native
from . import _pool_wire as wire

#: results sent at once, without waiting for the end of the loop turn, when this many are
#: ready (a batch of calls that finish in their first step would otherwise return in one
#: frame at the end, and the parent could not refill the worker while it works)
FLUSH_AT = 256

#: the longest a busy worker (calls waiting in its queue) holds results back to batch them
FLUSH_DELAY = 0.002

#: how long a stopping worker lets its cancelled calls finish before it exits anyway
STOP_GRACE = 2.0

#: the longest a runner runs queued calls before it gives the loop a turn (the timers of
#: waiting calls, the parent's messages: cancellations, more calls)
TURN_BUDGET = 0.001

#: the runner task's attribute that holds a cancellation request not delivered yet, where
#: ``uncancel()`` can leave one (3.11, 3.12; ``_compat``)
_MUST_CANCEL = _compat.TASK_MUST_CANCEL


class WorkerCore:
    """Runs the calls of one worker on the running loop; ``send`` takes a message tuple."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        concurrency: int,
        send: Callable[[tuple[Any, ...]], None],
    ) -> None:
        self._loop = loop
        self._concurrency = concurrency
        self._send = send
        #: calls not started yet, in order
        self._queue = _native.CallQueue()
        #: the runner tasks alive
        self._runners: set[asyncio.Task[None]] = set()
        #: a runner is made and has not started yet (it will take the queue)
        self._waking: asyncio.Task[None] | None = None
        #: suspended calls: id -> the runner awaiting it
        self._running: dict[int, asyncio.Task[None]] = {}
        #: suspended calls the parent cancelled (their runner is uncancelled after them)
        self._asked: set[int] = set()
        self._stopping = False
        # results: the lists stay the same objects (runners hold their `append`)
        self._out_ids: list[int] = []
        self._out_values: list[Any] = []
        self._out_errors: list[tuple[int, wire.ErrorInfo]] = []
        self._flush_scheduled = False
        self._flush_since = 0.0
        self.stopped: asyncio.Future[None] = loop.create_future()

    # -- messages from the parent -----------------------------------------------------------

    def on_message(self, message: tuple[Any, ...]) -> None:
        op = message[0]
        if op == wire.OP_CALLS:
            for first_id, count, kind, payload in message[1]:
                self._calls(first_id, count, kind, payload)
            self._wake()
        elif op == wire.OP_CANCEL:
            self._cancel(message[1])
        elif op == wire.OP_STOP:
            self.stop()
        else:
            raise RuntimeError(f"ferroloop.Pool worker: unknown message {op!r}")

    def _calls(self, first_id: int, count: int, kind: int, payload: bytes) -> None:
        try:
            fn, args = pickle.loads(payload)
        except BaseException as exc:
            info = wire.error_info(exc)
            for cid in range(first_id, first_id + count):
                self._error(cid, info)
            return
        if self._stopping:  # too late: cancelled, as the queued calls were
            info = wire.error_info(asyncio.CancelledError())
            for cid in range(first_id, first_id + count):
                self._error(cid, info)
            return
        self._queue.extend(first_id, fn, kind, args)

    def _cancel(self, ids: list[int]) -> None:
        left = set(ids)
        for cid in ids:
            runner = self._running.get(cid)
            if runner is not None:
                left.discard(cid)
                self._asked.add(cid)
                runner.cancel()
        if left and self._queue:
            for cid in self._queue.remove(left):
                self._error(cid, wire.error_info(asyncio.CancelledError()))
        # (the other ids had finished: their results are on their way)

    # -- running calls ----------------------------------------------------------------------

    def _wake(self) -> None:
        """Make a runner for the queue, unless one is on its way or ``concurrency`` run."""
        if self._queue and self._waking is None and len(self._runners) < self._concurrency:
            # asyncio.Task itself, not the loop's task factory: a runner never starts eagerly
            # (it must be counted before it runs) and is not the user's task to wrap
            runner = asyncio.Task(self._runner(), loop=self._loop)
            self._waking = runner
            self._runners.add(runner)
            runner.add_done_callback(self._runner_done)

    def _runner_done(self, runner: asyncio.Task[None]) -> None:
        # (a runner normally leaves in its `finally`; this covers one cancelled before its
        # first step, as a closing loop cancels every task)
        self._runners.discard(runner)
        if self._waking is runner:
            self._waking = None
            if not self._stopping:
                self._wake()

    def _cancel_pending(self, task: asyncio.Task[None]) -> bool:
        """Whether ``task`` (a runner) has a cancellation request not delivered yet."""
        return bool(task.cancelling() or (_MUST_CANCEL and getattr(task, _MUST_CANCEL)))

    async def _runner(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._waking is task:
            self._waking = None
        queue = self._queue
        run = queue.run
        ids, values = self._out_ids, self._out_values
        running, asked = self._running, self._asked
        try:
            while queue:
                # the calls that finish in their first step, in Rust, up to FLUSH_AT results
                # or TURN_BUDGET seconds
                stop = run(ids, values, FLUSH_AT, TURN_BUDGET, task, _MUST_CANCEL)
                if ids:
                    if len(ids) >= FLUSH_AT:
                        self.flush()  # the parent refills while this worker goes on
                    elif not self._flush_scheduled:
                        self._schedule_flush()
                if stop is None:
                    if queue:
                        await asyncio.sleep(0)  # a turn for the loop, then the rest
                    continue
                # a call that needs Python: suspended, raised, or left a cancellation
                cid, step = stop
                exc: BaseException | None = None
                value: Any = None
                if type(step) is not tuple:
                    exc = step  # it raised
                elif step[0] is True:
                    value = step[1]  # it finished and cancelled its own task
                elif step[0] is None and not inspect.isawaitable(step[1]):
                    value = step[1]  # a generator that is a value, not an awaitable
                else:
                    # it waits (or returned another awaitable): await the rest, here, while
                    # another runner takes the queue
                    if step[0] is False:
                        steps = step[1]
                    else:
                        steps = _native.CallSteps(step[2], _await(step[1]))
                    running[cid] = task
                    self._wake()
                    try:
                        value = await steps
                    except BaseException as raised:
                        exc = raised
                    finally:
                        del running[cid]
                        if cid in asked:  # the parent's cancellation: taken back
                            asked.discard(cid)
                            task.uncancel()
                if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                    raise exc
                if self._cancel_pending(task):
                    await self._last_call(cid, exc, value)
                    return
                if exc is None:
                    self._result(cid, value)
                else:
                    self._error(cid, wire.error_info(_own_frames_dropped(exc)))
        finally:
            self._runners.discard(task)
            if not self._stopping:
                self._wake()

    async def _last_call(self, cid: int, exc: BaseException | None, value: Any) -> None:
        """A call left its runner with a cancellation request of its own (it cancelled
        ``current_task()``), or the worker is stopping: report the call as a task of its own
        would have ended, and let the runner end (its cancellation must not reach the next
        call; a new runner takes the queue)."""
        if exc is None and not self._stopping:
            # a call that returns while a request is not delivered yet ends cancelled, as a
            # task does (one that raises ends with its exception)
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError as cancelled:
                exc = cancelled
        if exc is None:
            self._result(cid, value)
        else:
            self._error(cid, wire.error_info(_own_frames_dropped(exc)))

    # -- results to the parent, in batches ---------------------------------------------------

    def _result(self, cid: int, value: Any) -> None:
        self._out_ids.append(cid)
        self._out_values.append(value)
        if len(self._out_ids) >= FLUSH_AT:
            self.flush()
        elif not self._flush_scheduled:
            self._schedule_flush()

    def _error(self, cid: int, info: wire.ErrorInfo) -> None:
        self._out_errors.append((cid, info))
        if not self._flush_scheduled:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        self._flush_scheduled = True
        self._flush_since = self._loop.time()
        self._loop.call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        # While calls wait in this worker's queue it is busy, and more results come with
        # every loop turn: keep batching them (a frame per turn costs more than the calls
        # themselves when they are quick), up to FLUSH_AT results or FLUSH_DELAY seconds.
        # The parent refills this worker from the flushed results while the queued calls
        # keep it busy.
        if self._queue and self._loop.time() - self._flush_since < FLUSH_DELAY:
            self._loop.call_soon(self._flush_soon)
            return
        self.flush()

    def flush(self) -> None:
        self._flush_scheduled = False
        ids, values = self._out_ids, self._out_values
        if not ids and not self._out_errors:
            return
        errors = self._out_errors[:]
        self._out_errors.clear()
        try:
            payload = pickle.dumps(values, wire.PICKLE_PROTOCOL)
        except Exception:
            # find the results that cannot be pickled: each becomes an error for its call
            good_ids: list[int] = []
            good: list[Any] = []
            for cid, value in zip(ids, values):
                try:
                    pickle.dumps(value, wire.PICKLE_PROTOCOL)
                except Exception as exc:
                    err = pickle.PicklingError(
                        f"ferroloop.Pool: the result of call {cid} cannot be pickled "
                        f"({wire.type_name(type(value))}): {exc}"
                    )
                    err.__cause__ = exc
                    errors.append((cid, wire.error_info(err)))
                else:
                    good_ids.append(cid)
                    good.append(value)
            runs = runs_of(good_ids)
            payload = pickle.dumps(good, wire.PICKLE_PROTOCOL)
        else:
            runs = runs_of(ids)
        ids.clear()
        values.clear()
        self._send((wire.OP_RESULTS, runs, payload, errors))

    # -- stopping ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking calls: cancel the running ones and drop the queued ones."""
        if not self.stopped.done():
            self.stopped.set_result(None)
        self._stopping = True
        self._queue.clear()
        for runner in self._running.values():
            runner.cancel()

    async def drain(self, grace: float = STOP_GRACE) -> None:
        """Wait (at most ``grace`` seconds) for the cancelled calls to finish."""
        runners = list(self._runners)
        if runners:
            await asyncio.wait(runners, timeout=grace)


async def _await(awaitable: Any) -> Any:
    return await awaitable


#: the code of the worker's own frames, dropped from the top of a call's traceback
_OWN_CODE = frozenset(
    f.__code__
    for f in (WorkerCore._runner, WorkerCore._last_call, _await)
)


def _own_frames_dropped(exc: BaseException) -> BaseException:
    """``exc`` with the worker's frames dropped from the top of its traceback: the caller
    sees the call's frames, as with a task of its own."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code in _OWN_CODE:
        tb = tb.tb_next
    return exc.with_traceback(tb)


# -- a local worker process ---------------------------------------------------------------


class _PipeReader(asyncio.Protocol):
    def __init__(self, reader: wire.FrameReader, on_eof: Callable[[], None]) -> None:
        self._reader = reader
        self._on_eof = on_eof

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)

    def eof_received(self) -> bool:
        self._on_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_eof()


class _PipeWriter(asyncio.BaseProtocol):
    def __init__(self, on_lost: Callable[[], None]) -> None:
        self._on_lost = on_lost
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self._on_lost()


def process_main(
    calls: Connection,
    results: Connection,
    initializer: Callable[..., Any] | None,
    initargs: tuple[Any, ...],
    concurrency: int,
    inherited: list[int],
) -> None:
    """The target of a local worker process."""
    # a forked worker holds copies of the parent's ends of the other workers' pipes: close
    # them, so that each worker sees the end of its input when the parent goes
    for fd in inherited:
        with contextlib.suppress(OSError):
            os.close(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    in_fd = os.dup(calls.fileno())
    out_fd = os.dup(results.fileno())
    calls.close()
    results.close()
    from . import run

    run(_serve(in_fd, out_fd, initializer, initargs, concurrency))


async def _serve(
    in_fd: int,
    out_fd: int,
    initializer: Callable[..., Any] | None,
    initargs: tuple[Any, ...],
    concurrency: int,
) -> None:
    loop = asyncio.get_running_loop()
    out_transport, writer = await loop.connect_write_pipe(
        lambda: _PipeWriter(lambda: core.stop()), open(out_fd, "wb", buffering=0)
    )

    def send(message: tuple[Any, ...]) -> None:
        if not out_transport.is_closing():
            out_transport.write(wire.frame(message))

    core = WorkerCore(loop, concurrency, send)
    loop.add_signal_handler(signal.SIGTERM, core.stop)
    try:
        if initializer is not None:
            try:
                result = initializer(*initargs)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                send((wire.OP_INIT_FAILED, wire.error_info(exc)))
                return
        send((wire.OP_READY, os.getpid()))
        in_transport, _ = await loop.connect_read_pipe(
            lambda: _PipeReader(wire.FrameReader(core.on_message), core.stop),
            open(in_fd, "rb", buffering=0),
        )
        try:
            await core.stopped
            await core.drain()
            core.flush()
        finally:
            in_transport.close()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        # the transport writes what is buffered, then closes (bounded: the parent reads)
        out_transport.close()
        await asyncio.wait([writer.closed], timeout=STOP_GRACE)


def runs_of(ids: list[int]) -> list[tuple[int, int]]:
    """``ids`` as runs of consecutive ids, ``(first, count)``, in order."""
    if not ids:
        return []
    first = ids[0]
    if ids[-1] - first == len(ids) - 1 and ids == list(range(first, first + len(ids))):
        return [(first, len(ids))]  # the usual case, checked at C speed
    runs: list[tuple[int, int]] = []
    start = prev = first
    for cid in ids[1:]:
        if cid != prev + 1:
            runs.append((start, prev - start + 1))
            start = cid
        prev = cid
    runs.append((start, prev - start + 1))
    return runs
