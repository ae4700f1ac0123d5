"""TLS: ``SSLProtocol``, ferroloop's own, with asyncio's state machine and behaviour.

The state, the ``SSLObject`` with its two ``MemoryBIO``\\ s, the write backlog, the flow
control and every per-record path (receive, decrypt and deliver; encrypt and send; the
flow-control checks) are native: ``_native.SSLProtocolCore``
(crates/ferroloop-python/src/sslproto.rs), the base of the class here, keeps them in
Rust fields under asyncio's attribute names. What happens once per connection is here,
adapted from CPython's ``asyncio/sslproto.py`` (NOTICE): construction, the handshake and
its timeout, the shutdown and its timeout, the app protocol's states, EOF, errors and
their reports, extra info, and ``_SSLProtocolTransport``, the transport the app sees
(its ``write`` is the core's, bound per instance). No asyncio TLS class is used.

Versions: 3.13 aborts with the error that caused it (``_abort(exc)`` closes the raw
transport with ``_force_close(exc)``, so ``connection_lost`` gets it); 3.11 and 3.12
abort with ``transport.abort()``. ``start_tls`` (``StartTLSMixin``) builds this class too.
"""

from __future__ import annotations

import collections
import enum
import ssl
import sys
import warnings
from asyncio import constants, exceptions, log, protocols, transports
from typing import TYPE_CHECKING, Any, cast

from . import _compat, _native

if TYPE_CHECKING:
    from ._loopbase import LoopBase
else:
    LoopBase = object

logger = log.logger

#: 3.13: ``_abort(exc)`` passes the error to the raw transport's ``_force_close``.
ABORT_WITH_ERROR = sys.version_info >= (3, 13)

SSLAgainErrors = (ssl.SSLWantReadError, ssl.SSLSyscallError)


class SSLProtocolState(enum.Enum):
    UNWRAPPED = "UNWRAPPED"
    DO_HANDSHAKE = "DO_HANDSHAKE"
    WRAPPED = "WRAPPED"
    FLUSHING = "FLUSHING"
    SHUTDOWN = "SHUTDOWN"


class AppProtocolState(enum.Enum):
    # INIT -connection_made-> CON_MADE [-data_received*->] [-eof_received-> EOF]
    #      -connection_lost-> CON_LOST
    STATE_INIT = "STATE_INIT"
    STATE_CON_MADE = "STATE_CON_MADE"
    STATE_EOF = "STATE_EOF"
    STATE_CON_LOST = "STATE_CON_LOST"


def _create_transport_context(server_side: bool, server_hostname: str | None) -> ssl.SSLContext:
    if server_side:
        raise ValueError("Server side SSL needs a valid SSLContext")
    # a client may pass ssl=True for the default context, which is secure for clients
    sslcontext = ssl.create_default_context()
    if not server_hostname:
        sslcontext.check_hostname = False
    return sslcontext


def add_flowcontrol_defaults(high: int | None, low: int | None, kb: int) -> tuple[int, int]:
    if high is None:
        hi = kb * 1024 if low is None else 4 * low
    else:
        hi = high
    lo = hi // 4 if low is None else low
    if not hi >= lo >= 0:
        raise ValueError(f"high ({hi!r}) must be >= low ({lo!r}) must be >= 0")
    return hi, lo


