"""Faults in native code: a Rust panic becomes a Python exception, never a crash."""

import asyncio
import subprocess
import sys

import pytest

import ferroloop
from ferroloop import _native


def test_panic_is_a_python_exception():
    with pytest.raises(BaseException) as ei:
        _native._panic_for_tests("boom")
    assert type(ei.value).__name__ == "PanicException"
    assert "boom" in str(ei.value)


def test_panic_in_a_callback_reaches_the_exception_handler_and_the_loop_goes_on():
    loop = ferroloop.new_event_loop()
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
    out = []
    loop.call_soon(_native._panic_for_tests, "in a callback")
    loop.call_soon(out.append, "after")
    loop.call_soon(loop.stop)
    loop.run_forever()
    loop.close()
    assert out == ["after"]
    assert len(seen) == 1
    assert type(seen[0]["exception"]).__name__ == "PanicException"
    assert set(seen[0]) >= {"message", "exception", "handle"}


def test_interpreter_survives_a_panic():
    code = (
        "import ferroloop._native as n\n"
        "try:\n    n._panic_for_tests('x')\nexcept BaseException as e:\n    print(type(e).__name__)\n"
        "print('alive')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert r.stdout.split() == ["PanicException", "alive"]


def test_fork_child_cannot_run_the_parents_loop():
    code = (
        "import os, sys, ferroloop\n"
        "loop = ferroloop.new_event_loop()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    try:\n        loop.run_until_complete(__import__('asyncio').sleep(0))\n"
        "    except RuntimeError as e:\n        print('child:', e); os._exit(0)\n"
        "    os._exit(1)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "loop.close()\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "another process" in r.stdout


def test_run_from_a_running_loop_is_refused():
    async def main():
        coro = asyncio.sleep(0)
        try:
            with pytest.raises(RuntimeError, match="running event loop"):
                ferroloop.run(coro)
        finally:
            coro.close()

    ferroloop.run(main())
