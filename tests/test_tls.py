"""TLS: ``ssl=`` on connections and servers, ``start_tls``, timeouts, bad peers, flow control.

Every test runs on asyncio, ferroloop and uvloop (the ``loop`` fixture); asyncio 3.11's
``sslproto`` is the reference for what a caller and a protocol see. Certificates are made
once per session with the ``openssl`` command (the ``cryptography`` package is not in the
venv): a throwaway CA, a server certificate it signs for ``localhost`` and 127.0.0.1, a
client certificate it signs (for mutual TLS), and a self-signed "bad" server certificate
that no client trusts. Nothing touches the network beyond 127.0.0.1.

Most tests have both ends on the loop under test. Where the peer must misbehave (never
answer the handshake, send garbage, close without close_notify, never answer
close_notify), the peer is a plain socket driven with the loop's ``sock_*`` coroutines or a
blocking ``ssl`` socket on a helper thread, so it is the same whatever the loop.

In debug mode (PYTHONASYNCIODEBUG=1) asyncio reports a failed server-side handshake to the
exception handler; the tests that cause one take ``handler_calls`` and check it
(``server_handshake_failures``); uvloop stays silent there (a strict xfail in debug mode).

``FERRO_LONG=1`` adds the long form of the handshake soak (10,000 handshakes).
"""

import asyncio
import gc
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import types

import pytest

from loop_helpers import run, xfail_on

KiB = 1024
MiB = 1024 * KiB
HOST = "127.0.0.1"
HANDSHAKE_TIMEOUT = 0.2  # s: short ssl_handshake_timeout / ssl_shutdown_timeout of the tests

UVLOOP_RAGGED_EOF = (
    "uvloop differs: a TCP close without close_notify reaches the protocol as "
    "connection_lost(None) without eof_received()"
)
UVLOOP_NO_SENDFILE = "uvloop differs: loop.sendfile() raises NotImplementedError"


# -- certificates -------------------------------------------------------------------------

_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args, cwd):
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr.strip()}")


