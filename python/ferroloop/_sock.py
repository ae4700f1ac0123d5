"""The ``sock_*`` coroutines: non-blocking socket calls awaited through readiness watchers.

Each call first tries the operation at once; only when the socket would block does it
watch the descriptor and finish the future from the watcher. Semantics (errors,
cancellation, address resolution in ``sock_connect``) follow asyncio's selector loop. The
try-then-wait machinery is native (crates/ferroloop-python/src/sock_ops.rs): a ``sock_recv``
is one coroutine frame around one native call.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from . import _compat, _native

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike, ReadableBuffer, WriteableBuffer

    from ._loopbase import LoopBase
else:
    LoopBase = object

_sock_call = _native.sock_call

_WOULD_BLOCK = (BlockingIOError, InterruptedError)


class SockMixin(LoopBase):
    __slots__ = ()

    def _check_nonblocking(self, sock: socket.socket) -> None:
        _compat.check_ssl_socket(sock)
        if sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")

    def _ensure_fd_no_transport(self, fd: FileDescriptorLike) -> None:
        fileno = fd
        if not isinstance(fileno, int):
            try:
                fileno = int(fileno.fileno())
            except (AttributeError, TypeError, ValueError):
                raise ValueError(f"Invalid file object: {fd!r}") from None
        transport = self._transports.get(fileno)
        if transport is not None and not transport.is_closing():
            raise RuntimeError(
                f"File descriptor {fd!r} is used by transport {transport!r}"
            )

    async def sock_recv(self, sock: socket.socket, n: int) -> bytes:
        return await _native.sock_recv(self, sock, n)

    async def sock_recv_into(self, sock: socket.socket, buf: WriteableBuffer) -> int:
        nbytes: int = await _sock_call(self, sock, False, "recv_into", buf)
        return nbytes

    async def sock_recvfrom(self, sock: socket.socket, bufsize: int) -> tuple[bytes, Any]:
        received: tuple[bytes, Any] = await _sock_call(self, sock, False, "recvfrom", bufsize)
        return received

    async def sock_recvfrom_into(
        self, sock: socket.socket, buf: WriteableBuffer, nbytes: int = 0
    ) -> tuple[int, Any]:
        if not nbytes:
            nbytes = len(buf)  # type: ignore[arg-type]  # asyncio's len(); not on every Buffer
        received: tuple[int, Any] = await _sock_call(
            self, sock, False, "recvfrom_into", buf, nbytes)
        return received

    async def sock_sendall(self, sock: socket.socket, data: ReadableBuffer) -> None:
        return await _native.sock_sendall(self, sock, data)

    async def sock_sendto(self, sock: socket.socket, data: ReadableBuffer, address: Any) -> int:
        sent: int = await _sock_call(self, sock, True, "sendto", data, address)
        return sent

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        self._check_nonblocking(sock)
        if sock.family == socket.AF_INET or (
            _compat.HAS_IPv6 and sock.family == socket.AF_INET6
        ):
            resolved = await self._ensure_resolved(
                address, family=sock.family, type=sock.type, proto=sock.proto, loop=self
            )
            address = resolved[0][4]
        try:
            sock.connect(address)
        except _WOULD_BLOCK:
            fut = _native.sock_connect_wait(self, sock, address)
        else:
            return
        try:
            return await fut
        finally:
            del fut  # break the exception -> frame -> fut cycle

    async def sock_accept(self, sock: socket.socket) -> tuple[socket.socket, Any]:
        return await _native.sock_accept(self, sock)


__all__ = ["SockMixin"]
