"""Servers and connections: create_server / create_connection / connect_accepted_socket,
their Unix-socket forms, the Server object, and many concurrent connections."""

import asyncio
import errno
import os
import resource
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import uuid

import pytest

from loop_helpers import run, xfail_on


class Echo(asyncio.Protocol):
    """Server side: echoes what it receives; records its lifetime."""

    def __init__(self, loop, registry=None):
        self.loop = loop
        self.transport = None
        self.lost = loop.create_future()
        if registry is not None:
            registry.append(self)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


class Client(asyncio.Protocol):
    def __init__(self, loop):
        self.loop = loop
        self.transport = None
        self.data = bytearray()
        self.eof = loop.create_future()
        self.lost = loop.create_future()
        self._waiter = None

    def _wake(self):
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data
        self._wake()

    def eof_received(self):
        self.eof.set_result(None)
        self._wake()

    def connection_lost(self, exc):
        if not self.eof.done():
            self.eof.set_result(None)
        self.lost.set_result(exc)
        self._wake()

    async def wait_bytes(self, n):
        while len(self.data) < n and not self.eof.done():
            self._waiter = self.loop.create_future()
            await self._waiter
        return bytes(self.data)

    async def echo(self, msg):
        start = len(self.data)
        self.transport.write(msg)
        got = await self.wait_bytes(start + len(msg))
        return got[start:]

    async def close(self):
        self.transport.close()
        return await self.lost


async def open_client(loop, *addr, unix=None, **kwargs):
    if unix is not None:
        _, pr = await loop.create_unix_connection(lambda: Client(loop), unix, **kwargs)
    else:
        _, pr = await loop.create_connection(lambda: Client(loop), *addr, **kwargs)
    return pr


async def roundtrip(loop, *addr, unix=None, msg=b"hello server", **kwargs):
    """Connect, send ``msg``, return the echo, close."""
    pr = await open_client(loop, *addr, unix=unix, **kwargs)
    try:
        return await pr.echo(msg)
    finally:
        await pr.close()


