"""Datagram endpoints (``loop.create_datagram_endpoint``) with CPython 3.11 semantics.

Each test makes its endpoints with ``create_datagram_endpoint``; a peer that the test must
control exactly is a plain non-blocking socket driven with the loop's ``sock_*``
coroutines (``sock_recv`` only: uvloop has no ``sock_recvfrom``).
"""

import asyncio
import errno
import os
import shutil
import socket
import sys
import tempfile

import pytest

from loop_helpers import run, xfail_on


class DProto(asyncio.DatagramProtocol):
    """Records every callback; futures for the one-shot ones."""

    def __init__(self, loop):
        self.loop = loop
        self.transport = None
        self.events = []
        self.datagrams = []
        self.errors = []
        self.made = loop.create_future()
        self.lost = loop.create_future()
        self._waiter = None

    def _wake(self):
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport
        self.made.set_result(transport)

    def datagram_received(self, data, addr):
        assert type(data) is bytes
        self.events.append("datagram")
        self.datagrams.append((data, addr))
        self._wake()

    def error_received(self, exc):
        self.events.append("error")
        self.errors.append(exc)
        self._wake()

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)
        self._wake()

    async def wait_datagrams(self, n):
        """The datagrams received once there are ``n`` of them (or the endpoint is lost)."""
        while len(self.datagrams) < n and not self.lost.done():
            self._waiter = self.loop.create_future()
            await self._waiter
        return list(self.datagrams)

    async def wait_error(self):
        while not self.errors and not self.lost.done():
            self._waiter = self.loop.create_future()
            await self._waiter
        return self.errors[0]


class EchoProto(DProto):
    def datagram_received(self, data, addr):
        super().datagram_received(data, addr)
        self.transport.sendto(data, addr)


class Net:
    """Plain sockets and transports of one test; all closed at teardown."""

    def __init__(self, loop):
        self.loop = loop
        self.socks = []
        self.transports = []
        self._dir = None

    def path(self, name):
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="fl-")  # short: AF_UNIX paths are limited
        return os.path.join(self._dir, name)

    def udp(self, family=socket.AF_INET, host="127.0.0.1"):
        """A bound non-blocking plain datagram socket."""
        s = socket.socket(family, socket.SOCK_DGRAM)
        self.socks.append(s)
        s.bind((host, 0))
        s.setblocking(False)
        return s

    def closed_udp_port(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        addr = s.getsockname()
        s.close()
        return addr

    async def endpoint(self, factory=DProto, **kwargs):
        tr, pr = await self.loop.create_datagram_endpoint(lambda: factory(self.loop), **kwargs)
        self.transports.append(tr)
        return tr, pr

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


def so_opt(tr, opt):
    return tr.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, opt)


# -- addresses ------------------------------------------------------------------------


def test_local_addr_datagram_received_gets_data_and_addr(loop, net):
    async def main():
        tr, pr = await net.endpoint(local_addr=("127.0.0.1", 0))
        assert pr.events == ["made"]  # connection_made ran before the endpoint was returned
        assert pr.transport is tr
        server = tr.get_extra_info("sockname")
        assert server[0] == "127.0.0.1" and server[1] > 0
        peer = net.udp()
        peer.sendto(b"ping", server)
        [(data, addr)] = await pr.wait_datagrams(1)
        assert (data, addr) == (b"ping", peer.getsockname())
        tr.sendto(b"pong", addr)
        assert await loop.sock_recv(peer, 100) == b"pong"
        tr.close()
        assert await pr.lost is None
        return pr.events

    assert run(loop, main()) == ["made", "datagram", "lost"]


def test_remote_addr_sendto_without_address(loop, net):
    async def main():
        peer = net.udp()
        tr, pr = await net.endpoint(remote_addr=peer.getsockname())
        assert tr.get_extra_info("peername") == peer.getsockname()
        tr.sendto(b"no address")
        tr.sendto(b"same address", peer.getsockname())  # the connected address is allowed
        assert await loop.sock_recv(peer, 100) == b"no address"
        assert await loop.sock_recv(peer, 100) == b"same address"
        # the endpoint receives from its peer
        peer.sendto(b"back", tr.get_extra_info("sockname"))
        assert await pr.wait_datagrams(1) == [(b"back", peer.getsockname())]
        tr.close()
        assert await pr.lost is None

    run(loop, main())


