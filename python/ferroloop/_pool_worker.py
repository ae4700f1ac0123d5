"""A pool worker: one ferroloop loop running up to ``concurrency`` of the pool's calls at once.

``WorkerCore`` is the part every kind of worker shares (a local process here, a Dask worker in
``_pool_dask.py``): it takes the parent's messages (``_pool_wire``), starts each call as a
task on its loop (eagerly on 3.12+, so a call that never waits costs no loop turn), queues the
calls beyond ``concurrency``, cancels the calls the parent cancels, and sends the results of
one loop turn back as one batch.

``process_main`` is a local worker process: it reads the parent's frames from one pipe and
writes its own to another, both through its loop's pipe transports. It stops on ``OP_STOP``,
on the end of its input pipe (the parent is gone: no worker outlives its pool) and on
SIGTERM; SIGINT is ignored (a Ctrl-C reaches every process of the terminal's group: the
parent decides how its workers stop).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import inspect
import os
import pickle
import signal
import sys
import types
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from . import _pool_wire as wire

_CoroutineType = types.CoroutineType


#: results sent at once, without waiting for the end of the loop turn, when this many are
#: ready (a batch of calls that finish eagerly would otherwise return in one frame at the
#: end, and the parent could not refill the worker while it works)
FLUSH_AT = 256

#: the longest a busy worker (calls waiting in its queue) holds results back to batch them
FLUSH_DELAY = 0.002

#: how long a stopping worker lets its cancelled calls finish before it exits anyway
STOP_GRACE = 2.0


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
        self._running: dict[int, asyncio.Task[Any]] = {}
        # calls beyond `concurrency`, in order; a cancelled one stays until its turn comes
        self._queued: collections.deque[tuple[int, Callable[..., Any], int, Any]] = (
            collections.deque()
        )
        self._queued_ids: set[int] = set()
        self._out_ids: list[int] = []
        self._out_values: list[Any] = []
        self._out_errors: list[tuple[int, wire.ErrorInfo]] = []
        self._flush_scheduled = False
        self._flush_since = 0.0
        self.stopped: asyncio.Future[None] = loop.create_future()
        # eager on 3.12+: a call that never waits finishes in its first step, here, without
        # a task step per loop turn (and without the task in the loop's ready queue)
        self._new_task: Callable[[Any], asyncio.Task[Any]]
        if sys.version_info >= (3, 12):
            self._new_task = functools.partial(asyncio.Task, loop=loop, eager_start=True)
        else:
            self._new_task = loop.create_task

    # -- messages from the parent -----------------------------------------------------------

    def on_message(self, message: tuple[Any, ...]) -> None:
        op = message[0]
        if op == wire.OP_CALLS:
            for first_id, count, kind, payload in message[1]:
                self._calls(first_id, count, kind, payload)
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
        running = self._running
        queued = self._queued
        concurrency = self._concurrency
        start = self._start
        for cid, arg in enumerate(args, first_id):
            # (a call that finishes in its first step, eagerly, frees its slot at once)
            if not queued and len(running) < concurrency:
                start(cid, fn, kind, arg)
            else:
                queued.append((cid, fn, kind, arg))
                self._queued_ids.add(cid)

    def _cancel(self, ids: list[int]) -> None:
        for cid in ids:
            task = self._running.get(cid)
            if task is not None:
                task.cancel()
            elif cid in self._queued_ids:
                self._queued_ids.discard(cid)
                self._error(cid, wire.error_info(asyncio.CancelledError()))

    # -- running calls ----------------------------------------------------------------------

    def _start(self, cid: int, fn: Callable[..., Any], kind: int, arg: Any) -> None:
        # per call: keep it short (the pool's overhead per call is mostly here)
        try:
            if kind == wire.KIND_ONE:
                result = fn(arg)
            elif kind == wire.KIND_STAR:
                result = fn(*arg)
            else:
                result = fn(*arg[0], **arg[1])
            if type(result) is not _CoroutineType:
                if not inspect.isawaitable(result):
                    self._result(cid, result)
                    return
                result = _await(result)
            task = self._new_task(result)
        except BaseException as exc:
            if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                raise
            self._error(cid, wire.error_info(exc))
            return
        if task.done():
            # finished eagerly (3.12+): the common case of a quick call, inlined
            if not task.cancelled() and task.exception() is None:
                self._out_ids.append(cid)
                self._out_values.append(task.result())
                if len(self._out_ids) >= FLUSH_AT:
                    self.flush()
                elif not self._flush_scheduled:
                    self._schedule_flush()
            else:
                self._finished(cid, task)
        else:
            self._running[cid] = task
            task.add_done_callback(functools.partial(self._task_done, cid))

    def _task_done(self, cid: int, task: asyncio.Task[Any]) -> None:
        self._running.pop(cid, None)
        self._finished(cid, task)
        queued = self._queued
        while queued and len(self._running) < self._concurrency:
            nid, fn, kind, arg = queued.popleft()
            if nid in self._queued_ids:  # else: cancelled while it waited
                self._queued_ids.discard(nid)
                self._start(nid, fn, kind, arg)

    def _finished(self, cid: int, task: asyncio.Task[Any]) -> None:
        try:
            error = task.exception()
        except asyncio.CancelledError as exc:
            self._error(cid, wire.error_info(exc))
            return
        if error is None:
            self._result(cid, task.result())
        else:
            self._error(cid, wire.error_info(error))

    # -- results to the parent, one batch per loop turn ------------------------------------

    def _result(self, cid: int, value: Any) -> None:
        self._out_ids.append(cid)
        self._out_values.append(value)
        if len(self._out_ids) >= FLUSH_AT:
            self.flush()  # the parent refills while this worker goes on
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
        # every loop turn: keep batching them (a frame per turn of `concurrency` results
        # costs more than the calls themselves on 3.11, whose tasks take a turn each), up
        # to FLUSH_AT results or FLUSH_DELAY seconds. The parent refills this worker from
        # the flushed results while the queued calls keep it busy.
        if self._queued and self._loop.time() - self._flush_since < FLUSH_DELAY:
            self._loop.call_soon(self._flush_soon)
            return
        self.flush()

    def flush(self) -> None:
        self._flush_scheduled = False
        ids, values, errors = self._out_ids, self._out_values, self._out_errors
        if not ids and not errors:
            return
        self._out_ids, self._out_values, self._out_errors = [], [], []
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
            ids = good_ids
            payload = pickle.dumps(good, wire.PICKLE_PROTOCOL)
        self._send((wire.OP_RESULTS, runs_of(ids), payload, errors))


    # -- stopping ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking calls: cancel the running ones and drop the queued ones."""
        if not self.stopped.done():
            self.stopped.set_result(None)
        self._queued.clear()
        self._queued_ids.clear()
        for task in self._running.values():
            task.cancel()

    async def drain(self, grace: float = STOP_GRACE) -> None:
        """Wait (at most ``grace`` seconds) for the cancelled calls to finish."""
        tasks = list(self._running.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace)


async def _await(awaitable: Any) -> Any:
    return await awaitable


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
