"""Datagram endpoints: the transport ``BaseEventLoop.create_datagram_endpoint`` asks for.

The transport is asyncio's own ``_SelectorDatagramTransport`` from the installed
interpreter for everything that happens once per endpoint or on an unusual path (buffering
when the socket is full, errors, close); for IPv4, IPv6 and Unix datagram sockets its
per-datagram methods ``_read_ready`` and ``sendto`` are a native object's
(``_native.DatagramFast``, crates/ferroloop-python/src/datagram.rs: ``recvmmsg`` and, for
the datagrams sent during one loop turn, one ``sendmmsg``), bound into the instance dict
before asyncio's ``__init__`` registers the reader. The subclass also replaces what reads
asyncio's selector (``repr``) and tells the native loop which descriptors transports own
(the fast ``_ensure_fd_no_transport`` pre-check of ``sock_*``).
"""

from __future__ import annotations

import socket
from asyncio import futures, protocols, transports
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import _compat, _native

if TYPE_CHECKING:
    from ._loopbase import LoopBase
else:
    LoopBase = object


_FAST_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)


class DatagramTransport(_compat.SelectorDatagramTransport):
    """asyncio's datagram transport on a ferroloop loop."""

    _fast: _native.DatagramFast | None = None
    _fd_loop: LoopBase | None

    def __init__(
        self,
        loop: LoopBase,
        sock: socket.socket,
        protocol: protocols.DatagramProtocol,
        address: Any = None,
        waiter: futures.Future[Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if sock.family in _FAST_FAMILIES:
            try:
                # asyncio sends with send() when extra["peername"] is true
                connected = bool(sock.getpeername())
            except OSError:
                connected = False
            fast = _native.DatagramFast(self, loop, sock.fileno(), connected, sock.family)
            self._fast = fast
            self.__dict__["_read_ready"] = fast._read_ready
            self.__dict__["sendto"] = fast.sendto
        super().__init__(loop, sock, protocol, address, waiter, extra)
        self._fd_loop = loop
        loop._transport_fd_taken(self._sock_fd)

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        if self._loop is not None and not self._loop.is_closed():
            info.append(f"write=<bufsize={self.get_write_buffer_size()}>")
        return "<{}>".format(" ".join(info))

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._fast is not None:
            self._fast._flush()  # this turn's datagrams leave before the socket closes
        try:
            super()._call_connection_lost(exc)
        finally:
            fast, self._fast = self._fast, None
            if fast is not None:
                fast._detach()
                self.__dict__.pop("_read_ready", None)
                self.__dict__.pop("sendto", None)
            loop, self._fd_loop = self._fd_loop, None
            if loop is not None:
                loop._transport_fd_released(self._sock_fd)


class DatagramMixin(LoopBase):
    def _make_datagram_transport(
        self,
        sock: socket.socket,
        protocol: protocols.DatagramProtocol,
        address: Any = None,
        waiter: futures.Future[Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> transports.DatagramTransport:
        if _compat.TRANSPORT_CHECKS_FD:
            self._ensure_fd_no_transport(sock)
        return DatagramTransport(self, sock, protocol, address, waiter, extra)
