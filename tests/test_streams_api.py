"""The streams API (open_connection / start_server and their Unix forms) and sendfile:
loop.sendfile over a transport and loop.sock_sendfile over a socket."""

import asyncio
import hashlib
import os
import shutil
import socket
import tempfile

import pytest

from loop_helpers import run, xfail_on

MiB = 1024 * 1024
UVLOOP_NO_SENDFILE = "uvloop differs: loop.sendfile() raises NotImplementedError"
UVLOOP_NO_SOCK_SENDFILE = "uvloop differs: loop.sock_sendfile() raises NotImplementedError"


@pytest.fixture
def sock_dir():
    d = tempfile.mkdtemp(prefix="fl-")  # short: AF_UNIX paths are limited to 107 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


FILE_DATA = os.urandom(MiB + 12345)


@pytest.fixture
def data_file():
    with tempfile.TemporaryFile() as f:
        f.write(FILE_DATA)
        f.flush()
        f.seek(0)
        yield f


async def stop(server):
    server.close()
    await server.wait_closed()


async def close_writer(writer):
    writer.close()
    await writer.wait_closed()


# -- open_connection / start_server -----------------------------------------------------


def test_open_connection_start_server_echo(loop):
    handled = []

    async def handle(reader, writer):
        handled.append(writer.get_extra_info("peername"))
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
        await close_writer(writer)

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        try:
            addr = server.sockets[0].getsockname()
            reader, writer = await asyncio.open_connection(*addr)
            assert isinstance(reader, asyncio.StreamReader)
            assert isinstance(writer, asyncio.StreamWriter)
            assert writer.get_extra_info("peername") == addr
            replies = []
            for msg in (b"hello\n", b"streams\n", b"api\n"):
                writer.write(msg)
                await writer.drain()
                replies.append(await reader.readline())
            writer.write_eof()
            assert await reader.read() == b""  # the server closed after our EOF
            assert reader.at_eof()
            await close_writer(writer)
            assert handled == [writer.get_extra_info("sockname")]
            return replies
        finally:
            await stop(server)

    assert run(loop, main()) == [b"HELLO\n", b"STREAMS\n", b"API\n"]


async def serve_bytes(chunks, limit=None, delay=0.005):
    """A server that sends ``chunks`` with pauses between them, then closes;
    returns (server, reader, writer) for a client connected to it."""

    async def handle(reader, writer):
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(delay)
        await close_writer(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    kwargs = {} if limit is None else {"limit": limit}
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname(), **kwargs)
    return server, reader, writer


def test_readline(loop):
    async def main():
        server, reader, writer = await serve_bytes(
            [b"first\nsec", b"ond\n", b"\n", b"third\nno newline at end"]
        )
        try:
            lines = [await reader.readline() for _ in range(6)]
            return lines
        finally:
            await close_writer(writer)
            await stop(server)

    assert run(loop, main()) == [
        b"first\n",
        b"second\n",
        b"\n",
        b"third\n",
        b"no newline at end",
        b"",
    ]


def test_readexactly(loop):
    async def main():
        server, reader, writer = await serve_bytes([b"abc", b"defgh", b"ijklmnop", b"qr"])
        try:
            assert await reader.readexactly(0) == b""
            assert await reader.readexactly(2) == b"ab"
            assert await reader.readexactly(10) == b"cdefghijkl"
            with pytest.raises(asyncio.IncompleteReadError) as info:
                await reader.readexactly(100)
            return info.value.partial, info.value.expected
        finally:
            await close_writer(writer)
            await stop(server)

    assert run(loop, main()) == (b"mnopqr", 100)


def test_readuntil(loop):
    async def main():
        server, reader, writer = await serve_bytes([b"key: value\r", b"\nnext\r\n", b"tail"])
        try:
            got = [await reader.readuntil(b"\r\n"), await reader.readuntil(b"\r\n")]
            with pytest.raises(asyncio.IncompleteReadError) as info:
                await reader.readuntil(b"\r\n")
            got.append(info.value.partial)
            return got
        finally:
            await close_writer(writer)
            await stop(server)

    assert run(loop, main()) == [b"key: value\r\n", b"next\r\n", b"tail"]


