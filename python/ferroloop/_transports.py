"""``SocketTransport``: the ``asyncio.Transport`` of TCP and Unix stream connections.

A real ``asyncio.Transport`` subclass whose work is done by a native core
(``_native.SocketTransportCore``, crates/ferroloop-python/src/transport.rs). The methods a
protocol calls per message (``write``, ``writelines``, ``is_closing``, ``pause_reading``,
``resume_reading``, ``get_write_buffer_size``) are the core's own methods, bound into the
instance dict once per connection: ``transport.write(data)`` is then one native call with
no Python frame. The rest (construction, ``repr``, error reports, buffer limits) runs once
per connection or per error and stays here.

asyncio's private attributes that other parts of asyncio read (``_sock``, ``_sock_fd``,
``_loop``, ``_protocol``, ``_closing``, ``_conn_lost``, ``_protocol_paused``, ...) are
properties reading the core, so there is one state.
"""

from __future__ import annotations

import socket
import warnings
from asyncio import base_events, futures, log, protocols, transports, trsock
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from . import _compat, _native, _server
from ._flow import write_buffer_limits

if TYPE_CHECKING:
    from ._loopbase import LoopBase

logger = log.logger

_HOT_METHODS = (
    "write",
    "writelines",
    "is_closing",
    "pause_reading",
    "resume_reading",
    "get_write_buffer_size",
)


def debug(fmt: str, transport: SocketTransport) -> None:
    """Debug-mode log line about a transport (called by the core)."""
    logger.debug(fmt, transport)


def warn_send_after_lost() -> None:
    """asyncio's warning for writes to a transport whose connection is lost."""
    logger.warning("socket.send() raised exception.")


def attach(server: base_events.Server, transport: transports.Transport) -> None:
    """Count a new connection of ``server`` (``_server.Server``, every version)."""
    _server.adopt(server)._attach(transport)


def detach(server: _server.Server, transport: transports.Transport) -> None:
    """The connection is lost (called by the core once per connection)."""
    server._detach(transport)


def _set_nodelay(sock: socket.socket) -> None:
    """Disable Nagle's algorithm on TCP sockets, as asyncio does, and also on TCP sockets
    made with ``proto=0`` (``socket.socket()``, and the connections they accept), which
    asyncio's check skips: there, two writes of one response (headers, body) meet the
    peer's delayed ACK and wait 40 ms (measured: uvicorn on asyncio served 1,100 requests/s
    instead of 20,000). docs/compatibility.md lists this difference."""
    if (
        sock.family in (socket.AF_INET, socket.AF_INET6)
        and sock.type == socket.SOCK_STREAM
        and sock.proto in (0, socket.IPPROTO_TCP)
    ):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def add_socket_extra(extra: dict[str, Any], sock: socket.socket) -> None:
    """A socket transport's extra info, as asyncio's selector transports set it:
    ``socket``, ``sockname`` and (unless given) ``peername``, None where the socket has none."""
    extra["socket"] = trsock.TransportSocket(sock)
    try:
        extra["sockname"] = sock.getsockname()
    except OSError:
        extra["sockname"] = None
    if "peername" not in extra:
        try:
            extra["peername"] = sock.getpeername()
        except OSError:
            extra["peername"] = None


def _core_property(name: str, doc: str) -> property:
    return property(lambda self: getattr(self._core, name), doc=doc)


