"""Flow control and error reports of ferroloop's datagram and pipe transports.

Writes: asyncio's contract, ferroloop's code.

A transport with a write buffer calls its protocol's ``pause_writing()`` when the buffer
grows past the high-water mark and ``resume_writing()`` when it drains to the low-water
mark or below; an exception from either goes to the loop's exception handler with
asyncio's message and context keys (``transport``, ``protocol``). The marks default to
64 KiB and a quarter of it. ``FlowControl`` serves the datagram and pipe transports
(``_datagram.py``, ``_pipes.py``), whose state is Python attributes; the stream transport
keeps its state in its native core and shares only ``write_buffer_limits``.

Reads: ``Reading`` is ``pause_reading``/``resume_reading``/``is_reading`` over a transport's
watched descriptor, and ``report_fatal`` asyncio's report of a fatal error (logged in
debug mode when expected, else to the exception handler).
"""

from __future__ import annotations

from asyncio import log, protocols
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._loopbase import LoopBase

logger = log.logger


def write_buffer_limits(high: int | None = None, low: int | None = None) -> tuple[int, int]:
    """``(high, low)`` as asyncio derives them from what ``set_write_buffer_limits`` got."""
    if high is None:
        high = 64 * 1024 if low is None else 4 * low
    if low is None:
        low = high // 4
    if not high >= low >= 0:
        raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
    return high, low


class FlowControl:
    """``pause_writing``/``resume_writing`` around a transport's ``get_write_buffer_size()``."""

    _loop: LoopBase | None
    _protocol: Any
    _protocol_paused: bool = False
    _high_water: int = 64 * 1024
    _low_water: int = 16 * 1024

    if TYPE_CHECKING:

        def get_write_buffer_size(self) -> int: ...  # the transport's

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def _set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high_water, self._low_water = write_buffer_limits(high, low)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._set_write_buffer_limits(high=high, low=low)
        self._maybe_pause_protocol()

    def _maybe_pause_protocol(self) -> None:
        if self.get_write_buffer_size() <= self._high_water or self._protocol_paused:
            return
        self._protocol_paused = True
        self._call_protocol("pause_writing")

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and self.get_write_buffer_size() <= self._low_water:
            self._protocol_paused = False
            self._call_protocol("resume_writing")

    def _call_protocol(self, name: str) -> None:
        protocol: protocols.BaseProtocol = self._protocol
        try:
            getattr(protocol, name)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            assert self._loop is not None
            self._loop.call_exception_handler(
                {
                    "message": f"protocol.{name}() failed",
                    "exception": exc,
                    "transport": self,
                    "protocol": protocol,
                }
            )


class Reading:
    """``pause_reading``/``resume_reading`` of a transport that watches ``_read_fd``."""

    _loop: LoopBase | None
    _closing: bool
    _paused: bool = False

    if TYPE_CHECKING:

        @property
        def _read_fd(self) -> int: ...  # the transport's descriptor

        def _watch_reading(self) -> None: ...  # its native step, or its method

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def _start_reading(self) -> None:
        if self.is_reading():
            self._watch_reading()

    def pause_reading(self) -> None:
        if not self.is_reading():
            return
        self._paused = True
        assert self._loop is not None
        self._loop._remove_reader(self._read_fd)
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._start_reading()
        assert self._loop is not None
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)


def report_fatal(transport: Any, exc: BaseException, message: str, quiet: bool) -> None:
    """asyncio's report of a transport's fatal error: logged in debug mode when ``quiet``,
    else to the exception handler with the transport and its protocol."""
    loop = transport._loop
    assert loop is not None
    if quiet:
        if loop.get_debug():
            logger.debug("%r: %s", transport, message, exc_info=True)
    else:
        loop.call_exception_handler(
            {
                "message": message,
                "exception": exc,
                "transport": transport,
                "protocol": transport._protocol,
            }
        )
