"""``ferroloop.Pool``: worker processes, each running a ferroloop loop with many coroutines.

The seeds' answer to "how do coroutines use every core?" is multi-process + coroutines; this
module is that answer as an object the caller's loop awaits (docs/pool.md is the guide).

Design (each rule is relied on where the code is):

* **The parent is one loop, no threads.** Each worker is read through the caller's loop: a
  local worker's results arrive on a pipe read by a pipe transport (``connect_read_pipe``),
  its calls leave through a write-pipe transport, and its exit is seen by a reader on the
  process's sentinel. Nothing polls.
* **Calls travel in batches.** Calls made in one loop turn, and the items of a ``map``, are
  sent by one ``_dispatch`` per turn: one frame per worker with the calls that fit; results
  come back one frame per worker loop turn (``_pool_worker.WorkerCore``). A worker gets at
  most ``concurrency`` running calls plus ``prefetch`` queued ones (it runs the next one the
  moment one finishes, without a round trip); the first ``concurrency`` are dealt round
  robin, the prefetch in small chunks, so short maps spread over all workers.
* **Every batch a worker holds is in its ``batches`` map** (first call id -> ``_Sent``:
  job, first index, which calls have answered) until all its results arrive; results come
  back as runs of consecutive call ids, so the bookkeeping is per batch and per run, not per
  call (a ``map`` stores a run's values with one slice assignment). That map is what a lost
  worker turns into errors (its calls fail with ``WorkerLostError``; nothing is silently
  re-run), what a cancellation turns into ``OP_CANCEL`` messages, and (``outstanding``)
  what bounds the worker's load.
* **Jobs own the caller's side of the calls**: ``_ListJob`` (``map``, ``starmap``,
  ``apply``: one future for the whole list) and ``_IterJob`` (``imap``,
  ``imap_unordered``: an async iterator pulling its input lazily, with a bounded window).
  A job that ends early (an error, a cancelled caller, an abandoned iterator) is aborted:
  its queued calls are dropped and its running ones cancelled in the workers.
* **Workers never outlive the pool.** Leaving ``async with`` asks each worker to stop
  (``OP_STOP``: cancel what is left, exit), waits ``shutdown_timeout`` at most, then kills;
  a close that is itself cancelled (a second Ctrl-C) kills at once. A worker whose parent
  disappears sees the end of its input pipe and exits.
"""

from __future__ import annotations

import abc
import asyncio
import bisect
import collections
import contextlib
import itertools
import multiprocessing
import os
import pickle
import signal
import sys
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from multiprocessing import connection as mp_connection
from multiprocessing import context as mp_context
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, overload

from . import _pool_wire as wire
from ._pool_wire import RemoteError, RemoteTraceback

__all__ = ["Pool", "WorkerLostError", "BrokenPoolError", "RemoteTraceback", "RemoteError"]

_T = TypeVar("_T")
_R = TypeVar("_R")


class WorkerLostError(RuntimeError):
    """A worker process (or Dask worker) ended while it held the call: killed, crashed,
    ``os._exit``... The call may or may not have run; it is not run again."""


class BrokenPoolError(RuntimeError):
    """The pool cannot run calls any more: a worker's initializer failed, or a worker died
    before it was ready. The original error is the ``__cause__``."""


def _cpu_count() -> int:
    count: int | None
    if hasattr(os, "process_cpu_count"):
        count = os.process_cpu_count()
    else:
        try:
            count = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            count = os.cpu_count()
    return count or 1


def _exit_description(exitcode: int | None) -> str:
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


# -- jobs: the caller's side of a batch of calls --------------------------------------------


class _Job(abc.ABC):
    """A function applied to a stream of arguments; subclasses own the results."""

    __slots__ = ("fn", "kind", "pool", "done", "taken", "chunk", "_it", "__weakref__")

    def __init__(self, pool: Pool, fn: Callable[..., Any], kind: int, it: Iterator[Any]) -> None:
        self.pool = pool
        self.fn = fn
        self.kind = kind
        self.done = False
        self.taken = 0
        #: how many of its calls a worker may hold queued (see _dispatch); 0: no preference
        self.chunk = 0
        self._it: Iterator[Any] | None = it

    @property
    def has_input(self) -> bool:
        return self._it is not None and not self.done

    def room(self) -> int:
        """How many more arguments this job may send now."""
        return sys.maxsize

    def take(self, n: int) -> list[Any]:
        it = self._it
        if it is None:
            return []
        items: list[Any] = []
        try:
            items.extend(itertools.islice(it, n))
        except Exception as exc:
            # the caller's iterable raised: an error at that position, after the items
            # before it (still sent)
            self._it = None
            index = self.taken + len(items)
            self.taken = index + 1
            self.expect(self.taken)
            self.set_error(index, exc)
            return items
        if len(items) < n:
            self._it = None
        self.taken += len(items)
        if self._it is None:
            self.expect(self.taken)
        return items

    def expect(self, total: int) -> None:  # noqa: B027 (a hook: a no-op unless overridden)
        """All input is taken: ``total`` calls in all."""

    @abc.abstractmethod
    def set_result(self, index: int, value: Any) -> None:
        ...

    def set_results(self, index: int, values: list[Any]) -> None:
        """The results of calls ``index``, ``index + 1``, ..."""
        for i, value in enumerate(values, index):
            if self.done:
                return
            self.set_result(i, value)

    @abc.abstractmethod
    def set_error(self, index: int, exc: BaseException) -> None:
        ...

    @abc.abstractmethod
    def fail(self, exc: BaseException) -> None:
        """The whole job fails (the pool broke or closed)."""


