"""Stream transports (TCP and Unix) with CPython 3.11 selector-transport semantics.

Each test makes one client transport with ``loop.create_connection`` (or
``create_unix_connection``) to a plain listening socket; the peer is the accepted socket,
driven with the loop's ``sock_*`` coroutines so that the test controls exactly when the
peer reads, writes, half-closes or resets.
"""

import asyncio
import contextvars
import re
import shutil
import socket
import struct
import tempfile

import pytest

from loop_helpers import run, xfail_on

MiB = 1024 * 1024
# more than loopback's kernel buffers absorb while the peer does not read (~4 MiB here)
BIG = 16 * MiB
PAYLOAD = bytes(range(256)) * (BIG // 256)


class Proto(asyncio.Protocol):
    """Records every callback; futures for the one-shot ones."""

    eof_result = None

    def __init__(self, loop):
        self.loop = loop
        self.transport = None
        self.events = []
        self.data = bytearray()
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()
        self.pauses = 0
        self.resumes = 0
        self._waiter = None

    def _wake(self):
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data):
        assert type(data) is bytes
        self.events.append("data")
        self.data += data
        self._wake()

    def eof_received(self):
        self.events.append("eof")
        self.eof.set_result(None)
        self._wake()
        return self.eof_result

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)
        self._wake()

    def pause_writing(self):
        self.events.append("pause_writing")
        self.pauses += 1

    def resume_writing(self):
        self.events.append("resume_writing")
        self.resumes += 1

    async def wait_bytes(self, n):
        """The data received once ``n`` bytes arrived (or EOF / connection lost)."""
        while len(self.data) < n and not self.eof.done() and not self.lost.done():
            self._waiter = self.loop.create_future()
            await self._waiter
        return bytes(self.data)


class KeepOpenProto(Proto):
    eof_result = True


async def recv_exactly(loop, sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = await loop.sock_recv(sock, min(n - len(buf), 256 * 1024))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


async def recv_until_eof(loop, sock):
    buf = bytearray()
    while True:
        chunk = await loop.sock_recv(sock, 256 * 1024)
        if not chunk:
            return bytes(buf)
        buf += chunk


async def recv_until_closed(loop, sock):
    """What the peer reads until EOF or a reset (a socket closed with unread data)."""
    buf = bytearray()
    try:
        while chunk := await loop.sock_recv(sock, 256 * 1024):
            buf += chunk
    except ConnectionResetError:
        pass
    return bytes(buf)


async def turns(n=5):
    for _ in range(n):
        await asyncio.sleep(0)


class Net:
    """Listening sockets, peers and transports of one test; all closed at teardown."""

    def __init__(self, loop):
        self.loop = loop
        self.socks = []
        self.transports = []
        self._dir = None

    def sock_path(self, name="s"):
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="fl-")  # short: AF_UNIX paths are limited
        return f"{self._dir}/{name}"

    def listener(self, family="tcp"):
        if family == "tcp":
            lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.socks.append(lst)
            lst.bind(("127.0.0.1", 0))
        else:
            lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.socks.append(lst)
            lst.bind(self.sock_path())
        lst.listen(16)
        lst.setblocking(False)
        return lst

    async def connect(self, factory=Proto, family="tcp"):
        """(client transport, its protocol, the accepted peer socket)."""
        lst = self.listener(family)
        accept = self.loop.create_task(self.loop.sock_accept(lst))
        try:
            if family == "tcp":
                tr, pr = await self.loop.create_connection(
                    lambda: factory(self.loop), *lst.getsockname()
                )
            else:
                tr, pr = await self.loop.create_unix_connection(
                    lambda: factory(self.loop), lst.getsockname()
                )
        except BaseException:
            accept.cancel()
            raise
        self.transports.append(tr)
        peer, _ = await accept
        self.socks.append(peer)
        return tr, pr, peer

    def close_all(self):
        live = [t for t in self.transports if not t.is_closing()]
        for tr in live:
            tr.abort()
        if live and not self.loop.is_closed() and not self.loop.is_running():
            self.loop.run_until_complete(asyncio.sleep(0.01))
        for s in self.socks:
            s.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture
def net(loop):
    n = Net(loop)
    yield n
    n.close_all()


@pytest.fixture(params=["tcp", "unix"])
def family(request):
    return request.param


