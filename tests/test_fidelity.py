"""Small asyncio-fidelity details, each checked against asyncio on every CPython version.

* ``TimerHandle._when`` is the object ``call_at`` was given (an int stays an int);
  ``call_later`` stores ``self.time() + delay``.
* A ``time`` patched on the loop instance (or defined by a subclass) is the clock of
  ``call_later`` and of the turn that decides which timers are due, as asyncio's
  ``_run_once`` reads ``self.time()``.
* A NaN deadline fires on the next turn; a deadline beyond a float is asyncio's
  ``OverflowError`` for ``call_later`` and a timer that never fires for ``call_at``.
* ``add_reader``/``add_writer`` refuse descriptors beyond a C int with ``OverflowError``
  and negative ones with ``ValueError``; removing an unknown descriptor returns False.
* ``transport.write()`` of a non-contiguous memoryview is the socket transport's fatal
  write error (``BufferError``), not a silent copy; behind buffered bytes, 3.11's
  ``TypeError`` (3.12+ differ: docs/compatibility.md).
"""

import asyncio
import math
import socket
import sys
from unittest import mock

import pytest

from loop_helpers import PY311, run, run_briefly, xfail_on

NAN = float("nan")


# -- TimerHandle._when -----------------------------------------------------------------


@xfail_on("uvloop", "uvloop differs: its TimerHandle has no _when")
def test_call_at_keeps_the_when_object(loop):
    when = math.ceil(loop.time()) + 10
    h = loop.call_at(when, lambda: None)
    try:
        assert isinstance(h._when, int)
        assert h._when is when
        assert h.when() is when
        assert f"when={when}" in repr(h)
        assert hash(h) == hash(when)
    finally:
        h.cancel()


@xfail_on("uvloop", "uvloop differs: its TimerHandle has no _when")
def test_call_later_when_is_time_plus_delay(loop):
    before = loop.time()
    h = loop.call_later(10, lambda: None)
    after = loop.time()
    try:
        assert type(h.when()) is float
        assert h.when() is h._when
        assert before + 10 <= h.when() <= after + 10
    finally:
        h.cancel()


# -- a patched loop.time ---------------------------------------------------------------


@xfail_on("uvloop", "uvloop differs: its timers run on libuv's clock, not on self.time()")
def test_patched_time_is_the_turns_clock(loop):
    ran = []
    now = loop.time()
    loop.call_at(now + 1000.0, ran.append, 1)
    run_briefly(loop)
    assert ran == []
    with mock.patch.object(loop, "time", return_value=now + 2000.0):
        run_briefly(loop)
    assert ran == [1]
    # unpatched again: the real clock decides
    loop.call_at(now + 1000.0, ran.append, 2)
    run_briefly(loop)
    assert ran == [1]


@xfail_on("uvloop", "uvloop differs: call_later does not read self.time()")
def test_call_later_reads_patched_time(loop):
    loop.time = lambda: 5000.0
    try:
        h = loop.call_later(5, lambda: None)
        assert h.when() == 5005.0
        h.cancel()
        h = loop.call_later(0.5, lambda: None)
        assert h.when() == 5000.5
        h.cancel()
    finally:
        del loop.time
    # deleted: the loop's own clock again
    before = loop.time()
    h = loop.call_later(5, lambda: None)
    assert before + 5 <= h.when() <= loop.time() + 5
    h.cancel()


@xfail_on("uvloop", "uvloop differs: its timers run on libuv's clock, not on self.time()")
def test_patched_time_set_while_running(loop):
    ran = []

    async def main():
        now = loop.time()
        loop.call_at(now + 3600.0, ran.append, "late")
        with mock.patch.object(loop, "time", return_value=now + 7200.0):
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        return ran[:]

    assert loop.run_until_complete(main()) == ["late"]


@xfail_on("uvloop", "uvloop differs: its timers run on libuv's clock, not on self.time()")
def test_subclass_time_is_the_clock(loop):
    now = loop.time()

    class Virtual(type(loop)):
        def time(self):
            return now + 7200.0

    lp = Virtual()
    try:
        ran = []
        h = lp.call_later(5, ran.append, "later")
        assert h.when() == now + 7205.0
        lp.call_at(now + 3600.0, ran.append, "due")
        run_briefly(lp)
        assert ran == ["due"]
    finally:
        lp.close()


# -- NaN and huge deadlines ------------------------------------------------------------


@xfail_on("uvloop", "uvloop differs: a NaN delay raises ValueError (cannot convert float NaN to integer)")
def test_call_later_nan_fires_on_next_turn(loop):
    ran = []
    h = loop.call_later(NAN, ran.append, "nan")
    assert math.isnan(h.when())
    loop.call_later(0, ran.append, "zero")
    run_briefly(loop)
    assert sorted(ran) == ["nan", "zero"]


@xfail_on("uvloop", "uvloop differs: a NaN deadline raises ValueError (cannot convert float NaN to integer)")
def test_call_at_nan_fires_on_next_turn(loop):
    ran = []
    h = loop.call_at(NAN, ran.append, 1)
    assert math.isnan(h.when())
    assert hash(h) == hash(h)
    run_briefly(loop)
    assert ran == [1]


