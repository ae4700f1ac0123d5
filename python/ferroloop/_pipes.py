"""Pipes: ``connect_read_pipe``/``connect_write_pipe`` (``BaseEventLoop``) need these factories.

The transports are asyncio's own Unix pipe transports from the installed interpreter for
everything that happens once per pipe or on an unusual path (they use only the loop API
ferroloop has: pipes, sockets and character devices accepted, regular files refused with
asyncio's ``ValueError``). Their per-chunk and per-event methods, ``_read_ready`` of a
read pipe, ``write`` and ``_write_ready`` of a write pipe, are a native object's
(``_native.PipeFast``, crates/ferroloop-python/src/pipe.rs), bound into the instance dict
before asyncio's ``__init__`` registers the reader; the native methods hand every unusual
case back to asyncio's.
"""

from __future__ import annotations

from asyncio import futures, protocols
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import _compat, _native

if TYPE_CHECKING:
    from ._compat import _PipeTransport
    from ._loopbase import LoopBase
else:
    _PipeTransport = LoopBase = object


def _fileno(pipe: Any) -> int | None:
    try:
        fd: int = pipe.fileno()
    except (AttributeError, ValueError, OSError):
        return None
    return fd


class _FastPipeMixin(_PipeTransport):
    _fast: _native.PipeFast | None = None

    def _bind_fast(self, loop: LoopBase, pipe: Any, *names: str) -> None:
        fd = _fileno(pipe)
        if fd is None:
            return
        fast = _native.PipeFast(self, loop, fd)
        self._fast = fast
        for name in names:
            self.__dict__[name] = getattr(fast, name)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            super()._call_connection_lost(exc)
        finally:
            fast, self._fast = self._fast, None
            if fast is not None:
                fast._detach()
                self.__dict__.pop("_read_ready", None)
                self.__dict__.pop("write", None)
                self.__dict__.pop("_write_ready", None)


class ReadPipeTransport(_FastPipeMixin, _compat.UnixReadPipeTransport):
    """asyncio's read pipe transport with a native read path."""

    def __init__(
        self,
        loop: LoopBase,
        pipe: Any,
        protocol: protocols.BaseProtocol,
        waiter: futures.Future[Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self._bind_fast(loop, pipe, "_read_ready")
        super().__init__(loop, pipe, protocol, waiter, extra)


class WritePipeTransport(_FastPipeMixin, _compat.UnixWritePipeTransport):
    """asyncio's write pipe transport with native writes (immediate and buffered) and
    a native ``_write_ready``."""

    def __init__(
        self,
        loop: LoopBase,
        pipe: Any,
        protocol: protocols.BaseProtocol,
        waiter: futures.Future[Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self._bind_fast(loop, pipe, "write", "_write_ready")
        super().__init__(loop, pipe, protocol, waiter, extra)


class PipesMixin(LoopBase):
    def _make_read_pipe_transport(
        self,
        pipe: Any,
        protocol: protocols.BaseProtocol,
        waiter: futures.Future[Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> ReadPipeTransport:
        return ReadPipeTransport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(
        self,
        pipe: Any,
        protocol: protocols.BaseProtocol,
        waiter: futures.Future[Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> WritePipeTransport:
        return WritePipeTransport(self, pipe, protocol, waiter, extra)