class SocketTransport(_compat.FlowControlMixin, transports.Transport):
    """A TCP or Unix stream transport (asyncio's ``_SelectorSocketTransport``).

    ``_FlowControlMixin`` is a base for ``isinstance`` checks only (asyncio's sendfile
    fallback demands it); its state and methods are the core's, overridden below.
    """

    _start_tls_compatible = True
    _sendfile_compatible = _compat.SendfileMode.TRY_NATIVE
    max_size = 256 * 1024
    _extra: dict[str, Any]  # BaseTransport's
    # None only on an instance whose __init__ failed (repr and __del__ check)
    _core: _native.SocketTransportCore = None  # type: ignore[assignment]

    def __init__(
        self,
        loop: LoopBase,
        sock: socket.socket,
        protocol: protocols.BaseProtocol,
        waiter: futures.Future[Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        server: base_events.Server | None = None,
    ) -> None:
        # BaseTransport's __init__ only: the flow-control state lives in the core
        transports.BaseTransport.__init__(self, extra)
        add_socket_extra(self._extra, sock)
        core = _native.SocketTransportCore(loop, sock, protocol, self, server)
        self._core = core
        namespace = self.__dict__
        for name in _HOT_METHODS:
            namespace[name] = getattr(core, name)
        if server is not None:
            attach(server, self)
        loop._transports[core._sock_fd] = self
        _set_nodelay(sock)
        loop.call_soon(protocol.connection_made, self)
        # only start reading once connection_made() has run
        loop.call_soon(core._start_reading)
        if waiter is not None:
            # only wake the waiter once connection_made() has run
            loop.call_soon(_compat.set_result_unless_cancelled, waiter, None)

    _sock = _core_property("_sock", "The socket; None once the connection is lost.")
    _sock_fd = _core_property("_sock_fd", "The socket's descriptor number.")
    _loop = _core_property("_loop", "The loop; None once the connection is lost.")
    _protocol = _core_property("_protocol", "The protocol; None once the connection is lost.")
    _server = _core_property("_server", "The Server that accepted the connection, if any.")
    _closing = _core_property("_closing", "close() or a fatal error happened.")
    _conn_lost = _core_property("_conn_lost", "Non-zero once connection_lost is scheduled.")
    _eof = _core_property("_eof", "write_eof() was called.")
    _paused = _core_property("_paused", "pause_reading() is in effect.")
    _empty_waiter = _core_property("_empty_waiter", "sendfile's wait for an empty buffer.")
    _protocol_connected = _core_property("_protocol_connected", "A protocol is set.")

    @property
    def _protocol_paused(self) -> bool:
        return self._core._protocol_paused

    @_protocol_paused.setter
    def _protocol_paused(self, value: bool) -> None:
        self._core._protocol_paused = value

    @property
    def _low_water(self) -> int:
        return self._core.get_write_buffer_limits()[0]

    @property
    def _high_water(self) -> int:
        return self._core.get_write_buffer_limits()[1]

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        core = self._core
        if core is None or core._sock is None:
            info.append("closed")
        elif core._closing:
            info.append("closing")
        if core is not None:
            info.append(f"fd={core._sock_fd}")
            loop = cast("LoopBase | None", core._loop)  # the loop __init__ was given
            if loop is not None and not loop.is_closed():
                info.append("read=polling" if core._read_polling else "read=idle")
                state = "polling" if core._write_polling else "idle"
                info.append(f"write=<{state}, bufsize={core.get_write_buffer_size()}>")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        core = self._core
        if core is not None and core._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            server = core._server
            sock = core._detach_sock()
            if sock is not None:
                sock.close()
                if server is not None and _compat.SERVER_DETACH_ON_DEL:
                    # 3.13: an unclosed transport leaves its server (adopted: _server.Server)
                    cast(_server.Server, server)._detach(self)

    # -- the rest of the Transport API (once per connection) ------------------------------

    def close(self) -> None:
        self._core.close()

    def abort(self) -> None:
        self._core.abort()

    def write_eof(self) -> None:
        self._core.write_eof()

    def can_write_eof(self) -> bool:
        return True

    def is_reading(self) -> bool:
        return self._core.is_reading()

    def set_protocol(self, protocol: protocols.BaseProtocol) -> None:
        self._core.set_protocol(protocol)

    # None once the connection is lost, as asyncio's own transports (typeshed: BaseProtocol)
    def get_protocol(self) -> protocols.BaseProtocol | None:  # type: ignore[override]
        return self._core.get_protocol()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._core.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._set_write_buffer_limits(high=high, low=low)
        self._core._maybe_pause_protocol()

    def _set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._core._set_limits(*write_buffer_limits(high, low))

    def _maybe_pause_protocol(self) -> None:
        self._core._maybe_pause_protocol()

    def _maybe_resume_protocol(self) -> None:
        self._core._maybe_resume_protocol()

    # -- asyncio internals other parts of asyncio call ------------------------------------

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on transport") -> None:
        if isinstance(exc, OSError):
            loop = self._core._loop
            if loop is not None and loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            cast("LoopBase", self._core._loop).call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._core._protocol,
                }
            )
        self._core._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        self._core._force_close(exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        self._core._call_connection_lost(exc)

    def _make_empty_waiter(self) -> futures.Future[None]:
        return self._core._make_empty_waiter()

    def _reset_empty_waiter(self) -> None:
        self._core._reset_empty_waiter()
