"""Unix signal handlers (``add_signal_handler``), as asyncio's Unix loop has them.

CPython's C-level handler writes the signal number to the wakeup fd
(``signal.set_wakeup_fd``); the loop watches the other end of that socket pair and
schedules the registered handle. Once per signal: Python is fine here.
"""

from __future__ import annotations

import errno
import signal
import socket
from asyncio import coroutines, events
from asyncio.log import logger
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, TypeVarTuple, cast

if TYPE_CHECKING:
    from ._loopbase import LoopBase
else:
    LoopBase = object

_Ts = TypeVarTuple("_Ts")


def _noop_handler(signum: int, frame: FrameType | None) -> None:
    """Installed as the Python-level handler; the wakeup fd does the real work."""


class SignalMixin(LoopBase):
    __slots__ = ()

    _signal_handlers: dict[int, events.Handle]
    _ssock: socket.socket | None
    _csock: socket.socket | None

    def _signal_init(self) -> None:
        self._signal_handlers = {}
        self._ssock = self._csock = None

    def _open_signal_pipe(self) -> None:
        if self._ssock is None:
            self._ssock, self._csock = socket.socketpair()
            self._ssock.setblocking(False)
            self._csock.setblocking(False)
            self._add_reader(self._ssock.fileno(), self._read_signals)

    def _close_signal_pipe(self) -> None:
        if self._ssock is not None:
            self._remove_reader(self._ssock.fileno())
            self._ssock.close()
            cast(socket.socket, self._csock).close()  # open with _ssock
            self._ssock = self._csock = None

    def _read_signals(self) -> None:
        while True:
            try:
                data = cast(socket.socket, self._ssock).recv(4096)  # open: it is watched
            except InterruptedError:
                continue
            except BlockingIOError:
                return
            if not data:
                return
            for signum in data:
                self._handle_signal(signum)

    def _handle_signal(self, sig: int) -> None:
        handle = self._signal_handlers.get(sig)
        if handle is None:
            return
        if handle._cancelled:
            self.remove_signal_handler(sig)
        else:
            self.call_soon(handle._run)

    def _check_signal(self, sig: object) -> None:
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def add_signal_handler(
        self, sig: int, callback: Callable[[*_Ts], object], *args: *_Ts
    ) -> None:
        if coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        self._open_signal_pipe()
        try:
            # raises ValueError outside the main thread: a loop on another thread
            # cannot own signals
            signal.set_wakeup_fd(cast(socket.socket, self._csock).fileno())  # just opened
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc))
        self._signal_handlers[sig] = events.Handle(callback, args, self, None)
        try:
            signal.signal(sig, _noop_handler)
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                self._reset_wakeup_fd()
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")
            raise

    def remove_signal_handler(self, sig: int) -> bool:
        self._check_signal(sig)
        if self._signal_handlers.pop(sig, None) is None:
            return False
        default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, default)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")
            raise
        if not self._signal_handlers:
            self._reset_wakeup_fd()
        return True

    def _reset_wakeup_fd(self) -> None:
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError) as exc:
            logger.info("set_wakeup_fd(-1) failed: %s", exc)

    def _signals_close(self) -> None:
        for sig in list(self._signal_handlers):
            self.remove_signal_handler(sig)
        self._close_signal_pipe()