# -- the transport object ------------------------------------------------------------


@xfail_on("uvloop", "uvloop differs: its transports do not derive from asyncio.Transport")
def test_transport_is_asyncio_transport(loop, net, family):
    async def main():
        tr, pr, peer = await net.connect(family=family)
        assert isinstance(tr, asyncio.Transport)
        assert isinstance(tr, asyncio.ReadTransport)
        assert isinstance(tr, asyncio.WriteTransport)
        assert pr.transport is tr
        tr.close()
        return await pr.lost

    assert run(loop, main()) is None


def test_connection_made_before_data_and_waiter(loop, net):
    """connection_made runs first; create_connection returns after it, and data that is
    already waiting in the socket is delivered after it."""
    lst = net.listener()

    async def main():
        c = socket.socket()
        net.socks.append(c)
        c.setblocking(False)
        await loop.sock_connect(c, lst.getsockname())
        peer, _ = await loop.sock_accept(lst)
        net.socks.append(peer)
        await loop.sock_sendall(peer, b"early bird")
        await asyncio.sleep(0.02)  # the data is in c's receive queue before the transport

        seen_at_made = []

        class P(Proto):
            def connection_made(self, transport):
                seen_at_made.append((list(self.events), transport.get_extra_info("peername")))
                super().connection_made(transport)

        tr, pr = await loop.create_connection(lambda: P(loop), sock=c)
        net.transports.append(tr)
        assert pr.events[:1] == ["made"]  # the waiter resolved after connection_made
        assert seen_at_made == [([], lst.getsockname())]
        assert await pr.wait_bytes(10) == b"early bird"
        assert pr.events[0] == "made" and pr.events[1] == "data"
        tr.close()
        await pr.lost
        return pr.events

    assert run(loop, main()) == ["made", "data", "lost"]


# -- writing ----------------------------------------------------------------------------


def test_write_and_writelines_in_order(loop, net, family):
    async def main():
        tr, pr, peer = await net.connect(family=family)
        tr.write(b"one,")
        tr.writelines([b"two,", b"three,"])
        tr.write(b"")
        tr.writelines([])
        tr.write(b"four,")
        tr.writelines([b"five,", bytearray(b"six,"), memoryview(b"seven")])
        tr.close()
        got = await recv_until_eof(loop, peer)
        assert await pr.lost is None
        return got

    assert run(loop, main()) == b"one,two,three,four,five,six,seven"


def test_write_bytearray_and_memoryview(loop, net):
    async def main():
        tr, pr, peer = await net.connect()
        ba = bytearray(b"bytearray|")
        tr.write(ba)
        ba[:] = b"CHANGED!!!"  # the transport owns what it was given, not the caller's buffer
        tr.write(memoryview(b"xxmemoryview|xx")[2:-2])
        tr.write(memoryview(bytearray(b"mv-of-bytearray")))
        tr.close()
        got = await recv_until_eof(loop, peer)
        await pr.lost
        return got

    assert run(loop, main()) == b"bytearray|memoryview|mv-of-bytearray"


@xfail_on(
    "uvloop",
    "uvloop differs: write() of a non-bytes object raises memoryview's TypeError "
    "('memoryview: a bytes-like object is required, ...') and write(None) does not raise",
)
@pytest.mark.parametrize("bad", ["text", 42, None])
def test_write_non_bytes_raises_type_error(loop, net, bad):
    async def main():
        tr, pr, peer = await net.connect()
        msg = f"data argument must be a bytes-like object, not {type(bad).__name__!r}"
        with pytest.raises(TypeError, match="^" + re.escape(msg) + "$"):
            tr.write(bad)
        assert not tr.is_closing()
        tr.write(b"still fine")
        tr.close()
        got = await recv_until_eof(loop, peer)
        await pr.lost
        return got

    assert run(loop, main()) == b"still fine"


def test_write_after_write_eof_raises(loop, net):
    async def main():
        tr, pr, peer = await net.connect()
        tr.write(b"before")
        tr.write_eof()
        with pytest.raises(RuntimeError, match=r"^Cannot call write\(\) after write_eof\(\)$"):
            tr.write(b"after")
        got = await recv_until_eof(loop, peer)
        tr.close()
        await pr.lost
        return got

    assert run(loop, main()) == b"before"


