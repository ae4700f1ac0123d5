"""add_reader / add_writer / remove_reader / remove_writer (level-triggered watchers)."""

import os
import socket

import pytest

from loop_helpers import run_briefly, xfail_on


def _run_until(loop, predicate, timeout=2.0):
    deadline = loop.time() + timeout
    while not predicate() and loop.time() < deadline:
        loop.call_later(0.005, loop.stop)
        loop.run_forever()
    assert predicate()


def test_reader_called_when_readable(loop, pair):
    a, b = pair
    got = []

    def on_read(sock):
        got.append(sock.recv(100))

    loop.add_reader(a.fileno(), on_read, a)
    run_briefly(loop)
    assert got == []
    b.send(b"hello")
    _run_until(loop, lambda: got)
    assert got == [b"hello"]
    loop.remove_reader(a.fileno())


def test_reader_with_fileno_object(loop, pair):
    a, b = pair
    got = []
    loop.add_reader(a, lambda: got.append(a.recv(10)))
    b.send(b"x")
    _run_until(loop, lambda: got)
    assert got == [b"x"]
    loop.remove_reader(a)
    loop.remove_reader(a.fileno())


def test_custom_fileno_object(loop, pair):
    a, b = pair

    class Wrapper:
        def fileno(self):
            return a.fileno()

    got = []
    loop.add_reader(Wrapper(), lambda: got.append(a.recv(10)))
    b.send(b"y")
    _run_until(loop, lambda: got)
    loop.remove_reader(Wrapper())


def test_level_triggered_reader_called_again(loop, pair):
    a, b = pair
    calls = []
    loop.add_reader(a, lambda: calls.append(1))
    b.send(b"not drained")
    for _ in range(5):
        run_briefly(loop)
    # never drained: called on every turn
    assert len(calls) == 5
    loop.remove_reader(a)


def test_reader_stops_after_drain(loop, pair):
    a, b = pair
    calls = []

    def on_read():
        calls.append(a.recv(100))

    loop.add_reader(a, on_read)
    b.send(b"data")
    _run_until(loop, lambda: calls)
    for _ in range(3):
        run_briefly(loop)
    assert calls == [b"data"]
    loop.remove_reader(a)


def test_writer_called_when_writable(loop, pair):
    a, _ = pair
    calls = []
    loop.add_writer(a, lambda x: calls.append(x), "w")
    run_briefly(loop)
    run_briefly(loop)
    assert calls == ["w", "w"]  # level-triggered: writable every turn
    loop.remove_writer(a)
    run_briefly(loop)
    assert calls == ["w", "w"]


@xfail_on("uvloop", "uvloop differs: remove_reader()/remove_writer() return None")
def test_remove_return_values(loop, pair):
    a, _ = pair
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is False
    loop.add_reader(a, lambda: None)
    assert loop.remove_writer(a) is False
    assert loop.remove_reader(a) is True
    assert loop.remove_reader(a) is False
    loop.add_writer(a, lambda: None)
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is True
    assert loop.remove_writer(a) is False




@xfail_on("uvloop", "uvloop differs: remove_reader()/remove_writer() return None")
def test_remove_returns_true_for_fileno_objects(loop, pair):
    a, _ = pair

    class Wrapper:
        def fileno(self):
            return a.fileno()

    loop.add_reader(Wrapper(), lambda: None)
    assert loop.remove_reader(a) is True
    loop.add_writer(a.fileno(), lambda: None)
    assert loop.remove_writer(Wrapper()) is True


@xfail_on("uvloop", "uvloop differs: remove_reader()/remove_writer() return None")
def test_remove_after_close_of_loop_returns_false(loop_factory, pair):
    lp = loop_factory()
    a, _ = pair
    lp.add_reader(a, lambda: None)
    lp.close()
    assert lp.remove_reader(a) is False
    assert lp.remove_writer(a) is False


def test_replace_reader(loop, pair):
    a, b = pair
    calls = []
    loop.add_reader(a, lambda: calls.append("old"))
    loop.add_reader(a, lambda: (calls.append("new"), a.recv(10)))
    b.send(b"z")
    _run_until(loop, lambda: calls)
    assert calls == ["new"]
    loop.remove_reader(a)


