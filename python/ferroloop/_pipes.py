"""Pipe transports: ``connect_read_pipe``/``connect_write_pipe``, ferroloop's own.

``ReadPipeTransport`` (an ``asyncio.ReadTransport``) and ``WritePipeTransport`` (an
``asyncio.WriteTransport`` with flow control, ``_flow.py``) behave as the running CPython's
Unix pipe transports: pipes, sockets and character devices are accepted, regular files
refused with asyncio's ``ValueError``; the same state (``_pipe``, ``_fileno``,
``_buffer``, ``_closing``, ``_conn_lost``...), calls, errors and messages. What runs once
per pipe or on an unusual path is here; the per-chunk paths are a native object's
(``_native.PipeFast``, crates/ferroloop-python/src/pipe.rs):

* a read pipe's readiness: the loop's turn calls the native ``_read_ready`` directly (a
  native watcher); end of file and errors come back to this class's ``_read_ready``;
* a write pipe's ``write`` (bound on the instance once) and its writability
  (``_write_ready``, a native watcher): writes while nothing is buffered, appends while
  something is, the last chunk of the buffer ends the wait; a partial write, a full pipe,
  an error or a closed pipe comes back to this class's methods.

Over a loop that is not ferroloop's (asyncio's test loop, which CPython's own transport
tests use: tests/test_cpython_transport_tests.py) only this file's paths run.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import warnings
from asyncio import constants, futures, log, protocols, transports
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import _compat, _native
from ._flow import FlowControl, Reading, report_fatal

if TYPE_CHECKING:
    from ._loopbase import LoopBase
else:
    LoopBase = object

logger = log.logger

_WRITE_ERROR = "Fatal write error on pipe transport"


def _pipe_mode(pipe: Any) -> tuple[int, int]:
    """The pipe's descriptor and its ``st_mode``."""
    fileno: int = pipe.fileno()
    return fileno, os.fstat(fileno).st_mode


