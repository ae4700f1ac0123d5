"""run_in_executor and the default executor."""

import asyncio
import concurrent.futures
import multiprocessing
import os
import threading

import pytest

from loop_helpers import run, xfail_on


def _pid_and_square(x):
    return os.getpid(), x * x


def test_run_in_default_executor(loop):
    async def main():
        return await loop.run_in_executor(None, lambda a, b: (threading.get_ident(), a + b), 1, 2)

    tid, res = run(loop, main())
    assert res == 3
    assert tid != threading.get_ident()


def test_run_in_executor_exception(loop):
    def bad():
        raise KeyError("in-thread")

    async def main():
        with pytest.raises(KeyError, match="in-thread"):
            await loop.run_in_executor(None, bad)
        return True

    assert run(loop, main())


def test_run_in_custom_thread_pool(loop):
    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="custom") as ex:
        async def main():
            return await asyncio.gather(
                *(loop.run_in_executor(ex, lambda: threading.current_thread().name) for _ in range(4))
            )

        names = run(loop, main())
    assert all(n.startswith("custom") for n in names)


def test_run_in_process_pool(loop):
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as ex:
        async def main():
            return await asyncio.gather(*(loop.run_in_executor(ex, _pid_and_square, i) for i in range(3)))

        res = run(loop, main(), timeout=10)
    assert [r[1] for r in res] == [0, 1, 4]
    assert all(pid != os.getpid() for pid, _ in res)


def test_set_default_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mydefault") as ex:
        loop.set_default_executor(ex)

        async def main():
            return await loop.run_in_executor(None, lambda: threading.current_thread().name)

        assert run(loop, main()).startswith("mydefault")


@xfail_on("uvloop", "uvloop differs: set_default_executor() accepts any executor")
def test_set_default_executor_type_check(loop):
    with concurrent.futures.ProcessPoolExecutor(1) as ex:
        with pytest.raises(TypeError, match="ThreadPoolExecutor"):
            loop.set_default_executor(ex)
    with pytest.raises(TypeError):
        loop.set_default_executor(object())


def test_run_in_executor_coroutine_function_rejected_debug(debug_loop):
    async def coro():
        pass

    with pytest.raises(TypeError, match=r"coroutines cannot be used with run_in_executor\(\)"):
        debug_loop.run_in_executor(None, coro)


def test_run_in_executor_closed_loop(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_in_executor(None, lambda: None)


def test_cancel_run_in_executor_future(loop):
    started = threading.Event()
    release = threading.Event()

    def blocking():
        started.set()
        release.wait(5)
        return "done"

    async def main():
        fut = loop.run_in_executor(None, blocking)
        while not started.is_set():
            await asyncio.sleep(0.001)
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
        release.set()
        return True

    assert run(loop, main())
    loop.run_until_complete(loop.shutdown_default_executor())
