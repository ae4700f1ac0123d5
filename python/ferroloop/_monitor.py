"""Seeing into a loop: its counters (``loop.stats()``), the slow-callback report outside
debug mode, and the watchdog that captures what a blocked loop thread is doing.

The counting is native (``crates/ferroloop/src/engine/stats.rs``): turns, callbacks, I/O events,
timers and idle time always; callback timing (the longest callback, slow callbacks) when
``set_slow_callback_report`` turns it on. What is here runs once per loop, per report or per
watchdog tick.

Environment: ``FERROLOOP_SLOW_CALLBACKS=1`` turns the report on for every new ferroloop loop,
``FERROLOOP_SLOW_CALLBACKS=watchdog`` with the watchdog too (for ``python -m ferroloop run``
and other programs that are not changed).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
import traceback
import weakref
from asyncio import base_events
from typing import TYPE_CHECKING

from ._handles import describe_handle

if TYPE_CHECKING:
    from . import _native
    from ._loop import EventLoop

ENV = "FERROLOOP_SLOW_CALLBACKS"


@dataclasses.dataclass(frozen=True)
class LoopStats:
    """A ferroloop loop's counters at one moment (``loop.stats()``).

    Always kept: ``turns``, ``callbacks`` (handles run), ``io_events`` (readiness events
    turned into callbacks), ``timers_fired``, ``poll_time`` (seconds the loop spent idle in
    polls that could block), ``run_time`` (seconds inside ``run_forever`` not idle),
    ``timer_lag`` (how late, in seconds, the due timers of the last turn that fired any
    ran) and ``max_timer_lag``. With the slow-callback report on (``callback_timing``):
    ``longest_callback`` (seconds) and ``longest_callback_repr`` (asyncio's text for its
    handle), ``None`` until a callback was timed; ``slow_callbacks`` counts the callbacks
    that took ``slow_callback_duration`` or more (timed, or in debug mode).
    """

    turns: int
    callbacks: int
    io_events: int
    timers_fired: int
    poll_time: float
    run_time: float
    timer_lag: float
    max_timer_lag: float
    callback_timing: bool
    longest_callback: float | None
    longest_callback_repr: str | None
    slow_callbacks: int


def stats(loop: _native.EventLoop) -> LoopStats:
    return LoopStats(**loop._stats())


def report_slow_callback(
    loop: EventLoop, handle: _native.Handle, seconds: float, stack: str | None
) -> None:
    """asyncio's debug-mode warning, outside debug mode; with the stack of the loop thread
    that the watchdog captured while this callback blocked it."""
    # looked up at call time, so a test patching asyncio.base_events.logger sees it
    logger = base_events.logger  # type: ignore[attr-defined]  # not in typeshed
    if stack:
        logger.warning(
            "Executing %s took %.3f seconds; the loop thread was blocked in:\n%s",
            describe_handle(handle), seconds, stack.rstrip("\n"),
        )
    else:
        logger.warning("Executing %s took %.3f seconds", describe_handle(handle), seconds)


class Watchdog:
    """A daemon thread that looks at its loop every quarter of ``slow_callback_duration``
    (between 1 ms and 250 ms): when one callback has run for ``slow_callback_duration``,
    it captures the loop thread's Python stack (``sys._current_frames``), which the
    slow-callback report then shows. It needs the GIL for that: a callback that blocks in C
    code without releasing the GIL is captured when it lets go, if still running."""

    def __init__(self, loop: EventLoop) -> None:
        self._loop = weakref.ref(loop)
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"ferroloop-watchdog-{id(loop):#x}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        captured = 0
        while True:
            loop = self._loop()
            if loop is None or loop.is_closed():
                return
            threshold = float(loop.slow_callback_duration)
            period = min(max(threshold / 4, 0.001), 0.25)
            current = loop._current_callback()
            thread_id = loop._thread_id
            if current is not None and thread_id is not None and current[0] != captured:
                seq, start = current
                if time.monotonic_ns() - start >= threshold * 1e9:
                    frame = sys._current_frames().get(thread_id)
                    if frame is not None:
                        stack = "".join(traceback.format_stack(frame))
                        del frame
                        # still the same callback: the stack is its
                        if loop._current_callback() == current:
                            loop._set_blocked_stack(seq, stack)
                            captured = seq
            del loop
            if self._stopped.wait(period):
                return


def set_slow_callback_report(loop: EventLoop, enabled: bool, watchdog: bool) -> None:
    old = loop._watchdog
    if old is not None and (not enabled or not watchdog):
        loop._watchdog = None
        old.stop()
    loop._set_callback_timing(enabled)
    if enabled and watchdog and loop._watchdog is None:
        loop._watchdog = Watchdog(loop)


def from_environment(loop: EventLoop) -> None:
    """Apply ``FERROLOOP_SLOW_CALLBACKS`` to a new loop."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("", "0", "off", "no", "false"):
        return
    set_slow_callback_report(loop, True, watchdog=value == "watchdog")