@xfail_on("uvloop", "uvloop differs: call_later(10**400) is accepted")
def test_call_later_beyond_float_overflows(loop):
    with pytest.raises(OverflowError, match="int too large to convert to float"):
        loop.call_later(10**400, lambda: None)
    with pytest.raises(OverflowError, match="int too large to convert to float"):
        loop.call_later(-(10**400), lambda: None)
    assert not loop._scheduled


@xfail_on("uvloop", "uvloop differs: call_at(10**400) raises OverflowError at once")
def test_call_at_beyond_float_is_kept_and_never_due(loop):
    ran = []
    # asyncio stores the int; a deadline that far is never due (a turn with something
    # ready does not ask how long to wait, so it does not overflow either)
    h = loop.call_at(10**400, ran.append, "never")
    assert h.when() == 10**400
    loop.call_at(-(10**400), ran.append, "past")
    run_briefly(loop)
    assert ran == ["past"]
    h.cancel()
    run_briefly(loop)
    assert ran == ["past"]


# -- readers and writers ---------------------------------------------------------------

_UVLOOP_FD_MESSAGE = xfail_on(
    "uvloop", "uvloop differs: OverflowError with its own message ('value too large to convert to int')"
)


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
@pytest.mark.parametrize(
    "fd",
    [
        pytest.param(2**31, marks=_UVLOOP_FD_MESSAGE),
        pytest.param(2**40, marks=_UVLOOP_FD_MESSAGE),
        pytest.param(
            2**70,
            marks=xfail_on(
                "uvloop",
                "uvloop differs: OverflowError 'Python int too large to convert to C long' before 3.13",
                condition=sys.version_info < (3, 13),
            ),
        ),
    ],
)
def test_add_watcher_fd_beyond_c_int(loop, method, fd):
    with pytest.raises(OverflowError, match="Python int too large to convert to C int"):
        getattr(loop, method)(fd, lambda: None)


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_add_watcher_negative_fd(loop, method):
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        getattr(loop, method)(-1, lambda: None)


@pytest.mark.parametrize("method", ["remove_reader", "remove_writer"])
@xfail_on("uvloop", "uvloop differs: removing an unknown descriptor returns None")
def test_remove_watcher_unknown_fd(loop, method, pair):
    a, _ = pair
    assert getattr(loop, method)(a.fileno()) is False
    assert getattr(loop, method)(a) is False
    assert getattr(loop, method)(2**40) is False
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        getattr(loop, method)(-1)


# -- transport.write() -----------------------------------------------------------------


class _Proto(asyncio.Protocol):
    def __init__(self, loop):
        self.lost = loop.create_future()

    def connection_lost(self, exc):
        self.lost.set_result(exc)


class _Connection:
    """A client transport on ``loop`` and its accepted peer socket (which never reads)."""

    def __init__(self, loop):
        self.loop = loop
        self.lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lst.bind(("127.0.0.1", 0))
        self.lst.listen(1)
        self.lst.setblocking(False)
        self.peer = None

    async def open(self):
        accept = self.loop.create_task(self.loop.sock_accept(self.lst))
        tr, pr = await self.loop.create_connection(lambda: _Proto(self.loop), *self.lst.getsockname())
        self.peer, _ = await accept
        return tr, pr

    def close(self):
        self.lst.close()
        if self.peer is not None:
            self.peer.close()


@xfail_on("uvloop", "uvloop differs: write() of a non-contiguous memoryview raises TypeError at once")
def test_write_non_contiguous_memoryview_is_fatal(loop, handler_calls):
    conn = _Connection(loop)

    async def main():
        tr, pr = await conn.open()
        try:
            assert tr.write(memoryview(b"abcdef")[::2]) is None
            exc = await pr.lost
        finally:
            tr.close()
        return tr, exc

    try:
        tr, exc = run(loop, main())
    finally:
        conn.close()
    assert type(exc) is BufferError
    assert str(exc) == "memoryview: underlying buffer is not C-contiguous"
    assert tr.is_closing()
    assert len(handler_calls) == 1
    ctx = handler_calls[0]
    assert ctx["message"] == "Fatal write error on socket transport"
    assert ctx["exception"] is exc


@xfail_on(
    "ferroloop",
    "ferroloop-specific: with bytes waiting for the socket, 3.12+ queue a non-contiguous "
    "memoryview and fail when it is reached; ferroloop's fatal write error is at once",
    condition=not PY311,
)
@xfail_on("uvloop", "uvloop differs: write() of a non-contiguous memoryview raises TypeError at once")
def test_write_non_contiguous_memoryview_behind_buffered_data(loop):
    conn = _Connection(loop)

    async def main():
        tr, pr = await conn.open()
        try:
            tr.write(b"x" * (16 * 1024 * 1024))  # more than loopback absorbs
            await asyncio.sleep(0)
            assert tr.get_write_buffer_size() > 0
            if PY311:
                # 3.11 appends to its bytearray buffer, which refuses the view
                with pytest.raises(TypeError, match="can't set bytearray slice from memoryview"):
                    tr.write(memoryview(b"abcdef")[::2])
            else:
                # 3.12+ queue it: the error comes when the bytes before it have left
                assert tr.write(memoryview(b"abcdef")[::2]) is None
            await asyncio.sleep(0)
            assert not tr.is_closing()
        finally:
            tr.abort()
        return await pr.lost

    try:
        assert run(loop, main()) is None
    finally:
        conn.close()
