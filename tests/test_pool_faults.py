"""ferroloop.Pool under faults: exceptions with the worker's traceback, workers that die
(os._exit, SIGKILL, segfault), cancellation reaching the remote coroutine, leaving the pool
by exception or Ctrl-C, a parent that is killed, unpicklable arguments, results and
functions, failing initializers. Every test checks that no process is left behind and runs
within bounded time."""

import asyncio
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pool_helpers as h
import pytest

import ferroloop

HERE = os.path.dirname(os.path.abspath(__file__))


#: every test checks that no worker process is left behind (conftest.py)
pytestmark = pytest.mark.usefixtures("no_process_left")


def run(coro):
    return ferroloop.run(asyncio.wait_for(coro, 20))


async def wait_for_file(path, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.01)
    with open(path) as f:
        return f.read()


# -- exceptions -----------------------------------------------------------------------------


def test_exception_carries_type_message_and_worker_traceback():
    async def main():
        async with ferroloop.Pool(1) as pool:
            with pytest.raises(ValueError, match="bad value 3") as info:
                await pool.apply(h.fail, (3,))
            cause = info.value.__cause__
            assert isinstance(cause, ferroloop.RemoteTraceback)
            assert "pool_helpers.py" in str(cause) and "in fail" in str(cause)
            assert 'raise ValueError(f"bad value {x}")' in str(cause)
            # an exception that cannot be recreated here: its type name and message
            with pytest.raises(ferroloop.RemoteError, match=r"pool_helpers.OddError: odd 1 2"):
                await pool.apply(h.fail_odd, (1,))
            # the pool goes on
            assert await pool.map(h.double, range(3)) == [0, 2, 4]

    run(main())


def test_map_raises_first_error_and_cancels_the_rest(tmp_path):
    async def main():
        async with ferroloop.Pool(1, concurrency=4) as pool:
            markers = [str(tmp_path / f"m{i}") for i in range(3)]
            t0 = time.monotonic()
            with pytest.raises(ValueError, match="failed first"):
                await pool.map(h.fail_or_wait, [*markers, None])
            assert time.monotonic() - t0 < 5
            for m in markers:
                assert await wait_for_file(m) == "cancelled"

    run(main())


# -- workers that die -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "how, expected",
    [("exit", "exit code 3"), ("kill", "killed by SIGKILL"), ("segv", "killed by SIGSEGV")],
)
def test_dying_worker_fails_its_calls_and_is_replaced(how, expected):
    async def main():
        async with ferroloop.Pool(1) as pool:
            (first,) = pool.worker_pids()
            with pytest.raises(ferroloop.WorkerLostError, match=expected):
                await pool.apply(h.die, (how,))
            assert h.wait_gone([first]) == []
            # replaced: the pool works on
            assert await pool.map(h.double, range(4)) == [0, 2, 4, 6]
            (second,) = pool.worker_pids()
            assert second != first

    run(main())


def test_only_the_dead_workers_calls_fail():
    async def main():
        async with ferroloop.Pool(2, concurrency=4, prefetch=0) as pool:
            # the first 4 calls go to the first worker, which dies on call 0
            calls = [pool.apply(h.die_if, (i, 0)) for i in range(8)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            lost = [i for i, r in enumerate(results) if isinstance(r, ferroloop.WorkerLostError)]
            assert lost == [0, 1, 2, 3]
            assert results[4:] == [4, 5, 6, 7]
            assert len(pool.worker_pids()) == 2

    run(main())


# -- cancellation -----------------------------------------------------------------------------


def test_cancelling_the_caller_cancels_the_remote_coroutine(tmp_path):
    async def main():
        async with ferroloop.Pool(1) as pool:
            marker = str(tmp_path / "apply")
            task = asyncio.ensure_future(pool.apply(h.wait_cancelled, (marker, 30)))
            await wait_for_file(marker + ".started")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await wait_for_file(marker) == "cancelled"

            # a timeout is a cancellation too; and a map cancels all of its calls
            paths = [str(tmp_path / f"map{i}") for i in range(3)]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pool.starmap(h.wait_cancelled, [(p, 30) for p in paths]), 0.5)
            for p in paths:
                assert await wait_for_file(p) == "cancelled"

            # an abandoned imap
            marker = str(tmp_path / "imap")
            it = pool.imap(h.wait_cancelled_long, [marker])
            nxt = asyncio.ensure_future(it.__anext__())
            await wait_for_file(marker + ".started")
            nxt.cancel()
            with pytest.raises(asyncio.CancelledError):
                await nxt
            assert await wait_for_file(marker) == "cancelled"
            # the worker is free again
            assert await pool.map(h.double, [1]) == [2]

    run(main())


