"""The sock_* coroutines over socketpairs and TCP/UDP loopback."""

import asyncio
import os
import socket

import pytest

from loop_helpers import UVLOOP_NO_RECVFROM, run, xfail_on

BIG = 8 * 1024 * 1024


@pytest.fixture
def udp_pair():
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def listener():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.setblocking(False)
    yield srv
    srv.close()


def test_sock_recv_data_ready(loop, pair):
    a, b = pair
    b.send(b"ready")
    assert run(loop, loop.sock_recv(a, 100)) == b"ready"


def test_sock_recv_waits(loop, pair):
    a, b = pair
    loop.call_later(0.01, b.send, b"later")
    assert run(loop, loop.sock_recv(a, 100)) == b"later"


def test_sock_recv_eof(loop, pair):
    a, b = pair
    loop.call_later(0.01, b.shutdown, socket.SHUT_WR)
    assert run(loop, loop.sock_recv(a, 100)) == b""


def test_sock_recv_into(loop, pair):
    a, b = pair
    buf = bytearray(10)
    loop.call_later(0.01, b.send, b"abc")
    n = run(loop, loop.sock_recv_into(a, buf))
    assert n == 3 and buf[:3] == b"abc"
    b.send(b"defgh")
    n = run(loop, loop.sock_recv_into(a, memoryview(buf)[3:]))
    assert n == 5 and bytes(buf[:8]) == b"abcdefgh"


@xfail_on("uvloop", UVLOOP_NO_RECVFROM)
def test_sock_recvfrom(loop, udp_pair):
    a, b = udp_pair
    loop.call_later(0.01, b.sendto, b"dgram", a.getsockname())
    data, addr = run(loop, loop.sock_recvfrom(a, 100))
    assert data == b"dgram" and addr == b.getsockname()


@xfail_on("uvloop", UVLOOP_NO_RECVFROM)
def test_sock_recvfrom_into(loop, udp_pair):
    a, b = udp_pair
    buf = bytearray(100)
    loop.call_later(0.01, b.sendto, b"into", a.getsockname())
    n, addr = run(loop, loop.sock_recvfrom_into(a, buf))
    assert n == 4 and buf[:4] == b"into" and addr == b.getsockname()


@xfail_on("uvloop", UVLOOP_NO_RECVFROM)
def test_sock_recvfrom_into_nbytes(loop, udp_pair):
    a, b = udp_pair
    buf = bytearray(100)
    b.sendto(b"0123456789", a.getsockname())
    n, _ = run(loop, loop.sock_recvfrom_into(a, buf, 4))
    assert n == 4 and buf[:4] == b"0123"


@xfail_on("uvloop", UVLOOP_NO_RECVFROM)
def test_sock_sendto(loop, udp_pair):
    a, b = udp_pair
    n = run(loop, loop.sock_sendto(a, b"to-b", b.getsockname()))
    assert n == 4

    async def recv():
        return await loop.sock_recvfrom(b, 100)

    data, addr = run(loop, recv())
    assert data == b"to-b" and addr == a.getsockname()


def test_sock_sendall_small(loop, pair):
    a, b = pair
    assert run(loop, loop.sock_sendall(a, b"small")) is None
    assert b.recv(100) == b"small"


def test_sock_sendall_empty(loop, pair):
    a, _ = pair
    assert run(loop, loop.sock_sendall(a, b"")) is None


