"""TLS: asyncio's ``SSLProtocol`` state machine with its per-record paths native.

The handshake, shutdown, timeouts and error reporting (once per connection) are asyncio's
own code; reading and writing records (once per message) go through
``_native.SslFast`` (``crates/ferroloop-python/src/ssl_fast.rs``), whose bound methods
replace, per instance, ``get_buffer``, ``buffer_updated``, ``_do_read``,
``_write_appdata`` and the app transport's ``write``. ``start_tls`` here is asyncio's,
building this protocol instead of asyncio's.
"""

from __future__ import annotations

import ssl
from asyncio import protocols, transports
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from . import _compat, _native

if TYPE_CHECKING:
    from ._loopbase import LoopBase
else:
    LoopBase = object


class SSLProtocol(_compat.SSLProtocol):
    _outgoing: ssl.MemoryBIO
    _flush_batch: Callable[[], None]
    _batched: Callable[[], int]
    if TYPE_CHECKING:

        def _do_read(self) -> None: ...  # asyncio's (not in typeshed)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        fast = _native.SslFast(self)
        # the native paths, as instance attributes over asyncio's methods
        self.get_buffer = fast.get_buffer  # type: ignore[method-assign]
        self.buffer_updated = fast.buffer_updated  # type: ignore[method-assign]
        self._do_read = fast._do_read  # type: ignore[method-assign]
        self._write_appdata = fast._write_appdata  # type: ignore[method-assign]
        self._app_transport.write = fast.write  # type: ignore[method-assign]
        self._flush_batch = fast._flush_batch
        self._batched = fast._batched

    def _get_write_buffer_size(self) -> int:
        # writes waiting for the end of the run phase count as sent, as after asyncio's
        # immediate encryption and send
        return self._outgoing.pending + self._write_buffer_size - min(
            self._batched(), self._write_buffer_size)

    def _abort(self, *args: Any) -> None:
        # writes of this run phase still waiting for its end: asyncio had sent them at
        # write() (ssl_fast.rs, "Write batching")
        self._flush_batch()
        super()._abort(*args)


class StartTLSMixin(LoopBase):
    async def start_tls(
        self,
        transport: transports.BaseTransport,
        protocol: protocols.BaseProtocol,
        sslcontext: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> transports.Transport:
        """Upgrade ``transport`` to TLS; return the transport ``protocol`` uses from now on."""
        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(
                f"sslcontext is expected to be an instance of ssl.SSLContext, "
                f"got {sslcontext!r}"
            )
        if not getattr(transport, "_start_tls_compatible", False):
            raise TypeError(f"transport {transport!r} is not supported by start_tls()")
        # a transport that declares _start_tls_compatible is a stream Transport
        transport = cast(transports.Transport, transport)
        waiter = self.create_future()
        ssl_protocol = SSLProtocol(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            call_connection_made=False,
        )
        # paused until connection_made has run, so no data reaches the protocol before it
        transport.pause_reading()
        transport.set_protocol(ssl_protocol)
        made = self.call_soon(ssl_protocol.connection_made, transport)
        resumed = self.call_soon(transport.resume_reading)
        try:
            await waiter
        except BaseException:
            transport.close()
            made.cancel()
            resumed.cancel()
            raise
        return ssl_protocol._app_transport