class _ListJob(_Job):
    """``map``/``starmap``/``apply``: one future for all the results, in order."""

    __slots__ = ("future", "results", "remaining")

    def __init__(
        self,
        pool: Pool,
        fn: Callable[..., Any],
        kind: int,
        items: list[Any],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(pool, fn, kind, iter(items))
        self.results: list[Any] = [None] * len(items)
        self.remaining = len(items)
        self.chunk = -(-len(items) // (4 * max(1, pool.processes)))
        self.future: asyncio.Future[list[Any]] = loop.create_future()
        self.future.add_done_callback(self._future_done)
        if not items:
            self._it = None
            self.done = True
            self.future.set_result([])

    def set_result(self, index: int, value: Any) -> None:
        self.results[index] = value
        self.remaining -= 1
        if not self.remaining:
            self.done = True
            if not self.future.done():
                self.future.set_result(self.results)

    def set_results(self, index: int, values: list[Any]) -> None:
        n = len(values)
        self.results[index : index + n] = values
        self.remaining -= n
        if not self.remaining:
            self.done = True
            if not self.future.done():
                self.future.set_result(self.results)

    def set_error(self, index: int, exc: BaseException) -> None:
        self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)  # _future_done aborts the rest
        elif not self.done:
            self.pool._abort(self)

    def _future_done(self, future: asyncio.Future[list[Any]]) -> None:
        # an error or the caller's cancellation: cancel what is still out
        if not self.done:
            self.pool._abort(self)


class _IterJob(_Job, Generic[_R]):
    """``imap``/``imap_unordered``: an async iterator over the results."""

    __slots__ = ("ordered", "window", "total", "next_index", "ready", "consumed", "waiter")

    def __init__(
        self,
        pool: Pool,
        fn: Callable[..., Any],
        kind: int,
        it: Iterator[Any],
        ordered: bool,
        window: int,
    ) -> None:
        super().__init__(pool, fn, kind, it)
        self.ordered = ordered
        self.window = window
        self.total: int | None = None
        self.next_index = 0
        # ordered: index -> (ok, value); unordered: arrival order
        self.ready: dict[int, tuple[bool, Any]] = {}
        self.consumed = 0
        self.waiter: asyncio.Future[None] | None = None

    def room(self) -> int:
        return self.window - (self.taken - self.consumed)

    def expect(self, total: int) -> None:
        self.total = total
        self._wake()

    def set_result(self, index: int, value: Any) -> None:
        self.ready[index] = (True, value)
        self._wake()

    def set_error(self, index: int, exc: BaseException) -> None:
        self.ready[index] = (False, exc)
        self._wake()

    def fail(self, exc: BaseException) -> None:
        # raised by the next __anext__, after the results already in
        self.ready[-1] = (False, exc)
        self._wake()
        if not self.done:
            self.pool._abort(self)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _pop(self) -> tuple[bool, Any] | None:
        ready = self.ready
        if not ready:
            return None
        if -1 in ready and len(ready) == 1:
            return ready.pop(-1)
        if self.ordered:
            entry = ready.pop(self.next_index, None)
            if entry is None:
                return ready.pop(-1) if -1 in ready and self.done else None
            self.next_index += 1
            return entry
        key = next(k for k in ready if k != -1)
        return ready.pop(key)

    def finished(self) -> bool:
        return self.total is not None and self.consumed >= self.total


class _ResultIterator(AsyncIterator[_R]):
    """What ``imap``/``imap_unordered`` return. An error raised by a call is raised by
    ``__anext__`` (at its position for ``imap``) and ends the iteration; ``aclose()``, or a
    cancelled ``__anext__``, cancels the calls still running."""

    def __init__(self, job: _IterJob[_R]) -> None:
        self._job = job
        self._ended = False

    def __aiter__(self) -> _ResultIterator[_R]:
        return self

    async def __anext__(self) -> _R:
        job = self._job
        pool = job.pool
        if self._ended:
            raise StopAsyncIteration
        while True:
            entry = job._pop()
            if entry is not None:
                ok, value = entry
                job.consumed += 1
                pool._schedule_dispatch()
                if ok:
                    if job.finished():
                        job.done = True
                    return value  # type: ignore[no-any-return]
                self._end()
                raise value
            if job.finished() or (job.done and not job.ready):
                self._end()
                raise StopAsyncIteration
            waiter = job.waiter = pool._loop_or_raise().create_future()
            try:
                await waiter
            except asyncio.CancelledError:
                self._end()
                raise
            finally:
                job.waiter = None

    def _end(self) -> None:
        self._ended = True
        job = self._job
        if not job.done:
            job.pool._abort(job)
        job.ready.clear()

    async def aclose(self) -> None:
        """Stop: the calls still queued or running are cancelled."""
        self._end()

    def __del__(self) -> None:
        if not self._ended and not self._job.done:
            pool = self._job.pool
            loop = pool._loop
            if loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._end)


