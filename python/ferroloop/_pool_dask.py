"""``ferroloop.Pool(cluster=client)``: the pool's workers in a Dask ``distributed`` cluster.

Imported only when a pool is given a cluster (``distributed`` is an optional dependency).
Dask is the engine: it places the workers, carries the messages and reports lost workers;
ferroloop adds no scheduler and no wire protocol of its own. The pool's messages are the same
as for local workers (``_pool_wire``), and so is the worker (``_pool_worker.WorkerCore``):

* **A pool worker is a Dask actor** (``DaskActor``), pinned to one Dask worker
  (``workers=[address]``, no other worker allowed). ``start()`` gives it a thread running a
  ferroloop loop with a ``WorkerCore`` (a Dask worker's own event loop is Tornado's and
  runs Dask; the pool's calls run on their own loop, with the same ``concurrency`` as a
  local worker's). Nothing runs before ``start()``: an actor that the scheduler recreated
  elsewhere after a loss never starts.
* **Messages travel as actor method calls, in batches.** The parent's frames go out through
  ``post(frames)``, one call at a time per worker (so they arrive in order) with everything
  queued meanwhile; results come back through a long poll, ``poll()``, which returns the
  frames the worker produced since the last one (or waits for some).
* **A lost Dask worker is an error, not a hang.** Besides a failing actor call, the pool
  asks the scheduler (``identity``) twice a second which workers are alive; a pool worker
  whose Dask worker is gone fails its calls with ``WorkerLostError`` and is replaced by a new
  actor on a live Dask worker (for example the one its nanny restarted).

The client may be synchronous (its loop runs in its own thread: each actor call is run
there, and its result handed to the pool's loop) or asynchronous on the pool's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import pickle
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from . import _pool_wire as wire
from ._pool import BrokenPoolError, _Worker
from ._pool_worker import WorkerCore

if TYPE_CHECKING:
    from ._pool import Pool

#: how often the scheduler is asked which Dask workers are alive (seconds)
WATCH_INTERVAL = 0.5
#: a pool worker whose parent has not polled it for this long (seconds) stops: the parent is
#: gone (a live parent always has a poll pending, or issues the next one at once)
ORPHAN_TIMEOUT = 60.0
#: how long a replacement waits for a live Dask worker before the pool is declared broken
REPLACE_TIMEOUT = 30.0


class DaskActor:
    """Runs in a Dask worker process (created there by ``client.submit(..., actor=True)``):
    a ferroloop loop on its own thread (``_ActorRuntime``), running a ``WorkerCore``; the
    parent talks to it through ``post`` and ``poll``. The loop stops when the parent says so,
    when Dask drops the actor (the pool released it, or its client went away: the thread
    holds the runtime, not the actor, so the actor can be collected), and when no poll has
    come for ``orphan_timeout`` seconds (the parent is gone: its long poll is always
    pending while it lives)."""

    def __init__(
        self,
        concurrency: int,
        initializer: Callable[..., Any] | None,
        initargs: tuple[Any, ...],
        orphan_timeout: float = ORPHAN_TIMEOUT,
    ) -> None:
        self._runtime = _ActorRuntime(concurrency, initializer, initargs, orphan_timeout)
        weakref.finalize(self, self._runtime.stop)

    # called by the parent, on the Dask worker's event loop

    async def start(self) -> int:
        """Start the ferroloop thread; returns this process's id."""
        self._runtime.start()
        return os.getpid()

    async def post(self, frames: list[bytes]) -> None:
        """Messages from the parent, in order."""
        self._runtime.post([pickle.loads(f[wire.HEADER.size :]) for f in frames])

    async def poll(self) -> list[bytes] | None:
        """The frames produced since the last poll (waits for one); None once stopped."""
        return await self._runtime.poll()

    async def stop(self) -> None:
        """Cancel what runs; the thread ends (a final ``poll`` returns None)."""
        self._runtime.stop()