def test_remote_addr_sendto_other_address_raises_value_error(loop, net):
    async def main():
        peer = net.udp()
        other = net.udp()
        tr, pr = await net.endpoint(remote_addr=peer.getsockname())
        msg = f"Invalid address: must be None or {peer.getsockname()}"
        with pytest.raises(ValueError) as info:
            tr.sendto(b"wrong", other.getsockname())
        assert str(info.value) == msg
        assert not tr.is_closing()
        assert pr.errors == []
        tr.sendto(b"still fine")
        assert await loop.sock_recv(peer, 100) == b"still fine"
        tr.close()
        assert await pr.lost is None

    run(loop, main())


def test_ipv6_local_addr(loop, net):
    async def main():
        tr, pr = await net.endpoint(family=socket.AF_INET6, local_addr=("::1", 0))
        sock = tr.get_extra_info("socket")
        assert sock.family == socket.AF_INET6
        server = tr.get_extra_info("sockname")
        assert server[0] == "::1" and len(server) == 4
        peer = net.udp(socket.AF_INET6, "::1")
        peer.sendto(b"six", server)
        [(data, addr)] = await pr.wait_datagrams(1)
        assert data == b"six"
        assert addr == peer.getsockname()  # the 4-tuple (host, port, flowinfo, scope_id)
        tr.sendto(b"back", addr)
        assert await loop.sock_recv(peer, 100) == b"back"
        tr.close()
        assert await pr.lost is None

    run(loop, main())


def test_sock_argument(loop, net):
    async def main():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", 0))
            tr, pr = await net.endpoint(sock=s)
        except BaseException:
            s.close()
            raise
        assert tr.get_extra_info("sockname") == s.getsockname()
        assert tr.get_extra_info("peername") is None
        assert tr.get_extra_info("socket").fileno() == s.fileno()
        peer = net.udp()
        peer.sendto(b"to sock", s.getsockname())
        assert await pr.wait_datagrams(1) == [(b"to sock", peer.getsockname())]
        tr.sendto(b"from sock", peer.getsockname())
        assert await loop.sock_recv(peer, 100) == b"from sock"
        tr.close()
        assert await pr.lost is None
        # the transport owned the socket: it is closed with it
        assert s.fileno() == -1

    run(loop, main())


def test_reuse_port(loop, net):
    async def main():
        tr1, pr1 = await net.endpoint(local_addr=("127.0.0.1", 0), reuse_port=True)
        assert so_opt(tr1, socket.SO_REUSEPORT) != 0
        addr = tr1.get_extra_info("sockname")
        # a second endpoint can bind the same address
        tr2, pr2 = await net.endpoint(local_addr=addr, reuse_port=True)
        assert so_opt(tr2, socket.SO_REUSEPORT) != 0
        assert tr2.get_extra_info("sockname") == addr
        tr1.close()
        tr2.close()
        assert await pr1.lost is None
        assert await pr2.lost is None

    run(loop, main())


def test_allow_broadcast_sets_so_broadcast(loop, net):
    async def main():
        plain, pr0 = await net.endpoint(local_addr=("127.0.0.1", 0))
        assert so_opt(plain, socket.SO_BROADCAST) == 0
        tr, pr = await net.endpoint(local_addr=("127.0.0.1", 0), allow_broadcast=True)
        assert so_opt(tr, socket.SO_BROADCAST) != 0
        plain.close()
        tr.close()
        assert await pr0.lost is None
        assert await pr.lost is None

    run(loop, main())


@xfail_on(
    "uvloop",
    "uvloop differs: create_datagram_endpoint(family=AF_UNIX, local_addr=path) raises "
    "TypeError('local_addr must be a tuple of (host, port)')",
)
def test_unix_datagram_endpoint(loop, net):
    async def main():
        server_path = net.path("srv")
        tr, pr = await net.endpoint(family=socket.AF_UNIX, local_addr=server_path)
        sock = tr.get_extra_info("socket")
        assert sock.family == socket.AF_UNIX and sock.type == socket.SOCK_DGRAM
        assert tr.get_extra_info("sockname") == server_path
        assert tr.get_extra_info("peername") is None
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        net.socks.append(peer)
        peer.bind(net.path("cli"))
        peer.setblocking(False)
        peer.sendto(b"over unix", server_path)
        assert await pr.wait_datagrams(1) == [(b"over unix", net.path("cli"))]
        tr.sendto(b"reply", net.path("cli"))
        assert await loop.sock_recv(peer, 100) == b"reply"
        tr.close()
        assert await pr.lost is None

    run(loop, main())