def test_write_eof_half_close(loop, net, family):
    async def main():
        tr, pr, peer = await net.connect(family=family)
        assert tr.can_write_eof() is True
        tr.write(b"request")
        tr.write_eof()
        tr.write_eof()  # a second call is a no-op
        assert not tr.is_closing()
        # the peer sees the data then EOF ...
        assert await recv_until_eof(loop, peer) == b"request"
        # ... and can still answer on its half
        await loop.sock_sendall(peer, b"response")
        assert await pr.wait_bytes(8) == b"response"
        assert not pr.lost.done()
        peer.shutdown(socket.SHUT_WR)
        await pr.eof
        # eof_received() returned None: the transport closes itself
        assert await pr.lost is None
        return pr.events

    events = run(loop, main())
    assert events[0] == "made" and events[-2:] == ["eof", "lost"]


def test_eof_received_true_keeps_transport_open(loop, net):
    async def main():
        tr, pr, peer = await net.connect(KeepOpenProto)
        await loop.sock_sendall(peer, b"last words")
        peer.shutdown(socket.SHUT_WR)
        await pr.eof
        assert pr.data == b"last words"
        await asyncio.sleep(0.02)
        assert not tr.is_closing()
        assert not pr.lost.done()
        tr.write(b"reply after eof")
        assert await recv_exactly(loop, peer, 15) == b"reply after eof"
        tr.close()
        assert await pr.lost is None
        assert await recv_until_eof(loop, peer) == b""
        return pr.events

    assert run(loop, main()) == ["made", "data", "eof", "lost"]


@pytest.mark.parametrize("result", [None, False])
def test_eof_received_falsy_closes_transport(loop, net, result):
    class P(Proto):
        eof_result = result

    async def main():
        tr, pr, peer = await net.connect(P)
        peer.shutdown(socket.SHUT_WR)
        await pr.eof
        assert tr.is_closing()
        assert await pr.lost is None
        # the transport closed its socket: the peer sees EOF
        assert await recv_until_eof(loop, peer) == b""
        return pr.events

    assert run(loop, main()) == ["made", "eof", "lost"]


# -- closing ----------------------------------------------------------------------------


def test_close_flushes_buffer_then_connection_lost(loop, net, family):
    async def main():
        tr, pr, peer = await net.connect(family=family)
        tr.write(PAYLOAD)
        assert tr.get_write_buffer_size() > 0  # the peer is not reading
        tr.close()
        assert tr.is_closing()
        await asyncio.sleep(0.05)
        assert not pr.lost.done()  # still flushing
        got = await recv_until_eof(loop, peer)
        assert await pr.lost is None
        assert tr.get_write_buffer_size() == 0
        return got == PAYLOAD, pr.events

    # the flush drains the buffer below the low-water mark before the end
    assert run(loop, main(), timeout=20) == (
        True,
        ["made", "pause_writing", "resume_writing", "lost"],
    )


def test_abort_discards_buffer(loop, net):
    async def main():
        tr, pr, peer = await net.connect()
        tr.write(PAYLOAD)
        assert tr.get_write_buffer_size() > 0
        tr.abort()
        assert tr.is_closing()
        # connection_lost does not wait for the peer to read anything
        assert await asyncio.wait_for(pr.lost, 2) is None
        assert tr.get_write_buffer_size() == 0
        got = await recv_until_closed(loop, peer)
        assert len(got) < len(PAYLOAD)
        assert PAYLOAD.startswith(got)
        return pr.events

    # the discarded buffer does not resume the protocol
    assert run(loop, main(), timeout=20) == ["made", "pause_writing", "lost"]


def test_write_then_abort_in_one_callback_sends_what_write_sent(loop, net):
    """asyncio's write() sends at once; abort() drops only what the kernel did not take.
    A small write followed by abort() in the same callback therefore reaches the peer."""

    async def main():
        tr, pr, peer = await net.connect()
        tr.write(b"last words")
        tr.abort()
        assert await asyncio.wait_for(pr.lost, 2) is None
        return await recv_until_closed(loop, peer)

    assert run(loop, main()) == b"last words"