# -- leaving the pool -------------------------------------------------------------------------


def test_leaving_by_exception_stops_workers_and_fails_pending_calls():
    async def main():
        pids = []
        pending = None
        with pytest.raises(KeyError):
            async with ferroloop.Pool(2, shutdown_timeout=3) as pool:
                pids = pool.worker_pids()
                pending = asyncio.ensure_future(pool.apply(h.sleep_then, (30, 1)))
                await asyncio.sleep(0.1)
                raise KeyError("out")
        with pytest.raises(RuntimeError, match="closed"):
            await pending
        return pids

    t0 = time.monotonic()
    pids = run(main())
    assert time.monotonic() - t0 < 6
    assert len(pids) == 2 and h.wait_gone(pids) == []


SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys
    sys.path.insert(0, {here!r})
    import ferroloop, pool_helpers as h

    async def main():
        async with ferroloop.Pool(2, context={method!r}) as pool:
            calls = asyncio.gather(*(pool.apply(h.sleep_then, (60, i)) for i in range(8)))
            await asyncio.sleep(0.2)
            print(*pool.worker_pids(), flush=True)
            await calls

    if __name__ == "__main__":
        try:
            ferroloop.run(main())
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(130)
    """
)


def start_script(tmp_path, method="forkserver"):
    path = tmp_path / "script.py"
    path.write_text(SCRIPT.format(here=HERE, method=method))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    line = proc.stdout.readline()
    pids = [int(p) for p in line.split()]
    assert len(pids) == 2, line
    return proc, pids


@pytest.mark.parametrize("method", ["forkserver", "fork"])
def test_ctrl_c_stops_the_workers(tmp_path, method):
    proc, pids = start_script(tmp_path, method)
    try:
        # as a terminal's Ctrl-C does: SIGINT to the whole process group
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130 and "interrupted" in out
    assert h.wait_gone(pids) == []


def test_workers_exit_when_the_parent_is_killed(tmp_path):
    proc, pids = start_script(tmp_path, "forkserver")
    try:
        proc.kill()
        proc.wait(timeout=5)
        # the workers exit on their own (the end of their input pipe); the forkserver,
        # their parent, is gone too, so init reaps them (in its own time)
        assert h.wait_exited(pids, timeout=5) == []
    finally:
        proc.stdout.close()


# -- pickling -----------------------------------------------------------------------------------


def test_unpicklable_function_arguments_and_results():
    async def main():
        async with ferroloop.Pool(1) as pool:
            with pytest.raises(pickle.PicklingError, match="function .* cannot be pickled"):
                await pool.map(lambda x: x, [1])
            with pytest.raises(pickle.PicklingError, match="arguments of call 1 .* cannot be pickled"):
                await pool.map(h.noop, [1, threading.Lock(), 3])
            with pytest.raises(pickle.PicklingError, match="result of call .* cannot be pickled"):
                await pool.apply(h.unpicklable_result, (1,))
            # imap: the error at its position, after the results before it
            it = pool.imap(h.noop, [1, 2, threading.Lock()])
            assert [await it.__anext__(), await it.__anext__()] == [1, 2]
            with pytest.raises(pickle.PicklingError):
                await it.__anext__()
            assert await pool.map(h.double, [1, 2]) == [2, 4]

    run(main())


# -- initializers ------------------------------------------------------------------------------


def test_failing_initializer_breaks_the_pool():
    async def main():
        with pytest.raises(ferroloop.BrokenPoolError, match="initializer") as info:
            async with ferroloop.Pool(2, initializer=h.init_fail):
                pass
        cause = info.value.__cause__
        assert isinstance(cause, RuntimeError) and "initializer says no" in str(cause)
        assert "init_fail" in str(cause.__cause__)

        with pytest.raises(ferroloop.BrokenPoolError, match="before it was ready"):
            async with ferroloop.Pool(1, initializer=h.init_exit):
                pass

    run(main())