# -- the transport object ---------------------------------------------------------------


def test_get_extra_info(loop, net):
    async def main():
        tr, pr = await net.endpoint(local_addr=("127.0.0.1", 0))
        sock = tr.get_extra_info("socket")
        assert sock.family == socket.AF_INET
        assert sock.type == socket.SOCK_DGRAM
        assert sock.getsockname() == tr.get_extra_info("sockname")
        assert tr.get_extra_info("peername") is None
        assert tr.get_extra_info("no such key") is None
        assert tr.get_extra_info("no such key", "default") == "default"

        ctr, cpr = await net.endpoint(remote_addr=tr.get_extra_info("sockname"))
        csock = ctr.get_extra_info("socket")
        assert ctr.get_extra_info("peername") == tr.get_extra_info("sockname")
        assert csock.getpeername() == tr.get_extra_info("sockname")
        assert ctr.get_extra_info("sockname") == csock.getsockname()
        assert ctr.get_extra_info("sockname")[0] == "127.0.0.1"
        tr.close()
        ctr.close()
        assert await pr.lost is None
        assert await cpr.lost is None

    run(loop, main())


def test_get_write_buffer_size_is_zero(loop, net):
    async def main():
        peer = net.udp()
        tr, pr = await net.endpoint(remote_addr=peer.getsockname())
        assert tr.get_write_buffer_size() == 0
        for i in range(20):
            tr.sendto(b"d%d" % i)
            assert tr.get_write_buffer_size() == 0  # sent at once: nothing buffered
        got = [await loop.sock_recv(peer, 100) for _ in range(20)]
        assert got == [b"d%d" % i for i in range(20)]
        tr.close()
        assert await pr.lost is None
        assert tr.get_write_buffer_size() == 0

    run(loop, main())


@pytest.mark.parametrize("method", ["close", "abort"])
def test_close_and_abort_connection_lost_none(loop, net, method):
    async def main():
        tr, pr = await net.endpoint(local_addr=("127.0.0.1", 0))
        assert not tr.is_closing()
        getattr(tr, method)()
        assert tr.is_closing()
        assert not pr.lost.done()  # connection_lost is scheduled, not called synchronously
        assert await pr.lost is None
        tr.close()  # again: a no-op
        await asyncio.sleep(0.01)
        return pr.events

    assert run(loop, main()) == ["made", "lost"]


# -- errors -----------------------------------------------------------------------------


def test_connected_closed_port_error_received_connection_refused(loop, net):
    async def main():
        tr, pr = await net.endpoint(remote_addr=net.closed_udp_port())
        tr.sendto(b"anyone there?")
        exc = await asyncio.wait_for(pr.wait_error(), 2)
        assert isinstance(exc, ConnectionRefusedError)
        assert exc.errno == errno.ECONNREFUSED
        assert not tr.is_closing()  # an error_received() is not fatal
        assert not pr.lost.done()
        tr.close()
        assert await pr.lost is None
        return pr.events

    assert run(loop, main()) == ["made", "error", "lost"]


def test_oversize_datagram_error_received_emsgsize(loop, net):
    async def main():
        peer = net.udp()
        tr, pr = await net.endpoint(local_addr=("127.0.0.1", 0))
        assert tr.sendto(b"x" * 70_000, peer.getsockname()) is None  # does not raise
        exc = await asyncio.wait_for(pr.wait_error(), 2)
        assert type(exc) is OSError
        assert exc.errno == errno.EMSGSIZE
        assert tr.get_write_buffer_size() == 0  # not buffered for a retry
        assert not tr.is_closing()
        # the endpoint still works
        tr.sendto(b"small", peer.getsockname())
        assert await loop.sock_recv(peer, 100) == b"small"
        tr.close()
        assert await pr.lost is None
        return pr.events

    assert run(loop, main()) == ["made", "error", "lost"]


def test_thousand_datagrams_round_trip(loop, net):
    N = 1000
    WINDOW = 50  # stay far below the receive buffers: UDP drops what does not fit

    async def main():
        str_, spr = await net.endpoint(EchoProto, local_addr=("127.0.0.1", 0))
        ctr, cpr = await net.endpoint(remote_addr=str_.get_extra_info("sockname"))
        sent = [b"datagram-%04d" % i for i in range(N)]
        for start in range(0, N, WINDOW):
            for d in sent[start:start + WINDOW]:
                ctr.sendto(d)
            await asyncio.wait_for(cpr.wait_datagrams(start + WINDOW), 3)
        echoed = [d for d, _ in cpr.datagrams]
        assert all(a == str_.get_extra_info("sockname") for _, a in cpr.datagrams)
        assert all(a == ctr.get_extra_info("sockname") for _, a in spr.datagrams)
        assert len(spr.datagrams) == N
        assert sorted(echoed) == sent
        assert cpr.errors == [] and spr.errors == []
        ctr.close()
        str_.close()
        assert await cpr.lost is None
        assert await spr.lost is None

    run(loop, main(), timeout=10)