def test_is_closing_and_single_connection_lost(loop, net):
    async def main():
        tr, pr, peer = await net.connect()
        assert tr.is_closing() is False
        tr.close()
        assert tr.is_closing() is True
        assert "lost" not in pr.events  # connection_lost is called later, by the loop
        tr.close()
        tr.abort()
        assert await pr.lost is None
        await turns()
        assert tr.is_closing() is True
        return pr.events

    assert run(loop, main()) == ["made", "lost"]


# -- reading ----------------------------------------------------------------------------


def test_pause_and_resume_reading(loop, net):
    async def main():
        tr, pr, peer = await net.connect()
        assert tr.is_reading() is True
        tr.pause_reading()
        assert tr.is_reading() is False
        tr.pause_reading()  # idempotent
        assert tr.is_reading() is False
        await loop.sock_sendall(peer, b"sent while paused")
        await asyncio.sleep(0.05)
        assert pr.data == b""
        assert pr.events == ["made"]
        tr.resume_reading()
        assert tr.is_reading() is True
        tr.resume_reading()  # idempotent
        assert await pr.wait_bytes(17) == b"sent while paused"
        tr.close()
        assert tr.is_reading() is False
        await pr.lost
        return pr.events

    assert run(loop, main()) == ["made", "data", "lost"]


# -- write flow control -------------------------------------------------------------------


@xfail_on("uvloop", "uvloop differs: the default low-water mark is 16 bytes, not 16 KiB")
def test_write_buffer_limits_defaults(loop, net):
    async def main():
        tr, pr, peer = await net.connect()
        limits = tr.get_write_buffer_limits()
        size = tr.get_write_buffer_size()
        tr.close()
        await pr.lost
        return limits, size

    assert run(loop, main()) == ((16 * 1024, 64 * 1024), 0)


def test_set_write_buffer_limits(loop, net):
    async def main():
        tr, pr, peer = await net.connect()
        tr.set_write_buffer_limits(high=1000)
        assert tr.get_write_buffer_limits() == (250, 1000)
        tr.set_write_buffer_limits(low=100)
        assert tr.get_write_buffer_limits() == (100, 400)
        tr.set_write_buffer_limits(high=300, low=200)
        assert tr.get_write_buffer_limits() == (200, 300)
        tr.set_write_buffer_limits(high=0, low=0)
        assert tr.get_write_buffer_limits() == (0, 0)
        tr.set_write_buffer_limits(high=64 * 1024)
        assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        with pytest.raises(ValueError, match=re.escape("high (10) must be >= low (20) must be >= 0")):
            tr.set_write_buffer_limits(high=10, low=20)
        with pytest.raises(ValueError, match=re.escape("high (10) must be >= low (-1) must be >= 0")):
            tr.set_write_buffer_limits(high=10, low=-1)
        assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)  # unchanged
        assert tr.get_write_buffer_size() == 0
        tr.close()
        await pr.lost
        return pr.events

    assert run(loop, main()) == ["made", "lost"]


def test_pause_and_resume_writing_with_slow_reader(loop, net):
    chunk = b"w" * (64 * 1024)
    total_chunks = BIG // len(chunk)

    class P(Proto):
        def __init__(self, loop):
            super().__init__(loop)
            self.can_write = loop.create_future()
            self.can_write.set_result(None)
            self.size_at_pause = None
            self.size_at_resume = None

        def pause_writing(self):
            super().pause_writing()
            self.size_at_pause = self.transport.get_write_buffer_size()
            self.can_write = self.loop.create_future()

        def resume_writing(self):
            super().resume_writing()
            self.size_at_resume = self.transport.get_write_buffer_size()
            self.can_write.set_result(None)

    async def main():
        tr, pr, peer = await net.connect(P)
        low, high = tr.get_write_buffer_limits()
        max_size = 0
        written = 0
        # the peer does not read: write until the transport pushes back
        while not pr.pauses and written < total_chunks:
            tr.write(chunk)
            written += 1
            max_size = max(max_size, tr.get_write_buffer_size())
        assert pr.pauses == 1, "pause_writing() was never called"
        assert pr.size_at_pause > high
        assert max_size <= high + len(chunk)  # a well-behaved writer keeps it bounded
        assert pr.resumes == 0

        async def producer():
            nonlocal written, max_size
            while written < total_chunks:
                await pr.can_write
                tr.write(chunk)
                written += 1
                max_size = max(max_size, tr.get_write_buffer_size())

        prod = loop.create_task(producer())
        await asyncio.sleep(0.05)
        assert pr.resumes == 0 and not prod.done()  # still nobody reading
        got = await recv_exactly(loop, peer, total_chunks * len(chunk))  # now the peer reads
        await prod
        assert got == chunk * total_chunks
        assert pr.resumes >= 1
        assert pr.pauses in (pr.resumes, pr.resumes + 1)
        assert pr.size_at_resume <= low
        assert max_size <= high + len(chunk)
        tr.close()
        await pr.lost
        return pr.events[0], pr.events[-1]

    assert run(loop, main(), timeout=20) == ("made", "lost")


