"""Errors: the exception handler, argument checks, debug-mode checks."""

import asyncio
import logging
import re
import socket
import threading
import time

import pytest

from loop_helpers import UVLOOP_NO_RECVFROM, run, run_briefly, shows_args, xfail_on


def test_exception_in_callback_reaches_handler(loop, handler_calls):
    out = []

    def bad(x):
        raise ZeroDivisionError(x)

    h = loop.call_soon(bad, 1)
    loop.call_soon(out.append, "still-running")
    run_briefly(loop)
    assert out == ["still-running"]
    assert len(handler_calls) == 1
    ctx = handler_calls[0]
    assert {"message", "exception", "handle"} <= set(ctx)
    assert isinstance(ctx["exception"], ZeroDivisionError)
    assert ctx["exception"].args == (1,)
    assert ctx["handle"] is h
    assert ctx["message"].startswith("Exception in callback ")


@xfail_on("uvloop", "uvloop differs: the message shows the callback's repr, not bad(1)")
def test_exception_in_callback_message_format(loop, handler_calls):
    def bad(x):
        raise ZeroDivisionError(x)

    loop.call_soon(bad, 1)
    run_briefly(loop)
    args = r"\(1\)" if shows_args(loop) else r"\(\)"
    assert re.fullmatch(
        rf"Exception in callback .*bad{args}( at .*test_errors\.py:\d+)?", handler_calls[0]["message"]
    ), handler_calls[0]["message"]


def test_exception_in_timer_reaches_handler(loop, handler_calls):
    def bad():
        raise KeyError("k")

    h = loop.call_later(0, bad)
    run_briefly(loop, 2)
    assert [type(c["exception"]) for c in handler_calls] == [KeyError]
    assert handler_calls[0]["handle"] is h


def test_exception_in_reader_reaches_handler(loop, handler_calls):
    a, b = socket.socketpair()
    try:
        def bad():
            loop.remove_reader(a)
            raise OSError("reader")

        loop.add_reader(a, bad)
        b.send(b"x")
        loop.call_later(0.05, loop.stop)
        loop.run_forever()
        assert [type(c["exception"]) for c in handler_calls] == [OSError]
    finally:
        a.close()
        b.close()


def test_loop_keeps_running_after_many_errors(loop, handler_calls):
    def bad():
        raise RuntimeError

    for _ in range(50):
        loop.call_soon(bad)

    async def main():
        await asyncio.sleep(0.01)
        return "ok"

    assert run(loop, main()) == "ok"
    assert len(handler_calls) == 50


def test_source_traceback_in_debug_mode(debug_loop, handler_calls):
    def bad():
        raise ValueError

    debug_loop.call_soon(bad)
    run_briefly(debug_loop)
    ctx = handler_calls[0]
    assert "source_traceback" in ctx
    assert ctx["source_traceback"][-1][0].endswith("test_errors.py")


def test_default_exception_handler_logs(loop, caplog):
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None

    def bad():
        raise ValueError("logged-error")

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(bad)
        run_briefly(loop)
    records = [r for r in caplog.records if r.name == "asyncio" and r.levelno == logging.ERROR]
    assert len(records) == 1
    rec = records[0]
    assert rec.getMessage().startswith("Exception in callback ")
    assert rec.exc_info and rec.exc_info[0] is ValueError


def test_call_exception_handler_default(loop, caplog):
    loop.set_exception_handler(None)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "custom message"})
    msgs = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert msgs == ["custom message"]


def test_set_get_exception_handler(loop, handler_calls):
    recorder = loop.get_exception_handler()
    assert callable(recorder)
    calls = []

    def handler(lp, ctx):
        calls.append((lp, ctx))

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.call_exception_handler({"message": "m"})
    assert calls == [(loop, {"message": "m"})]
    with pytest.raises(TypeError, match="callable"):
        loop.set_exception_handler(42)
    loop.set_exception_handler(recorder)


def test_failing_exception_handler_is_logged(loop, caplog):
    def handler(lp, ctx):
        raise RuntimeError("handler failed")

    loop.set_exception_handler(handler)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(lambda: 1 / 0)
        run_briefly(loop)
    assert any("Unhandled error in exception handler" in r.getMessage() for r in caplog.records)


# asyncio's call_later() is call_at(), and its messages name call_at()
_NAME_IN_MESSAGE = {"call_soon": "call_soon", "call_later": "call_at", "call_at": "call_at",
                    "call_soon_threadsafe": "call_soon_threadsafe"}
_ARGS = {"call_soon": (), "call_soon_threadsafe": (), "call_later": (0,), "call_at": (0,)}


@pytest.mark.parametrize(
    "method",
    ["call_soon", "call_later", "call_at", "call_soon_threadsafe"],
)
@xfail_on("uvloop", "uvloop differs: no debug-mode check of the callback in call_soon/call_later/call_at")
def test_non_callable_debug_type_error(debug_loop, method):
    expected = f"a callable object was expected by {_NAME_IN_MESSAGE[method]}(), got 42"
    with pytest.raises(TypeError) as ei:
        getattr(debug_loop, method)(*_ARGS[method], 42)
    assert str(ei.value) == expected


@xfail_on(
    "ferroloop",
    "ferroloop-specific: non-callables are refused with TypeError in every mode "
    "(asyncio checks only in debug mode and reports the error when the callback runs)",
)
def test_non_callable_accepted_without_debug(loop, handler_calls):
    loop.set_debug(False)
    loop.call_soon(42)
    run_briefly(loop)
    assert [type(c["exception"]) for c in handler_calls] == [TypeError]