class _SSLProtocolTransport(_compat.FlowControlMixin, transports.Transport):
    """The transport a TLS connection's app protocol sees.

    ``_FlowControlMixin`` is a base for ``isinstance`` checks only (asyncio's sendfile
    fallback makes them); every method it has is overridden here or unused.
    """

    _start_tls_compatible = True
    _sendfile_compatible = _compat.SendfileMode.FALLBACK

    def __init__(self, loop: Any, ssl_protocol: SSLProtocol) -> None:
        self._loop = loop
        self._ssl_protocol: SSLProtocol | None = ssl_protocol
        self._closed = False
        # the native write, bound once (ssl_protocol is referenced already)
        self.write = ssl_protocol._app_write  # type: ignore[method-assign]

    def _proto(self) -> SSLProtocol:
        # None only after a second close(), as in asyncio (its methods then fail alike)
        return cast(SSLProtocol, self._ssl_protocol)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Get optional transport information."""
        return self._proto()._get_extra_info(name, default)

    def set_protocol(self, protocol: protocols.BaseProtocol) -> None:
        self._proto()._set_app_protocol(protocol)

    def get_protocol(self) -> protocols.BaseProtocol:
        return cast(protocols.BaseProtocol, self._proto()._app_protocol)

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the transport: buffered data is flushed, then ``connection_lost(None)``."""
        if not self._closed:
            self._closed = True
            self._proto()._start_shutdown()
        else:
            self._ssl_protocol = None
            self.__dict__.pop("write", None)

    def __del__(self, _warnings: Any = warnings) -> None:
        if not self._closed:
            self._closed = True
            _warnings.warn(
                "unclosed transport <asyncio._SSLProtocolTransport object>", ResourceWarning)

    def is_reading(self) -> bool:
        return not self._proto()._app_reading_paused

    def pause_reading(self) -> None:
        """Deliver no data to the protocol until ``resume_reading()``."""
        self._proto()._pause_reading()

    def resume_reading(self) -> None:
        """Deliver data to the protocol again."""
        self._proto()._resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the watermarks of write flow control (``pause_writing``/``resume_writing``)."""
        self._proto()._set_write_buffer_limits(high, low)
        self._proto()._control_app_writing()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        proto = self._proto()
        return (proto._outgoing_low_water, proto._outgoing_high_water)

    def get_write_buffer_size(self) -> int:
        """Return the current size of the write buffers."""
        return self._proto()._get_write_buffer_size()

    def set_read_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the watermarks at which the raw transport's reading pauses and resumes."""
        self._proto()._set_read_buffer_limits(high, low)
        self._proto()._control_ssl_reading()

    def get_read_buffer_limits(self) -> tuple[int, int]:
        proto = self._proto()
        return (proto._incoming_low_water, proto._incoming_high_water)

    def get_read_buffer_size(self) -> int:
        """Return the current size of the read buffer."""
        return self._proto()._get_read_buffer_size()

    @property
    def _protocol_paused(self) -> bool:
        # read by asyncio's sendfile fallback
        return self._proto()._app_writing_paused

    if TYPE_CHECKING:
        def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def writelines(self, list_of_data: Any) -> None:
        """Write an iterable of bytes-like objects."""
        self._proto()._write_appdata(list_of_data)

    def write_eof(self) -> None:
        """TLS transports cannot half-close: always raises ``NotImplementedError``, as
        asyncio's (``can_write_eof()`` is false)."""
        raise NotImplementedError

    def can_write_eof(self) -> bool:
        return False

    def abort(self) -> None:
        """Close at once: buffered data is lost, then ``connection_lost(None)``."""
        if ABORT_WITH_ERROR:
            self._force_close(None)
        else:
            self._closed = True
            self._proto()._abort()

    def _force_close(self, exc: BaseException | None) -> None:
        self._closed = True
        if self._ssl_protocol is not None:
            self._ssl_protocol._abort(exc)

    def _test__append_write_backlog(self, data: bytes) -> None:
        # for CPython's tests
        proto = self._proto()
        proto._write_backlog.append(data)
        proto._write_buffer_size += len(data)