def test_set_write_buffer_limits_pauses_immediately(loop, net):
    async def main():
        tr, pr, peer = await net.connect()
        tr.set_write_buffer_limits(high=4 * BIG)
        tr.write(PAYLOAD)
        size = tr.get_write_buffer_size()
        assert 0 < size <= 4 * BIG
        assert pr.pauses == 0
        # lowering the high-water mark below the buffered size pauses at once
        tr.set_write_buffer_limits(high=1024)
        assert pr.pauses == 1
        assert pr.events == ["made", "pause_writing"]
        tr.abort()
        await pr.lost
        return pr.events

    assert run(loop, main(), timeout=20) == ["made", "pause_writing", "lost"]


# -- extra info, protocol swapping --------------------------------------------------------


@xfail_on("uvloop", "uvloop differs: get_extra_info('socket') is a uvloop.PseudoSocket")
@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_get_extra_info_socket_is_transport_socket(loop, net, family):
    async def main():
        tr, pr, peer = await net.connect(family=family)
        sock = tr.get_extra_info("socket")
        is_trsock = isinstance(sock, asyncio.trsock.TransportSocket)
        tr.close()
        await pr.lost
        return is_trsock

    assert run(loop, main()) is True


def test_get_extra_info_tcp(loop, net):
    async def main():
        tr, pr, peer = await net.connect()
        sock = tr.get_extra_info("socket")
        assert sock.family == socket.AF_INET
        assert sock.type == socket.SOCK_STREAM
        assert sock.fileno() >= 0
        assert sock.getpeername() == peer.getsockname()
        assert sock.getsockname() == peer.getpeername()
        assert tr.get_extra_info("sockname") == peer.getpeername()
        assert tr.get_extra_info("peername") == peer.getsockname()
        assert tr.get_extra_info("no such key") is None
        assert tr.get_extra_info("no such key", "fallback") == "fallback"
        assert tr.get_extra_info("peername", "fallback") == peer.getsockname()
        tr.close()
        await pr.lost

    run(loop, main())


def test_get_extra_info_unix(loop, net):
    async def main():
        tr, pr, peer = await net.connect(family="unix")
        sock = tr.get_extra_info("socket")
        assert sock.family == socket.AF_UNIX
        assert tr.get_extra_info("peername") == peer.getsockname()
        assert tr.get_extra_info("sockname") == ""  # an unbound client socket
        assert tr.get_extra_info("no such key", 7) == 7
        tr.close()
        await pr.lost

    run(loop, main())


def test_tcp_nodelay_is_set(loop, net):
    """Nagle is off on both a connected and an accepted TCP transport."""
    server_side = []

    async def main():
        tr, pr, peer = await net.connect()
        client = tr.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        tr.close()
        await pr.lost

        def factory():
            p = Proto(loop)
            server_side.append(p)
            return p

        server = await loop.create_server(factory, "127.0.0.1", 0)
        try:
            tr, pr = await loop.create_connection(lambda: Proto(loop), *server.sockets[0].getsockname())
            while not server_side:
                await asyncio.sleep(0.005)
            sp = server_side[0]
            accepted = sp.transport.get_extra_info("socket").getsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY
            )
            tr.close()
            await pr.lost
            await sp.lost
        finally:
            server.close()
            await server.wait_closed()
        return client != 0, accepted != 0

    assert run(loop, main()) == (True, True)


