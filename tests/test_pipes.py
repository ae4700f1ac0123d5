"""Pipe transports (``loop.connect_read_pipe`` / ``loop.connect_write_pipe``) with CPython
3.11 Unix pipe-transport semantics.

The far end of each pipe is a plain descriptor that the test reads or writes with blocking
``os`` calls on small amounts (less than a pipe's buffer), so that the test controls exactly
when the peer writes, closes or reads.
"""

import asyncio
import os
import socket
import subprocess
import sys
import tempfile

import pytest

from loop_helpers import run, xfail_on

PIPE_BUF_FILL = 1024 * 1024  # more than a pipe's kernel buffer (64 KiB here)


class Proto(asyncio.Protocol):
    """Records every callback; futures for the one-shot ones."""

    def __init__(self, loop):
        self.loop = loop
        self.transport = None
        self.events = []
        self.data = bytearray()
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()
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

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)
        self._wake()

    def pause_writing(self):
        self.events.append("pause_writing")

    def resume_writing(self):
        self.events.append("resume_writing")

    async def wait_bytes(self, n):
        """The data received once ``n`` bytes arrived (or EOF / connection lost)."""
        while len(self.data) < n and not self.eof.done() and not self.lost.done():
            self._waiter = self.loop.create_future()
            await self._waiter
        return bytes(self.data)


class Pipes:
    """Descriptors and transports of one test; all closed at teardown."""

    def __init__(self, loop):
        self.loop = loop
        self.fds = []
        self.files = []
        self.transports = []

    def pipe(self):
        r, w = os.pipe()
        self.fds += [r, w]
        return r, w

    def close_fd(self, fd):
        self.fds.remove(fd)
        os.close(fd)

    def file(self, fd, mode):
        """A file object owning ``fd`` (the transport closes it)."""
        self.fds.remove(fd)
        f = open(fd, mode, buffering=0)
        self.files.append(f)
        return f

    async def read_pipe(self, pipe, factory=Proto):
        tr, pr = await self.loop.connect_read_pipe(lambda: factory(self.loop), pipe)
        self.transports.append(tr)
        return tr, pr

    async def write_pipe(self, pipe, factory=Proto):
        tr, pr = await self.loop.connect_write_pipe(lambda: factory(self.loop), pipe)
        self.transports.append(tr)
        return tr, pr

    def close_all(self):
        live = [t for t in self.transports if not t.is_closing()]
        for tr in live:
            if isinstance(tr, asyncio.WriteTransport) or "Write" in type(tr).__name__:
                tr.abort()  # drop what is buffered
            else:
                tr.close()  # a read pipe transport has no abort() (uvloop's raises)
        if live and not self.loop.is_closed() and not self.loop.is_running():
            self.loop.run_until_complete(asyncio.sleep(0.01))
        for f in self.files:
            f.close()
        for fd in self.fds:
            os.close(fd)


@pytest.fixture
def pipes(loop):
    p = Pipes(loop)
    yield p
    p.close_all()


async def read_nonblocking_until_eof(fd):
    """Read ``fd`` (made non-blocking) until EOF, letting the loop run between reads."""
    os.set_blocking(fd, False)
    buf = bytearray()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            await asyncio.sleep(0.001)
            continue
        if not chunk:
            return bytes(buf)
        buf += chunk


def read_all(fd):
    """Blocking read of ``fd`` until EOF."""
    buf = bytearray()
    while chunk := os.read(fd, 65536):
        buf += chunk
    return bytes(buf)


# -- the transport objects --------------------------------------------------------------


@xfail_on(
    "uvloop",
    "uvloop differs: its pipe transports do not derive from asyncio.ReadTransport/WriteTransport",
)
def test_pipe_transports_are_asyncio_transports(loop, pipes):
    async def main():
        r, w = pipes.pipe()
        rtr, rpr = await pipes.read_pipe(pipes.file(r, "rb"))
        wtr, wpr = await pipes.write_pipe(pipes.file(w, "wb"))
        assert isinstance(rtr, asyncio.ReadTransport)
        assert not isinstance(rtr, asyncio.WriteTransport)
        assert isinstance(wtr, asyncio.WriteTransport)
        assert rpr.transport is rtr and wpr.transport is wtr
        wtr.close()
        assert await wpr.lost is None
        assert await rpr.lost is None

    run(loop, main())