# -- workers --------------------------------------------------------------------------------


class _Sent:
    """A batch of calls given to a worker: ids ``first`` .. ``first + count - 1`` are the
    job's calls ``start`` .. ``start + count - 1``; ``got[i]`` once call ``first + i`` has
    answered."""

    __slots__ = ("job", "first", "start", "count", "left", "got")

    def __init__(self, job: _Job, first: int, start: int, count: int) -> None:
        self.job = job
        self.first = first
        self.start = start
        self.count = count
        self.left = count
        self.got = bytearray(count)

    def unanswered(self) -> list[int]:
        """The offsets of the calls that have not answered."""
        return [i for i, g in enumerate(self.got) if not g]


_ONES = b"\x01" * 65536


class _Worker(abc.ABC):
    """What the pool knows of one worker; ``_LocalWorker`` and ``_pool_dask.DaskWorker`` are
    the two kinds. The pool calls ``send``/``stop``/``kill``; the worker calls the pool's
    ``_on_message`` and, exactly once, ``_on_lost``."""

    ident: str

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        #: the batches it holds, by first call id (ascending), and their first ids in order
        self.batches: dict[int, _Sent] = {}
        self.firsts: list[int] = []
        #: calls given and not answered
        self.outstanding = 0
        self.sent = 0
        self.ready = False
        self.retiring = False
        self.gone = False
        #: the pool may send to it (a local worker's pipes are connected)
        self.connected = False
        loop = pool._loop_or_raise()
        self.ready_waiter: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    @property
    def accepting(self) -> bool:
        return self.connected and not (self.gone or self.retiring)

    def batch_of(self, cid: int) -> _Sent:
        sent = self.batches.get(cid)
        if sent is None:
            firsts = self.firsts
            sent = self.batches[firsts[bisect.bisect_right(firsts, cid) - 1]]
        return sent

    def answered(self, sent: _Sent, offset: int, n: int) -> None:
        """Calls ``offset`` .. ``offset + n - 1`` of ``sent`` have answered."""
        sent.got[offset : offset + n] = _ONES[:n] if n <= len(_ONES) else b"\x01" * n
        sent.left -= n
        self.outstanding -= n
        if not sent.left:
            del self.batches[sent.first]
            self.firsts.remove(sent.first)

    @abc.abstractmethod
    def send(self, message: tuple[Any, ...]) -> None:
        ...

    @abc.abstractmethod
    def stop(self) -> None:
        """Ask the worker to cancel what it runs and exit."""

    @abc.abstractmethod
    def kill(self) -> None:
        """End the worker now."""


class _ReadProtocol(asyncio.Protocol):
    def __init__(self, worker: _LocalWorker) -> None:
        self._worker = worker
        self._reader = wire.FrameReader(worker.on_message)

    def data_received(self, data: bytes) -> None:
        try:
            self._reader.feed(data)
        except Exception as exc:  # a corrupt stream: the worker cannot be trusted
            self._worker.protocol_error(exc)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._worker.on_eof()


class _WriteProtocol(asyncio.BaseProtocol):
    pass


#: the most calls a worker may hold queued beyond ``concurrency`` (see ``_dispatch``)
_MAX_PREFETCH = 1024

#: after a worker's process exits, how long to wait for the end of its result pipe (a
#: grandchild could hold a copy of its write end) before declaring it lost anyway
_EOF_AFTER_EXIT = 2.0