def test_set_protocol_and_get_protocol(loop, net):
    async def main():
        tr, first, peer = await net.connect()
        assert tr.get_protocol() is first
        await loop.sock_sendall(peer, b"to first")
        assert await first.wait_bytes(8) == b"to first"
        second = Proto(loop)
        tr.set_protocol(second)
        assert tr.get_protocol() is second
        await loop.sock_sendall(peer, b"to second")
        assert await second.wait_bytes(9) == b"to second"
        peer.shutdown(socket.SHUT_WR)
        assert await second.lost is None
        await turns()
        assert first.data == b"to first" and not first.lost.done()
        return first.events, second.events

    assert run(loop, main()) == (["made", "data"], ["data", "eof", "lost"])


# -- BufferedProtocol -----------------------------------------------------------------------


class Buffered(asyncio.BufferedProtocol):
    def __init__(self, loop, size=1000):
        self.loop = loop
        self.buf = bytearray(size)
        self.received = bytearray()
        self.events = []
        self.hints = []
        self.done = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def get_buffer(self, sizehint):
        self.hints.append(sizehint)
        return memoryview(self.buf)

    def buffer_updated(self, nbytes):
        assert 0 < nbytes <= len(self.buf)
        if self.events[-1] != "updated":
            self.events.append("updated")
        self.received += self.buf[:nbytes]

    def eof_received(self):
        self.events.append("eof")
        self.done.set_result(None)

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


def test_buffered_protocol_receives_all_bytes(loop, net):
    data = bytes(range(256)) * 1024  # 256 KiB through a 1000-byte buffer

    async def main():
        tr, pr, peer = await net.connect(Buffered)
        await loop.sock_sendall(peer, data)
        peer.shutdown(socket.SHUT_WR)
        await pr.done
        assert await pr.lost is None
        assert all(isinstance(h, int) for h in pr.hints)
        return bytes(pr.received) == data, pr.events

    assert run(loop, main()) == (True, ["made", "updated", "eof", "lost"])


@xfail_on(
    "uvloop",
    "uvloop differs: an empty get_buffer() is reported as RuntimeError('unhandled error "
    "(or an empty buffer) in get_buffer()') with the message 'Fatal error on transport ...'",
)
def test_buffered_protocol_empty_buffer_is_fatal(loop, net, handler_calls):
    async def main():
        tr, pr, peer = await net.connect(lambda lp: Buffered(lp, size=0))
        await loop.sock_sendall(peer, b"nowhere to go")
        exc = await pr.lost
        assert await recv_until_closed(loop, peer) == b""  # the connection was closed
        return tr, pr, exc

    tr, pr, exc = run(loop, main())
    assert isinstance(exc, RuntimeError)
    assert str(exc) == "get_buffer() returned an empty buffer"
    assert len(handler_calls) == 1
    ctx = handler_calls[0]
    assert ctx["message"] == "Fatal error: protocol.get_buffer() call failed."
    assert ctx["exception"] is exc
    assert ctx["transport"] is tr
    assert ctx["protocol"] is pr
    assert pr.events == ["made", "lost"]


# -- errors -------------------------------------------------------------------------------


@xfail_on(
    "uvloop",
    "uvloop differs: the handler's message is 'Fatal error on transport TCPTransport'",
)
def test_data_received_exception_is_fatal_and_server_keeps_serving(loop, handler_calls):
    class Boom(Exception):
        pass

    protocols = []

    class Server(Proto):
        def __init__(self, loop):
            super().__init__(loop)
            protocols.append(self)

        def data_received(self, data):
            super().data_received(data)
            if data.startswith(b"boom"):
                raise Boom("raised by data_received")
            self.transport.write(b"echo:" + data)

    async def main():
        server = await loop.create_server(lambda: Server(loop), "127.0.0.1", 0)
        try:
            addr = server.sockets[0].getsockname()
            tr1, c1 = await loop.create_connection(lambda: Proto(loop), *addr)
            tr1.write(b"boom")
            # the server closes the connection: the client sees EOF
            await c1.eof
            assert await c1.lost is None
            s1 = protocols[0]
            exc = await s1.lost
            assert isinstance(exc, Boom)
            assert len(handler_calls) == 1
            ctx = handler_calls[0]
            assert ctx["message"] == "Fatal error: protocol.data_received() call failed."
            assert ctx["exception"] is exc
            assert ctx["protocol"] is s1
            assert ctx["transport"] is s1.transport
            assert s1.transport.is_closing()
            # the server is still serving
            assert server.is_serving()
            tr2, c2 = await loop.create_connection(lambda: Proto(loop), *addr)
            tr2.write(b"fine")
            assert await c2.wait_bytes(9) == b"echo:fine"
            tr2.close()
            await c2.lost
            await protocols[1].lost
            return [p.events for p in protocols]
        finally:
            server.close()
            await server.wait_closed()

    assert run(loop, main()) == [["made", "data", "lost"], ["made", "data", "eof", "lost"]]
    assert len(handler_calls) == 1