@pytest.mark.parametrize(
    "method",
    ["call_soon", "call_later", "call_at", "call_soon_threadsafe"],
)
@xfail_on("uvloop", "uvloop differs: no debug-mode check of the callback in call_soon/call_later/call_at")
def test_coroutine_function_debug_type_error(debug_loop, method):
    async def coro():
        pass

    with pytest.raises(TypeError) as ei:
        getattr(debug_loop, method)(*_ARGS[method], coro)
    assert str(ei.value) == f"coroutines cannot be used with {_NAME_IN_MESSAGE[method]}()"


@xfail_on("uvloop", "uvloop differs: no debug-mode check of the callback in call_soon/call_later/call_at")
def test_coroutine_object_debug_type_error(debug_loop):
    async def coro():
        pass

    c = coro()
    try:
        with pytest.raises(TypeError, match=re.escape("coroutines cannot be used with call_soon()")):
            debug_loop.call_soon(c)
    finally:
        c.close()


def test_closed_loop_runtime_error_message(loop):
    loop.close()
    with pytest.raises(RuntimeError) as ei:
        loop.call_soon(print)
    assert str(ei.value) == "Event loop is closed"


@pytest.fixture
def blocking_pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


@pytest.mark.parametrize(
    "op",
    ["sock_recv", "sock_recv_into", "sock_sendall", "sock_accept", "sock_connect",
     pytest.param("sock_recvfrom", marks=xfail_on("uvloop", UVLOOP_NO_RECVFROM)),
     pytest.param("sock_sendto", marks=xfail_on("uvloop", UVLOOP_NO_RECVFROM))],
)
def test_blocking_socket_debug_value_error(debug_loop, blocking_pair, op):
    a, _ = blocking_pair
    assert a.gettimeout() is None
    args = {
        "sock_recv": (a, 10),
        "sock_recv_into": (a, bytearray(10)),
        "sock_sendall": (a, b"x"),
        "sock_accept": (a,),
        "sock_connect": (a, "x"),
        "sock_recvfrom": (a, 10),
        "sock_sendto": (a, b"x", None),
    }[op]

    async def main():
        with pytest.raises(ValueError, match="the socket must be non-blocking"):
            await getattr(debug_loop, op)(*args)

    run(debug_loop, main())


@xfail_on(
    "ferroloop",
    "ferroloop-specific: sock_* refuse a blocking socket in every mode (asyncio checks "
    "only in debug mode)",
)
def test_blocking_socket_accepted_without_debug(loop, blocking_pair):
    loop.set_debug(False)
    a, b = blocking_pair
    b.send(b"ready")

    async def main():
        return await loop.sock_recv(a, 10)

    assert run(loop, main()) == b"ready"


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
@pytest.mark.parametrize(
    "bad, message",
    [(-1, "Invalid file descriptor: -1"), (object(), "Invalid file object: ")],
    ids=["minus-one", "no-fileno"],
)
def test_add_watcher_invalid_fd(loop, method, bad, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        getattr(loop, method)(bad, lambda: None)


@pytest.mark.parametrize("method", ["remove_reader", "remove_writer"])
def test_remove_watcher_invalid_fd(loop, method):
    with pytest.raises(ValueError):
        getattr(loop, method)(object())
    with pytest.raises(ValueError):
        getattr(loop, method)(-1)


def test_add_reader_fileno_raises(loop):
    class Bad:
        def fileno(self):
            raise ValueError("nope")

    with pytest.raises(ValueError):
        loop.add_reader(Bad(), lambda: None)


def test_add_reader_closed_socket(loop):
    s, t = socket.socketpair()
    s.close()
    t.close()
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        loop.add_reader(s, lambda: None)


@xfail_on("uvloop", "uvloop differs: no slow-callback warning in debug mode")
def test_debug_slow_callback_warning(debug_loop, caplog):
    debug_loop.slow_callback_duration = 0.01

    def slow():
        time.sleep(0.03)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        debug_loop.call_soon(slow)
        run_briefly(debug_loop)
    msgs = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert len(msgs) == 1, msgs
    assert re.match(r"Executing <Handle .*slow\(\).*> took 0\.\d{3} seconds", msgs[0]), msgs


def test_no_slow_callback_warning_when_fast(debug_loop, caplog):
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        debug_loop.call_soon(lambda: None)
        run_briefly(debug_loop)
    assert [r for r in caplog.records if r.name == "asyncio"] == []


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at"])
def test_debug_non_thread_safe_call(debug_loop, method):
    loop = debug_loop
    errors = []
    args = {"call_soon": (), "call_later": (0,), "call_at": (0,)}[method]

    def from_thread():
        try:
            getattr(loop, method)(*args, lambda: None)
        except RuntimeError as e:
            errors.append(str(e))
        loop.call_soon_threadsafe(loop.stop)

    def start():
        threading.Thread(target=from_thread).start()

    loop.call_soon(start)
    loop.run_forever()
    assert errors == [
        "Non-thread-safe operation invoked on an event loop other than the current one"
    ]


def test_debug_thread_check_off_when_not_running(debug_loop):
    out = []

    def from_thread():
        debug_loop.call_soon(out.append, 1)

    t = threading.Thread(target=from_thread)
    t.start()
    t.join()
    run_briefly(debug_loop)
    assert out == [1]