class _LocalWorker(_Worker):
    """A worker process of this machine, over two pipes."""

    def __init__(self, pool: Pool, ctx: mp_context.BaseContext) -> None:
        super().__init__(pool)
        self._ctx = ctx
        self.process: Any = None
        self._in: asyncio.WriteTransport | None = None
        self._out: asyncio.ReadTransport | None = None
        self._eof = False
        self._exited = False
        self._sentinel = -1
        self._timer: asyncio.TimerHandle | None = None
        self.parent_fds: list[int] = []
        self.ident = "worker"

    async def start(self, inherited: list[int]) -> None:
        pool = self.pool
        loop = pool._loop_or_raise()
        call_r, call_w = os.pipe()
        result_r, result_w = os.pipe()
        self.parent_fds = [call_w, result_r]
        fork = self._ctx.get_start_method() == "fork"
        child_calls = mp_connection.Connection(call_r, writable=False)
        child_results = mp_connection.Connection(result_w, readable=False)
        from ._pool_worker import process_main

        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=process_main,
            args=(
                child_calls,
                child_results,
                pool._initializer,
                pool._initargs,
                pool._concurrency,
                inherited + self.parent_fds if fork else [],
            ),
            daemon=True,
            name="ferroloop.Pool-worker",
        )
        try:
            process.start()
        except BaseException:
            for fd in self.parent_fds:
                os.close(fd)
            raise
        finally:
            child_calls.close()
            child_results.close()
        self.process = process
        self.ident = f"worker {process.pid}"
        pool._processes.add(process)
        self._sentinel = process.sentinel
        loop.add_reader(self._sentinel, self._on_exit)
        try:
            self._in, _ = await loop.connect_write_pipe(
                _WriteProtocol, open(call_w, "wb", buffering=0)
            )
            self._out, _ = await loop.connect_read_pipe(
                lambda: _ReadProtocol(self), open(result_r, "rb", buffering=0)
            )
        except BaseException:
            self.kill()
            raise
        self.connected = True

    def send(self, message: tuple[Any, ...]) -> None:
        transport = self._in
        if transport is not None and not transport.is_closing():
            transport.write(wire.frame(message))

    def stop(self) -> None:
        self.send((wire.OP_STOP,))
        if self._in is not None:
            self._in.close()

    def kill(self) -> None:
        process = self.process
        if process is not None and process.exitcode is None:
            with contextlib.suppress(ProcessLookupError, OSError):
                os.kill(process.pid, signal.SIGKILL)

    def on_message(self, message: tuple[Any, ...]) -> None:
        self.pool._on_message(self, message)

    def protocol_error(self, exc: BaseException) -> None:
        self.pool._protocol_errors.append(exc)
        self.kill()

    # -- the end: both the pipe's EOF (every result read) and the process's exit ----------

    def on_eof(self) -> None:
        self._eof = True
        if self._exited:
            self._lost()
        elif self.process is not None:
            # the pipe closed but the process runs on: it is ending (or broken); bounded
            loop = self.pool._loop_or_raise()
            self._timer = loop.call_later(_EOF_AFTER_EXIT, self.kill)

    def _on_exit(self) -> None:
        loop = self.pool._loop_or_raise()
        loop.remove_reader(self._sentinel)
        self._exited = True
        self.process.join(1.0)
        if self._eof:
            self._lost()
        else:
            self._timer = loop.call_later(_EOF_AFTER_EXIT, self._lost)

    def _lost(self) -> None:
        if self.gone:
            return
        if self._timer is not None:
            self._timer.cancel()
        if self.process is None:  # never started
            self.pool._on_lost(self, "not started")
            return
        if not self._exited:
            self._exited = True
            with contextlib.suppress(Exception):
                self.pool._loop_or_raise().remove_reader(self._sentinel)
        self.process.join(1.0)
        if self._in is not None:
            self._in.close()
        if self._out is not None:
            self._out.close()
        self.pool._processes.discard(self.process)
        self.pool._on_lost(self, _exit_description(self.process.exitcode))


# -- the pool -------------------------------------------------------------------------------