def bound_not_listening():
    """A bound TCP socket nobody listens on: connecting to it is refused."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s


@pytest.fixture
def sock_dir():
    d = tempfile.mkdtemp(prefix="fl-")  # short: AF_UNIX paths are limited to 107 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


def echo_factory(loop, registry=None):
    return lambda: Echo(loop, registry)


# -- create_server: where it listens ----------------------------------------------------


def test_create_server_host_none_listens_on_all_interfaces(loop):
    expected = sorted(
        {
            (ai[0], ai[4][0])
            for ai in socket.getaddrinfo(
                None, 0, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
            )
        }
    )

    async def main():
        server = await loop.create_server(echo_factory(loop), None, 0)
        try:
            socks = server.sockets
            got = sorted((s.family, s.getsockname()[0]) for s in socks)
            for s in socks:
                assert s.getsockname()[1] != 0
                if s.family == socket.AF_INET6:
                    assert s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
            port4 = next(s.getsockname()[1] for s in socks if s.family == socket.AF_INET)
            assert await roundtrip(loop, "127.0.0.1", port4) == b"hello server"
            return got
        finally:
            server.close()
            await server.wait_closed()

    assert run(loop, main()) == expected


def test_create_server_host_ipv4(loop):
    async def main():
        server = await loop.create_server(echo_factory(loop), "127.0.0.1", 0)
        try:
            (sock,) = server.sockets
            host, port = sock.getsockname()
            assert sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM
            assert host == "127.0.0.1" and port != 0
            return await roundtrip(loop, host, port)
        finally:
            server.close()
            await server.wait_closed()

    assert run(loop, main()) == b"hello server"


def test_create_server_host_list(loop):
    async def main():
        server = await loop.create_server(echo_factory(loop), ["127.0.0.1", "127.0.0.2"], 0)
        try:
            addrs = sorted(s.getsockname() for s in server.sockets)
            assert [a[0] for a in addrs] == ["127.0.0.1", "127.0.0.2"]
            return [await roundtrip(loop, *a, msg=a[0].encode()) for a in addrs]
        finally:
            server.close()
            await server.wait_closed()

    assert run(loop, main()) == [b"127.0.0.1", b"127.0.0.2"]


def test_create_server_port_zero_picks_a_port(loop):
    async def main():
        s1 = await loop.create_server(echo_factory(loop), "127.0.0.1", 0)
        s2 = await loop.create_server(echo_factory(loop), "127.0.0.1", 0)
        try:
            p1 = s1.sockets[0].getsockname()[1]
            p2 = s2.sockets[0].getsockname()[1]
            assert p1 != 0 and p2 != 0 and p1 != p2
            return await roundtrip(loop, "127.0.0.1", p1), await roundtrip(loop, "127.0.0.1", p2)
        finally:
            s1.close()
            s2.close()
            await s1.wait_closed()
            await s2.wait_closed()

    assert run(loop, main()) == (b"hello server", b"hello server")


def test_create_server_sock(loop):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    addr = sock.getsockname()

    async def main():
        server = await loop.create_server(echo_factory(loop), sock=sock)
        try:
            (tsock,) = server.sockets
            assert tsock.fileno() == sock.fileno()
            assert tsock.getsockname() == addr
            return await roundtrip(loop, *addr)
        finally:
            server.close()
            await server.wait_closed()

    try:
        assert run(loop, main()) == b"hello server"
        assert sock.fileno() == -1  # the server owned the socket and closed it
    finally:
        sock.close()


def test_create_server_argument_errors(loop):
    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            with pytest.raises(ValueError, match="A Stream Socket was expected"):
                await loop.create_server(echo_factory(loop), sock=udp)
        with socket.socket() as tcp:
            with pytest.raises(ValueError, match="host/port and sock can not be specified at the same time"):
                await loop.create_server(echo_factory(loop), "127.0.0.1", 0, sock=tcp)
        with pytest.raises(ValueError, match="Neither host/port nor sock were specified"):
            await loop.create_server(echo_factory(loop))

    run(loop, main())


def _listen_backlog(tsock):
    """The accept-queue limit of a listening TCP socket (Linux TCP_INFO tcpi_sacked)."""
    info = tsock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("8B6I", info)[13]


@pytest.mark.parametrize("backlog", [None, 5])
def test_create_server_backlog(loop, backlog):
    kwargs = {} if backlog is None else {"backlog": backlog}

    async def main():
        server = await loop.create_server(echo_factory(loop), "127.0.0.1", 0, **kwargs)
        try:
            return _listen_backlog(server.sockets[0])
        finally:
            server.close()
            await server.wait_closed()

    assert run(loop, main()) == (100 if backlog is None else backlog)


@pytest.mark.parametrize("reuse_address", [None, True])
def test_create_server_reuse_address_set(loop, reuse_address):
    async def main():
        server = await loop.create_server(
            echo_factory(loop), "127.0.0.1", 0, reuse_address=reuse_address
        )
        try:
            return server.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        finally:
            server.close()
            await server.wait_closed()

    assert run(loop, main()) != 0


def test_create_server_reuse_address_false(loop):
    async def main():
        server = await loop.create_server(echo_factory(loop), "127.0.0.1", 0, reuse_address=False)
        try:
            return server.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        finally:
            server.close()
            await server.wait_closed()

    assert run(loop, main()) == 0


def test_create_server_reuse_port(loop):
    async def main():
        s1 = await loop.create_server(echo_factory(loop), "127.0.0.1", 0, reuse_port=True)
        try:
            port = s1.sockets[0].getsockname()[1]
            assert s1.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
            s2 = await loop.create_server(echo_factory(loop), "127.0.0.1", port, reuse_port=True)
            try:
                assert s2.sockets[0].getsockname() == ("127.0.0.1", port)
                assert s2.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
                return [await roundtrip(loop, "127.0.0.1", port) for _ in range(4)]
            finally:
                s2.close()
                await s2.wait_closed()
        finally:
            s1.close()
            await s1.wait_closed()

    assert run(loop, main()) == [b"hello server"] * 4


def test_create_server_port_in_use(loop):
    async def main():
        s1 = await loop.create_server(echo_factory(loop), "127.0.0.1", 0)
        try:
            port = s1.sockets[0].getsockname()[1]
            with pytest.raises(OSError) as info:
                await loop.create_server(echo_factory(loop), "127.0.0.1", port)
            return info.value.errno
        finally:
            s1.close()
            await s1.wait_closed()

    assert run(loop, main()) == errno.EADDRINUSE


# -- the Server object ----------------------------------------------------------------


def test_start_serving_false_then_start_serving(loop):
    async def main():
        server = await loop.create_server(echo_factory(loop), "127.0.0.1", 0, start_serving=False)
        try:
            assert server.is_serving() is False
            addr = server.sockets[0].getsockname()
            with pytest.raises(ConnectionRefusedError):  # bound, not yet listening
                await roundtrip(loop, *addr)
            await server.start_serving()
            assert server.is_serving() is True
            await server.start_serving()  # a second call is a no-op
            return await roundtrip(loop, *addr)
        finally:
            server.close()
            await server.wait_closed()

    assert run(loop, main()) == b"hello server"


def test_serve_forever(loop):
    async def main():
        server = await loop.create_server(echo_factory(loop), "127.0.0.1", 0, start_serving=False)
        addr = server.sockets[0].getsockname()
        task = loop.create_task(server.serve_forever())
        await asyncio.sleep(0)
        assert server.is_serving()
        assert await roundtrip(loop, *addr) == b"hello server"
        with pytest.raises(RuntimeError, match="is already being awaited on serve_forever"):
            await server.serve_forever()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # cancelling serve_forever() closes the server
        assert server.is_serving() is False
        assert len(server.sockets) == 0
        with pytest.raises(RuntimeError, match="is closed"):
            await server.serve_forever()
        with pytest.raises(ConnectionRefusedError):
            await roundtrip(loop, *addr)

    run(loop, main())


def test_server_close_wait_closed_is_serving(loop):
    async def main():
        server = await loop.create_server(echo_factory(loop), "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        assert server.is_serving() is True
        assert len(server.sockets) == 1
        server.close()
        assert server.is_serving() is False
        assert len(server.sockets) == 0
        await asyncio.wait_for(server.wait_closed(), 1)
        server.close()  # a second close is a no-op
        await asyncio.wait_for(server.wait_closed(), 1)
        with pytest.raises(ConnectionRefusedError):
            await roundtrip(loop, *addr)

    run(loop, main())


@xfail_on(
    "uvloop",
    "uvloop differs: Server.sockets is a list of uvloop.PseudoSocket objects ([] once closed)",
)
def test_server_sockets_are_transport_sockets(loop):
    async def main():
        server = await loop.create_server(echo_factory(loop), ["127.0.0.1", "127.0.0.2"], 0)
        sockets = server.sockets
        server.close()
        await server.wait_closed()
        return sockets, server.sockets

    sockets, after = run(loop, main())
    assert type(sockets) is tuple
    assert [type(s) for s in sockets] == [asyncio.trsock.TransportSocket] * 2
    assert after == ()


def test_server_get_loop(loop):
    async def main():
        server = await loop.create_server(echo_factory(loop), "127.0.0.1", 0)
        try:
            return server.get_loop()
        finally:
            server.close()
            await server.wait_closed()

    assert run(loop, main()) is loop


def test_server_async_with(loop):
    async def main():
        server = await loop.create_server(echo_factory(loop), "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        async with server as entered:
            assert entered is server
            assert server.is_serving()
            assert await roundtrip(loop, *addr) == b"hello server"
        assert server.is_serving() is False
        assert len(server.sockets) == 0
        with pytest.raises(ConnectionRefusedError):
            await roundtrip(loop, *addr)

    run(loop, main())


def test_server_close_with_live_clients(loop):
    registry = []

    async def main():
        server = await loop.create_server(echo_factory(loop, registry), "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        client = await open_client(loop, *addr)
        assert await client.echo(b"before close") == b"before close"
        waiter = loop.create_task(server.wait_closed())  # waiting before close()
        await asyncio.sleep(0)
        server.close()
        assert server.is_serving() is False
        # the live connection keeps working
        assert await client.echo(b"after close") == b"after close"
        await asyncio.sleep(0.02)
        assert not waiter.done()  # ... and wait_closed() waits for it
        if sys.version_info < (3, 12):
            # 3.11: wait_closed() called after close() returns at once
            await asyncio.wait_for(server.wait_closed(), 1)
        with pytest.raises(ConnectionRefusedError):
            await roundtrip(loop, *addr)
        assert await client.close() is None
        assert await registry[0].lost is None
        await asyncio.wait_for(waiter, 1)
        return len(registry)

    assert run(loop, main()) == 1


_CLIENTS_API = "Server.close_clients()/abort_clients() are Python 3.13's API"


@pytest.mark.parametrize("method", ["close_clients", "abort_clients"])
@xfail_on("asyncio", f"asyncio 3.11 differs: {_CLIENTS_API}", condition=sys.version_info < (3, 13))
@xfail_on("uvloop", f"uvloop differs: {_CLIENTS_API} are missing")
def test_server_close_clients_and_abort_clients(loop, method):
    registry = []

    async def main():
        server = await loop.create_server(echo_factory(loop, registry), "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        clients = [await open_client(loop, *addr) for _ in range(3)]
        try:
            for c in clients:
                assert await c.echo(b"hi") == b"hi"
            server.close()
            getattr(server, method)()
            excs = [await asyncio.wait_for(p.lost, 1) for p in registry]
        finally:
            server.close()
            for c in clients:
                await c.close()
            for p in registry:
                if p.transport is not None:
                    p.transport.abort()
            await asyncio.sleep(0.01)
        return len(registry), excs

    count, excs = run(loop, main())
    assert count == 3
    assert excs == [None, None, None]


# -- create_connection ------------------------------------------------------------------


def test_create_connection_refused(loop):
    s = bound_not_listening()

    async def main():
        with pytest.raises(ConnectionRefusedError) as info:
            await loop.create_connection(lambda: Client(loop), *s.getsockname())
        return info.value

    try:
        exc = run(loop, main())
    finally:
        s.close()
    assert isinstance(exc, OSError)
    assert exc.errno == errno.ECONNREFUSED


def test_create_connection_sock(loop):
    async def main():
        server = await loop.create_server(echo_factory(loop), "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        sock = socket.socket()
        try:
            sock.connect(addr)  # a connected socket, still blocking: the loop makes it non-blocking
            tr, pr = await loop.create_connection(lambda: Client(loop), sock=sock)
            assert sock.gettimeout() == 0
            assert tr.get_extra_info("socket").fileno() == sock.fileno()
            assert tr.get_extra_info("peername") == addr
            assert await pr.echo(b"over sock=") == b"over sock="
            assert await pr.close() is None
            return sock.fileno()
        finally:
            sock.close()
            server.close()
            await server.wait_closed()

    assert run(loop, main()) == -1  # the transport closed the socket it was given


def test_create_connection_argument_errors(loop):
    async def main():
        with socket.socket() as sock:
            with pytest.raises(ValueError, match="host/port and sock can not be specified at the same time"):
                await loop.create_connection(lambda: Client(loop), "127.0.0.1", 1, sock=sock)
        with pytest.raises(ValueError, match="host and port was not specified and no sock specified"):
            await loop.create_connection(lambda: Client(loop))

    run(loop, main())


def test_create_connection_local_addr(loop):
    registry = []

    async def main():
        server = await loop.create_server(echo_factory(loop, registry), "127.0.0.1", 0)
        try:
            addr = server.sockets[0].getsockname()
            tr, pr = await loop.create_connection(
                lambda: Client(loop), *addr, local_addr=("127.0.0.2", 0)
            )
            sockname = tr.get_extra_info("sockname")
            assert sockname[0] == "127.0.0.2" and sockname[1] != 0
            assert await pr.echo(b"from .2") == b"from .2"
            assert registry[0].transport.get_extra_info("peername") == sockname
            await pr.close()
            await registry[0].lost
            return sockname[0]
        finally:
            server.close()
            await server.wait_closed()

    assert run(loop, main()) == "127.0.0.2"


@xfail_on(
    "uvloop", "uvloop differs: create_connection() has no happy_eyeballs_delay/interleave parameters"
)
@pytest.mark.parametrize("interleave", [None, 1, 2])
def test_create_connection_happy_eyeballs(loop, interleave):
    async def main():
        server = await loop.create_server(echo_factory(loop), "127.0.0.1", 0)
        try:
            port = server.sockets[0].getsockname()[1]
            kwargs = {"happy_eyeballs_delay": 0.05}
            if interleave is not None:
                kwargs["interleave"] = interleave
            tr, pr = await loop.create_connection(lambda: Client(loop), "localhost", port, **kwargs)
            peer = tr.get_extra_info("peername")
            assert await pr.echo(b"eyeballs") == b"eyeballs"
            await pr.close()
            return peer
        finally:
            server.close()
            await server.wait_closed()

    peer = run(loop, main())
    # the server listens on 127.0.0.1 only: if localhost also resolves to ::1, that
    # attempt is refused and the IPv4 one wins
    assert peer[0] == "127.0.0.1"


def test_connect_accepted_socket(loop):
    async def main():
        listener = socket.socket()
        client = socket.socket()
        accepted = None
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            client.connect(listener.getsockname())
            accepted, caddr = listener.accept()
            tr, pr = await loop.connect_accepted_socket(lambda: Echo(loop), accepted)
            assert isinstance(pr, Echo) and pr.transport is tr
            assert tr.get_extra_info("peername") == caddr
            client.setblocking(False)
            await loop.sock_sendall(client, b"accepted elsewhere")
            got = b""
            while len(got) < 18:
                got += await loop.sock_recv(client, 100)
            client.close()
            assert await pr.lost is None  # echo protocol: EOF closes the transport
            return got, accepted.fileno()
        finally:
            client.close()
            listener.close()
            if accepted is not None:
                accepted.close()

    assert run(loop, main()) == (b"accepted elsewhere", -1)


@xfail_on("uvloop", "uvloop differs: the socket object passed in is left in blocking mode")
def test_connect_accepted_socket_makes_socket_non_blocking(loop):
    async def main():
        with socket.socket() as listener, socket.socket() as client:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            client.connect(listener.getsockname())
            accepted, _ = listener.accept()
            with accepted:
                tr, pr = await loop.connect_accepted_socket(lambda: Echo(loop), accepted)
                timeout = accepted.gettimeout()
                tr.close()
                await pr.lost
                return timeout

    assert run(loop, main()) == 0


def test_connect_accepted_socket_rejects_non_stream(loop):
    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            with pytest.raises(ValueError, match="A Stream Socket was expected"):
                await loop.connect_accepted_socket(lambda: Echo(loop), udp)

    run(loop, main())


# -- Unix sockets -----------------------------------------------------------------------


def test_create_unix_server_and_connection_path(loop, sock_dir):
    path = os.path.join(sock_dir, "srv")

    async def main():
        server = await loop.create_unix_server(echo_factory(loop), path)
        try:
            (sock,) = server.sockets
            assert sock.family == socket.AF_UNIX
            assert sock.getsockname() == path
            assert stat.S_ISSOCK(os.stat(path).st_mode)
            tr, pr = await loop.create_unix_connection(lambda: Client(loop), path)
            assert tr.get_extra_info("peername") == path
            assert await pr.echo(b"over unix") == b"over unix"
            await pr.close()
        finally:
            server.close()
            await server.wait_closed()

    run(loop, main())
    if sys.version_info < (3, 13):  # before 3.13 the socket file is left behind on close
        assert stat.S_ISSOCK(os.stat(path).st_mode)


def test_create_unix_server_removes_stale_socket_file(loop, sock_dir):
    path = os.path.join(sock_dir, "stale")
    with socket.socket(socket.AF_UNIX) as old:
        old.bind(path)  # closed without unlinking: a stale socket file
    assert stat.S_ISSOCK(os.stat(path).st_mode)

    async def main():
        server = await loop.create_unix_server(echo_factory(loop), path)
        try:
            return await roundtrip(loop, unix=path)
        finally:
            server.close()
            await server.wait_closed()

    assert run(loop, main()) == b"hello server"


def test_create_unix_server_path_is_regular_file(loop, sock_dir):
    path = os.path.join(sock_dir, "regular")
    with open(path, "w") as f:
        f.write("not a socket")

    async def main():
        with pytest.raises(OSError) as info:
            await loop.create_unix_server(echo_factory(loop), path)
        return info.value.errno

    assert run(loop, main()) == errno.EADDRINUSE
    with open(path) as f:
        assert f.read() == "not a socket"  # left alone


def test_create_unix_server_and_connection_sock(loop, sock_dir):
    path = os.path.join(sock_dir, "bysock")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    csock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    async def main():
        lsock.bind(path)
        server = await loop.create_unix_server(echo_factory(loop), sock=lsock)
        try:
            assert server.sockets[0].fileno() == lsock.fileno()
            csock.connect(path)
            tr, pr = await loop.create_unix_connection(lambda: Client(loop), sock=csock)
            assert tr.get_extra_info("socket").fileno() == csock.fileno()
            assert await pr.echo(b"unix sock=") == b"unix sock="
            await pr.close()
        finally:
            server.close()
            await server.wait_closed()
        return lsock.fileno(), csock.fileno()

    try:
        assert run(loop, main()) == (-1, -1)
    finally:
        lsock.close()
        csock.close()


def test_unix_abstract_namespace_server(loop):
    name = "\0ferroloop-test-" + uuid.uuid4().hex
    csock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    async def main():
        server = await loop.create_unix_server(echo_factory(loop), name)
        try:
            bound = server.sockets[0].getsockname()
            csock.connect(name)
            tr, pr = await loop.create_unix_connection(lambda: Client(loop), sock=csock)
            peer = tr.get_extra_info("peername")
            got = await pr.echo(b"abstract")
            await pr.close()
            return bound, peer, got
        finally:
            server.close()
            await server.wait_closed()

    try:
        assert run(loop, main()) == (name.encode(), name.encode(), b"abstract")
    finally:
        csock.close()


@xfail_on("uvloop", "uvloop differs: create_unix_connection() to an abstract address fails with EINVAL")
def test_unix_abstract_namespace_connection(loop):
    name = "\0ferroloop-test-" + uuid.uuid4().hex
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(name)

    async def main():
        server = await loop.create_unix_server(echo_factory(loop), sock=lsock)
        try:
            tr, pr = await loop.create_unix_connection(lambda: Client(loop), name)
            peer = tr.get_extra_info("peername")
            got = await pr.echo(b"abstract")
            await pr.close()
            return peer, got
        finally:
            server.close()
            await server.wait_closed()

    try:
        assert run(loop, main()) == (name.encode(), b"abstract")
    finally:
        lsock.close()


# -- many concurrent connections ----------------------------------------------------------

# The clients run in a child process on the same loop implementation, so that each
# process needs one descriptor per connection rather than two.
CLIENTS = r"""
import asyncio, resource, sys