class _ActorRuntime:
    """The ferroloop thread of a ``DaskActor`` and what crosses between it and Dask's loop:
    messages in (held until the initializer has run), frames out (an outbox a long poll
    drains)."""

    def __init__(
        self,
        concurrency: int,
        initializer: Callable[..., Any] | None,
        initargs: tuple[Any, ...],
        orphan_timeout: float,
    ) -> None:
        self._orphan_timeout = orphan_timeout
        self._last_poll = time.monotonic()
        self._concurrency = concurrency
        self._initializer = initializer
        self._initargs = initargs
        self._lock = threading.Lock()
        self._outbox: list[bytes] = []
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self._finished = False
        self._stop_requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._core: WorkerCore | None = None
        #: messages that arrived before the initializer finished
        self._early: list[tuple[Any, ...]] | None = []
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop_requested:
                self._thread = threading.Thread(
                    target=self._run, name="ferroloop.Pool-dask-worker", daemon=True
                )
                self._thread.start()

    def post(self, messages: list[tuple[Any, ...]]) -> None:
        with self._lock:
            loop = self._loop
            if loop is None or self._early is not None:
                if self._early is not None:
                    self._early.extend(messages)
                return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._deliver, messages)

    def _deliver(self, messages: list[tuple[Any, ...]]) -> None:
        core = self._core
        if core is not None:
            for message in messages:
                core.on_message(message)

    async def poll(self) -> list[bytes] | None:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                self._last_poll = time.monotonic()
                if self._outbox:
                    frames, self._outbox = self._outbox, []
                    return frames
                if self._finished or (self._thread is None and self._stop_requested):
                    return None
                waiter = loop.create_future()
                self._waiter = (loop, waiter)
            try:
                await waiter
            finally:
                with self._lock:
                    self._waiter = None
                    self._last_poll = time.monotonic()

    def stop(self) -> None:
        """From any thread: cancel what runs, end the loop."""
        with self._lock:
            self._stop_requested = True
            loop, core = self._loop, self._core
            self._wake_locked()
        if loop is not None and core is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(core.stop)

    # -- the ferroloop thread ----------------------------------------------------------------

    def _send(self, message: tuple[Any, ...]) -> None:
        frame = wire.frame(message)
        with self._lock:
            self._outbox.append(frame)
            self._wake_locked()

    def _wake_locked(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            loop, fut = waiter
            self._waiter = None
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_set_done, fut)

    def _run(self) -> None:
        from . import run

        try:
            run(self._main())
        finally:
            with self._lock:
                self._finished = True
                self._loop = None
                self._wake_locked()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        core = WorkerCore(loop, self._concurrency, self._send)
        with self._lock:
            self._loop, self._core = loop, core
            stop_requested = self._stop_requested
        if stop_requested:
            return
        if self._initializer is not None:
            try:
                result = self._initializer(*self._initargs)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                self._send((wire.OP_INIT_FAILED, wire.error_info(exc)))
                return
        self._send((wire.OP_READY, os.getpid()))
        with self._lock:
            early, self._early = self._early or [], None
            if self._stop_requested:
                core.stop()
        self._deliver(early)
        watchdog = loop.create_task(self._watch_parent(core))
        await core.stopped
        watchdog.cancel()
        await core.drain()
        core.flush()


    async def _watch_parent(self, core: WorkerCore) -> None:
        timeout = self._orphan_timeout
        while True:
            await asyncio.sleep(min(1.0, timeout / 2))
            with self._lock:
                orphaned = (
                    self._waiter is None and time.monotonic() - self._last_poll > timeout
                )
            if orphaned:
                core.stop()
                return


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


# -- the parent's side ------------------------------------------------------------------------