def test_readuntil_limit_overrun(loop):
    async def main():
        server, reader, writer = await serve_bytes([b"x" * 40, b"|rest"], limit=16)
        try:
            with pytest.raises(asyncio.LimitOverrunError):
                await reader.readuntil(b"|")
            # the data stays in the buffer
            return await reader.read()
        finally:
            await close_writer(writer)
            await stop(server)

    assert run(loop, main()) == b"x" * 40 + b"|rest"


def test_drain_large_write(loop):
    data = os.urandom(256 * 1024) * 64  # 16 MiB: more than the kernel buffers hold
    go = None
    received = []

    async def handle(reader, writer):
        await go.wait()  # do not read until told to
        h = hashlib.sha256()
        n = 0
        while chunk := await reader.read(256 * 1024):
            h.update(chunk)
            n += len(chunk)
        received.append((n, h.hexdigest()))
        await close_writer(writer)

    async def main():
        nonlocal go
        go = asyncio.Event()
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            writer.write(data)
            tr = writer.transport
            low, high = tr.get_write_buffer_limits()
            assert tr.get_write_buffer_size() > high
            drain = loop.create_task(writer.drain())
            await asyncio.sleep(0.05)
            assert not drain.done()  # the peer is not reading: drain() waits
            go.set()
            await drain
            assert tr.get_write_buffer_size() <= low
            writer.write_eof()
            assert await reader.read() == b""
            await close_writer(writer)
            return received
        finally:
            await stop(server)

    assert run(loop, main(), timeout=20) == [(len(data), hashlib.sha256(data).hexdigest())]


def test_writer_close_and_wait_closed(loop):
    server_saw = []

    async def handle(reader, writer):
        server_saw.append(await reader.read())  # until the client's close
        writer.write(b"too late?")
        await close_writer(writer)

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            writer.write(b"last message")
            assert not writer.is_closing()
            writer.close()
            assert writer.is_closing()
            await writer.wait_closed()
            await writer.wait_closed()  # again: returns at once
            assert writer.transport.is_closing()
            while not server_saw:
                await asyncio.sleep(0.005)
            return server_saw
        finally:
            await stop(server)

    assert run(loop, main()) == [b"last message"]


def test_server_side_close_gives_client_eof(loop):
    async def handle(reader, writer):
        writer.write(b"bye")
        await close_writer(writer)

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            got = await reader.read()
            eof = reader.at_eof()
            await close_writer(writer)
            return got, eof
        finally:
            await stop(server)

    assert run(loop, main()) == (b"bye", True)


def test_open_unix_connection_start_unix_server(loop, sock_dir):
    path = os.path.join(sock_dir, "streams")

    async def handle(reader, writer):
        data = await reader.readuntil(b"!")
        writer.write(b"unix says " + data)
        await close_writer(writer)

    async def main():
        server = await asyncio.start_unix_server(handle, path)
        try:
            assert server.sockets[0].getsockname() == path
            reader, writer = await asyncio.open_unix_connection(path)
            assert writer.get_extra_info("peername") == path
            writer.write(b"hi!")
            got = await reader.read()
            await close_writer(writer)
            return got
        finally:
            await stop(server)

    assert run(loop, main()) == b"unix says hi!"


# -- sendfile ---------------------------------------------------------------------------


class Sink(asyncio.Protocol):
    def __init__(self, loop):
        self.lost = loop.create_future()

    def connection_lost(self, exc):
        self.lost.set_result(exc)


async def tcp_transport_and_peer(loop, listener):
    accept = loop.create_task(loop.sock_accept(listener))
    tr, pr = await loop.create_connection(lambda: Sink(loop), *listener.getsockname())
    peer, _ = await accept
    return tr, pr, peer


