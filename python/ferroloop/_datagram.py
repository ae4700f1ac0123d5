"""``DatagramTransport``: the transport of ``create_datagram_endpoint``, ferroloop's own.

An ``asyncio.DatagramTransport`` with the behaviour of the running CPython's selector
datagram transport: the same state (``_sock``, ``_buffer``, ``_conn_lost``, ``_closing``...),
the same order of calls, errors and messages. What runs once per endpoint or on an unusual
path is here: construction, close and abort, errors, the buffer kept while the socket is
full, flow control (``_flow.py``). The per-datagram paths of IPv4, IPv6 and Unix datagram
sockets are a native object's (``_native.DatagramFast``,
crates/ferroloop-python/src/datagram.rs):

* reading: the loop's turn calls the native ``_read_ready`` directly (a native watcher,
  no Python call), one ``recvmmsg`` of up to 16 datagrams per readiness event;
* ``sendto``, bound on the instance once: while nothing is buffered, datagrams to the
  connected peer or to a known address are queued and leave with one ``sendmmsg`` when the
  run phase ends; every other case comes back to this class's ``sendto``.

Over a loop that is not ferroloop's (asyncio's test loop, which CPython's own transport
tests use: tests/test_cpython_transport_tests.py) only this file's paths run.

Versions: 3.13 sends an empty datagram (3.11 and 3.12 send nothing) and counts 8 bytes of
header per buffered datagram in ``get_write_buffer_size()``. 3.13.0 forgot to take the 8
bytes off again when a buffered datagram left (CPython gh-135444, fixed in later 3.13
releases); ferroloop counts as the fixed releases do (docs/compatibility.md).
"""

from __future__ import annotations

import collections
import socket
import warnings
from asyncio import constants, futures, log, protocols, transports
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import _compat, _native
from ._flow import FlowControl, Reading, report_fatal
from ._transports import add_socket_extra

if TYPE_CHECKING:
    from ._loopbase import LoopBase
else:
    LoopBase = object

logger = log.logger

_FAST_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)
_SENDS_EMPTY = _compat.VERSION >= (3, 13)
_READ_ERROR = "Fatal read error on datagram transport"
_WRITE_ERROR = "Fatal write error on datagram transport"
_SENT, _BLOCKED, _FAILED = range(3)  # what _send_one did


def _is_watched(loop: Any, fd: int, write: bool) -> bool:
    """Whether ``loop`` watches ``fd`` (for ``repr``): ferroloop's loop says; another loop
    (asyncio's test loop, under CPython's own transport tests) is taken as idle."""
    return isinstance(loop, _native.EventLoop) and loop._is_watched(fd, write)