# -- read pipes -------------------------------------------------------------------------


def test_read_pipe_data_then_eof_then_connection_lost(loop, pipes):
    async def main():
        r, w = pipes.pipe()
        rf = pipes.file(r, "rb")
        tr, pr = await pipes.read_pipe(rf)
        assert pr.events == ["made"]
        assert tr.is_reading()
        os.write(w, b"hello ")
        assert await pr.wait_bytes(6) == b"hello "
        os.write(w, b"world")
        assert await pr.wait_bytes(11) == b"hello world"
        assert not pr.eof.done()
        pipes.close_fd(w)  # the writer closes: EOF
        await pr.eof
        assert await pr.lost is None
        assert tr.is_closing()
        assert rf.closed  # the transport closed the pipe it was given
        return pr.events

    events = run(loop, main())
    assert events[0] == "made" and events[-2:] == ["eof", "lost"]
    assert set(events[1:-2]) == {"data"}


def test_read_pipe_pause_and_resume_reading(loop, pipes):
    async def main():
        r, w = pipes.pipe()
        tr, pr = await pipes.read_pipe(pipes.file(r, "rb"))
        os.write(w, b"first")
        assert await pr.wait_bytes(5) == b"first"
        tr.pause_reading()
        assert not tr.is_reading()
        tr.pause_reading()  # a second call is a no-op
        os.write(w, b"second")
        await asyncio.sleep(0.05)
        assert pr.data == b"first"  # nothing delivered while paused
        tr.resume_reading()
        assert tr.is_reading()
        tr.resume_reading()  # a second call is a no-op
        assert await pr.wait_bytes(11) == b"firstsecond"
        # EOF is not seen while paused either
        tr.pause_reading()
        pipes.close_fd(w)
        await asyncio.sleep(0.05)
        assert not pr.eof.done() and not pr.lost.done()
        tr.resume_reading()
        await pr.eof
        assert await pr.lost is None
        return pr.events

    events = run(loop, main())
    assert events[-2:] == ["eof", "lost"]


def test_read_pipe_accepts_socketpair_end(loop, pipes):
    async def main():
        a, b = socket.socketpair()
        try:
            tr, pr = await pipes.read_pipe(a)
        except BaseException:
            a.close()
            b.close()
            raise
        try:
            assert tr.get_extra_info("pipe") is a
            b.sendall(b"through a socket")
            assert await pr.wait_bytes(16) == b"through a socket"
            b.shutdown(socket.SHUT_WR)
            await pr.eof
            assert await pr.lost is None
            assert a.fileno() == -1  # closed by the transport
        finally:
            b.close()
        return pr.events

    events = run(loop, main())
    assert events[0] == "made" and events[-2:] == ["eof", "lost"]


# -- write pipes ------------------------------------------------------------------------


def test_write_pipe_write_and_writelines(loop, pipes):
    async def main():
        r, w = pipes.pipe()
        wf = pipes.file(w, "wb")
        tr, pr = await pipes.write_pipe(wf)
        tr.write(b"one,")
        tr.writelines([b"two,", bytearray(b"three,"), memoryview(b"four")])
        tr.write(b"")
        tr.writelines([])
        assert tr.get_write_buffer_size() == 0  # all written at once to the empty pipe
        tr.close()
        assert tr.is_closing()
        assert await pr.lost is None
        assert wf.closed
        # the reader sees the data, then EOF
        assert read_all(r) == b"one,two,three,four"
        return pr.events

    assert run(loop, main()) == ["made", "lost"]