name, host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft != resource.RLIM_INFINITY and soft < n + 64:
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
if name == "ferroloop":
    import ferroloop
    factory = ferroloop.new_event_loop
elif name == "uvloop":
    import uvloop
    factory = uvloop.new_event_loop
else:
    factory = asyncio.new_event_loop


async def main():
    connecting = asyncio.Semaphore(256)

    async def one(i):
        async with connecting:
            reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"%d\n" % i)
        line = await reader.readline()
        assert line == b"echo %d\n" % i, line
        return writer

    # every connection stays open until all have had their answer
    writers = await asyncio.gather(*(one(i) for i in range(n)))
    for w in writers:
        w.close()
    await asyncio.gather(*(w.wait_closed() for w in writers))
    print("ok", len(writers))


loop = factory()
loop.run_until_complete(main())
loop.close()
"""


def _ensure_fd_limit(need):
    """Raise RLIMIT_NOFILE to ``need`` if possible; returns the limits to restore."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return None
    if hard == resource.RLIM_INFINITY or hard >= need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    else:
        try:  # raising the hard limit needs privileges
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
        except (ValueError, OSError):
            pytest.fail(
                f"{need} descriptors are needed but RLIMIT_NOFILE's hard limit is {hard} "
                "and cannot be raised: raise it (ulimit -Hn) to run this test"
            )
    return soft, hard