def test_peer_reset_while_writing(loop, net):
    async def main():
        tr, pr, peer = await net.connect()
        tr.write(PAYLOAD)
        assert tr.get_write_buffer_size() > 0
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # RST
        exc = await asyncio.wait_for(pr.lost, 3)
        assert tr.is_closing()
        assert tr.get_write_buffer_size() == 0
        await turns()
        return exc, pr.events

    exc, events = run(loop, main())
    assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), repr(exc)
    assert events == ["made", "pause_writing", "lost"]


@xfail_on(
    "uvloop", "uvloop differs: write() after connection_lost raises RuntimeError (handler is closed)"
)
def test_write_after_connection_lost_is_ignored(loop, net):
    async def main():
        tr, pr, peer = await net.connect()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        exc = await asyncio.wait_for(pr.lost, 3)
        tr.write(b"into the void")  # no exception, nothing reported
        tr.close()
        await turns()
        return exc

    assert isinstance(run(loop, main()), ConnectionResetError)


def test_large_data_arrives_whole_and_pause_reading_in_data_received_stops_it(loop):
    """4 MiB sent at once: every byte arrives, in order; a protocol that pauses reading in
    data_received gets no further call until it resumes, however much is waiting."""
    payload = bytes(range(256)) * (4 * 1024 * 1024 // 256)

    class Pausing(asyncio.Protocol):
        def __init__(self):
            self.chunks = []
            self.calls_while_paused = 0
            self.paused = False
            self.done = loop.create_future()

        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            if self.paused:
                self.calls_while_paused += 1
            self.chunks.append(data)
            if len(self.chunks) % 3 == 0:
                self.paused = True
                transport = self.transport
                transport.pause_reading()

                def resume():
                    self.paused = False
                    transport.resume_reading()

                loop.call_later(0.001, resume)
            if sum(map(len, self.chunks)) >= len(payload) and not self.done.done():
                self.done.set_result(None)

    async def main():
        a, b = socket.socketpair()
        try:
            proto = Pausing()
            tr, _ = await loop.connect_accepted_socket(lambda: proto, a)
            b.setblocking(False)
            await loop.sock_sendall(b, payload)
            await asyncio.wait_for(proto.done, 10)
            assert b"".join(proto.chunks) == payload
            assert proto.calls_while_paused == 0
            tr.close()
        finally:
            b.close()

    run(loop, main(), timeout=15)


_VAR = contextvars.ContextVar("transport_test_var", default="unset")


class _ContextRecorder(asyncio.Protocol):
    def __init__(self):
        self.seen = []
        self.got = asyncio.Event()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.seen.append((data, _VAR.get()))
        self.got.set()


@xfail_on("uvloop", reason="uvloop differs: resume_reading keeps the context reading first started in")
def test_data_received_runs_in_the_context_reading_started_in(loop):
    # asyncio: a transport's reader is a handle made when reading starts, with a copy of the
    # context current then; data_received runs in it (ferroloop calls the transport's read
    # step natively, in that handle's context). resume_reading starts a new reader in the
    # context of its caller.
    async def main():
        a, b = socket.socketpair()
        _VAR.set("connecting")
        _, proto = await loop.create_connection(_ContextRecorder, sock=a)
        _VAR.set("later")
        b.send(b"one")
        await proto.got.wait()
        proto.got.clear()
        proto.transport.pause_reading()

        async def resume():
            _VAR.set("resumer")
            proto.transport.resume_reading()

        await asyncio.create_task(resume())
        b.send(b"two")
        await proto.got.wait()
        proto.transport.close()
        b.close()
        return proto.seen

    assert run(loop, main()) == [(b"one", "connecting"), (b"two", "resumer")]