class Pool:
    """A pool of worker processes, each running a ferroloop loop that runs up to
    ``concurrency`` of the pool's calls (coroutines) at once::

        async with ferroloop.Pool(processes=4, concurrency=32) as pool:
            pages = await pool.map(fetch, urls)              # results in order
            async for page in pool.imap_unordered(fetch, urls): ...
            one = await pool.apply(fetch, (url,), {"timeout": 5})

    ``fn`` is a coroutine function (or a plain function: its value is the result) that the
    workers can import (pickled by reference, as with ``multiprocessing``). ``processes``
    defaults to the CPUs this process may use; ``initializer(*initargs)`` runs in each
    worker's loop before its first call (it may be a coroutine function: open a client
    session once per worker there); a worker is replaced after ``maxtasksperchild`` calls.
    ``context`` is a ``multiprocessing`` start method name or context ("forkserver" by
    default; "spawn"; "fork" where the parent's state allows it). ``cluster`` runs the
    workers in a Dask ``distributed`` cluster instead (a ``Client``; see docs/pool.md).

    Faults: a call's exception is raised to its caller with the worker's traceback as its
    ``__cause__``; a worker that dies fails the calls it held with ``WorkerLostError`` and is
    replaced; cancelling the caller cancels the remote coroutine; leaving the ``async with``
    block (however) stops the workers within ``shutdown_timeout`` seconds and then kills
    them; arguments or results that cannot be pickled raise ``pickle.PicklingError`` at the
    call.
    """

    def __init__(
        self,
        processes: int | None = None,
        concurrency: int = 16,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: str | mp_context.BaseContext | None = None,
        *,
        cluster: Any = None,
        prefetch: int | None = None,
        shutdown_timeout: float = 5.0,
    ) -> None:
        if processes is not None and processes < 1:
            raise ValueError("processes must be at least 1")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if maxtasksperchild is not None and maxtasksperchild < 1:
            raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if prefetch is not None and prefetch < 0:
            raise ValueError("prefetch must be at least 0")
        if shutdown_timeout < 0:
            raise ValueError("shutdown_timeout must be at least 0")
        if cluster is not None and context is not None:
            raise ValueError("context is for local workers; a cluster has its own")
        self._cluster = cluster
        self._size = processes
        self._concurrency = concurrency
        self._prefetch = concurrency if prefetch is None else prefetch
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._maxtasks = maxtasksperchild
        if isinstance(context, mp_context.BaseContext):
            self._ctx: mp_context.BaseContext | None = context
        elif cluster is None:
            self._ctx = multiprocessing.get_context(context or "forkserver")
        else:
            self._ctx = None
        self._shutdown_timeout = shutdown_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: list[_Worker] = []
        self._jobs: collections.deque[_Job] = collections.deque()
        self._cancels: dict[_Worker, list[int]] = {}
        self._next_id = 0
        self._dispatch_scheduled = False
        self._state = "new"  # new -> running -> closing -> closed
        self._broken: BaseException | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._processes: set[Any] = set()
        self._protocol_errors: list[BaseException] = []
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def __repr__(self) -> str:
        return (
            f"<ferroloop.Pool {self._state} workers={len(self._workers)} "
            f"concurrency={self._concurrency}>"
        )

    @property
    def processes(self) -> int:
        """The number of workers."""
        return self._size if self._size is not None else len(self._workers)

    @property
    def concurrency(self) -> int:
        return self._concurrency

    def worker_pids(self) -> list[int]:
        """The process ids of the local workers alive now (empty for a cluster)."""
        return [w.process.pid for w in self._workers if isinstance(w, _LocalWorker)]

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _loop_or_raise(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the pool is not started: use `async with Pool(...)`")
        return self._loop

    async def start(self) -> None:
        """Start the workers and wait until each has run its initializer."""
        if self._state != "new":
            raise RuntimeError(f"the pool is {self._state}")
        self._loop = asyncio.get_running_loop()
        self._state = "running"
        self._finalizer = weakref.finalize(self, _kill_processes, self._processes)
        try:
            if self._cluster is not None:
                from ._pool_dask import start_workers

                self._workers.extend(await start_workers(self, self._cluster, self._size))
                if self._size is None:
                    self._size = len(self._workers)
            else:
                size = self._size if self._size is not None else _cpu_count()
                self._size = size
                for _ in range(size):
                    await self._start_local_worker()
            await asyncio.gather(*(w.ready_waiter for w in list(self._workers)))
        except BaseException:
            await self._shutdown(graceful=False)
            raise

    async def _start_local_worker(self) -> _Worker:
        assert self._ctx is not None
        worker = _LocalWorker(self, self._ctx)
        # (a forked worker closes its copies of the other workers' pipe ends)
        inherited = [
            fd for w in self._workers if isinstance(w, _LocalWorker) for fd in w.parent_fds
        ]
        self._workers.append(worker)
        try:
            await worker.start(inherited)
        except BaseException:
            self._workers.remove(worker)
            raise
        return worker

    async def close(self) -> None:
        """Stop the workers (as leaving ``async with`` does): calls still out fail."""
        await self._shutdown(graceful=True)

    def terminate(self) -> None:
        """Kill the workers now, without waiting on the loop (``async with`` does not need
        it). Calls still out fail with ``RuntimeError("the pool is closed")``."""
        if self._state == "closed":
            return
        self._state = "closing"
        self._fail_outstanding()
        for worker in list(self._workers):
            worker.kill()
        self._state = "closed"
        _kill_processes(self._processes)
        for worker in list(self._workers):
            if isinstance(worker, _LocalWorker) and not worker.gone:
                with contextlib.suppress(Exception):
                    worker._lost()
        if self._finalizer is not None:
            self._finalizer.detach()

    def _fail_outstanding(self) -> None:
        """Every job, and every call still out with a worker, fails: the pool is closing."""
        closed = RuntimeError("the pool is closed")
        for job in list(self._jobs):
            job.fail(closed)
        for worker in list(self._workers):
            for sent in list(worker.batches.values()):
                if not sent.job.done:
                    sent.job.fail(closed)

    async def _shutdown(self, graceful: bool) -> None:
        if self._state in ("closing", "closed"):
            return
        self._state = "closing"
        try:
            self._fail_outstanding()
            for task in list(self._background):
                task.cancel()
            workers = list(self._workers)
            for worker in workers:
                if graceful:
                    worker.stop()
                else:
                    worker.kill()
            waits = [w.closed for w in workers]
            if waits:
                _, pending = await asyncio.wait(waits, timeout=self._shutdown_timeout)
                if pending:
                    for worker in workers:
                        if not worker.gone:
                            worker.kill()
                    await asyncio.wait(waits, timeout=self._shutdown_timeout)
        finally:
            # a close that was itself cancelled, or workers that would not go: kill them
            self._state = "closed"
            for worker in list(self._workers):
                if not worker.gone:
                    worker.kill()
            _kill_processes(self._processes)
            for worker in list(self._workers):
                if isinstance(worker, _LocalWorker) and not worker.gone:
                    worker._lost()
            if self._finalizer is not None:
                self._finalizer.detach()

    def _raise_if_unusable(self) -> None:
        if self._broken is not None:
            raise BrokenPoolError(str(self._broken)) from self._broken
        if self._state != "running":
            if self._state == "new":
                raise RuntimeError("the pool is not started: use `async with Pool(...)`")
            raise RuntimeError("the pool is closed")

    # -- the API ----------------------------------------------------------------------------

    @overload
    async def map(
        self, fn: Callable[[_T], Awaitable[_R]], iterable: Iterable[_T]
    ) -> list[_R]: ...
    @overload
    async def map(self, fn: Callable[[_T], _R], iterable: Iterable[_T]) -> list[_R]: ...
    async def map(self, fn: Callable[[_T], Any], iterable: Iterable[_T]) -> list[Any]:
        """``[await fn(x) for x in iterable]``, run in the workers; results in order. The
        first call to raise fails the map (the calls still out are cancelled)."""
        return await self._run_list(fn, wire.KIND_ONE, list(iterable))

    @overload
    async def starmap(
        self, fn: Callable[..., Awaitable[_R]], iterable: Iterable[Iterable[Any]]
    ) -> list[_R]: ...
    @overload
    async def starmap(
        self, fn: Callable[..., _R], iterable: Iterable[Iterable[Any]]
    ) -> list[_R]: ...
    async def starmap(self, fn: Callable[..., Any], iterable: Iterable[Iterable[Any]]) -> list[Any]:
        """``[await fn(*args) for args in iterable]``, run in the workers."""
        return await self._run_list(fn, wire.KIND_STAR, [tuple(a) for a in iterable])

    @overload
    async def apply(
        self,
        fn: Callable[..., Awaitable[_R]],
        args: Iterable[Any] = (),
        kwds: dict[str, Any] | None = None,
    ) -> _R: ...
    @overload
    async def apply(
        self, fn: Callable[..., _R], args: Iterable[Any] = (), kwds: dict[str, Any] | None = None
    ) -> _R: ...
    async def apply(
        self, fn: Callable[..., Any], args: Iterable[Any] = (), kwds: dict[str, Any] | None = None
    ) -> Any:
        """``await fn(*args, **kwds)``, run in a worker."""
        results = await self._run_list(fn, wire.KIND_APPLY, [(tuple(args), dict(kwds or {}))])
        return results[0]

    @overload
    def imap(
        self, fn: Callable[[_T], Awaitable[_R]], iterable: Iterable[_T]
    ) -> AsyncIterator[_R]: ...
    @overload
    def imap(self, fn: Callable[[_T], _R], iterable: Iterable[_T]) -> AsyncIterator[_R]: ...
    def imap(self, fn: Callable[[_T], Any], iterable: Iterable[_T]) -> AsyncIterator[Any]:
        """An async iterator over ``fn(x)`` for ``x`` in ``iterable``, in order. The iterable
        is read lazily (as workers have room and the results are consumed)."""
        return self._run_iter(fn, iterable, ordered=True)

    @overload
    def imap_unordered(
        self, fn: Callable[[_T], Awaitable[_R]], iterable: Iterable[_T]
    ) -> AsyncIterator[_R]: ...
    @overload
    def imap_unordered(
        self, fn: Callable[[_T], _R], iterable: Iterable[_T]
    ) -> AsyncIterator[_R]: ...
    def imap_unordered(self, fn: Callable[[_T], Any], iterable: Iterable[_T]) -> AsyncIterator[Any]:
        """As ``imap``, results in the order they complete."""
        return self._run_iter(fn, iterable, ordered=False)

    async def _run_list(self, fn: Callable[..., Any], kind: int, items: list[Any]) -> list[Any]:
        self._raise_if_unusable()
        loop = self._loop_or_raise()
        job = _ListJob(self, fn, kind, items, loop)
        if items:
            self._jobs.append(job)
            self._schedule_dispatch()
        return await job.future

    def _run_iter(
        self, fn: Callable[..., Any], iterable: Iterable[Any], ordered: bool
    ) -> AsyncIterator[Any]:
        self._raise_if_unusable()
        window = 2 * max(1, self.processes) * (self._concurrency + self._prefetch)
        job: _IterJob[Any] = _IterJob(self, fn, wire.KIND_ONE, iter(iterable), ordered, window)
        self._jobs.append(job)
        self._schedule_dispatch()
        return _ResultIterator(job)

    # -- dispatch: once per loop turn ----------------------------------------------------

    def _schedule_dispatch(self) -> None:
        if not self._dispatch_scheduled and self._loop is not None and self._state == "running":
            self._dispatch_scheduled = True
            self._loop.call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._dispatch_scheduled = False
        if self._state != "running":
            return
        cancels = self._cancels
        if cancels:
            self._cancels = {}
            for worker, ids in cancels.items():
                if not worker.gone:
                    worker.send((wire.OP_CANCEL, ids))
        jobs = self._jobs
        while jobs and not jobs[0].has_input:
            jobs.popleft()
        if not jobs:
            return
        workers = [w for w in self._workers if w.accepting]
        if not workers:
            return
        maxtasks = self._maxtasks
        # the prefetch: at least `prefetch`, more for a long map of quick calls (a quarter
        # of its share per worker, as multiprocessing's map chunks it): enough calls queued
        # in each worker to cover a round trip, so a worker never waits for the parent
        prefetch = max(self._prefetch, min(_MAX_PREFETCH, jobs[0].chunk))
        room: dict[_Worker, int] = {}
        for w in workers:
            r = self._concurrency + prefetch - w.outstanding
            if maxtasks is not None:
                r = min(r, maxtasks - w.sent)
            room[w] = r
        # what each worker gets: per job, the arguments in order
        plan: dict[_Worker, list[tuple[_Job, int, list[Any]]]] = {w: [] for w in workers}
        first_chunk = self._concurrency
        later_chunk = max(1, prefetch // 4, self._concurrency // 4)
        for cap_extra, chunk in ((prefetch, first_chunk), (0, later_chunk)):
            progress = True
            while progress and jobs:
                progress = False
                for w in workers:
                    # first round: fill each worker up to `concurrency`; then the prefetch
                    n = min(room[w] - cap_extra, chunk)
                    if n <= 0:
                        continue
                    given = self._fill(n, jobs, plan[w])
                    if given:
                        room[w] -= given
                        progress = True
                    if not jobs:
                        break
        for w, entries in plan.items():
            if entries:
                batches = []
                for job, start, args in entries:
                    batches.extend(self._pickle_batch(w, job, start, args))
                if batches:
                    w.send((wire.OP_CALLS, batches))
            if maxtasks is not None and w.sent >= maxtasks:
                w.retiring = True
                if not w.batches:
                    self._retire(w)

    @staticmethod
    def _fill(
        n: int, jobs: collections.deque[_Job], entries: list[tuple[_Job, int, list[Any]]]
    ) -> int:
        """Take up to ``n`` arguments from the jobs, in order, into one worker's plan. A job
        whose window is full (an ``imap`` nobody reads) is passed over, not waited for."""
        given = 0
        for job in list(jobs):
            if n <= 0:
                break
            if not job.has_input:
                jobs.remove(job)
                continue
            k = min(n, job.room())
            if k <= 0:
                continue
            start = job.taken
            args = job.take(k)
            if not job.has_input:
                jobs.remove(job)
            if not args or job.done:
                continue
            last = entries[-1] if entries else None
            if last is not None and last[0] is job and last[1] + len(last[2]) == start:
                last[2].extend(args)
            else:
                entries.append((job, start, args))
            n -= len(args)
            given += len(args)
        return given

    def _pickle_batch(
        self, w: _Worker, job: _Job, start: int, args: list[Any]
    ) -> list[tuple[int, int, int, bytes]]:
        """Pickle one job's arguments for one worker, record the batch as held by it; the
        arguments that cannot be pickled fail their calls instead."""
        try:
            payload = pickle.dumps((job.fn, args), wire.PICKLE_PROTOCOL)
        except Exception as exc:
            return self._pickle_slowly(w, job, start, args, exc)
        first = self._next_id
        self._next_id = first + len(args)
        n = len(args)
        w.batches[first] = _Sent(job, first, start, n)
        w.firsts.append(first)
        w.outstanding += n
        w.sent += n
        return [(first, len(args), job.kind, payload)]

    def _pickle_slowly(
        self, w: _Worker, job: _Job, start: int, args: list[Any], exc: Exception
    ) -> list[tuple[int, int, int, bytes]]:
        name = getattr(job.fn, "__qualname__", repr(job.fn))
        try:
            pickle.dumps(job.fn, wire.PICKLE_PROTOCOL)
        except Exception as fn_exc:
            err = pickle.PicklingError(
                f"ferroloop.Pool: the function {name!r} cannot be pickled (a worker imports "
                f"it by its qualified name: define it at module level): {fn_exc}"
            )
            err.__cause__ = fn_exc
            job.fail(err)
            return []
        batches = []
        good: list[Any] = []
        good_start = start
        for i, arg in enumerate(args):
            try:
                pickle.dumps(arg, wire.PICKLE_PROTOCOL)
            except Exception as arg_exc:
                if good:
                    batches.extend(self._pickle_batch(w, job, good_start, good))
                good = []
                good_start = start + i + 1
                err = pickle.PicklingError(
                    f"ferroloop.Pool: the arguments of call {start + i} to {name!r} cannot be "
                    f"pickled: {arg_exc}"
                )
                err.__cause__ = arg_exc
                job.set_error(start + i, err)
                if job.done:
                    return batches
            else:
                good.append(arg)
        if good:
            batches.extend(self._pickle_batch(w, job, good_start, good))
        return batches

    def _abort(self, job: _Job) -> None:
        """The job's caller is gone or failed: drop its input, cancel its calls out."""
        if job.done:
            return
        job.done = True
        with contextlib.suppress(ValueError):
            self._jobs.remove(job)
        for w in self._workers:
            ids = [
                sent.first + i
                for sent in w.batches.values()
                if sent.job is job
                for i in sent.unanswered()
            ]
            if ids:
                self._cancels.setdefault(w, []).extend(ids)
        if self._cancels:
            self._schedule_dispatch()

    # -- what workers say -----------------------------------------------------------------

    def _on_message(self, w: _Worker, message: tuple[Any, ...]) -> None:
        if w.gone:
            return  # its calls have failed already
        op = message[0]
        if op == wire.OP_RESULTS:
            self._on_results(w, message[1], message[2], message[3])
        elif op == wire.OP_READY:
            w.ready = True
            if not w.ready_waiter.done():
                w.ready_waiter.set_result(None)
        elif op == wire.OP_INIT_FAILED:
            exc = wire.rebuild_error(message[1])
            err = BrokenPoolError(f"the initializer failed in {w.ident}: {exc!r}")
            err.__cause__ = exc
            self._break(err)
            if not w.ready_waiter.done():
                w.ready_waiter.set_exception(err)
        else:
            raise RuntimeError(f"ferroloop.Pool: unknown message {op!r} from {w.ident}")

    def _on_results(
        self,
        w: _Worker,
        runs: list[tuple[int, int]],
        payload: bytes,
        errors: list[tuple[int, wire.ErrorInfo]],
    ) -> None:
        try:
            values: list[Any] | None = pickle.loads(payload)
            load_error: BaseException | None = None
        except Exception as exc:
            values = None
            load_error = pickle.UnpicklingError(
                f"ferroloop.Pool: results from {w.ident} cannot be unpickled here: {exc}"
            )
            load_error.__cause__ = exc
        pos = 0
        # per run of consecutive call ids (usually a whole batch), not per call
        for first, n in runs:
            while n:
                sent = w.batch_of(first)
                offset = first - sent.first
                k = min(n, sent.count - offset)
                job = sent.job
                w.answered(sent, offset, k)
                if not job.done:
                    if values is not None:
                        job.set_results(sent.start + offset, values[pos : pos + k])
                    else:
                        assert load_error is not None
                        job.set_error(sent.start + offset, load_error)
                pos += k
                first += k
                n -= k
        for cid, info in errors:
            sent = w.batch_of(cid)
            w.answered(sent, cid - sent.first, 1)
            if not sent.job.done:
                sent.job.set_error(sent.start + cid - sent.first, wire.rebuild_error(info))
        if w.retiring and not w.batches:
            self._retire(w)
        self._schedule_dispatch()

    def _retire(self, w: _Worker) -> None:
        """A worker that reached ``maxtasksperchild``: stop it, start its successor."""
        if w.gone:
            return
        w.stop()
        self._replace(w)

    def _replace(self, w: _Worker) -> None:
        if self._state != "running":
            return
        loop = self._loop_or_raise()
        if self._cluster is not None:
            from ._pool_dask import replace_worker

            task: asyncio.Task[_Worker] = loop.create_task(replace_worker(self, w))
        else:
            task = loop.create_task(self._start_local_worker())
        self._background.add(task)
        task.add_done_callback(self._replacement_started)

    def _replacement_started(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            err = BrokenPoolError(f"a replacement worker could not start: {exc!r}")
            err.__cause__ = exc
            self._break(err)
        else:
            self._schedule_dispatch()

    def _on_lost(self, w: _Worker, how: str) -> None:
        """A worker is gone (called once per worker): its calls fail; it is replaced."""
        if w.gone:
            return
        w.gone = True
        with contextlib.suppress(ValueError):
            self._workers.remove(w)
        self._cancels.pop(w, None)
        batches, w.batches, w.firsts, w.outstanding = w.batches, {}, [], 0
        if batches:
            err = WorkerLostError(
                f"ferroloop.Pool {w.ident} ended ({how}) while running or holding this call"
            )
            for sent in batches.values():
                for i in sent.unanswered():
                    if sent.job.done:
                        break
                    sent.job.set_error(sent.start + i, err)
        if not w.closed.done():
            w.closed.set_result(None)
        if self._state != "running":
            return
        if not w.ready:
            cause: BaseException = WorkerLostError(f"ferroloop.Pool {w.ident} ended ({how})")
            if self._protocol_errors:
                cause = self._protocol_errors[-1]
            broken = BrokenPoolError(f"{w.ident} ended before it was ready ({how})")
            broken.__cause__ = cause
            self._break(broken)
            if not w.ready_waiter.done():
                w.ready_waiter.set_exception(broken)
            return
        if not w.retiring:
            self._replace(w)
        self._schedule_dispatch()

    def _break(self, exc: BaseException) -> None:
        if self._broken is not None:
            return
        self._broken = exc
        for job in list(self._jobs):
            job.fail(exc)
        for w in list(self._workers):
            for sent in list(w.batches.values()):
                if not sent.job.done:
                    sent.job.fail(exc)


def _kill_processes(processes: set[Any]) -> None:
    """SIGKILL and reap (bounded) every process left: the last line of defence."""
    for process in list(processes):
        if process.exitcode is None:
            with contextlib.suppress(ProcessLookupError, OSError):
                os.kill(process.pid, signal.SIGKILL)
    for process in list(processes):
        with contextlib.suppress(Exception):
            process.join(1.0)
    processes.clear()