def test_many_peers_in_turn_get_their_own_replies(loop, net):
    """A server answering 100 peers in turn, three times each: every datagram arrives with
    its sender's address and every reply reaches its sender (more peers than any address
    cache of the loop holds)."""
    PEERS = 100

    async def main():
        str_, spr = await net.endpoint(EchoProto, local_addr=("127.0.0.1", 0))
        server = str_.get_extra_info("sockname")
        peers = [net.udp() for _ in range(PEERS)]
        for p in peers:
            p.setblocking(False)
        for rnd in range(3):
            for i, p in enumerate(peers):
                p.sendto(b"%d:%d" % (rnd, i), server)
                if i % 20 == 19:  # stay below the receive buffer
                    await asyncio.sleep(0.005)
            for i, p in enumerate(peers):
                got = await asyncio.wait_for(loop.sock_recv(p, 100), 3)
                assert got == b"%d:%d" % (rnd, i)
        senders = [a for _, a in spr.datagrams]
        assert senders == [p.getsockname() for p in peers] * 3
        assert spr.errors == []

    run(loop, main(), timeout=15)


# -- Unix datagram addresses, batches of sends, errors inside a batch ----------------------

UVLOOP_UNIX_DGRAM = (
    "uvloop differs: create_datagram_endpoint(family=AF_UNIX, local_addr=path) raises "
    "TypeError('local_addr must be a tuple of (host, port)')"
)



@xfail_on("uvloop", UVLOOP_UNIX_DGRAM)
def test_unix_datagram_sender_addresses_as_the_socket_module_makes_them(loop, net):
    """A path is a str, an abstract name is bytes, an unbound sender is None; a reply to
    the path and to the abstract name reaches its sender."""
    async def main():
        server_path = net.path("srv")
        tr, pr = await net.endpoint(family=socket.AF_UNIX, local_addr=server_path)
        named = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        unbound = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        net.socks += [named, abstract, unbound]
        named.bind(net.path("named"))
        abstract_name = b"\0ferroloop-test-%d" % os.getpid()
        abstract.bind(abstract_name)
        for s in (named, abstract, unbound):
            s.setblocking(False)
        named.sendto(b"1", server_path)
        abstract.sendto(b"2", server_path)
        unbound.sendto(b"3", server_path)
        got = await asyncio.wait_for(pr.wait_datagrams(3), 3)
        assert got == [(b"1", net.path("named")), (b"2", abstract_name), (b"3", None)]
        assert type(got[0][1]) is str and type(got[1][1]) is bytes
        for data, addr in got[:2]:
            tr.sendto(b"re" + data, addr)
        assert await asyncio.wait_for(loop.sock_recv(named, 10), 3) == b"re1"
        assert await asyncio.wait_for(loop.sock_recv(abstract, 10), 3) == b"re2"
        assert pr.errors == []

    run(loop, main())


class BurstProto(DProto):
    """Answers each datagram with ``n`` numbered replies sent in the same callback."""

    def __init__(self, loop, n):
        super().__init__(loop)
        self.n = n

    def datagram_received(self, data, addr):
        super().datagram_received(data, addr)
        for i in range(self.n):
            self.transport.sendto(b"%s-%04d" % (data, i), addr)


@xfail_on("uvloop", UVLOOP_UNIX_DGRAM)
def test_many_sendto_in_one_callback_arrive_in_order(loop, net):
    """300 datagrams sent from one callback (more than any batch of the loop, and more
    than the socket buffer holds: the rest waits in the transport) all arrive, in order,
    over a Unix datagram socket, which neither drops nor reorders."""
    N = 300

    async def main():
        server_path = net.path("srv")
        tr, pr = await net.endpoint(lambda lp: BurstProto(lp, N), family=socket.AF_UNIX, local_addr=server_path)
        client, cpr = await net.endpoint(family=socket.AF_UNIX, local_addr=net.path("cli"), remote_addr=server_path)
        client.sendto(b"go")
        got = await asyncio.wait_for(cpr.wait_datagrams(N), 5)
        assert [d for d, _ in got] == [b"go-%04d" % i for i in range(N)]
        assert pr.errors == [] and cpr.errors == []

    run(loop, main(), timeout=10)