@pytest.mark.parametrize("kind", ["socketpair", "tcp"])
def test_sock_sendall_large(loop, pair, listener, kind):
    data = bytes(range(256)) * (BIG // 256)

    async def main():
        if kind == "socketpair":
            a, b = pair
            conn = None
        else:
            a = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            a.setblocking(False)
            await loop.sock_connect(a, listener.getsockname())
            b, _ = await loop.sock_accept(listener)
            conn = (a, b)
        try:
            received = bytearray()

            async def reader():
                while len(received) < len(data):
                    chunk = await loop.sock_recv(b, 256 * 1024)
                    if not chunk:
                        break
                    received.extend(chunk)

            r = loop.create_task(reader())
            await loop.sock_sendall(a, data)
            await r
            return bytes(received) == data
        finally:
            if conn:
                for s in conn:
                    s.close()

    assert run(loop, main(), timeout=10)


def test_sock_sendall_memoryview_and_bytearray(loop, pair):
    a, b = pair

    async def main():
        await loop.sock_sendall(a, bytearray(b"ba"))
        await loop.sock_sendall(a, memoryview(b"xxmvxx")[2:4])
        return await loop.sock_recv(b, 100)

    assert run(loop, main()) == b"bamv"


def test_sock_sendall_to_closed_peer(loop, pair):
    a, b = pair
    b.close()

    async def main():
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            await loop.sock_sendall(a, b"x" * BIG)

    run(loop, main())


def test_sock_connect_numeric_and_accept(loop, listener):
    async def main():
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            accept = loop.create_task(loop.sock_accept(listener))
            assert await loop.sock_connect(c, listener.getsockname()) is None
            conn, addr = await accept
            try:
                assert conn.gettimeout() == 0.0  # accepted sockets are non-blocking
                assert addr == c.getsockname()
                await loop.sock_sendall(c, b"ping")
                return await loop.sock_recv(conn, 10)
            finally:
                conn.close()
        finally:
            c.close()

    assert run(loop, main()) == b"ping"


def test_sock_connect_hostname_localhost(loop, listener):
    port = listener.getsockname()[1]

    async def main():
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            await loop.sock_connect(c, ("localhost", port))
            conn, _ = await loop.sock_accept(listener)
            conn.close()
            return c.getpeername()
        finally:
            c.close()

    assert run(loop, main()) == ("127.0.0.1", port)


def test_sock_connect_refused(loop):
    tmp = socket.socket()
    tmp.bind(("127.0.0.1", 0))
    addr = tmp.getsockname()
    tmp.close()

    async def main():
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            with pytest.raises(ConnectionRefusedError):
                await loop.sock_connect(c, addr)
        finally:
            c.close()

    run(loop, main())


def test_sock_connect_unix(loop, tmp_path):
    path = str(tmp_path / "sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.setblocking(False)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.setblocking(False)

    async def main():
        await loop.sock_connect(c, path)
        conn, _ = await loop.sock_accept(srv)
        conn.close()

    try:
        run(loop, main())
    finally:
        c.close()
        srv.close()


def test_sock_accept_waits(loop, listener):
    async def main():
        accept = loop.create_task(loop.sock_accept(listener))
        await asyncio.sleep(0.01)
        assert not accept.done()
        c = socket.create_connection(listener.getsockname())
        conn, _ = await accept
        conn.close()
        c.close()
        return True

    assert run(loop, main())


def test_cancel_pending_sock_recv(loop, pair):
    a, b = pair

    async def main():
        t = loop.create_task(loop.sock_recv(a, 100))
        await asyncio.sleep(0.01)
        assert not t.done()
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        # the watcher is gone: the next recv gets the data
        b.send(b"after-cancel")
        return await loop.sock_recv(a, 100)

    assert run(loop, main()) == b"after-cancel"


def test_cancel_pending_sock_recv_then_add_reader(loop, pair):
    a, b = pair

    async def main():
        t = loop.create_task(loop.sock_recv(a, 100))
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        got = loop.create_future()
        loop.add_reader(a, lambda: got.done() or got.set_result(a.recv(10)))
        b.send(b"r")
        res = await got
        loop.remove_reader(a)
        return res

    assert run(loop, main()) == b"r"


def test_sock_recv_timeout_via_wait_for(loop, pair):
    a, b = pair

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(loop.sock_recv(a, 10), 0.01)
        b.send(b"ok")
        return await loop.sock_recv(a, 10)

    assert run(loop, main()) == b"ok"


def test_concurrent_recv_and_send_same_socket(loop, pair):
    a, b = pair

    async def main():
        r = loop.create_task(loop.sock_recv(a, 10))
        await asyncio.sleep(0)
        await loop.sock_sendall(a, b"out")
        assert await loop.sock_recv(b, 10) == b"out"
        await loop.sock_sendall(b, b"in")
        return await r

    assert run(loop, main()) == b"in"


@xfail_on("uvloop", "uvloop differs: a closed socket raises ValueError (Invalid file descriptor), not OSError")
def test_sock_recv_closed_socket(loop, pair):
    a, _ = pair
    a.close()

    async def main():
        with pytest.raises(OSError):
            await loop.sock_recv(a, 10)

    run(loop, main())


# -- a descriptor's life across waits: reuse of its number, copies, other watchers ---------


def _nonblocking_pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def _at_number(sock, n):
    """The connection of ``sock`` under descriptor number ``n`` (closing what ``n`` named)."""
    if sock.fileno() == n:  # it got the freed number already
        return sock
    os.dup2(sock.fileno(), n)
    moved = socket.socket(fileno=n)
    sock.close()
    moved.setblocking(False)
    return moved


async def _recv_after_send(loop, sock, peer, data):
    """sock_recv on ``sock`` while ``peer`` sends ``data`` a moment later."""
    loop.call_later(0.01, peer.send, data)
    return await asyncio.wait_for(loop.sock_recv(sock, 100), 3)


def test_waits_on_a_number_closed_and_reused(loop):
    """A wait on a socket, then the socket closed and its number given to another socket:
    a wait on the new socket sees the new socket's data."""
    async def main():
        a, peer_a = _nonblocking_pair()
        assert await _recv_after_send(loop, a, peer_a, b"first") == b"first"
        n = a.fileno()
        a.close()
        b, peer_b = _nonblocking_pair()
        b = _at_number(b, n)
        try:
            assert await _recv_after_send(loop, b, peer_b, b"second") == b"second"
            assert await _recv_after_send(loop, b, peer_b, b"third") == b"third"
        finally:
            for s in (peer_a, b, peer_b):
                s.close()

    run(loop, main())


def test_waits_on_a_number_whose_old_socket_lives_on_in_a_copy(loop):
    """As above, but a copy of the old socket stays open and its peer sends meanwhile: the
    new socket's wait gets the new socket's data only, and the loop does not spin."""
    async def main():
        a, peer_a = _nonblocking_pair()
        assert await _recv_after_send(loop, a, peer_a, b"first") == b"first"
        copy = a.dup()
        n = a.fileno()
        a.close()
        b, peer_b = _nonblocking_pair()
        b = _at_number(b, n)
        try:
            peer_a.send(b"to the copy")
            t0 = loop.time()
            assert await _recv_after_send(loop, b, peer_b, b"second") == b"second"
            assert loop.time() - t0 < 1
            assert copy.recv(100) == b"to the copy"
            # the loop stays idle: a turn with nothing to do takes its timeout
            t0 = loop.time()
            await asyncio.sleep(0.05)
            assert loop.time() - t0 >= 0.04
        finally:
            for s in (copy, peer_a, b, peer_b):
                s.close()

    run(loop, main())


def test_add_reader_after_sock_recv_and_sock_recv_after_remove_reader(loop):
    async def main():
        a, peer = _nonblocking_pair()
        try:
            assert await _recv_after_send(loop, a, peer, b"one") == b"one"
            got = loop.create_future()
            loop.add_reader(a, lambda: got.done() or got.set_result(a.recv(100)))
            peer.send(b"two")
            assert await asyncio.wait_for(got, 3) == b"two"
            loop.remove_reader(a)
            assert await _recv_after_send(loop, a, peer, b"three") == b"three"
        finally:
            a.close()
            peer.close()

    run(loop, main())


def test_sock_recv_again_after_a_cancelled_wait(loop):
    async def main():
        a, peer = _nonblocking_pair()
        try:
            waiting = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0.01)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert await _recv_after_send(loop, a, peer, b"after") == b"after"
            for i in range(200):  # many waits in a row on one descriptor
                msg = b"%d" % i
                loop.call_soon(peer.send, msg)
                assert await asyncio.wait_for(loop.sock_recv(a, 100), 3) == msg
        finally:
            a.close()
            peer.close()

    run(loop, main(), timeout=10)
