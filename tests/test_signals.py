"""add_signal_handler / remove_signal_handler (Unix, main thread)."""

import asyncio
import os
import signal
import threading

import pytest

from loop_helpers import run, xfail_on


@pytest.fixture(autouse=True)
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)
    signal.set_wakeup_fd(-1)


@xfail_on("uvloop", "uvloop differs: remove_signal_handler() returns False for a handler that was called")
def test_handler_called_on_signal(loop):
    got = []

    def handler(*args):
        got.append(args)
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, handler, "a", 2)
    loop.call_later(0.01, os.kill, os.getpid(), signal.SIGUSR1)
    safety = loop.call_later(5, loop.stop)
    loop.run_forever()
    safety.cancel()
    assert got == [("a", 2)]
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_signal_wakes_sleeping_loop(loop):
    got = []

    async def main():
        fut = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, lambda: fut.set_result("sig"))
        t = threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGUSR1))
        t.start()
        try:
            got.append(await fut)
        finally:
            t.join()
            loop.remove_signal_handler(signal.SIGUSR1)

    run(loop, main())
    assert got == ["sig"]


def test_handler_runs_each_time(loop):
    count = []

    async def main():
        loop.add_signal_handler(signal.SIGUSR2, count.append, 1)
        for _ in range(3):
            os.kill(os.getpid(), signal.SIGUSR2)
            for _ in range(20):
                await asyncio.sleep(0.001)
                if len(count) == _ + 1:
                    break
        while len(count) < 3:
            await asyncio.sleep(0.001)
        loop.remove_signal_handler(signal.SIGUSR2)

    run(loop, main())
    assert count == [1, 1, 1]


def test_replace_handler(loop):
    got = []

    async def main():
        loop.add_signal_handler(signal.SIGUSR1, got.append, "old")
        loop.add_signal_handler(signal.SIGUSR1, got.append, "new")
        os.kill(os.getpid(), signal.SIGUSR1)
        while not got:
            await asyncio.sleep(0.001)
        loop.remove_signal_handler(signal.SIGUSR1)

    run(loop, main())
    assert got == ["new"]


@xfail_on("uvloop", "uvloop differs: remove_signal_handler(SIGINT) returns False")
def test_remove_sigint_restores_default_int_handler(loop):
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    assert loop.remove_signal_handler(signal.SIGINT) is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@xfail_on("uvloop", "uvloop differs: close() leaves the Python-level signal handler installed")
def test_close_removes_handlers(loop):
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


@xfail_on("uvloop", "uvloop differs: the message is 'sig N out of range(1, 65)'")
@pytest.mark.parametrize("sig", [0, 1000, -1])
def test_invalid_signal_value_error(loop, sig):
    with pytest.raises(ValueError, match=f"invalid signal number {sig}"):
        loop.add_signal_handler(sig, lambda: None)
    with pytest.raises(ValueError):
        loop.remove_signal_handler(sig)


def test_non_int_signal_type_error(loop):
    with pytest.raises(TypeError, match="sig must be an int, not '10'"):
        loop.add_signal_handler("10", lambda: None)
    with pytest.raises(TypeError):
        loop.remove_signal_handler(1.5)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP])
def test_uncatchable_signal_runtime_error(loop, sig):
    with pytest.raises(RuntimeError, match=f"sig {int(sig)} cannot be caught"):
        loop.add_signal_handler(sig, lambda: None)
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_coroutine_callback_type_error(loop):
    async def coro():
        pass

    with pytest.raises(TypeError, match=r"coroutines cannot be used with add_signal_handler\(\)"):
        loop.add_signal_handler(signal.SIGUSR1, coro)
    c = coro()
    try:
        with pytest.raises(TypeError, match="coroutines cannot be used with add_signal_handler"):
            loop.add_signal_handler(signal.SIGUSR1, c)
    finally:
        c.close()


def test_closed_loop_runtime_error(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.add_signal_handler(signal.SIGUSR1, lambda: None)


@xfail_on("uvloop", "uvloop differs: raises ValueError, not RuntimeError")
def test_non_main_thread_runtime_error(loop_factory):
    errors = []

    def worker():
        lp = loop_factory()
        try:
            lp.add_signal_handler(signal.SIGUSR1, lambda: None)
        except Exception as e:
            errors.append(e)
        finally:
            lp.close()

    t = threading.Thread(target=worker)
    t.start()
    t.join(5)
    assert [type(e) for e in errors] == [RuntimeError]
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_handler_exception_reaches_exception_handler(loop, handler_calls):
    def bad():
        raise ValueError("in signal handler")

    async def main():
        loop.add_signal_handler(signal.SIGUSR1, bad)
        os.kill(os.getpid(), signal.SIGUSR1)
        while not handler_calls:
            await asyncio.sleep(0.001)
        loop.remove_signal_handler(signal.SIGUSR1)

    run(loop, main())
    assert [type(c["exception"]) for c in handler_calls] == [ValueError]