@xfail_on("uvloop", "uvloop differs: create_datagram_endpoint(family=AF_UNIX, remote_addr=path) raises "
          "TypeError('remote_addr must be a tuple of (host, port)')")
def test_sendto_then_close_in_one_callback_sends_the_datagrams(loop, net):
    async def main():
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        net.socks.append(peer)
        peer.bind(net.path("peer"))
        peer.setblocking(False)
        tr, pr = await net.endpoint(family=socket.AF_UNIX, remote_addr=net.path("peer"))

        def burst():
            for i in range(5):
                tr.sendto(b"last-%d" % i)
            tr.close()

        loop.call_soon(burst)
        assert await pr.lost is None
        got = [await asyncio.wait_for(loop.sock_recv(peer, 100), 3) for _ in range(5)]
        assert got == [b"last-%d" % i for i in range(5)]

    run(loop, main())


@xfail_on("uvloop", "uvloop differs: an exception from datagram_received reaches the handler "
          "without a 'message' key")
def test_error_in_datagram_received_loses_no_datagram(loop, net):
    """An exception from ``datagram_received`` reaches the exception handler; the other
    datagrams queued with it are still delivered."""
    class Raising(DProto):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            if data == b"bad":
                raise ZeroDivisionError("from datagram_received")

    async def main():
        errors = []
        loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
        tr, pr = await net.endpoint(Raising, local_addr=("127.0.0.1", 0))
        peer = net.udp()
        server = tr.get_extra_info("sockname")
        for d in (b"bad", b"ok-1", b"ok-2"):
            peer.sendto(d, server)
        got = await asyncio.wait_for(pr.wait_datagrams(3), 3)
        assert [d for d, _ in got] == [b"bad", b"ok-1", b"ok-2"]
        await asyncio.sleep(0.01)
        assert len(errors) == 1
        assert isinstance(errors[0]["exception"], ZeroDivisionError)
        assert errors[0]["message"].startswith("Exception in callback")
        assert not tr.is_closing()

    run(loop, main())


@xfail_on("uvloop", "uvloop differs: create_datagram_endpoint(family=AF_UNIX, remote_addr=path) raises "
          "TypeError('remote_addr must be a tuple of (host, port)')")
@xfail_on("asyncio", "CPython 3.13.0 counts 8 header bytes into the buffer per waiting datagram "
          "and never out again (gh-135444, fixed in later 3.13 releases)",
          condition=sys.version_info[:3] == (3, 13, 0))
def test_write_buffer_drains_to_zero_and_resumes_writing(loop, net):
    """Datagrams that wait for a full socket count in ``get_write_buffer_size()`` while they
    wait and not after they left: the endpoint pauses past the high-water mark and resumes
    once the peer has read them."""
    class Flow(DProto):
        def __init__(self, loop):
            super().__init__(loop)
            self.flow = []

        def pause_writing(self):
            self.flow.append("pause")

        def resume_writing(self):
            self.flow.append("resume")
            self._wake()

    async def main():
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        net.socks.append(peer)
        peer.bind(net.path("peer"))
        peer.setblocking(False)
        tr, pr = await net.endpoint(Flow, family=socket.AF_UNIX, remote_addr=net.path("peer"))
        tr.set_write_buffer_limits(high=1, low=0)
        sent = 0
        while tr.get_write_buffer_size() == 0:  # until the peer's queue is full
            tr.sendto(b"x" * 100)
            sent += 1
            assert sent < 100_000
            if sent % 16 == 0:
                await asyncio.sleep(0)  # let a batch leave
        for _ in range(3):
            tr.sendto(b"y" * 100)
            sent += 1
        assert pr.flow == ["pause"]
        got = 0
        for _ in range(200):  # at most about 2 s
            if "resume" in pr.flow:
                break
            try:
                peer.recv(200)
                got += 1
            except BlockingIOError:
                await asyncio.sleep(0.01)
        assert tr.get_write_buffer_size() == 0
        assert pr.flow == ["pause", "resume"]
        while got < sent:
            await asyncio.wait_for(loop.sock_recv(peer, 200), 3)
            got += 1
        tr.close()
        await pr.lost

    run(loop, main(), timeout=10)