def _many_connections(loop, loop_name, n, timeout):
    """``n`` clients connect at once to one server; each sends one line and gets its echo."""
    saved = _ensure_fd_limit(n + 256)

    class Counting(asyncio.Protocol):
        active = peak = made = lost = 0
        received = set()

        def connection_made(self, transport):
            self.transport = transport
            self.buf = b""
            cls = Counting
            cls.made += 1
            cls.active += 1
            cls.peak = max(cls.peak, cls.active)

        def data_received(self, data):
            self.buf += data
            if self.buf.endswith(b"\n"):
                Counting.received.add(int(self.buf))
                self.transport.write(b"echo " + self.buf)

        def connection_lost(self, exc):
            Counting.active -= 1
            Counting.lost += 1
            if Counting.lost == n:
                all_lost.set_result(None)

    all_lost = loop.create_future()

    async def main():
        server = await loop.create_server(Counting, "127.0.0.1", 0, backlog=n)
        try:
            port = server.sockets[0].getsockname()[1]
            proc = subprocess.Popen(
                [sys.executable, "-c", CLIENTS, loop_name, "127.0.0.1", str(port), str(n)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:
                while proc.poll() is None:  # the loop keeps serving while the clients run
                    await asyncio.sleep(0.02)
            finally:
                if proc.poll() is None:
                    proc.kill()
                out, err = proc.communicate()
            assert proc.returncode == 0, err.decode()[-3000:]
            assert out.split() == [b"ok", str(n).encode()]
            await asyncio.wait_for(all_lost, 10)
        finally:
            server.close()
            await server.wait_closed()

    try:
        run(loop, main(), timeout=timeout)
    finally:
        if saved is not None:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, saved)
            except (ValueError, OSError):
                pass
    assert Counting.made == Counting.lost == n
    assert Counting.peak == n  # all connected at the same time
    assert Counting.received == set(range(n))


def test_10k_connections_short_form_1000(loop, loop_name):
    """The short form of test_10k_connections_full (FERRO_LONG=1): 1,000 connections."""
    _many_connections(loop, loop_name, 1000, timeout=25)


if os.environ.get("FERRO_LONG") == "1":

    @pytest.mark.timeout(900)
    def test_10k_connections_full(loop, loop_name):
        """10,000 concurrent connections to one server on one loop."""
        _many_connections(loop, loop_name, 10_000, timeout=600)
