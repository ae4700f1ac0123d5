"""Write flow control of ferroloop's transports: asyncio's contract, ferroloop's code.

A transport with a write buffer calls its protocol's ``pause_writing()`` when the buffer
grows past the high-water mark and ``resume_writing()`` when it drains to the low-water
mark or below; an exception from either goes to the loop's exception handler with
asyncio's message and context keys (``transport``, ``protocol``). The marks default to
64 KiB and a quarter of it. ``FlowControl`` serves the datagram and pipe transports
(``_datagram.py``, ``_pipes.py``), whose state is Python attributes; the stream transport
keeps its state in its native core and shares only ``write_buffer_limits``.
"""

from __future__ import annotations

from asyncio import protocols
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._loopbase import LoopBase


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

    def get_write_buffer_size(self) -> int:
        raise NotImplementedError

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
