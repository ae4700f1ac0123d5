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
name; none is copied.
"""

from asyncio import base_events, constants, selector_events, unix_events

from . import _sslproto
from ._transports import Server, SocketTransport

_selector_loop = selector_events.BaseSelectorEventLoop
_unix_loop = unix_events._UnixSelectorEventLoop


class StreamsMixin:
    """The transport factory and server plumbing ``BaseEventLoop`` calls."""

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        return SocketTransport(self, sock, protocol, waiter, extra, server)

    def _make_ssl_transport(
        self,
        rawsock,
        protocol,
        sslcontext,
        waiter=None,
        *,
        server_side=False,
        server_hostname=None,
        extra=None,
        server=None,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
    ):
        # asyncio's TLS state machine with native record paths (_sslproto.py) over the
        # native stream transport
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
        return ssl_protocol._app_transport

    async def create_server(self, *args, **kwargs):
        server = await base_events.BaseEventLoop.create_server(self, *args, **kwargs)
        server.__class__ = Server  # adds close_clients/abort_clients (no state of its own)
        return server

    async def create_unix_server(self, *args, **kwargs):
        server = await _unix_loop.create_unix_server(self, *args, **kwargs)
        server.__class__ = Server
        return server

    # accepting connections: a reader on the listening socket, one transport per accept
    _start_serving = _selector_loop._start_serving
    _accept_connection = _selector_loop._accept_connection
    _accept_connection2 = _selector_loop._accept_connection2
    _stop_serving = _selector_loop._stop_serving

    # Unix sockets
    create_unix_connection = _unix_loop.create_unix_connection

    # zero-copy sendfile: os.sendfile driven by writability, asyncio's fallback otherwise
    _sendfile_native = _selector_loop._sendfile_native
    _sock_sendfile_native = _unix_loop._sock_sendfile_native
    _sock_sendfile_native_impl = _unix_loop._sock_sendfile_native_impl
    _sock_sendfile_update_filepos = _unix_loop._sock_sendfile_update_filepos
    _sock_add_cancellation_callback = _unix_loop._sock_add_cancellation_callback