class DatagramTransport(FlowControl, Reading, transports.Transport, transports.DatagramTransport):
    """A datagram endpoint's transport on a ferroloop loop: a ``DatagramTransport`` and,
    as asyncio's (a selector transport), a ``Transport``."""

    max_size = 256 * 1024
    #: bytes counted per buffered datagram beside its data (3.13: the UDP header)
    _header_size = 8 if _SENDS_EMPTY else 0
    _extra: dict[str, Any]  # BaseTransport's
    # None until __init__ ran far enough (repr and __del__ check)
    _sock: socket.socket | None = None
    _fast: _native.DatagramFast | None = None
    _loop: LoopBase | None

    def __init__(
        self,
        loop: LoopBase,
        sock: socket.socket,
        protocol: protocols.DatagramProtocol,
        address: Any = None,
        waiter: futures.Future[Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(extra)
        add_socket_extra(self._extra, sock)
        self._loop = loop
        self._sock = sock
        self._sock_fd = sock.fileno()
        self._protocol: Any = protocol
        self._protocol_connected = True
        self._server = None
        self._buffer: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._buffer_size = 0
        self._conn_lost = 0
        self._closing = False
        self._paused = False
        self._address = address
        self._set_write_buffer_limits()
        native = isinstance(loop, _native.EventLoop)
        if native and sock.family in _FAST_FAMILIES:
            # connected (a peer name): asyncio sends with send(), so does the native path
            fast = _native.DatagramFast(
                self, loop, self._sock_fd, bool(self._extra["peername"]), sock.family)
            self._fast = fast
            if type(self).sendto is DatagramTransport.sendto:  # a subclass keeps its own
                self.__dict__["sendto"] = fast.sendto
        loop._transports[self._sock_fd] = self
        if native:
            loop._transport_fd_taken(self._sock_fd)
        loop.call_soon(protocol.connection_made, self)
        # only start reading once connection_made() has run
        loop.call_soon(self._start_reading)
        if waiter is not None:
            # only wake the waiter once connection_made() has run
            loop.call_soon(_compat.set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        loop = self._loop
        if loop is not None and not loop.is_closed():
            reading = _is_watched(loop, self._sock_fd, False)
            info.append("read=polling" if reading else "read=idle")
            state = "polling" if _is_watched(loop, self._sock_fd, True) else "idle"
            info.append(f"write=<{state}, bufsize={self.get_write_buffer_size()}>")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if self._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()

    # -- the Transport API ----------------------------------------------------------------

    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    def set_protocol(self, protocol: protocols.BaseProtocol) -> None:
        self._protocol = protocol
        self._protocol_connected = True

    def get_protocol(self) -> protocols.BaseProtocol:
        return self._protocol  # type: ignore[no-any-return]

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        assert self._loop is not None
        self._loop._remove_reader(self._sock_fd)
        if not self._buffer:
            self._conn_lost += 1
            self._loop._remove_writer(self._sock_fd)
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        self._force_close(None)

    def sendto(self, data: Any, addr: Any = None) -> None:
        """Send ``data`` to ``addr`` (the endpoint's peer when connected): at once while
        nothing is buffered, else behind what is (``pause_writing`` past the high-water mark)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if not data and not _SENDS_EMPTY:
            return
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(f"Invalid address: must be None or {self._address}")
            addr = self._address
        if self._conn_lost and self._address:
            if self._conn_lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        if not self._buffer:
            # the native path's datagrams of this run phase leave first: order kept
            if self._fast is not None:
                self._fast._flush()
            if self._send_one(data, addr) != _BLOCKED:
                return
            assert self._loop is not None
            self._loop._add_writer(self._sock_fd, self._sendto_ready)
        # what is buffered must not change under us
        self._buffer.append((bytes(data), addr))
        self._buffer_size += len(data) + self._header_size
        self._maybe_pause_protocol()

    # -- readiness (the native object's, for the families it serves) -----------------------

    @property
    def _read_fd(self) -> int:
        return self._sock_fd

    def _watch_reading(self) -> None:
        if self._fast is not None:
            self._fast._watch()
        else:
            assert self._loop is not None
            self._loop._add_reader(self._sock_fd, self._read_ready)

    def _read_ready(self) -> None:
        if self._conn_lost:
            return
        assert self._sock is not None
        try:
            data, addr = self._sock.recvfrom(self.max_size)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self._protocol.error_received(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, _READ_ERROR)
        else:
            self._protocol.datagram_received(data, addr)

    def _send_one(self, data: Any, addr: Any) -> int:
        """Send one datagram: ``_SENT``, ``_BLOCKED`` (the socket is full), or ``_FAILED``
        (reported: ``error_received`` for an ``OSError``, else the transport's end)."""
        sock = self._sock
        try:
            if self._extra["peername"]:
                sock.send(data)  # type: ignore[union-attr]  # None: asyncio's error too
            else:
                sock.sendto(data, addr)  # type: ignore[union-attr]
            return _SENT
        except (BlockingIOError, InterruptedError):
            return _BLOCKED
        except OSError as exc:
            self._protocol.error_received(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, _WRITE_ERROR)
        return _FAILED

    def _sendto_ready(self) -> None:
        while self._buffer:
            data, addr = self._buffer.popleft()
            self._buffer_size -= len(data) + self._header_size
            sent = self._send_one(data, addr)
            if sent == _FAILED:
                return
            if sent == _BLOCKED:
                self._buffer.appendleft((data, addr))  # again when writable
                self._buffer_size += len(data) + self._header_size
                break
        self._maybe_resume_protocol()  # may send more
        if not self._buffer:
            assert self._loop is not None
            self._loop._remove_writer(self._sock_fd)
            if self._closing:
                self._call_connection_lost(None)

    # -- errors and the end -----------------------------------------------------------------

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on transport") -> None:
        report_fatal(self, exc, message, quiet=isinstance(exc, OSError))
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        loop = self._loop
        assert loop is not None
        if self._buffer:
            self._buffer.clear()  # asyncio leaves _buffer_size as it was
            loop._remove_writer(self._sock_fd)
        if not self._closing:
            self._closing = True
            loop._remove_reader(self._sock_fd)
        self._conn_lost += 1
        loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        fast, loop = self._fast, self._loop
        try:
            if fast is not None:
                fast._flush()  # this turn's datagrams leave before the socket closes
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            if fast is not None:
                self._fast = None
                fast._detach()
                self.__dict__.pop("sendto", None)
            if self._sock is not None:
                self._sock.close()
            self._sock = None
            self._protocol = None
            self._loop = None
            if isinstance(loop, _native.EventLoop):
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
