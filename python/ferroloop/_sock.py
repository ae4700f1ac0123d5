"""The ``sock_*`` coroutines: non-blocking socket calls awaited through readiness watchers.

Each call first tries the operation at once; only when the socket would block does it
watch the descriptor and finish the future from the watcher. Semantics (errors,
cancellation, address resolution in ``sock_connect``) follow asyncio's selector loop.
Once per call and only when the socket would block, so Python is fine here; the streams
issue moves transports native.
"""

import functools
import socket
from asyncio import base_events

_WOULD_BLOCK = (BlockingIOError, InterruptedError)


class SockMixin:
    __slots__ = ()

    def _check_nonblocking(self, sock):
        base_events._check_ssl_socket(sock)
        if sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")

    def _ensure_fd_no_transport(self, fd):
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

    def _done_reading(self, fd, fut, handle=None):
        if handle is None or not handle.cancelled():
            self.remove_reader(fd)

    def _done_writing(self, fd, fut, handle=None):
        if handle is None or not handle.cancelled():
            self.remove_writer(fd)

    def _wait_readable(self, fut, sock, step, *args):
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        handle = self._add_reader(fd, step, fut, sock, *args)
        fut.add_done_callback(functools.partial(self._done_reading, fd, handle=handle))

    def _wait_writable(self, fut, sock, step, *args):
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        handle = self._add_writer(fd, step, fut, sock, *args)
        fut.add_done_callback(functools.partial(self._done_writing, fd, handle=handle))

    @staticmethod
    def _retry(fut, call, *args):
        """Watcher step: try ``call(*args)`` again, finish ``fut`` unless it would block."""
        if fut.done():
            return
        try:
            result = call(*args)
        except _WOULD_BLOCK:
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    async def _sock_read_op(self, sock, call, *args):
        self._check_nonblocking(sock)
        try:
            return call(*args)
        except _WOULD_BLOCK:
            pass
        fut = self.create_future()
        self._wait_readable(fut, sock, lambda f, s: self._retry(f, call, *args))
        return await fut

    async def sock_recv(self, sock, n):
        return await self._sock_read_op(sock, sock.recv, n)

    async def sock_recv_into(self, sock, buf):
        return await self._sock_read_op(sock, sock.recv_into, buf)

    async def sock_recvfrom(self, sock, bufsize):
        return await self._sock_read_op(sock, sock.recvfrom, bufsize)

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        if not nbytes:
            nbytes = len(buf)
        return await self._sock_read_op(sock, sock.recvfrom_into, buf, nbytes)

    async def sock_sendall(self, sock, data):
        self._check_nonblocking(sock)
        try:
            sent = sock.send(data)
        except _WOULD_BLOCK:
            sent = 0
        if sent == len(data):
            return
        view = memoryview(data)
        fut = self.create_future()
        self._wait_writable(fut, sock, self._sendall_step, view, [sent])
        return await fut

    def _sendall_step(self, fut, sock, view, pos):
        if fut.done():
            return
        start = pos[0]
        try:
            sent = sock.send(view[start:])
        except _WOULD_BLOCK:
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            return
        start += sent
        if start == len(view):
            fut.set_result(None)
        else:
            pos[0] = start

    async def sock_sendto(self, sock, data, address):
        self._check_nonblocking(sock)
        try:
            return sock.sendto(data, address)
        except _WOULD_BLOCK:
            pass
        fut = self.create_future()
        self._wait_writable(fut, sock, lambda f, s: self._retry(f, sock.sendto, data, address))
        return await fut

    async def sock_connect(self, sock, address):
        self._check_nonblocking(sock)
        if sock.family == socket.AF_INET or (
            base_events._HAS_IPv6 and sock.family == socket.AF_INET6
        ):
            resolved = await self._ensure_resolved(
                address, family=sock.family, type=sock.type, proto=sock.proto, loop=self
            )
            address = resolved[0][4]
        fut = self.create_future()
        try:
            sock.connect(address)
        except _WOULD_BLOCK:
            self._wait_writable(fut, sock, self._connect_step, address)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(None)
        try:
            return await fut
        finally:
            fut = None  # break the exception -> frame -> fut cycle

    def _connect_step(self, fut, sock, address):
        if fut.done():
            return
        try:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err != 0:
                raise OSError(err, f"Connect call failed {address}")
        except _WOULD_BLOCK:
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(None)

    async def sock_accept(self, sock):
        self._check_nonblocking(sock)
        fut = self.create_future()
        self._accept_step(fut, sock, first=True)
        return await fut

    def _accept_step(self, fut, sock, first=False):
        if fut.done():
            return
        try:
            conn, address = sock.accept()
            conn.setblocking(False)
        except _WOULD_BLOCK:
            if first:
                self._wait_readable(fut, sock, self._accept_step)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result((conn, address))


__all__ = ["SockMixin"]