async def recv_until_eof(loop, sock):
    buf = bytearray()
    while chunk := await loop.sock_recv(sock, 256 * 1024):
        buf += chunk
    return bytes(buf)


@pytest.fixture
def listener():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    lst.setblocking(False)
    yield lst
    lst.close()


SENDFILE_CASES = {
    "whole": ({}, 0, len(FILE_DATA)),
    "offset": ({"offset": 1000}, 1000, len(FILE_DATA) - 1000),
    "offset_count": ({"offset": 777, "count": 300_000}, 777, 300_000),
    "count_past_end": ({"offset": len(FILE_DATA) - 10, "count": 1000}, len(FILE_DATA) - 10, 10),
}


@xfail_on("uvloop", UVLOOP_NO_SENDFILE)
@pytest.mark.parametrize("case", list(SENDFILE_CASES))
def test_loop_sendfile(loop, listener, data_file, case):
    kwargs, start, length = SENDFILE_CASES[case]

    async def main():
        tr, pr, peer = await tcp_transport_and_peer(loop, listener)
        try:
            reading = loop.create_task(recv_until_eof(loop, peer))
            tr.write(b"<header>")
            sent = await loop.sendfile(tr, data_file, **kwargs)
            tr.write(b"<trailer>")  # the transport is writable again afterwards
            tr.close()
            got = await reading
            assert await pr.lost is None
            return sent, data_file.tell(), got
        finally:
            peer.close()

    sent, pos, got = run(loop, main(), timeout=20)
    assert sent == length
    assert pos == start + length  # the file position is left after the data sent
    assert got == b"<header>" + FILE_DATA[start : start + length] + b"<trailer>"


@xfail_on("uvloop", UVLOOP_NO_SENDFILE)
@pytest.mark.parametrize("fallback", [False, True])
def test_loop_sendfile_fallback_flag(loop, listener, data_file, fallback):
    async def main():
        tr, pr, peer = await tcp_transport_and_peer(loop, listener)
        try:
            reading = loop.create_task(recv_until_eof(loop, peer))
            sent = await loop.sendfile(tr, data_file, 5, 100_000, fallback=fallback)
            tr.close()
            got = await reading
            await pr.lost
            return sent, got
        finally:
            peer.close()

    assert run(loop, main(), timeout=20) == (100_000, FILE_DATA[5:100_005])


@xfail_on("uvloop", UVLOOP_NO_SENDFILE)
def test_loop_sendfile_closed_transport(loop, listener, data_file):
    async def main():
        tr, pr, peer = await tcp_transport_and_peer(loop, listener)
        try:
            tr.close()
            with pytest.raises(RuntimeError, match="Transport is closing"):
                await loop.sendfile(tr, data_file)
            await pr.lost
        finally:
            peer.close()

    run(loop, main())


@xfail_on("uvloop", UVLOOP_NO_SOCK_SENDFILE)
@pytest.mark.parametrize("kwargs", [{}, {"fallback": True}], ids=["default", "fallback_true"])
@pytest.mark.parametrize("span", ["whole", "offset_count"])
def test_sock_sendfile(loop, listener, data_file, kwargs, span):
    if span == "whole":
        args, expected, end = (), FILE_DATA, len(FILE_DATA)
    else:
        args, expected, end = (4096, 65536), FILE_DATA[4096 : 4096 + 65536], 4096 + 65536

    async def main():
        sock = socket.socket()
        peer = None
        try:
            sock.setblocking(False)
            accept = loop.create_task(loop.sock_accept(listener))
            await loop.sock_connect(sock, listener.getsockname())
            peer, _ = await accept
            reading = loop.create_task(recv_until_eof(loop, peer))
            sent = await loop.sock_sendfile(sock, data_file, *args, **kwargs)
            pos = data_file.tell()
            sock.shutdown(socket.SHUT_WR)
            return sent, pos, await reading
        finally:
            sock.close()
            if peer is not None:
                peer.close()

    sent, pos, got = run(loop, main(), timeout=20)
    assert sent == len(expected)
    assert pos == end
    assert got == expected
