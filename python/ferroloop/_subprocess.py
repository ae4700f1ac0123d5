"""Subprocesses: ``subprocess_exec``/``subprocess_shell`` and child exit watching.

``BaseEventLoop`` parses the arguments and asks for ``_make_subprocess_transport``. The
transport is asyncio's ``_UnixSubprocessTransport`` (interim: the subprocess issue makes it
native), over ferroloop's pipes. Child exits are watched by the loop itself, not by the
policy's child watcher: a ``pidfd`` per child (Linux 5.3+) registered as a reader, so no
``SIGCHLD`` handler, no thread per child, and it works from any thread's loop. When
``pidfd_open`` is missing the loop falls back to one thread per child blocked in
``waitpid``, which reports back with ``call_soon_threadsafe``.

Ordering as asyncio: the exit is delivered one loop iteration after it is seen, so pipe
data read in the same iteration reaches the protocol first.
"""

from __future__ import annotations

import os
import threading
from asyncio import log, protocols
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, cast

from . import _compat

if TYPE_CHECKING:
    from ._loopbase import LoopBase
else:
    LoopBase = object

logger = log.logger

_File = int | IO[Any] | None


def _returncode(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


class SubprocessMixin(LoopBase):
    #: pidfd -> pid of each child watched with a pidfd
    _child_pidfds: dict[int, int]

    def _subprocess_init(self) -> None:
        self._child_pidfds = {}

    async def _make_subprocess_transport(
        self,
        protocol: protocols.SubprocessProtocol,
        args: str | bytes | Sequence[str | bytes],
        shell: bool,
        stdin: _File,
        stdout: _File,
        stderr: _File,
        bufsize: int,
        extra: Any = None,
        **kwargs: Any,
    ) -> _compat.UnixSubprocessTransport:
        waiter = self.create_future()
        transp = _compat.UnixSubprocessTransport(
            self, protocol, args, shell, stdin, stdout, stderr, bufsize,
            waiter=waiter, extra=extra, **kwargs,
        )
        self._watch_child(cast(int, transp.get_pid()), transp)  # the child has started
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transp.close()
            await transp._wait()
            raise
        return transp

    def _watch_child(self, pid: int, transp: _compat.UnixSubprocessTransport) -> None:
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            # no pidfd (old kernel or seccomp): one waiting thread for this child
            threading.Thread(
                target=self._wait_child_thread, args=(pid, transp),
                name=f"ferroloop-waitpid-{pid}", daemon=True,
            ).start()
            return
        self._child_pidfds[pidfd] = pid
        self._add_reader(pidfd, self._child_exited, pidfd, pid, transp)

    def _child_exited(
        self, pidfd: int, pid: int, transp: _compat.UnixSubprocessTransport
    ) -> None:
        self._remove_reader(pidfd)
        self._child_pidfds.pop(pidfd, None)
        os.close(pidfd)
        self.call_soon(transp._process_exited, self._reap(pid))

    @staticmethod
    def _reap(pid: int) -> int:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            # someone else reaped it (a SIGCHLD handler of the application)
            logger.warning("Unknown child process pid %d, will report returncode 255", pid)
            return 255
        return _returncode(status)

    def _wait_child_thread(self, pid: int, transp: _compat.UnixSubprocessTransport) -> None:
        returncode = self._reap(pid)
        try:
            self.call_soon_threadsafe(self.call_soon, transp._process_exited, returncode)
        except RuntimeError:
            pass  # the loop was closed meanwhile: nobody is waiting any more

    def _subprocess_close(self) -> None:
        """Loop close: stop watching. A child already gone is reaped now; one still running
        is reaped by a thread when it exits (no zombie), as asyncio's default watcher would."""
        pidfds, self._child_pidfds = self._child_pidfds, {}
        for pidfd, pid in pidfds.items():
            os.close(pidfd)
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if not done:
                threading.Thread(target=self._reap, args=(pid,), daemon=True,
                                 name=f"ferroloop-reap-{pid}").start()