UVLOOP_WRITE_EOF = (
    "uvloop differs: write_eof() on a pipe ends with connection_lost("
    "OSError(88, 'Socket operation on non-socket')) (it shuts the pipe down as a socket) "
    "and is_closing() is False right after it"
)


@xfail_on("uvloop", UVLOOP_WRITE_EOF)
def test_write_pipe_write_eof(loop, pipes):
    async def main():
        r, w = pipes.pipe()
        wf = pipes.file(w, "wb")
        tr, pr = await pipes.write_pipe(wf)
        assert tr.can_write_eof() is True
        tr.write(b"data then ")
        tr.writelines([b"eof"])
        tr.write_eof()
        # a pipe has no half-close: write_eof() closes the transport
        assert tr.is_closing()
        assert await pr.lost is None
        assert wf.closed
        assert read_all(r) == b"data then eof"
        return pr.events

    assert run(loop, main()) == ["made", "lost"]


@xfail_on("uvloop", UVLOOP_WRITE_EOF)
def test_write_pipe_write_eof_flushes_buffer_first(loop, pipes):
    payload = bytes(range(256)) * (PIPE_BUF_FILL // 256)

    async def main():
        r, w = pipes.pipe()
        tr, pr = await pipes.write_pipe(pipes.file(w, "wb"))
        tr.write(payload)
        assert tr.get_write_buffer_size() > 0  # the pipe is full
        tr.write_eof()
        got = await read_nonblocking_until_eof(r)
        assert await pr.lost is None
        assert got == payload
        return pr.events

    events = run(loop, main(), timeout=10)
    assert events == ["made", "pause_writing", "resume_writing", "lost"]


def test_write_pipe_close_flushes_buffer_first(loop, pipes):
    payload = bytes(range(256)) * (PIPE_BUF_FILL // 256)

    async def main():
        r, w = pipes.pipe()
        tr, pr = await pipes.write_pipe(pipes.file(w, "wb"))
        tr.write(payload)
        assert tr.get_write_buffer_size() > 0  # the pipe is full
        tr.close()
        await asyncio.sleep(0.02)
        assert not pr.lost.done()  # still flushing
        got = await read_nonblocking_until_eof(r)
        assert await pr.lost is None
        assert got == payload
        assert tr.get_write_buffer_size() == 0
        return pr.events

    events = run(loop, main(), timeout=10)
    assert events == ["made", "pause_writing", "resume_writing", "lost"]


def test_write_pipe_reader_closed_broken_pipe(loop, pipes):
    """asyncio: write() does not raise; the transport closes with BrokenPipeError (an
    OSError: no exception-handler call)."""

    async def main():
        r, w = pipes.pipe()
        tr, pr = await pipes.write_pipe(pipes.file(w, "wb"))
        pipes.close_fd(r)
        tr.write(b"nobody reads this")  # does not raise
        assert tr.is_closing()
        exc = await pr.lost
        assert isinstance(exc, BrokenPipeError)
        return pr.events

    assert run(loop, main()) == ["made", "lost"]


@xfail_on(
    "uvloop",
    "uvloop differs: a write pipe's protocol gets eof_received() when the read end closes",
)
def test_write_pipe_reader_closed_with_buffered_data(loop, pipes):
    async def main():
        r, w = pipes.pipe()
        tr, pr = await pipes.write_pipe(pipes.file(w, "wb"))
        tr.write(b"x" * PIPE_BUF_FILL)
        assert tr.get_write_buffer_size() > 0
        pipes.close_fd(r)
        exc = await pr.lost
        assert isinstance(exc, BrokenPipeError)
        assert tr.get_write_buffer_size() == 0
        return pr.events

    assert run(loop, main()) == ["made", "pause_writing", "lost"]


@xfail_on(
    "uvloop",
    "uvloop differs: when the read end of an idle write pipe closes the protocol gets "
    "eof_received(), and a later write() raises RuntimeError (the handler is closed)",
)
def test_write_pipe_reader_closed_while_idle(loop, pipes):
    async def main():
        r, w = pipes.pipe()
        tr, pr = await pipes.write_pipe(pipes.file(w, "wb"))
        pipes.close_fd(r)
        # the transport notices the closed read end without writing
        assert await pr.lost is None
        assert tr.is_closing()
        tr.write(b"ignored")  # a write after the loss is dropped silently
        await asyncio.sleep(0.01)
        return pr.events

    assert run(loop, main()) == ["made", "lost"]


# -- not pipes --------------------------------------------------------------------------

# uvloop aborts the whole process (a libuv assertion) on a regular file: on uvloop the
# check runs in a child interpreter, whose death is the failure.
_REGULAR_FILE_CHILD = """
import asyncio, sys, tempfile, uvloop
async def main(loop):
    with tempfile.TemporaryFile() as f:
        try:
            await getattr(loop, sys.argv[1])(asyncio.Protocol, f)
        except ValueError as exc:
            print(str(exc))
loop = uvloop.new_event_loop()
loop.run_until_complete(main(loop))
loop.close()
"""


@xfail_on("uvloop", "uvloop differs: connect_*_pipe() on a regular file aborts the process")
@pytest.mark.parametrize(
    "method, message",
    [
        # the two messages of CPython 3.11's _UnixReadPipeTransport/_UnixWritePipeTransport
        ("connect_read_pipe", "Pipe transport is for pipes/sockets only."),
        ("connect_write_pipe", "Pipe transport is only for pipes, sockets and character devices"),
    ],
)
def test_regular_file_raises_value_error(loop, loop_name, method, message):
    if loop_name == "uvloop":
        res = subprocess.run(
            [sys.executable, "-c", _REGULAR_FILE_CHILD, method],
            capture_output=True, text=True, timeout=20,
        )
        assert (res.returncode, res.stdout) == (0, message + "\n")
        return

    async def main():
        with tempfile.TemporaryFile() as f:
            with pytest.raises(ValueError) as info:
                await getattr(loop, method)(lambda: Proto(loop), f)
            assert str(info.value) == message
            assert not f.closed  # the file stays the caller's
            f.write(b"still usable")

    run(loop, main())


# -- extra info -------------------------------------------------------------------------


def test_get_extra_info_pipe(loop, pipes):
    async def main():
        r, w = pipes.pipe()
        rf = pipes.file(r, "rb")
        wf = pipes.file(w, "wb")
        rtr, rpr = await pipes.read_pipe(rf)
        wtr, wpr = await pipes.write_pipe(wf)
        assert rtr.get_extra_info("pipe") is rf
        assert wtr.get_extra_info("pipe") is wf
        assert rtr.get_extra_info("no such key") is None
        assert wtr.get_extra_info("no such key", "default") == "default"
        wtr.write(b"end to end")
        assert await rpr.wait_bytes(10) == b"end to end"
        wtr.close()
        assert await wpr.lost is None
        await rpr.eof
        assert await rpr.lost is None

    run(loop, main())


def test_write_pipe_many_writes_behind_a_full_pipe_arrive_in_order(loop, pipes):
    """2,000 small writes in one go: the first fill the pipe, the rest queue behind them
    (pause_writing once past the high-water mark); a slow reader gets every byte in order,
    then resume_writing, and the buffer ends empty."""
    chunks = [b"%06d:" % i + b"x" * 993 for i in range(2000)]

    async def main():
        r, w = pipes.pipe()
        tr, pr = await pipes.write_pipe(pipes.file(w, "wb"))
        for c in chunks:
            tr.write(c)
        assert tr.get_write_buffer_size() > 0
        assert pr.events == ["made", "pause_writing"]
        tr.close()
        got = await read_nonblocking_until_eof(r)
        assert await pr.lost is None
        assert tr.get_write_buffer_size() == 0
        assert got == b"".join(chunks)
        return pr.events

    events = run(loop, main(), timeout=10)
    assert events == ["made", "pause_writing", "resume_writing", "lost"]