def _make_certs(d):
    """CA, server (localhost + 127.0.0.1), client, and a self-signed "bad" server cert."""
    _openssl("req", "-x509", *_EC_KEY, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=ferroloop test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    for name, serial, ext in (
        ("server", 2, "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
        ("client", 3, "extendedKeyUsage=clientAuth"),
    ):
        with open(os.path.join(d, f"{name}.ext"), "w") as fh:
            fh.write(f"{ext}\nbasicConstraints=critical,CA:FALSE\n"
                     "keyUsage=critical,digitalSignature\n")
        cn = "localhost" if name == "server" else "ferroloop test client"
        _openssl("req", *_EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={cn}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-set_serial", str(serial), "-days", "2", "-out", f"{name}.pem",
                 "-extfile", f"{name}.ext", cwd=d)
    _openssl("req", "-x509", *_EC_KEY, "-keyout", "bad.key", "-out", "bad.pem", "-days", "2",
             "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", cwd=d)


@pytest.fixture(scope="session")
def certs():
    """Paths of the session's certificates: ``ca``, ``server``/``server_key``,
    ``client``/``client_key``, ``bad``/``bad_key``."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make the test certificates")
    d = tempfile.mkdtemp(prefix="fl-tls-")
    try:
        _make_certs(d)
        yield types.SimpleNamespace(
            dir=d,
            ca=os.path.join(d, "ca.pem"),
            server=os.path.join(d, "server.pem"),
            server_key=os.path.join(d, "server.key"),
            client=os.path.join(d, "client.pem"),
            client_key=os.path.join(d, "client.key"),
            bad=os.path.join(d, "bad.pem"),
            bad_key=os.path.join(d, "bad.key"),
        )
    finally:
        shutil.rmtree(d, ignore_errors=True)


def make_server_ctx(certs, cert="server"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(getattr(certs, cert), getattr(certs, cert + "_key"))
    return ctx


def make_client_ctx(certs, cafile=None):
    return ssl.create_default_context(cafile=cafile or certs.ca)


@pytest.fixture(scope="session")
def server_ctx(certs):
    return make_server_ctx(certs)


@pytest.fixture(scope="session")
def client_ctx(certs):
    return make_client_ctx(certs)


# -- protocols and helpers ---------------------------------------------------------------


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
        if not self.events or self.events[-1] != "data":
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
        self._wake()

    def resume_writing(self):
        self.events.append("resume_writing")
        self.resumes += 1
        self._wake()

    async def wait_bytes(self, n):
        """The data received once ``n`` bytes arrived (or EOF / connection lost)."""
        while len(self.data) < n and not self.eof.done() and not self.lost.done():
            self._waiter = self.loop.create_future()
            await self._waiter
        return bytes(self.data)

    async def wait_for(self, predicate):
        while not predicate() and not self.lost.done():
            self._waiter = self.loop.create_future()
            await self._waiter


class Echo(Proto):
    def data_received(self, data):
        super().data_received(data)
        self.transport.write(data)


def pattern(n, seed=0):
    """``n`` bytes that differ from one offset (and seed) to the next."""
    block = hashlib.sha256(b"%d" % seed).digest() * 8 + bytes(range(256))
    return (block * (n // len(block) + 1))[:n]


async def read_until_closed(loop, sock):
    """What a plain socket reads until EOF or a reset."""
    buf = bytearray()
    try:
        while chunk := await loop.sock_recv(sock, 64 * KiB):
            buf += chunk
    except ConnectionResetError:
        pass
    return bytes(buf)


DEBUG_ENV = bool(os.environ.get("PYTHONASYNCIODEBUG"))
UVLOOP_DEBUG_SILENT = (
    "uvloop differs: in debug mode a failed server-side handshake is not reported to the "
    "exception handler"
)


def reports_failed_accepts():
    """A strict xfail for uvloop under PYTHONASYNCIODEBUG (see server_handshake_failures)."""
    return xfail_on("uvloop", UVLOOP_DEBUG_SILENT, condition=DEBUG_ENV)


async def server_handshake_failures(loop, handler_calls, exc_types, n=1):
    """asyncio reports a failed incoming TLS handshake to the exception handler only in
    debug mode ("Error on transport creation for incoming connection", from
    ``_accept_connection2``); outside debug mode it stays silent. Waits for the ``n``
    reports in debug mode and checks them (exception of one of ``exc_types``)."""
    if not loop.get_debug():
        await asyncio.sleep(0.02)
        assert handler_calls == []
        return
    deadline = loop.time() + 2
    while len(handler_calls) < n and loop.time() < deadline:
        await asyncio.sleep(0.005)
    assert [c["message"] for c in handler_calls] == [
        "Error on transport creation for incoming connection"
    ] * n
    for c in handler_calls:
        assert isinstance(c["exception"], exc_types), c["exception"]


class Tls:
    """Servers, transports, protocols and sockets of one test; all closed at teardown."""

    def __init__(self, loop):
        self.loop = loop
        self.servers = []
        self.protocols = []  # server-side protocols (their transports are aborted at the end)
        self.transports = []
        self.socks = []
        self.writers = []

    def factory(self, cls=Echo):
        """A protocol factory whose protocols the teardown can find."""

        def make():
            pr = cls(self.loop)
            self.protocols.append(pr)
            return pr

        return make

    async def server(self, ctx, cls=Echo, **kwargs):
        """A TLS server on 127.0.0.1; returns (server, (host, port))."""
        srv = await self.loop.create_server(self.factory(cls), HOST, 0, ssl=ctx, **kwargs)
        self.servers.append(srv)
        return srv, srv.sockets[0].getsockname()[:2]

    async def stream_server(self, handler, ctx, **kwargs):
        srv = await asyncio.start_server(handler, HOST, 0, ssl=ctx, **kwargs)
        self.servers.append(srv)
        return srv, srv.sockets[0].getsockname()[:2]

    async def connect(self, addr, ctx, cls=Proto, **kwargs):
        tr, pr = await self.loop.create_connection(lambda: cls(self.loop), *addr, ssl=ctx,
                                                   **kwargs)
        self.transports.append(tr)
        return tr, pr

    async def open(self, addr, ctx, **kwargs):
        reader, writer = await asyncio.open_connection(*addr, ssl=ctx, **kwargs)
        self.writers.append(writer)
        return reader, writer

    def listener(self):
        """A plain listening socket (blocking: for thread peers; use ``sock_accept`` after
        ``setblocking(False)`` for loop-driven peers)."""
        lst = socket.socket()
        self.socks.append(lst)
        lst.bind((HOST, 0))
        lst.listen(16)
        return lst

    def close_all(self):
        live = [t for t in self.transports if not t.is_closing()]
        live += [w.transport for w in self.writers if not w.transport.is_closing()]
        live += [p.transport for p in self.protocols
                 if p.transport is not None and not p.transport.is_closing()]
        for tr in live:
            tr.abort()
        for srv in self.servers:
            srv.close()
        if not self.loop.is_closed() and not self.loop.is_running():
            self.loop.run_until_complete(asyncio.sleep(0.02 if live else 0))
        for s in self.socks:
            s.close()


@pytest.fixture
def tls(loop):
    t = Tls(loop)
    yield t
    t.close_all()


async def close_server(srv):
    srv.close()
    await srv.wait_closed()


# -- echo over ssl= -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [1 * KiB, 1 * MiB], ids=["1k", "1m"])
def test_protocol_echo(loop, tls, server_ctx, client_ctx, size):
    """create_server(ssl=) + create_connection(ssl=), Protocols both sides."""
    payload = pattern(size)

    async def main():
        srv, addr = await tls.server(server_ctx)
        tr, pr = await tls.connect(addr, client_ctx)
        assert pr.events == ["made"]
        tr.write(payload)
        got = await pr.wait_bytes(size)
        assert got == payload
        tr.close()
        assert await pr.lost is None
        (server_pr,) = tls.protocols
        assert await server_pr.lost is None
        assert bytes(server_pr.data) == payload
        await close_server(srv)
        return pr.events, server_pr.events

    client_events, server_events = run(loop, main())
    assert client_events == ["made", "data", "eof", "lost"]
    # the client's close sends close_notify: the server sees EOF, then the end
    assert server_events == ["made", "data", "eof", "lost"]


@pytest.mark.parametrize("size", [1 * KiB, 1 * MiB], ids=["1k", "1m"])
def test_streams_echo(loop, tls, server_ctx, client_ctx, size):
    """start_server(ssl=) + open_connection(ssl=)."""
    payload = pattern(size, seed=1)
    handled = []

    async def handler(reader, writer):
        tls.writers.append(writer)
        data = await reader.readexactly(size)
        writer.write(data)
        await writer.drain()
        handled.append(await reader.read())  # b"": the client's close_notify
        writer.close()
        await writer.wait_closed()

    async def main():
        srv, addr = await tls.stream_server(handler, server_ctx)
        reader, writer = await tls.open(addr, client_ctx)
        writer.write(payload)
        await writer.drain()
        assert await reader.readexactly(size) == payload
        writer.close()
        await writer.wait_closed()
        while not handled:
            await asyncio.sleep(0.005)
        await close_server(srv)

    run(loop, main())
    assert handled == [b""]


def test_custom_sslobject_class_is_used(loop, tls, certs):
    """An SSLContext whose ``sslobject_class`` overrides read/write: the loop's TLS goes
    through the overrides (it must not bypass a subclass for the inner C object)."""
    calls = {"read": 0, "write": 0}

    class CountingSSLObject(ssl.SSLObject):
        def read(self, *args):
            calls["read"] += 1
            return super().read(*args)

        def write(self, data):
            calls["write"] += 1
            return super().write(data)

    server = make_server_ctx(certs)
    server.sslobject_class = CountingSSLObject
    client = make_client_ctx(certs)
    client.sslobject_class = CountingSSLObject
    payload = pattern(64 * KiB, seed=3)

    async def main():
        srv, addr = await tls.server(server)
        reader, writer = await tls.open(addr, client, server_hostname="localhost")
        writer.write(payload)
        await writer.drain()
        assert await reader.readexactly(len(payload)) == payload
        writer.close()
        await writer.wait_closed()
        await close_server(srv)

    run(loop, main())
    assert calls["read"] > 0 and calls["write"] > 0


def test_concurrent_connections_echo(loop, tls, server_ctx, client_ctx):
    """20 connections at once, each with its own payload, interleaved on one server."""

    async def one(addr, i):
        reader, writer = await tls.open(addr, client_ctx)
        payload = pattern(64 * KiB + i, seed=i)
        for k in range(0, len(payload), 7 * KiB):
            writer.write(payload[k:k + 7 * KiB])
            await asyncio.sleep(0)
        got = await reader.readexactly(len(payload))
        writer.close()
        await writer.wait_closed()
        return got == payload

    async def main():
        srv, addr = await tls.server(server_ctx)
        results = await asyncio.gather(*(one(addr, i) for i in range(20)))
        await asyncio.gather(*(p.lost for p in tls.protocols))
        await close_server(srv)
        return results

    assert run(loop, main(), timeout=10) == [True] * 20


def test_unix_socket_tls_echo(loop, tls, server_ctx, client_ctx):
    """ssl= on create_unix_server / create_unix_connection (server_hostname is required)."""
    d = tempfile.mkdtemp(prefix="fl-")
    path = os.path.join(d, "s")

    async def main():
        srv = await loop.create_unix_server(tls.factory(), path, ssl=server_ctx)
        tls.servers.append(srv)
        tr, pr = await loop.create_unix_connection(
            lambda: Proto(loop), path, ssl=client_ctx, server_hostname="localhost"
        )
        tls.transports.append(tr)
        assert tr.get_extra_info("ssl_object") is not None
        tr.write(b"over a unix socket")
        assert await pr.wait_bytes(18) == b"over a unix socket"
        tr.close()
        assert await pr.lost is None
        await tls.protocols[0].lost
        await close_server(srv)

    try:
        run(loop, main())
    finally:
        shutil.rmtree(d, ignore_errors=True)


# -- get_extra_info -----------------------------------------------------------------------


def test_get_extra_info(loop, tls, server_ctx, client_ctx):
    async def main():
        srv, addr = await tls.server(server_ctx)
        tr, pr = await tls.connect(addr, client_ctx)
        (server_pr,) = tls.protocols
        server_tr = await server_pr.made
        info = {}
        for side, t, ctx in (("client", tr, client_ctx), ("server", server_tr, server_ctx)):
            assert t.get_extra_info("sslcontext") is ctx
            sslobj = t.get_extra_info("ssl_object")
            assert isinstance(sslobj, ssl.SSLObject)
            assert sslobj.server_side is (side == "server")
            assert sslobj.version() in ("TLSv1.2", "TLSv1.3")
            cipher = t.get_extra_info("cipher")
            assert cipher == sslobj.cipher()
            name, version, bits = cipher
            assert isinstance(name, str) and version == sslobj.version() and bits >= 128
            assert t.get_extra_info("compression") is None
            sock = t.get_extra_info("socket")
            assert sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM
            peername = t.get_extra_info("peername")
            assert peername == sock.getpeername()
            assert t.get_extra_info("sockname") == sock.getsockname()
            assert t.get_extra_info("no such key", "default") == "default"
            info[side] = (t.get_extra_info("peercert"), peername, t.get_extra_info("sockname"))
        client_cert, client_peer, client_name = info["client"]
        assert dict(x[0] for x in client_cert["subject"])["commonName"] == "localhost"
        assert ("DNS", "localhost") in client_cert["subjectAltName"]
        assert client_peer == addr
        assert info["server"][0] is None  # no client certificate was asked for
        assert info["server"][1] == client_name
        tr.close()
        await pr.lost
        await server_pr.lost
        await close_server(srv)

    run(loop, main())


def test_mutual_tls_peercert_on_server(loop, tls, certs):
    server_ctx = make_server_ctx(certs)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(certs.ca)
    client_ctx = make_client_ctx(certs)
    client_ctx.load_cert_chain(certs.client, certs.client_key)

    async def main():
        srv, addr = await tls.server(server_ctx)
        tr, pr = await tls.connect(addr, client_ctx)
        tr.write(b"hi")
        assert await pr.wait_bytes(2) == b"hi"
        cert = tls.protocols[0].transport.get_extra_info("peercert")
        tr.close()
        await pr.lost
        await close_server(srv)
        return dict(x[0] for x in cert["subject"])["commonName"]

    assert run(loop, main()) == "ferroloop test client"


@reports_failed_accepts()
def test_client_certificate_missing(loop, tls, certs, client_ctx, handler_calls):
    """A server that requires a client certificate the client lacks: with TLS 1.3 the
    client's handshake completes, then the server's alert ends the connection; asyncio's
    reader sees EOF."""
    server_ctx = make_server_ctx(certs)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(certs.ca)

    async def main():
        srv, addr = await tls.server(server_ctx)
        reader, writer = await tls.open(addr, client_ctx)
        got = await reader.read()
        writer.close()
        await writer.wait_closed()
        assert tls.protocols[0].events == []  # the server's protocol never connected
        await close_server(srv)
        await server_handshake_failures(loop, handler_calls, ssl.SSLError)
        return got

    assert run(loop, main()) == b""


def test_alpn_and_sni(loop, tls, certs):
    """The contexts' ALPN and SNI settings take effect on both sides."""
    seen = []
    server_ctx = make_server_ctx(certs)
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])
    server_ctx.sni_callback = lambda sslobj, name, ctx: seen.append(name)
    client_ctx = make_client_ctx(certs)
    client_ctx.set_alpn_protocols(["http/1.1"])

    async def main():
        srv, addr = await tls.server(server_ctx)
        tr, pr = await tls.connect(addr, client_ctx, server_hostname="localhost")
        server_tr = await tls.protocols[0].made
        alpn = (tr.get_extra_info("ssl_object").selected_alpn_protocol(),
                server_tr.get_extra_info("ssl_object").selected_alpn_protocol())
        tr.close()
        await pr.lost
        await close_server(srv)
        return alpn

    assert run(loop, main()) == ("http/1.1", "http/1.1")
    assert seen == ["localhost"]