class SSLProtocol(_native.SSLProtocolCore, protocols.BufferedProtocol):
    """A TLS connection over a raw stream transport, as ``asyncio.sslproto.SSLProtocol``."""

    _handshake_start_time: float | None = None
    _handshake_timeout_handle: Any = None
    _shutdown_timeout_handle: Any = None

    def __init__(
        self,
        loop: Any,
        app_protocol: protocols.BaseProtocol,
        sslcontext: ssl.SSLContext | None,
        waiter: Any,
        server_side: bool = False,
        server_hostname: str | None = None,
        call_connection_made: bool = True,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> None:
        self._ssl_buffer = bytearray(self.max_size)
        self._ssl_buffer_view = memoryview(self._ssl_buffer)

        if ssl_handshake_timeout is None:
            ssl_handshake_timeout = constants.SSL_HANDSHAKE_TIMEOUT
        elif ssl_handshake_timeout <= 0:
            raise ValueError(
                f"ssl_handshake_timeout should be a positive number, "
                f"got {ssl_handshake_timeout}")
        if ssl_shutdown_timeout is None:
            ssl_shutdown_timeout = constants.SSL_SHUTDOWN_TIMEOUT
        elif ssl_shutdown_timeout <= 0:
            raise ValueError(
                f"ssl_shutdown_timeout should be a positive number, "
                f"got {ssl_shutdown_timeout}")

        if not sslcontext:
            sslcontext = _create_transport_context(server_side, server_hostname)

        self._server_side = server_side
        self._server_hostname = server_hostname if server_hostname and not server_side else None
        self._sslcontext = sslcontext
        # more is added when the handshake completes
        self._extra: dict[str, Any] = dict(sslcontext=sslcontext)

        self._write_backlog = collections.deque()
        self._write_buffer_size = 0

        self._waiter = waiter
        self._loop = loop
        self._set_app_protocol(app_protocol)
        self._app_transport = None
        self._app_transport_created = False
        self._transport = None
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._ssl_shutdown_timeout = ssl_shutdown_timeout
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._conn_lost = 0
        self._app_state = (AppProtocolState.STATE_INIT if call_connection_made
                           else AppProtocolState.STATE_CON_MADE)
        self._sslobj = self._sslcontext.wrap_bio(
            self._incoming, self._outgoing,
            server_side=self._server_side,
            server_hostname=self._server_hostname)

        self._ssl_writing_paused = False
        self._app_reading_paused = False
        self._ssl_reading_paused = False
        self._set_read_buffer_limits()
        self._eof_received = False
        self._app_writing_paused = False
        self._set_write_buffer_limits()
        self._get_app_transport()

    if TYPE_CHECKING:  # the native core's fields and methods (_native.pyi has them all)
        _app_transport: _SSLProtocolTransport | None
        _transport: Any

    def _set_app_protocol(self, app_protocol: protocols.BaseProtocol) -> None:
        self._app_protocol = app_protocol
        if (hasattr(app_protocol, "get_buffer") and
                isinstance(app_protocol, protocols.BufferedProtocol)):
            self._app_protocol_get_buffer = app_protocol.get_buffer
            self._app_protocol_buffer_updated = app_protocol.buffer_updated
            self._app_protocol_is_buffer = True
        else:
            self._app_protocol_is_buffer = False

    def _wakeup_waiter(self, exc: BaseException | None = None) -> None:
        if self._waiter is None:
            return
        if not self._waiter.cancelled():
            if exc is not None:
                self._waiter.set_exception(exc)
            else:
                self._waiter.set_result(None)
        self._waiter = None

    def _get_app_transport(self) -> _SSLProtocolTransport:
        if self._app_transport is None:
            if self._app_transport_created:
                raise RuntimeError("Creating _SSLProtocolTransport twice")
            self._app_transport = _SSLProtocolTransport(self._loop, self)
            self._app_transport_created = True
        return self._app_transport

    def connection_made(self, transport: transports.BaseTransport) -> None:
        """The raw connection is made: start the handshake."""
        self._transport = transport
        self._start_handshake()

    def connection_lost(self, exc: BaseException | None) -> None:
        """The raw connection is lost or closed (``exc`` None: EOF, abort or close)."""
        self._write_backlog.clear()
        self._outgoing.read()
        self._conn_lost += 1

        # marked closed, so that its __del__ does not warn
        if self._app_transport is not None:
            self._app_transport._closed = True

        if self._state != SSLProtocolState.DO_HANDSHAKE:
            if self._app_state in (AppProtocolState.STATE_CON_MADE, AppProtocolState.STATE_EOF):
                self._app_state = AppProtocolState.STATE_CON_LOST
                self._loop.call_soon(self._app_protocol.connection_lost, exc)
        self._set_state(SSLProtocolState.UNWRAPPED)
        self._transport = None
        self._app_transport = None
        self._app_protocol = None
        self._wakeup_waiter(exc)

        if self._shutdown_timeout_handle:
            self._shutdown_timeout_handle.cancel()
            self._shutdown_timeout_handle = None
        if self._handshake_timeout_handle:
            self._handshake_timeout_handle.cancel()
            self._handshake_timeout_handle = None

    def eof_received(self) -> bool | None:
        """The raw stream is half-closed by the peer."""
        self._eof_received = True
        try:
            if self._loop.get_debug():
                logger.debug("%r received EOF", self)

            if self._state == SSLProtocolState.DO_HANDSHAKE:
                self._on_handshake_complete(ConnectionResetError)

            elif self._state == SSLProtocolState.WRAPPED:
                self._set_state(SSLProtocolState.FLUSHING)
                if self._app_reading_paused:
                    return True
                self._do_flush()

            elif self._state == SSLProtocolState.FLUSHING:
                self._do_write()
                self._set_state(SSLProtocolState.SHUTDOWN)
                self._do_shutdown()

            elif self._state == SSLProtocolState.SHUTDOWN:
                self._do_shutdown()

        except Exception:
            self._transport.close()
            raise
        return None

    def _get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in self._extra:
            return self._extra[name]
        if self._transport is not None:
            return self._transport.get_extra_info(name, default)
        return default

    # the handshake

    def _start_handshake(self) -> None:
        if self._loop.get_debug():
            logger.debug("%r starts SSL handshake", self)
            self._handshake_start_time = self._loop.time()
        else:
            self._handshake_start_time = None

        self._set_state(SSLProtocolState.DO_HANDSHAKE)
        self._handshake_timeout_handle = self._loop.call_later(
            self._ssl_handshake_timeout, self._check_handshake_timeout)
        self._do_handshake()

    def _check_handshake_timeout(self) -> None:
        if self._state == SSLProtocolState.DO_HANDSHAKE:
            msg = (
                f"SSL handshake is taking longer than "
                f"{self._ssl_handshake_timeout} seconds: "
                f"aborting the connection"
            )
            self._fatal_error(ConnectionAbortedError(msg))

    def _do_handshake(self) -> None:
        try:
            self._sslobj.do_handshake()
        except SSLAgainErrors:
            self._process_outgoing()
        except ssl.SSLError as exc:
            self._on_handshake_complete(exc)
        else:
            self._on_handshake_complete(None)

    def _on_handshake_complete(
        self, handshake_exc: BaseException | type[BaseException] | None
    ) -> None:
        if self._handshake_timeout_handle is not None:
            self._handshake_timeout_handle.cancel()
            self._handshake_timeout_handle = None

        sslobj = self._sslobj
        try:
            if handshake_exc is None:
                self._set_state(SSLProtocolState.WRAPPED)
            else:
                raise handshake_exc
            peercert = sslobj.getpeercert()
        except Exception as exc:
            handshake_exc = None  # no cycle through the traceback
            self._set_state(SSLProtocolState.UNWRAPPED)
            if isinstance(exc, ssl.CertificateError):
                msg = "SSL handshake failed on verifying the certificate"
            else:
                msg = "SSL handshake failed"
            self._fatal_error(exc, msg)
            self._wakeup_waiter(exc)
            return

        if self._loop.get_debug():
            dt = self._loop.time() - cast(float, self._handshake_start_time)
            logger.debug("%r: SSL handshake took %.1f ms", self, dt * 1e3)

        # extra info that the handshake made available
        self._extra.update(peercert=peercert,
                           cipher=sslobj.cipher(),
                           compression=sslobj.compression(),
                           ssl_object=sslobj)
        if self._app_state == AppProtocolState.STATE_INIT:
            self._app_state = AppProtocolState.STATE_CON_MADE
            self._app_protocol.connection_made(self._get_app_transport())
        self._wakeup_waiter()
        self._do_read()

    # the shutdown

    def _start_shutdown(self) -> None:
        if self._state in (SSLProtocolState.FLUSHING, SSLProtocolState.SHUTDOWN,
                           SSLProtocolState.UNWRAPPED):
            return
        if self._app_transport is not None:
            self._app_transport._closed = True
        if self._state == SSLProtocolState.DO_HANDSHAKE:
            self._abort(None)
        else:
            self._set_state(SSLProtocolState.FLUSHING)
            self._shutdown_timeout_handle = self._loop.call_later(
                self._ssl_shutdown_timeout, self._check_shutdown_timeout)
            self._do_flush()

    def _check_shutdown_timeout(self) -> None:
        if self._state in (SSLProtocolState.FLUSHING, SSLProtocolState.SHUTDOWN):
            self._transport._force_close(exceptions.TimeoutError("SSL shutdown timed out"))

    def _do_flush(self) -> None:
        self._do_read()
        self._set_state(SSLProtocolState.SHUTDOWN)
        self._do_shutdown()

    def _do_shutdown(self) -> None:
        try:
            if not self._eof_received:
                self._sslobj.unwrap()
        except SSLAgainErrors:
            self._process_outgoing()
        except ssl.SSLError as exc:
            self._on_shutdown_complete(exc)
        else:
            self._process_outgoing()
            self._call_eof_received()
            self._on_shutdown_complete(None)

    def _on_shutdown_complete(self, shutdown_exc: BaseException | None) -> None:
        if self._shutdown_timeout_handle is not None:
            self._shutdown_timeout_handle.cancel()
            self._shutdown_timeout_handle = None

        if shutdown_exc:
            self._fatal_error(shutdown_exc)
        else:
            self._loop.call_soon(self._transport.close)

    def _abort(self, exc: BaseException | None = None) -> None:
        # writes of this run phase still waiting for its end: asyncio had sent them at
        # write() (sslproto.rs, "Write batching")
        self._flush_batch()
        self._set_state(SSLProtocolState.UNWRAPPED)
        if self._transport is not None:
            if ABORT_WITH_ERROR:
                self._transport._force_close(exc)
            else:
                self._transport.abort()

    # writes (the per-record paths are the core's)

    def _closed_write(self) -> None:
        # a write after the connection started closing: counted, logged past a threshold
        if self._conn_lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
            logger.warning("SSL connection is closed")
        self._conn_lost += 1

    # reads (the per-record paths are the core's)

    def _do_read__buffered(self) -> None:
        offset = 0
        count = 1

        buf: Any = self._app_protocol_get_buffer(self._get_read_buffer_size())
        wants = len(buf)

        try:
            count = self._sslobj.read(wants, buf)

            if count > 0:
                offset = count
                while offset < wants:
                    count = self._sslobj.read(wants - offset, buf[offset:])
                    if count > 0:
                        offset += count
                    else:
                        break
                else:
                    self._loop.call_soon(self._do_read)
        except SSLAgainErrors:
            pass
        if offset > 0:
            self._app_protocol_buffer_updated(offset)
        if not count:
            # close_notify
            self._call_eof_received()
            self._start_shutdown()

    def _call_eof_received(self) -> None:
        try:
            if self._app_state == AppProtocolState.STATE_CON_MADE:
                self._app_state = AppProtocolState.STATE_EOF
                keep_open = self._app_protocol.eof_received()
                if keep_open:
                    logger.warning("returning true from eof_received() "
                                   "has no effect when using ssl")
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as ex:
            self._fatal_error(ex, "Error calling eof_received()")

    # flow control

    def _set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        high, low = add_flowcontrol_defaults(
            high, low, constants.FLOW_CONTROL_HIGH_WATER_SSL_WRITE)
        self._outgoing_high_water = high
        self._outgoing_low_water = low

    def _pause_reading(self) -> None:
        self._app_reading_paused = True

    def _resume_reading(self) -> None:
        if self._app_reading_paused:
            self._app_reading_paused = False

            def resume() -> None:
                if self._state == SSLProtocolState.WRAPPED:
                    self._do_read()
                elif self._state == SSLProtocolState.FLUSHING:
                    self._do_flush()
                elif self._state == SSLProtocolState.SHUTDOWN:
                    self._do_shutdown()
            self._loop.call_soon(resume)

    def _set_read_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        high, low = add_flowcontrol_defaults(
            high, low, constants.FLOW_CONTROL_HIGH_WATER_SSL_READ)
        self._incoming_high_water = high
        self._incoming_low_water = low

    def pause_writing(self) -> None:
        """The raw transport's buffer went over its high-water mark."""
        assert not self._ssl_writing_paused
        self._ssl_writing_paused = True

    def resume_writing(self) -> None:
        """The raw transport's buffer drained below its low-water mark."""
        assert self._ssl_writing_paused
        self._ssl_writing_paused = False
        self._process_outgoing()

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on transport") -> None:
        if self._transport:
            self._transport._force_close(exc)

        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        elif not isinstance(exc, exceptions.CancelledError):
            self._loop.call_exception_handler({
                "message": message,
                "exception": exc,
                "transport": self._transport,
                "protocol": self,
            })


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
        return cast(transports.Transport, ssl_protocol._app_transport)
