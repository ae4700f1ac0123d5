"""``ferroloop.EventLoop``: the native loop plus asyncio's once-per-loop API.

Layer decision (docs/architecture.md): everything that runs per callback, per timer or per
readiness event is native (``_native.EventLoop``); what runs once per loop or once per call
of a rare method is inherited from asyncio's ``BaseEventLoop`` (exception handler,
``run_until_complete``, executors, async generator hooks, task factory) or written here
(sockets, signals, DNS fast path). The attributes ``BaseEventLoop`` shares with the native
half (``_closed``, ``_stopping``, ``_thread_id``, ``_debug``...) are native properties,
so there is one state.
"""

from __future__ import annotations

import sys
import threading
import weakref
from asyncio import base_events, futures
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVarTuple

from . import _compat, _monitor, _native
from ._datagram import DatagramMixin
from ._dns import DnsMixin
from ._pipes import PipesMixin
from ._signals import SignalMixin
from ._sock import SockMixin
from ._sslproto import StartTLSMixin
from ._streams import StreamsMixin
from ._subprocess import SubprocessMixin

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

_Ts = TypeVarTuple("_Ts")

_FAST_METHODS = ("call_soon", "call_soon_threadsafe", "call_later", "call_at")


# The native scheduling methods return ``_native.Handle``/``TimerHandle``: asyncio's API, not
# its classes, so their definitions differ from ``BaseEventLoop``'s (hence the ignore). A
# caller that holds an ``EventLoop`` sees the native types; as an ``AbstractEventLoop`` it
# sees asyncio's.
class EventLoop(  # type: ignore[misc]
    StreamsMixin,
    StartTLSMixin,
    DatagramMixin,
    PipesMixin,
    SubprocessMixin,
    SockMixin,
    SignalMixin,
    DnsMixin,
    _native.EventLoop,
    base_events.BaseEventLoop,
):
    """An asyncio event loop whose engine is written in Rust."""

    _old_agen_hooks: sys._asyncgen_hooks | None
    _watchdog: _monitor.Watchdog | None = None

    def __init__(self) -> None:
        base_events.BaseEventLoop.__init__(self)
        self._transports = weakref.WeakValueDictionary()
        self._old_agen_hooks = None
        self._streams_init()
        self._signal_init()
        self._subprocess_init()
        # asyncio's Task looks call_soon up on every step: instance attributes bound once
        # skip the bound-method allocation and argument parsing (fastcall.rs). A subclass
        # that overrides one of these methods keeps its own.
        cls = type(self)
        if cls.create_future is _native.EventLoop.create_future:
            self._set_future_type(futures.Future)
        for name, function in self._fast_methods():
            if getattr(cls, name) is getattr(_native.EventLoop, name):
                setattr(self, name, function)
        # asyncio reads its clock through self.time(): a subclass's time() is the clock of
        # the turns and of call_later (as is a time set on the instance: __setattr__)
        if cls.time is not _native.EventLoop.time:
            self._set_class_time(True)
        _monitor.from_environment(self)

    # asyncio's turns and call_later read self.time(): a time set on the instance (a test's
    # mock.patch.object(loop, "time", ...)) becomes the clock. The native half keeps a flag
    # (a dict lookup per call_later cost 5% of a timer); only setattr/delattr are seen, not a
    # write straight into __dict__. In Python, not a native slot: object.__setattr__(loop,
    # ...) keeps working.

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        if name == "time":
            self._set_instance_time(True)
        elif name == "slow_callback_duration":
            # the native slow-callback report's threshold (asyncio validates nothing here:
            # a value that is not a number leaves the threshold as it was)
            try:
                self._set_slow_callback_duration(float(value))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                pass

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)
        if name == "time":
            self._set_instance_time(False)

    # -- lifecycle -----------------------------------------------------------------------

    def run_forever(self) -> None:
        """Run until ``stop()`` is called."""
        self._run_forever_setup()
        try:
            if "_run_once" in self.__dict__:
                # someone wrapped _run_once on this loop (tests count turns): honour it
                while True:
                    self._run_once()
                    if self._stopping:
                        break
            else:
                self._run_forever_native()
        finally:
            self._run_forever_cleanup()

    # 3.13 splits run_forever into these so that an embedding (a GUI toolkit) can drive
    # _run_once itself; ferroloop has them on every version (adapted from asyncio's
    # base_events, PSF licence: NOTICE)
    def _run_forever_setup(self) -> None:
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        self._old_agen_hooks = sys.get_asyncgen_hooks()
        self._thread_id = threading.get_ident()
        sys.set_asyncgen_hooks(
            firstiter=self._asyncgen_firstiter_hook,
            finalizer=self._asyncgen_finalizer_hook,
        )
        _compat.set_running_loop(self)
        self._stats_run(True)

    def _run_forever_cleanup(self) -> None:
        self._stats_run(False)
        self._stopping = False
        self._thread_id = None
        _compat.set_running_loop(None)
        self._set_coroutine_origin_tracking(False)
        if self._old_agen_hooks is not None:
            sys.set_asyncgen_hooks(*self._old_agen_hooks)
            self._old_agen_hooks = None

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        self._signals_close()
        self._subprocess_close()
        watchdog = self._watchdog
        if watchdog is not None:
            self._watchdog = None
            watchdog.stop()
        base_events.BaseEventLoop.close(self)
        self._close_native()
        # drop the bound fast methods: they reference the loop (a cycle only the GC
        # would break); the class methods raise "Event loop is closed" just the same
        for name in _FAST_METHODS:
            self.__dict__.pop(name, None)

    # -- seeing into the loop (ferroloop's own API: _monitor.py) ----------------------------

    def stats(self) -> _monitor.LoopStats:
        """The loop's counters now: turns, callbacks, I/O events, timers, idle and running
        time, timer lag; with the slow-callback report on, the longest callback too."""
        return _monitor.stats(self)

    def set_slow_callback_report(self, enabled: bool = True, *, watchdog: bool = False) -> None:
        """Time every callback, outside debug mode too: one that takes
        ``slow_callback_duration`` or more is logged as asyncio's debug mode logs it, and
        ``stats()`` gains the longest callback. With ``watchdog``, a thread captures the
        loop thread's Python stack while such a callback still blocks it, and the report
        shows it. Costs one clock read per callback (docs/observability.md)."""
        _monitor.set_slow_callback_report(self, enabled, watchdog)

    # -- readiness watchers (public API; the native half does the work) ------------------

    def add_reader(
        self,
        fd: FileDescriptorLike,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
    ) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is readable."""
        self._ensure_fd_no_transport(fd)
        self._add_reader(fd, callback, *args)

    def remove_reader(self, fd: FileDescriptorLike) -> bool:
        """Stop watching ``fd`` for reading; True if it was watched."""
        self._ensure_fd_no_transport(fd)
        return self._remove_reader(fd)

    def add_writer(
        self,
        fd: FileDescriptorLike,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
    ) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is writable."""
        self._ensure_fd_no_transport(fd)
        self._add_writer(fd, callback, *args)

    def remove_writer(self, fd: FileDescriptorLike) -> bool:
        """Stop watching ``fd`` for writing; True if it was watched."""
        self._ensure_fd_no_transport(fd)
        return self._remove_writer(fd)