# -- certificate verification ------------------------------------------------------------


@reports_failed_accepts()
@pytest.mark.parametrize("api", ["create_connection", "open_connection"])
def test_server_hostname_mismatch(loop, tls, server_ctx, client_ctx, api, handler_calls):
    async def main():
        srv, addr = await tls.server(server_ctx)
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch") as info:
            if api == "create_connection":
                await tls.connect(addr, client_ctx, server_hostname="example.com")
            else:
                await tls.open(addr, client_ctx, server_hostname="example.com")
        # the right name works (the certificate names localhost, not only 127.0.0.1)
        tr, pr = await tls.connect(addr, client_ctx, server_hostname="localhost")
        tr.close()
        await pr.lost
        await close_server(srv)
        await server_handshake_failures(loop, handler_calls, (ConnectionResetError, ssl.SSLError))
        return info.value.verify_code

    assert run(loop, main()) == 62  # X509_V_ERR_HOSTNAME_MISMATCH


@reports_failed_accepts()
@pytest.mark.parametrize("api", ["create_connection", "open_connection", "ssl_true"])
def test_untrusted_certificate(loop, tls, certs, client_ctx, api, handler_calls):
    """A server whose certificate no trusted CA signed: SSLCertVerificationError reaches
    the caller; the server keeps serving clients that trust it."""
    bad_server_ctx = make_server_ctx(certs, "bad")

    async def main():
        srv, addr = await tls.server(bad_server_ctx)
        with pytest.raises(ssl.SSLCertVerificationError, match="self.signed") as info:
            if api == "create_connection":
                await tls.connect(addr, client_ctx)
            elif api == "open_connection":
                await tls.open(addr, client_ctx)
            else:  # ssl=True: the default context and the system's CAs
                await tls.open(addr, True, server_hostname="localhost")
        trusting = make_client_ctx(certs, cafile=certs.bad)
        tr, pr = await tls.connect(addr, trusting)
        tr.write(b"still serving")
        assert await pr.wait_bytes(13) == b"still serving"
        tr.close()
        await pr.lost
        await close_server(srv)
        await server_handshake_failures(loop, handler_calls, (ConnectionResetError, ssl.SSLError))
        return info.value.verify_code

    assert run(loop, main()) == 18  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT


def test_ssl_argument_errors(loop, client_ctx):
    async def main():
        with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
            await loop.create_connection(asyncio.Protocol, HOST, 1, server_hostname="x")
        with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful"):
            await loop.create_connection(asyncio.Protocol, HOST, 1, ssl_handshake_timeout=1)
        with pytest.raises(ValueError, match="ssl_shutdown_timeout is only meaningful"):
            await loop.create_connection(asyncio.Protocol, HOST, 1, ssl_shutdown_timeout=1)
        with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful"):
            await loop.create_server(asyncio.Protocol, HOST, 0, ssl_handshake_timeout=1)
        with pytest.raises(ValueError, match="ssl_shutdown_timeout is only meaningful"):
            await loop.create_server(asyncio.Protocol, HOST, 0, ssl_shutdown_timeout=1)
        with socket.socket() as lst, socket.socket() as c:
            lst.bind((HOST, 0))
            lst.listen()
            c.connect(lst.getsockname())
            with pytest.raises(ValueError, match="You must set server_hostname"):
                await loop.create_connection(asyncio.Protocol, sock=c, ssl=client_ctx)

    run(loop, main())


# -- start_tls ----------------------------------------------------------------------------


class LateEcho(Proto):
    """An echo for ``start_tls(server_side=True)``: the client's first TLS data may come
    before ``start_tls`` returns the transport (asyncio delivers it as soon as the
    handshake is done); it is echoed once ``connection_made`` is called with it."""

    def data_received(self, data):
        super().data_received(data)
        if self.transport is not None:
            self.transport.write(data)

    def connection_made(self, transport):
        super().connection_made(transport)
        if self.data:
            transport.write(bytes(self.data))


def test_loop_start_tls_both_sides(loop, tls, server_ctx, client_ctx):
    """A plain connection upgraded on both ends with loop.start_tls, Protocols throughout:
    a line in clear text, the upgrade, then data over TLS."""
    upgraded = []

    class Server(Proto):
        def data_received(self, data):
            super().data_received(data)
            if self.data == b"STARTTLS\n":
                self.transport.write(b"GO\n")
                upgraded.append(loop.create_task(self.upgrade()))

        async def upgrade(self):
            # a new protocol for the TLS part; start_tls pauses reading at once
            tls_pr = LateEcho(loop)
            tls.protocols.append(tls_pr)
            tr = await loop.start_tls(self.transport, tls_pr, server_ctx, server_side=True)
            tls_pr.connection_made(tr)
            return tls_pr

    async def main():
        srv = await loop.create_server(tls.factory(Server), HOST, 0)
        tls.servers.append(srv)
        addr = srv.sockets[0].getsockname()
        plain_tr, pr = await loop.create_connection(lambda: Proto(loop), *addr)
        tls.transports.append(plain_tr)
        assert plain_tr.get_extra_info("ssl_object") is None
        plain_tr.write(b"STARTTLS\n")
        assert await pr.wait_bytes(3) == b"GO\n"
        tr = await loop.start_tls(plain_tr, pr, client_ctx, server_hostname="localhost")
        tls.transports.append(tr)
        assert tr is not plain_tr
        assert plain_tr.is_closing() is False
        sslobj = tr.get_extra_info("ssl_object")
        assert isinstance(sslobj, ssl.SSLObject)
        assert tr.get_extra_info("peercert")["subjectAltName"]
        assert tr.get_extra_info("peername") == addr
        pr.data.clear()
        tr.write(b"secret " * 1000)
        assert await pr.wait_bytes(7000) == b"secret " * 1000
        server_pr = await upgraded[0]
        assert server_pr.transport.get_extra_info("ssl_object").server_side
        tr.close()
        assert await pr.lost is None
        assert await server_pr.lost is None
        await close_server(srv)
        return bytes(server_pr.data)

    assert run(loop, main()) == b"secret " * 1000


def test_stream_writer_start_tls(loop, tls, server_ctx, client_ctx):
    """StreamWriter.start_tls (3.11) on both ends of a streams connection."""
    server_info = []

    async def handler(reader, writer):
        tls.writers.append(writer)
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"GO\n")
        await writer.drain()
        await writer.start_tls(server_ctx)
        server_info.append(writer.get_extra_info("ssl_object").server_side)
        line = await reader.readline()
        writer.write(line.upper())
        await writer.drain()
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()

    async def main():
        srv = await asyncio.start_server(handler, HOST, 0)
        tls.servers.append(srv)
        reader, writer = await asyncio.open_connection(*srv.sockets[0].getsockname())
        tls.writers.append(writer)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        assert writer.get_extra_info("ssl_object") is None
        await writer.start_tls(client_ctx, server_hostname="localhost")
        assert writer.get_extra_info("ssl_object") is not None
        assert writer.get_extra_info("peercert") is not None
        writer.write(b"now encrypted\n")
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        while not server_info or not tls.writers[-1].transport.is_closing():
            await asyncio.sleep(0.005)
        await close_server(srv)
        return line

    assert run(loop, main()) == b"NOW ENCRYPTED\n"
    assert server_info == [True]


def test_start_tls_rejects_non_ssl_context(loop, tls):
    async def main():
        srv = await loop.create_server(tls.factory(Proto), HOST, 0)
        tls.servers.append(srv)
        tr, pr = await loop.create_connection(lambda: Proto(loop), *srv.sockets[0].getsockname())
        tls.transports.append(tr)
        with pytest.raises(TypeError, match="sslcontext is expected to be an instance of"):
            await loop.start_tls(tr, pr, object())
        assert not tr.is_closing()
        tr.close()
        await pr.lost
        await close_server(srv)

    run(loop, main())


