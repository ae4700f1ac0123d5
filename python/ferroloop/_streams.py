"""Stream connections and servers: the loop methods around ``SocketTransport``.

``BaseEventLoop`` already owns the argument handling of ``create_connection``,
``create_server``, ``connect_accepted_socket``, ``sendfile`` and ``sock_sendfile``
(resolution, happy eyeballs, the ``Server`` object); it asks the concrete loop for the
pieces below. They run once per connection or once per server, so they are Python; the
transport they create is native (``_transports.py``).

Decision: where CPython's selector and Unix loops implement a once-per-connection piece
(accepting, ``create_unix_*``, ``os.sendfile``) purely on the public loop API that
ferroloop also has, the loop uses CPython's own function from the installed interpreter
rather than a rewrite, exactly as it inherits ``BaseEventLoop``: one definition of
asyncio's behaviour, kept in step with the interpreter. The functions are listed here by
name; none is copied, except ``_stop_serving``'s socket-file clean-up, adapted from 3.13's
``_UnixSelectorEventLoop._stop_serving`` (it calls ``super()``, so it cannot be reused;
PSF licence, see NOTICE).
"""

from __future__ import annotations

import os
import socket
import ssl
from asyncio import base_events, constants, futures, log, protocols, transports
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from . import _compat, _server, _sslproto
from ._transports import SocketTransport

if TYPE_CHECKING:
    from ._loopbase import LoopBase
else:
    LoopBase = object

_selector_loop = _compat.SelectorEventLoop
_unix_loop = _compat.UnixSelectorEventLoop


class StreamsMixin(LoopBase):
    """The transport factory and server plumbing ``BaseEventLoop`` calls."""

    _unix_server_sockets: dict[socket.socket, int]

    def _streams_init(self) -> None:
        # 3.13's create_unix_server(cleanup_socket=True) records {socket: inode} here, and
        # _stop_serving removes the socket file if it is still that one (3.11 and 3.12
        # leave the file, and record nothing)
        self._unix_server_sockets = {}

    def _make_socket_transport(
        self,
        sock: socket.socket,
        protocol: protocols.BaseProtocol,
        waiter: futures.Future[Any] | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        server: base_events.Server | None = None,
    ) -> SocketTransport:
        if _compat.TRANSPORT_CHECKS_FD:
            self._ensure_fd_no_transport(sock)
        return SocketTransport(self, sock, protocol, waiter, extra, server)
    def _make_ssl_transport(
        self,
        rawsock: socket.socket,
        protocol: protocols.BaseProtocol,
        sslcontext: ssl.SSLContext,
        waiter: futures.Future[Any] | None = None,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        extra: Mapping[str, Any] | None = None,
        server: base_events.Server | None = None,
        ssl_handshake_timeout: float | None = constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout: float | None = constants.SSL_SHUTDOWN_TIMEOUT,
    ) -> transports.Transport:
        # ferroloop's TLS protocol (_sslproto.py) over the native stream transport
        if _compat.TRANSPORT_CHECKS_FD:
            self._ensure_fd_no_transport(rawsock)
        ssl_protocol = _sslproto.SSLProtocol(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        SocketTransport(self, rawsock, ssl_protocol, extra=extra, server=server)
        return cast(transports.Transport, ssl_protocol._app_transport)

    if not TYPE_CHECKING:  # to a type checker, asyncio's (the Server is ferroloop's subclass)

        async def create_server(self, *args, **kwargs):
            server = await base_events.BaseEventLoop.create_server(self, *args, **kwargs)
            return _server.adopt(server)

        async def create_unix_server(self, *args, **kwargs):
            server = await _unix_loop.create_unix_server(self, *args, **kwargs)
            return _server.adopt(server)

    # accepting connections: a reader on the listening socket, one transport per accept
    def _start_serving(
        self,
        protocol_factory: Callable[[], protocols.BaseProtocol],
        sock: socket.socket,
        sslcontext: ssl.SSLContext | None = None,
        server: base_events.Server | None = None,
        *args: Any,
    ) -> None:
        if server is not None:
            _server.adopt(server)  # before its first connection attaches
        _selector_loop._start_serving(self, protocol_factory, sock, sslcontext, server, *args)

    _accept_connection = _selector_loop._accept_connection
    _accept_connection2 = _selector_loop._accept_connection2

    def _stop_serving(self, sock: socket.socket) -> None:
        """Stop accepting on ``sock`` and close it; remove the socket file that
        ``create_unix_server(cleanup_socket=True)`` made (3.13), as asyncio's Unix loop does."""
        path = sock.getsockname() if sock in self._unix_server_sockets else None
        self._remove_reader(sock.fileno())
        sock.close()
        if path is None:
            return
        inode = self._unix_server_sockets.pop(sock)
        try:
            if os.stat(path).st_ino == inode:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            log.logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)

    if not TYPE_CHECKING:  # Unix sockets (to a type checker, asyncio's)
        create_unix_connection = _unix_loop.create_unix_connection

    # zero-copy sendfile: os.sendfile driven by writability, asyncio's fallback otherwise
    _sendfile_native = _selector_loop._sendfile_native
    _sock_sendfile_native = _unix_loop._sock_sendfile_native
    _sock_sendfile_native_impl = _unix_loop._sock_sendfile_native_impl
    _sock_sendfile_update_filepos = _unix_loop._sock_sendfile_update_filepos
    _sock_add_cancellation_callback = _unix_loop._sock_add_cancellation_callback