class _PipeTransport(transports.BaseTransport):
    """What both pipe transports share: the pipe, the protocol, the end."""

    _pipe: Any = None  # None until __init__ accepted the pipe, and once it is closed
    _fileno: int  # None only on a transport whose __init__ refused the pipe
    _loop: LoopBase | None
    _fast: _native.PipeFast | None = None
    _closing: bool
    _extra: dict[str, Any]  # BaseTransport's

    def _open(
        self,
        loop: LoopBase,
        pipe: Any,
        protocol: protocols.BaseProtocol,
        kinds: Callable[[int], bool],
        refusal: str,
    ) -> None:
        self._extra["pipe"] = pipe
        self._loop = loop
        self._pipe = pipe
        self._protocol: Any = protocol
        self._closing = False
        self._fileno, mode = _pipe_mode(pipe)
        if not kinds(mode):
            self._pipe = None
            self._fileno = None  # type: ignore[assignment]  # as asyncio leaves it
            self._protocol = None
            raise ValueError(refusal)
        os.set_blocking(self._fileno, False)
        if isinstance(loop, _native.EventLoop):
            self._fast = _native.PipeFast(self, loop, self._fileno)

    def _repr_info(self, write: bool) -> list[str]:
        info = [self.__class__.__name__]
        if self._pipe is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._fileno}")
        loop = self._loop
        if self._pipe is not None and isinstance(loop, _native.EventLoop) and not loop.is_closed():
            info.append("polling" if loop._is_watched(self._fileno, write) else "idle")
        elif self._pipe is not None:
            info.append("open")
        else:
            info.append("closed")
        return info

    def set_protocol(self, protocol: protocols.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> protocols.BaseProtocol:
        return self._protocol  # type: ignore[no-any-return]

    def is_closing(self) -> bool:
        return self._closing

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if self._pipe is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            fast, self._fast = self._fast, None
            if fast is not None:
                fast._detach()
                self.__dict__.pop("write", None)
            self._pipe.close()
            self._pipe = None
            self._protocol = None
            self._loop = None


def _readable(mode: int) -> bool:
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


class ReadPipeTransport(Reading, _PipeTransport, transports.ReadTransport):
    """The read end of a pipe (or a socket, or a character device)."""

    max_size = 256 * 1024  # bytes read per readiness event at most

    def __init__(
        self,
        loop: LoopBase,
        pipe: Any,
        protocol: protocols.BaseProtocol,
        waiter: futures.Future[Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(extra)
        self._open(loop, pipe, protocol, _readable, "Pipe transport is for pipes/sockets only.")
        loop.call_soon(protocol.connection_made, self)
        # only start reading once connection_made() has run
        loop.call_soon(self._start_reading)
        if waiter is not None:
            # only wake the waiter once connection_made() has run
            loop.call_soon(_compat.set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        return "<{}>".format(" ".join(self._repr_info(write=False)))

    @property
    def _read_fd(self) -> int:
        return self._fileno

    def _watch_reading(self) -> None:
        if self._fast is not None:
            self._fast._watch(False)
        else:
            assert self._loop is not None
            self._loop._add_reader(self._fileno, self._read_ready)

    def _read_ready(self) -> None:
        assert self._loop is not None
        try:
            data = os.read(self._fileno, self.max_size)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self._fatal_error(exc, "Fatal read error on pipe transport")
        else:
            if data:
                self._protocol.data_received(data)
            else:
                if self._loop.get_debug():
                    logger.info("%r was closed by peer", self)
                self._closing = True
                self._loop._remove_reader(self._fileno)
                self._loop.call_soon(self._protocol.eof_received)
                self._loop.call_soon(self._call_connection_lost, None)

    def close(self) -> None:
        if not self._closing:
            self._close(None)

    def _fatal_error(
        self, exc: BaseException, message: str = "Fatal error on pipe transport"
    ) -> None:
        # EIO is how a pty's reader learns that the other side closed
        report_fatal(self, exc, message, quiet=isinstance(exc, OSError) and exc.errno == errno.EIO)
        self._close(exc)

    def _close(self, exc: BaseException | None) -> None:
        self._closing = True
        assert self._loop is not None
        self._loop._remove_reader(self._fileno)
        self._loop.call_soon(self._call_connection_lost, exc)


class WritePipeTransport(FlowControl, _PipeTransport, transports.WriteTransport):
    """The write end of a pipe (or a socket, or a character device)."""

    def __init__(
        self,
        loop: LoopBase,
        pipe: Any,
        protocol: protocols.BaseProtocol,
        waiter: futures.Future[Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(extra)
        self._buffer = bytearray()
        self._conn_lost = 0
        self._set_write_buffer_limits()
        self._open(
            loop, pipe, protocol,
            lambda mode: stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode),
            "Pipe transport is only for pipes, sockets and character devices",
        )
        fast = self._fast
        if fast is not None and type(self).write is WritePipeTransport.write:
            self.__dict__["write"] = fast.write  # a subclass keeps its own
        loop.call_soon(protocol.connection_made, self)
        mode = os.fstat(self._fileno).st_mode
        # a readable event on the write end tells that the read end closed: sockets
        # everywhere, pipes except on AIX (asyncio's rule)
        if stat.S_ISSOCK(mode) or (stat.S_ISFIFO(mode) and not sys.platform.startswith("aix")):
            # only start watching once connection_made() has run
            loop.call_soon(self._watch_peer_close)
        if waiter is not None:
            # only wake the waiter once connection_made() has run
            loop.call_soon(_compat.set_result_unless_cancelled, waiter, None)

    def _watch_peer_close(self) -> None:
        # (not once closed meanwhile: asyncio's would watch a descriptor about to close)
        if self._loop is not None and not self._closing:
            self._loop._add_reader(self._fileno, self._read_ready)

    def __repr__(self) -> str:
        info = self._repr_info(write=True)
        if info[-1] in ("polling", "idle"):
            info.append(f"bufsize={self.get_write_buffer_size()}")
        return "<{}>".format(" ".join(info))

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def _read_ready(self) -> None:
        # the read end closed
        assert self._loop is not None
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        if self._buffer:
            self._close(BrokenPipeError())
        else:
            self._close()

    def write(self, data: Any) -> None:
        """Write ``data``: at once while nothing is buffered, else behind what is
        (``pause_writing`` past the high-water mark)."""
        assert isinstance(data, (bytes, bytearray, memoryview)), repr(data)
        if isinstance(data, bytearray):
            data = memoryview(data)
        if not data:
            return
        if self._conn_lost or self._closing:
            if self._conn_lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("pipe closed by peer or os.write(pipe, data) raised exception.")
            self._conn_lost += 1
            return
        if not self._buffer:
            try:
                n = os.write(self._fileno, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._conn_lost += 1
                self._fatal_error(exc, _WRITE_ERROR)
                return
            if n == len(data):
                return
            if n > 0:
                data = memoryview(data)[n:]
            self._start_writing()
        self._buffer += data
        self._maybe_pause_protocol()

    def _start_writing(self) -> None:
        if self._fast is not None:
            self._fast._watch(True)
        else:
            assert self._loop is not None
            self._loop._add_writer(self._fileno, self._write_ready)

    def _write_ready(self) -> None:
        assert self._buffer, "Data should not be empty"
        assert self._loop is not None
        try:
            n = os.write(self._fileno, self._buffer)
        except (BlockingIOError, InterruptedError):
            pass
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._buffer.clear()
            self._conn_lost += 1
            # _fatal_error leaves the writer to an empty buffer: removed here
            self._loop._remove_writer(self._fileno)
            self._fatal_error(exc, _WRITE_ERROR)
        else:
            if n == len(self._buffer):
                self._buffer.clear()
                self._loop._remove_writer(self._fileno)
                self._maybe_resume_protocol()  # may write more
                if self._closing:
                    self._loop._remove_reader(self._fileno)
                    self._call_connection_lost(None)
            elif n > 0:
                del self._buffer[:n]

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing:
            return
        assert self._pipe
        self._closing = True
        if not self._buffer:
            assert self._loop is not None
            self._loop._remove_reader(self._fileno)
            self._loop.call_soon(self._call_connection_lost, None)

    def close(self) -> None:
        if self._pipe is not None and not self._closing:
            self.write_eof()  # all a write pipe needs to close

    def abort(self) -> None:
        self._close(None)

    def _fatal_error(
        self, exc: BaseException, message: str = "Fatal error on pipe transport"
    ) -> None:
        report_fatal(self, exc, message, quiet=isinstance(exc, OSError))
        self._close(exc)

    def _close(self, exc: BaseException | None = None) -> None:
        self._closing = True
        assert self._loop is not None
        if self._buffer:
            self._loop._remove_writer(self._fileno)
        self._buffer.clear()
        self._loop._remove_reader(self._fileno)
        self._loop.call_soon(self._call_connection_lost, exc)


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