def test_replace_writer(loop, pair):
    a, _ = pair
    calls = []
    loop.add_writer(a, calls.append, "old")
    loop.add_writer(a, calls.append, "new")
    run_briefly(loop)
    assert calls == ["new"]
    loop.remove_writer(a)


def test_reader_and_writer_on_same_fd(loop, pair):
    a, b = pair
    calls = []
    loop.add_reader(a, lambda: (calls.append("r"), a.recv(10)))
    loop.add_writer(a, lambda: calls.append("w"))
    b.send(b"q")
    run_briefly(loop)
    assert sorted(calls) == ["r", "w"]
    loop.remove_reader(a)
    calls.clear()
    run_briefly(loop)
    assert calls == ["w"]  # writer still active
    loop.remove_writer(a)


def test_remove_reader_in_callback(loop, pair):
    a, b = pair
    calls = []

    def on_read():
        calls.append(1)
        loop.remove_reader(a)

    loop.add_reader(a, on_read)
    b.send(b"data")
    for _ in range(3):
        run_briefly(loop)
    assert calls == [1]


def test_remove_reader_before_it_runs_in_same_turn(loop, pair):
    # a writer that removes the reader in the same turn: the reader must not run
    a, b = pair
    calls = []
    b.send(b"x")

    def on_write():
        calls.append("w")
        loop.remove_reader(a)
        loop.remove_writer(a)

    loop.add_writer(a, on_write)
    loop.add_reader(a, lambda: calls.append("r"))
    run_briefly(loop)
    run_briefly(loop)
    assert "w" in calls
    assert calls.count("r") <= 1
    loop.remove_reader(a)


def test_reader_args(loop, pair):
    a, b = pair
    got = []
    loop.add_reader(a, lambda *args: (got.append(args), a.recv(10)), 1, "two")
    b.send(b".")
    _run_until(loop, lambda: got)
    assert got == [(1, "two")]
    loop.remove_reader(a)


def test_pipe_reader(loop):
    r, w = os.pipe()
    os.set_blocking(r, False)
    try:
        got = []
        loop.add_reader(r, lambda: got.append(os.read(r, 10)))
        os.write(w, b"pipe")
        _run_until(loop, lambda: got)
        assert got == [b"pipe"]
        loop.remove_reader(r)
    finally:
        os.close(r)
        os.close(w)


def test_reader_sees_eof(loop, pair):
    a, b = pair
    got = []

    def on_read():
        data = a.recv(10)
        got.append(data)
        if not data:
            loop.remove_reader(a)

    loop.add_reader(a, on_read)
    b.close()
    _run_until(loop, lambda: got)
    assert got == [b""]


def test_many_fds(loop):
    pairs = [socket.socketpair() for _ in range(50)]
    try:
        got = set()
        for i, (a, _b) in enumerate(pairs):
            a.setblocking(False)
            loop.add_reader(a, lambda i=i, a=a: (got.add(i), a.recv(10)))
        for _, b in pairs:
            b.send(b"x")
        _run_until(loop, lambda: len(got) == 50)
        for a, _ in pairs:
            loop.remove_reader(a)
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_add_reader_closed_loop(loop, pair):
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.add_reader(pair[0], lambda: None)


def test_close_loop_cancels_watcher_handles(loop_factory, pair):
    lp = loop_factory()
    a, b = pair
    calls = []
    lp.add_reader(a, calls.append, 1)
    lp.close()
    b.send(b"x")
    assert calls == []


def test_reader_on_reused_fd_number(loop):
    # close a watched fd without remove_reader, then watch a new fd with the same number
    a, b = socket.socketpair()
    loop.add_reader(a, lambda: None)
    fd = a.fileno()
    loop.remove_reader(a)
    a.close()
    b.close()
    c, d = socket.socketpair()
    try:
        got = []
        loop.add_reader(c, lambda: got.append(c.recv(10)))
        d.send(b"again")
        _run_until(loop, lambda: got)
        assert got == [b"again"]
        loop.remove_reader(c)
        del fd
    finally:
        c.close()
        d.close()