class _ClientBridge:
    """Runs coroutines on the Dask client's loop and awaits them from the pool's loop."""

    def __init__(self, client: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self.client_loop: asyncio.AbstractEventLoop = client.loop.asyncio_loop

    async def run(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        if self.client_loop is self.loop:
            return await make()

        async def on_client() -> Any:
            return await make()

        future = asyncio.run_coroutine_threadsafe(on_client(), self.client_loop)
        return await asyncio.wrap_future(future, loop=self.loop)

    async def alive_workers(self) -> list[str]:
        info = await self.run(lambda: self.client.scheduler.identity())
        return sorted(info["workers"])


async def _await_actor_call(actor: Any, name: str, *args: Any) -> Any:
    return await getattr(actor, name)(*args)


class DaskWorker(_Worker):
    """The pool's side of one actor."""

    def __init__(self, pool: Pool, bridge: _ClientBridge, address: str) -> None:
        super().__init__(pool)
        self.bridge = bridge
        self.address = address
        self.ident = f"Dask worker {address}"
        self._future: Any = None
        self._actor: Any = None
        self._outgoing: list[bytes] = []
        self._sender: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        pool = self.pool
        client = self.bridge.client
        key = f"ferroloop-pool-{uuid.uuid4().hex}"
        self._future = client.submit(
            DaskActor,
            pool._concurrency,
            pool._initializer,
            pool._initargs,
            actor=True,
            workers=[self.address],
            allow_other_workers=False,
            pure=False,
            key=key,
        )
        future = self._future
        self._actor = await self.bridge.run(lambda: _await_future(future))
        pid = await self._call("start")
        self.ident = f"Dask worker {self.address} (pid {pid})"
        loop = pool._loop_or_raise()
        self._poller = loop.create_task(self._poll_loop())
        self.connected = True

    async def _call(self, name: str, *args: Any) -> Any:
        actor = self._actor
        return await self.bridge.run(lambda: _await_actor_call(actor, name, *args))

    def send(self, message: tuple[Any, ...]) -> None:
        if self.gone:
            return
        self._outgoing.append(wire.frame(message))
        if self._sender is None or self._sender.done():
            self._sender = self.pool._loop_or_raise().create_task(self._send_loop())

    async def _send_loop(self) -> None:
        try:
            while self._outgoing and not self.gone:
                frames, self._outgoing = self._outgoing, []
                await self._call("post", frames)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.lost(f"its actor could not be reached: {exc!r}")

    async def _poll_loop(self) -> None:
        pool = self.pool
        try:
            while not self.gone:
                frames = await self._call("poll")
                if frames is None:
                    self.lost("stopped" if self._stopping else "its loop ended")
                    return
                for frame in frames:
                    pool._on_message(self, pickle.loads(frame[wire.HEADER.size :]))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.lost(f"its actor could not be reached: {exc!r}")

    def stop(self) -> None:
        self._stopping = True
        if self._actor is None:
            self.lost("stopped before it started")
            return
        if not self.gone:
            self.pool._loop_or_raise().create_task(self._stop())

    async def _stop(self) -> None:
        with contextlib.suppress(Exception):
            await self._call("stop")

    def kill(self) -> None:
        # a Dask worker is not ours to kill: cancel its calls, stop listening, release it
        if not self.gone:
            self._stopping = True
            if self._actor is not None:
                self.pool._loop_or_raise().create_task(self._stop())
            self.lost("abandoned")

    def lost(self, how: str) -> None:
        if self.gone:
            return
        for task in (self._sender, self._poller):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        future = self._future
        if future is not None:
            # release the actor's key: the scheduler forgets it (and never recreates it)
            with contextlib.suppress(Exception):
                self.bridge.client.loop.add_callback(future.release)
        self.pool._on_lost(self, how)


async def _await_future(future: Any) -> Any:
    return await future


async def start_workers(pool: Pool, client: Any, count: int | None) -> list[_Worker]:
    """One actor per Dask worker (``count`` of them, spread round robin, if given)."""
    loop = asyncio.get_running_loop()
    bridge = _ClientBridge(client, loop)
    addresses = await bridge.alive_workers()
    if not addresses:
        raise BrokenPoolError("the Dask cluster has no workers")
    n = len(addresses) if count is None else count
    workers: list[_Worker] = []
    try:
        for i in range(n):
            worker = DaskWorker(pool, bridge, addresses[i % len(addresses)])
            workers.append(worker)
            await worker.start()
    except BaseException:
        for started in workers:
            started.kill()
        raise
    pool._background.add(loop.create_task(_watch(pool, bridge)))
    return workers


async def _watch(pool: Pool, bridge: _ClientBridge) -> None:
    """Declare lost the pool workers whose Dask worker left the cluster."""
    while pool._state == "running":
        await asyncio.sleep(WATCH_INTERVAL)
        try:
            alive = set(await bridge.alive_workers())
        except asyncio.CancelledError:
            raise
        except Exception:
            continue  # the scheduler is busy or restarting: ask again
        for w in list(pool._workers):
            if isinstance(w, DaskWorker) and w.address not in alive:
                w.lost("its Dask worker left the cluster")


async def replace_worker(pool: Pool, lost: _Worker) -> DaskWorker:
    """A new actor on the live Dask worker with the fewest of this pool's workers."""
    assert isinstance(lost, DaskWorker)
    bridge = lost.bridge
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REPLACE_TIMEOUT
    while True:
        addresses = await bridge.alive_workers()
        if addresses:
            break
        if loop.time() > deadline:
            raise BrokenPoolError("no Dask worker is left to replace a lost one")
        await asyncio.sleep(WATCH_INTERVAL)
    load = {a: 0 for a in addresses}
    for w in pool._workers:
        if isinstance(w, DaskWorker) and w.address in load:
            load[w.address] += 1
    address = min(addresses, key=lambda a: (load[a], a != lost.address))
    worker = DaskWorker(pool, bridge, address)
    pool._workers.append(worker)
    try:
        await worker.start()
    except BaseException:
        with contextlib.suppress(ValueError):
            pool._workers.remove(worker)
        raise
    return worker