# -- timeouts -----------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["create_connection", "open_connection"])
def test_client_handshake_timeout(loop, tls, client_ctx, api):
    """A server that accepts the TCP connection but never answers the ClientHello: the
    caller gets asyncio's ConnectionAbortedError after ssl_handshake_timeout."""
    lst = tls.listener()
    lst.setblocking(False)

    async def main():
        accept = loop.create_task(loop.sock_accept(lst))
        t0 = time.monotonic()
        with pytest.raises(ConnectionAbortedError, match="SSL handshake is taking longer than"):
            if api == "create_connection":
                await tls.connect(lst.getsockname(), client_ctx,
                                  ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
            else:
                await tls.open(lst.getsockname(), client_ctx,
                               ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        elapsed = time.monotonic() - t0
        peer, _ = await accept
        tls.socks.append(peer)
        got = await read_until_closed(loop, peer)  # the ClientHello, then the client's close
        return elapsed, got[:1]

    elapsed, first = run(loop, main())
    assert HANDSHAKE_TIMEOUT * 0.9 <= elapsed < HANDSHAKE_TIMEOUT + 1.0
    assert first == b"\x16"  # a TLS handshake record was sent


@reports_failed_accepts()
def test_server_handshake_timeout(loop, tls, server_ctx, client_ctx, handler_calls):
    """A client that connects and sends nothing: after ssl_handshake_timeout the server
    closes the connection, without connection_made on the protocol it made, and keeps
    serving."""

    async def main():
        srv, addr = await tls.server(server_ctx, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        c = socket.socket()
        tls.socks.append(c)
        c.setblocking(False)
        await loop.sock_connect(c, addr)
        t0 = time.monotonic()
        got = await read_until_closed(loop, c)
        elapsed = time.monotonic() - t0
        assert [p.events for p in tls.protocols] == [[]]
        tr, pr = await tls.connect(addr, client_ctx)
        tr.write(b"ok")
        assert await pr.wait_bytes(2) == b"ok"
        tr.close()
        await pr.lost
        await close_server(srv)
        await server_handshake_failures(loop, handler_calls, ConnectionAbortedError)
        return got, elapsed

    got, elapsed = run(loop, main())
    assert got == b""
    assert HANDSHAKE_TIMEOUT * 0.9 <= elapsed < HANDSHAKE_TIMEOUT + 1.0


def test_ssl_shutdown_timeout_accepted(loop, tls, server_ctx, client_ctx):
    """ssl_shutdown_timeout (3.11) on create_server and create_connection."""

    async def main():
        srv, addr = await tls.server(server_ctx, ssl_shutdown_timeout=5.0)
        tr, pr = await tls.connect(addr, client_ctx, ssl_shutdown_timeout=5.0)
        tr.write(b"x")
        assert await pr.wait_bytes(1) == b"x"
        tr.close()
        assert await pr.lost is None
        assert await tls.protocols[0].lost is None
        await close_server(srv)

    run(loop, main())


def _handshake_then_idle(lst, done, server_ctx):
    """Thread peer: accept, complete the handshake, then neither read nor close until
    ``done`` is set (so a close_notify sent to it is never answered)."""
    conn, _ = lst.accept()
    with server_ctx.wrap_socket(conn, server_side=True):
        done.wait(5)


def test_ssl_shutdown_timeout_fires(loop, tls, server_ctx, client_ctx, other_thread):
    """close() sends close_notify; a peer that never answers it is cut off after
    ssl_shutdown_timeout with connection_lost(TimeoutError)."""
    lst = tls.listener()
    done = threading.Event()
    other_thread(_handshake_then_idle, lst, done, server_ctx)

    async def main():
        try:
            tr, pr = await tls.connect(lst.getsockname(), client_ctx,
                                       ssl_shutdown_timeout=HANDSHAKE_TIMEOUT)
            t0 = time.monotonic()
            tr.close()
            exc = await pr.lost
            return exc, time.monotonic() - t0
        finally:
            done.set()

    exc, elapsed = run(loop, main())
    assert type(exc) is TimeoutError and str(exc) == "SSL shutdown timed out"
    assert HANDSHAKE_TIMEOUT * 0.9 <= elapsed < HANDSHAKE_TIMEOUT + 1.0


# -- peers that misbehave -----------------------------------------------------------------


def _send_then_close(lst, server_ctx, how):
    """Thread peer: handshake, send b"hello", then end the TCP connection without
    close_notify: ``close`` (FIN) or ``reset`` (RST, SO_LINGER 0)."""
    conn, _ = lst.accept()
    tls_sock = server_ctx.wrap_socket(conn, server_side=True)
    tls_sock.sendall(b"hello")
    time.sleep(0.05)
    raw = socket.socket(fileno=tls_sock.detach())  # no unwrap(): no close_notify
    if how == "reset":
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    raw.close()


@pytest.mark.parametrize("how", ["close", "reset"])
def test_peer_closes_without_close_notify_streams(loop, tls, server_ctx, client_ctx,
                                                  other_thread, how):
    """The reader gets the data, then EOF (a TCP close) or ConnectionResetError (a reset),
    as asyncio reports them."""
    lst = tls.listener()
    other_thread(_send_then_close, lst, server_ctx, how)

    async def main():
        reader, writer = await tls.open(lst.getsockname(), client_ctx)
        assert await reader.readexactly(5) == b"hello"
        if how == "close":
            assert await reader.read() == b""
            assert reader.at_eof()
            writer.close()
            await writer.wait_closed()
        else:
            with pytest.raises(ConnectionResetError):
                await reader.read()
            writer.close()
            with pytest.raises(ConnectionResetError):
                await writer.wait_closed()

    run(loop, main())


@pytest.mark.parametrize(
    "how",
    [pytest.param("close", marks=xfail_on("uvloop", UVLOOP_RAGGED_EOF)), "reset"],
)
def test_peer_closes_without_close_notify_protocol(loop, tls, server_ctx, client_ctx,
                                                   other_thread, how):
    lst = tls.listener()
    other_thread(_send_then_close, lst, server_ctx, how)

    async def main():
        tr, pr = await tls.connect(lst.getsockname(), client_ctx)
        exc = await pr.lost
        assert tr.is_closing()
        return pr.events, bytes(pr.data), exc

    events, data, exc = run(loop, main())
    assert data == b"hello"
    if how == "close":
        assert (events, exc) == (["made", "data", "eof", "lost"], None)
    else:
        assert events == ["made", "data", "lost"]
        assert isinstance(exc, ConnectionResetError)


def test_server_write_then_abort(loop, tls, server_ctx, client_ctx):
    """transport.abort() on the server's TLS transport right after a write: what write()
    already handed to the socket arrives, then the TCP connection closes without
    close_notify; the server's protocol gets connection_lost(None), the client's reader
    EOF."""

    class AbortOnRequest(Proto):
        def data_received(self, data):
            super().data_received(data)
            if self.data.endswith(b"abort"):
                self.transport.write(b"bye")
                self.transport.abort()

    async def main():
        srv, addr = await tls.server(server_ctx, AbortOnRequest)
        reader, writer = await tls.open(addr, client_ctx)
        writer.write(b"please abort")
        got = await reader.read()
        (server_pr,) = tls.protocols
        assert await server_pr.lost is None
        assert server_pr.transport.is_closing()
        writer.close()
        await writer.wait_closed()
        await close_server(srv)
        return got

    # asyncio's write() encrypts and sends at once; abort() then drops only what is left
    assert run(loop, main()) == b"bye"


def test_writes_of_one_callback_arrive_whole_and_in_order(loop, tls, server_ctx, client_ctx):
    """Small and large writes mixed in one callback (a loop may encrypt small ones
    together): the peer gets exactly their concatenation, and the write buffer size after
    small writes is 0, as after asyncio's immediate encryption and send."""
    big = pattern(300 * KiB, seed=5)
    parts = [b"HTTP/1.1 200 OK\r\n", b"\r\n", b"hello", big, b"tail-1", b"tail-2"]
    sizes = []

    class Writes(Proto):
        def data_received(self, data):
            super().data_received(data)
            self.transport.write(parts[0])
            self.transport.write(parts[1])
            sizes.append(self.transport.get_write_buffer_size())
            self.transport.writelines([parts[2]])
            for p in parts[3:]:
                self.transport.write(p)

    async def main():
        srv, addr = await tls.server(server_ctx, Writes)
        reader, writer = await tls.open(addr, client_ctx)
        writer.write(b"go")
        got = await reader.readexactly(sum(map(len, parts)))
        writer.close()
        await writer.wait_closed()
        await close_server(srv)
        return got

    assert run(loop, main()) == b"".join(parts)
    assert sizes == [0]


def test_small_write_then_close_in_one_callback(loop, tls, server_ctx, client_ctx):
    """write() then close() in the same callback: the bytes arrive before the
    close_notify (the client reads them, then EOF)."""

    class Bye(Proto):
        def data_received(self, data):
            super().data_received(data)
            self.transport.write(b"see you")
            self.transport.write(b", bye")
            self.transport.close()

    async def main():
        srv, addr = await tls.server(server_ctx, Bye)
        reader, writer = await tls.open(addr, client_ctx)
        writer.write(b"hi")
        got = await reader.read()
        writer.close()
        await writer.wait_closed()
        await close_server(srv)
        return got

    assert run(loop, main()) == b"see you, bye"


@pytest.mark.parametrize("api", ["create_connection", "open_connection"])
def test_garbage_instead_of_server_hello(loop, tls, client_ctx, api):
    """A "server" that answers the ClientHello with HTTP text: the ssl.SSLError reaches
    the caller."""
    lst = tls.listener()
    lst.setblocking(False)

    async def peer():
        conn, _ = await loop.sock_accept(lst)
        tls.socks.append(conn)
        await loop.sock_recv(conn, 4096)  # the ClientHello
        await loop.sock_sendall(conn, b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
        return await read_until_closed(loop, conn)

    async def main():
        task = loop.create_task(peer())
        with pytest.raises(ssl.SSLError) as info:
            if api == "create_connection":
                await tls.connect(lst.getsockname(), client_ctx)
            else:
                await tls.open(lst.getsockname(), client_ctx)
        await task  # the client closed its end
        return info.value

    exc = run(loop, main())
    assert type(exc) is ssl.SSLError
    assert exc.reason == "WRONG_VERSION_NUMBER"


@reports_failed_accepts()
def test_garbage_instead_of_client_hello(loop, tls, server_ctx, client_ctx, handler_calls):
    """A client that sends HTTP text to a TLS server: the server closes that connection
    (no connection_made) and keeps serving TLS clients."""

    async def main():
        srv, addr = await tls.server(server_ctx)
        c = socket.socket()
        tls.socks.append(c)
        c.setblocking(False)
        await loop.sock_connect(c, addr)
        await loop.sock_sendall(c, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n" * 4)
        got = await read_until_closed(loop, c)
        assert [p.events for p in tls.protocols] == [[]]
        tr, pr = await tls.connect(addr, client_ctx)
        tr.write(b"next client")
        assert await pr.wait_bytes(11) == b"next client"
        tr.close()
        await pr.lost
        await close_server(srv)
        await server_handshake_failures(loop, handler_calls, ssl.SSLError)
        return got

    assert run(loop, main()) == b""


# -- EOF and half-close -------------------------------------------------------------------


def test_write_eof_not_supported(loop, tls, server_ctx, client_ctx):
    """SSL transports cannot half-close: can_write_eof() is False, write_eof() raises
    NotImplementedError, on both sides."""

    async def main():
        srv, addr = await tls.server(server_ctx)
        tr, pr = await tls.connect(addr, client_ctx)
        server_tr = await tls.protocols[0].made
        for t in (tr, server_tr):
            assert t.can_write_eof() is False
            with pytest.raises(NotImplementedError):
                t.write_eof()
            assert not t.is_closing()
        tr.write(b"still open")
        assert await pr.wait_bytes(10) == b"still open"
        tr.close()
        await pr.lost
        await close_server(srv)

    run(loop, main())


def test_close_flushes_then_peer_sees_eof(loop, tls, server_ctx, client_ctx):
    """close() right after a 1 MiB write: all of it arrives, then the peer's
    eof_received; returning True from it does not keep an SSL transport open."""
    payload = pattern(MiB, seed=3)

    class KeepOpen(Proto):
        eof_result = True  # asyncio logs that this has no effect with ssl

    async def main():
        srv, addr = await tls.server(server_ctx, KeepOpen)
        tr, pr = await tls.connect(addr, client_ctx)
        tr.write(payload)
        tr.close()
        assert tr.is_closing()
        (server_pr,) = tls.protocols
        assert await server_pr.lost is None
        assert await pr.lost is None
        await close_server(srv)
        return bytes(server_pr.data) == payload, server_pr.events, pr.events

    # the server closes on EOF, with its own close_notify: the client sees EOF too
    assert run(loop, main()) == (
        True, ["made", "data", "eof", "lost"], ["made", "eof", "lost"]
    )


def test_server_close_reaches_client_eof_received(loop, tls, server_ctx, client_ctx):
    """The server writes and closes (close_notify): the client's protocol gets the data,
    eof_received, then connection_lost(None)."""

    class SayAndClose(Proto):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.write(b"goodbye")
            transport.close()

    async def main():
        srv, addr = await tls.server(server_ctx, SayAndClose)
        tr, pr = await tls.connect(addr, client_ctx)
        assert await pr.lost is None
        assert await tls.protocols[0].lost is None
        await close_server(srv)
        return bytes(pr.data), pr.events

    assert run(loop, main()) == (b"goodbye", ["made", "data", "eof", "lost"])


def test_pause_and_resume_reading(loop, tls, server_ctx, client_ctx):
    async def main():
        srv, addr = await tls.server(server_ctx)
        tr, pr = await tls.connect(addr, client_ctx)
        assert tr.is_reading()
        tr.pause_reading()
        assert not tr.is_reading()
        tr.write(b"echo me")
        await asyncio.sleep(0.05)
        assert pr.data == b""  # the echo waits while reading is paused
        tr.resume_reading()
        assert tr.is_reading()
        assert await pr.wait_bytes(7) == b"echo me"
        tr.close()
        await pr.lost
        await close_server(srv)

    run(loop, main())


def test_exception_in_data_received(loop, tls, server_ctx, client_ctx, handler_calls):
    """An exception from the app protocol's data_received: the loop's exception handler
    gets it ("Fatal error on SSL protocol"), the connection ends with it."""

    class Raising(Proto):
        def data_received(self, data):
            super().data_received(data)
            raise RuntimeError("boom in data_received")

    async def main():
        srv, addr = await tls.server(server_ctx)
        tr, pr = await tls.connect(addr, client_ctx, cls=Raising)
        tr.write(b"x")
        exc = await pr.lost
        assert tr.is_closing()
        await tls.protocols[0].lost
        await close_server(srv)
        return exc

    exc = run(loop, main())
    assert isinstance(exc, RuntimeError) and str(exc) == "boom in data_received"
    assert [c["exception"] for c in handler_calls] == [exc]
    assert handler_calls[0]["message"] == "Fatal error on SSL protocol"


@xfail_on("uvloop", UVLOOP_NO_SENDFILE)
def test_sendfile_over_tls(loop, tls, server_ctx, client_ctx):
    """loop.sendfile on an SSL transport falls back to reading and writing."""
    payload = pattern(300 * KiB + 7, seed=4)

    async def main():
        srv, addr = await tls.server(server_ctx, Proto)
        tr, pr = await tls.connect(addr, client_ctx)
        with tempfile.TemporaryFile() as fh:
            fh.write(payload)
            fh.seek(0)
            sent = await loop.sendfile(tr, fh)
        tr.close()
        (server_pr,) = tls.protocols
        await server_pr.lost
        await close_server(srv)
        return sent, bytes(server_pr.data) == payload

    assert run(loop, main()) == (len(payload), True)


# -- BufferedProtocol ---------------------------------------------------------------------


class BufferedEcho(asyncio.BufferedProtocol):
    """Echoes through a small fixed buffer (many get_buffer/buffer_updated calls)."""

    def __init__(self, loop, size=1000):
        self.buf = bytearray(size)
        self.lost = loop.create_future()
        self.transport = None
        self.received = 0

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return memoryview(self.buf)

    def buffer_updated(self, nbytes):
        self.received += nbytes
        self.transport.write(bytes(self.buf[:nbytes]))

    def eof_received(self):
        return None

    def connection_lost(self, exc):
        self.lost.set_result(exc)


class BufferedCollect(asyncio.BufferedProtocol):
    def __init__(self, loop):
        self.loop = loop
        self.data = bytearray()
        self.buf = bytearray(64 * KiB)
        self.hints = []
        self.eof = False
        self.lost = loop.create_future()
        self.waiter = None

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        # a memoryview, not the bytearray: asyncio's sslproto fills the rest of a partly
        # filled buffer through buf[offset:], which for a bytearray is a copy
        self.hints.append(sizehint)
        return memoryview(self.buf)

    def buffer_updated(self, nbytes):
        assert 0 < nbytes <= len(self.buf)
        self.data += self.buf[:nbytes]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def eof_received(self):
        self.eof = True

    def connection_lost(self, exc):
        self.lost.set_result(exc)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def wait_bytes(self, n):
        while len(self.data) < n and not self.lost.done():
            self.waiter = self.loop.create_future()
            await self.waiter
        return bytes(self.data)


def test_buffered_protocol_over_tls(loop, tls, server_ctx, client_ctx):
    """BufferedProtocols on both ends: a server echoing through a 1000-byte buffer, a
    client collecting 1 MiB."""
    payload = pattern(MiB, seed=5)
    servers = []

    def server_factory():
        pr = BufferedEcho(loop)
        servers.append(pr)
        return pr

    async def main():
        srv = await loop.create_server(server_factory, HOST, 0, ssl=server_ctx)
        tls.servers.append(srv)
        tr, pr = await loop.create_connection(lambda: BufferedCollect(loop),
                                              *srv.sockets[0].getsockname(), ssl=client_ctx)
        tls.transports.append(tr)
        tr.write(payload)
        got = await pr.wait_bytes(len(payload))
        tr.close()
        assert await pr.lost is None
        assert await servers[0].lost is None
        await close_server(srv)
        return got == payload, servers[0].received, pr.hints

    same, received, hints = run(loop, main(), timeout=10)
    assert same and received == len(payload)
    assert hints and all(isinstance(h, int) for h in hints)


# -- flow control -------------------------------------------------------------------------


class PausedSink(Proto):
    """A server that does not read until told to; then it counts and hashes the bytes."""

    def connection_made(self, transport):
        super().connection_made(transport)
        transport.pause_reading()
        self.digest = hashlib.sha256()
        self.count = 0

    def data_received(self, data):
        self.count += len(data)
        self.digest.update(data)
        self._wake()


WRITE_CHUNK = 256 * KiB
# the writer must be paused before this much is written: loopback's socket buffers take
# ~6 MiB here before the peer's kernel stops accepting, the transport ~512 KiB more
WRITE_LIMIT = 32 * MiB
# what the TLS transport may hold when it pauses the writer: its high-water mark, plus the
# write that crossed it, plus TLS record overhead
OVERSHOOT = WRITE_CHUNK + 64 * KiB


def test_slow_reader_pauses_writer(loop, tls, server_ctx, client_ctx):
    """A peer that does not read: pause_writing is called on the client's protocol
    before a bounded amount is buffered; once the peer reads, resume_writing, and every
    byte arrives in order."""

    async def main():
        srv, addr = await tls.server(server_ctx, PausedSink)
        tr, pr = await tls.connect(addr, client_ctx)
        (sink,) = tls.protocols
        sent = hashlib.sha256()
        written = 0
        seed = 0
        while not pr.pauses and written < WRITE_LIMIT:
            chunk = pattern(WRITE_CHUNK, seed=seed)
            seed += 1
            tr.write(chunk)
            sent.update(chunk)
            written += len(chunk)
            await asyncio.sleep(0)  # let the transport flush into the socket
        assert pr.pauses == 1, f"not paused after {written} bytes"
        high = tr.get_write_buffer_limits()[1]
        assert high < tr.get_write_buffer_size() <= high + OVERSHOOT
        await asyncio.sleep(0.05)
        assert pr.resumes == 0  # nothing drains while the peer does not read
        sink.transport.resume_reading()
        await pr.wait_for(lambda: pr.resumes)
        await sink.wait_for(lambda: sink.count >= written)
        assert pr.events == ["made", "pause_writing", "resume_writing"]
        tr.close()
        await pr.lost
        await close_server(srv)
        return written, sink.count, sink.digest.digest() == sent.digest()

    written, count, same = run(loop, main(), timeout=15)
    assert count == written and same


def test_set_write_buffer_limits(loop, tls, server_ctx, client_ctx):
    """A lower high-water mark pauses the writer sooner."""

    async def main():
        srv, addr = await tls.server(server_ctx, PausedSink)
        tr, pr = await tls.connect(addr, client_ctx)
        tr.set_write_buffer_limits(high=4 * KiB)
        assert tr.get_write_buffer_limits() == (1 * KiB, 4 * KiB)
        (sink,) = tls.protocols
        written = await write_until_paused_then_drain(tr, pr, sink)
        tr.close()
        await pr.lost
        await close_server(srv)
        return sink.count == written

    assert run(loop, main(), timeout=15)


async def write_until_paused_then_drain(tr, pr, sink):
    """Write 64 KiB chunks until the protocol is paused once, then let the paused `sink`
    read until writing resumes and every byte arrived; returns the bytes written."""
    written = 0
    while not pr.pauses and written < WRITE_LIMIT:
        tr.write(b"z" * 64 * KiB)
        written += 64 * KiB
        await asyncio.sleep(0)
    assert pr.pauses == 1
    sink.transport.resume_reading()
    await pr.wait_for(lambda: pr.resumes)
    await sink.wait_for(lambda: sink.count >= written)
    return written


def test_streams_drain_waits_for_slow_reader(loop, tls, server_ctx, client_ctx):
    """writer.drain() blocks once the TLS peer stops reading, before a bounded amount is
    written, and returns once it reads again; every byte arrives."""
    chunk = pattern(256 * KiB, seed=6)
    go = None
    total = []
    got = []

    async def handler(reader, writer):
        tls.writers.append(writer)
        await go
        data = await reader.readexactly(total[0])
        got.append(data == chunk * (total[0] // len(chunk)))
        writer.close()

    async def main():
        nonlocal go
        go = loop.create_future()
        srv, addr = await tls.stream_server(handler, server_ctx)
        reader, writer = await tls.open(addr, client_ctx)
        written = 0
        while written < WRITE_LIMIT:
            writer.write(chunk)
            written += len(chunk)
            drain = loop.create_task(writer.drain())
            done, _ = await asyncio.wait([drain], timeout=0.05)
            if not done:
                break
        assert not drain.done(), f"drain() never blocked in {written} bytes"
        high = writer.transport.get_write_buffer_limits()[1]
        assert 0 < writer.transport.get_write_buffer_size() <= high + OVERSHOOT
        total.append(written)
        go.set_result(None)
        await drain
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        await close_server(srv)
        return written

    run(loop, main(), timeout=15)
    assert got == [True]


# -- many handshakes ----------------------------------------------------------------------


def _fd_count():
    return len(os.listdir("/proc/self/fd"))


def _live_ssl_objects():
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, ssl.SSLObject))


def _many_handshakes(loop, tls, server_ctx, client_ctx, n, timeout):
    """``n`` sequential connect / handshake / echo / close cycles: the open descriptor
    count is the same after as after the first ten, and after a collection no
    ``ssl.SSLObject`` of a finished connection is alive (nothing accumulates)."""

    async def main():
        srv, addr = await tls.server(server_ctx)
        fds = None
        objects = _live_ssl_objects()
        for i in range(n):
            tr, pr = await loop.create_connection(lambda: Proto(loop), *addr, ssl=client_ctx)
            msg = b"%d" % i
            tr.write(msg)
            assert await pr.wait_bytes(len(msg)) == msg
            tr.close()
            assert await pr.lost is None
            if i == 9:
                await asyncio.sleep(0.01)
                fds = _fd_count()
        del tr, pr  # the last connection's objects must not be counted
        # the last server-side connections end after their client's close
        await asyncio.gather(*(p.lost for p in tls.protocols))
        after = _fd_count()
        made = sum(1 for p in tls.protocols if p.events[:1] == ["made"])
        tls.protocols.clear()
        await close_server(srv)
        await asyncio.sleep(0)
        return fds, after, made, _live_ssl_objects() - objects

    fds, after, made, objects = run(loop, main(), timeout=timeout)
    assert made == n
    assert after <= fds, f"{after - fds} descriptors more after {n} handshakes"
    assert objects <= 0, f"{objects} SSLObjects of finished connections still alive"


def test_many_handshakes_fds_flat(loop, tls, server_ctx, client_ctx):
    """300 sequential TLS connections (the short form; FERRO_LONG=1 adds 10,000)."""
    _many_handshakes(loop, tls, server_ctx, client_ctx, 300, timeout=20)


if os.environ.get("FERRO_LONG") == "1":

    @pytest.mark.timeout(900)
    def test_many_handshakes_long(loop, tls, server_ctx, client_ctx):
        """10,000 sequential TLS connections on one loop, descriptors flat."""
        _many_handshakes(loop, tls, server_ctx, client_ctx, 10_000, timeout=600)


def test_set_protocol_in_data_received_sends_the_rest_to_the_new_protocol(
        loop, tls, server_ctx, client_ctx):
    """The app protocol replaced from its own data_received: later records go to the new
    one (ferroloop binds data_received once per protocol, again on set_protocol)."""

    class Handover(Proto):
        def data_received(self, data):
            super().data_received(data)
            self.transport.set_protocol(self.successor)

    async def main():
        srv, addr = await tls.server(server_ctx)
        tr, first = await tls.connect(addr, client_ctx, cls=Handover)
        second = Proto(loop)
        second.transport = tr
        first.successor = second
        tr.write(b"one")
        assert await first.wait_bytes(3) == b"one"
        assert tr.get_protocol() is second
        tr.write(b"two")
        assert await second.wait_bytes(3) == b"two"
        assert first.data == b"one"
        tr.close()
        await second.lost
        await close_server(srv)

    run(loop, main())


def test_failing_pause_writing_is_reported_and_writing_goes_on(
        loop, tls, server_ctx, client_ctx, handler_calls):
    """pause_writing() raising: the loop's exception handler gets asyncio's context
    ("protocol.pause_writing() failed", the app transport, the TLS protocol), and the
    connection carries on."""

    class BadPause(Proto):
        def pause_writing(self):
            super().pause_writing()
            raise ValueError("no pausing")

    async def main():
        srv, addr = await tls.server(server_ctx, PausedSink)
        tr, pr = await tls.connect(addr, client_ctx, cls=BadPause)
        tr.set_write_buffer_limits(high=4 * KiB)
        (sink,) = tls.protocols
        await write_until_paused_then_drain(tr, pr, sink)
        tr.close()
        await pr.lost
        await close_server(srv)
        return tr

    tr = run(loop, main(), timeout=15)
    assert len(handler_calls) == 1, handler_calls
    (context,) = handler_calls
    assert context["message"] == "protocol.pause_writing() failed"
    assert isinstance(context["exception"], ValueError)
    assert context["transport"] is tr
    assert type(context["protocol"]).__name__ == "SSLProtocol"
