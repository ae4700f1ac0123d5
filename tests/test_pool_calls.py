"""What a ferroloop.Pool call sees: each case of pool_call_cases.py runs through the pool and
as a task of its own on asyncio's loop, and must end the same way (value, or exception type
and message). A worker runs its calls inside a few runner tasks, not a task per call
(docs/pool.md): these tests hold it to what a task per call gives: its own context, a task in
every step (asyncio.timeout, TaskGroup), a cancellation that ends with the call."""

import asyncio
import inspect
import os

import pool_call_cases as cases
import pool_helpers as h
import pytest

import ferroloop

#: every test checks that no worker process is left behind (conftest.py)
pytestmark = pytest.mark.usefixtures("no_process_left")


def run(coro):
    with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
        return runner.run(asyncio.wait_for(coro, 30))


def outcome(result):
    if isinstance(result, BaseException):
        return ("error", type(result).__name__, str(result))
    return ("value", result)


async def as_own_task(fn, arg):
    async def call():
        result = fn(arg)
        return (await result) if inspect.isawaitable(result) else result

    try:
        return await asyncio.get_running_loop().create_task(call())
    except BaseException as exc:  # CancelledError included: the task's outcome
        return exc


def reference():
    async def main():
        return [outcome(await as_own_task(fn, arg)) for fn, arg in cases.CASES]

    with asyncio.Runner() as runner:  # asyncio's own loop
        return runner.run(main())


async def through_pool(pool, fn, arg):
    try:
        return await pool.apply(fn, (arg,))
    except asyncio.CancelledError as exc:
        if asyncio.current_task().cancelling():
            raise  # this test's own cancellation
        return exc
    except BaseException as exc:
        return exc


def test_reference_outcomes_are_what_the_cases_say():
    got = dict(zip([f.__name__ for f, _ in cases.CASES], reference()))
    assert got["context_isolated"] == ("value", ("unset", "c"))
    assert got["task_seen"] == ("value", (True, True, 0))
    assert got["timeout_first_step"] == ("value", ("timed out", 0))
    assert got["self_cancel_sync"][:2] == ("error", "CancelledError")
    assert got["self_cancel_swallowed"] == ("value", ("swallowed", 3))
    assert got["returns_list"] == ("value", [7, 7])


def test_one_runner_runs_the_cases_as_tasks_of_their_own_would():
    """concurrency=1: every case runs in the same runner, one after another."""
    expected = reference()

    async def main():
        async with ferroloop.Pool(1, concurrency=1) as pool:
            return [outcome(await through_pool(pool, fn, arg)) for fn, arg in cases.CASES]

    got = run(main())
    for (fn, arg), want, have in zip(cases.CASES, expected, got):
        assert have == want, f"{fn.__name__}({arg!r})"


def test_concurrent_calls_end_as_tasks_of_their_own_would():
    expected = reference()

    async def main():
        async with ferroloop.Pool(2, concurrency=4) as pool:
            for _ in range(3):
                got = await asyncio.gather(
                    *(through_pool(pool, fn, arg) for fn, arg in cases.CASES * 3)
                )
                assert [outcome(r) for r in got] == expected * 3

    run(main())


def test_errors_carry_the_calls_frames_not_the_workers():
    async def main():
        async with ferroloop.Pool(1) as pool:
            for fn in (cases.raises_first_step, cases.raises_later):
                with pytest.raises(ValueError) as info:
                    await pool.apply(fn, (1,))
                text = str(info.value.__cause__)
                assert f"in {fn.__name__}" in text
                assert "_pool_worker.py" not in text, text

    run(main())


def test_a_swallowed_cancellation_leaves_its_runner_clean(tmp_path):
    async def main():
        async with ferroloop.Pool(1, concurrency=1) as pool:
            marker = str(tmp_path / "started")
            call = asyncio.ensure_future(pool.apply(cases.wait_for_cancel, (marker,)))
            while not os.path.exists(marker):
                await asyncio.sleep(0.01)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            # the same runner: no cancellation left pending, timeouts work
            assert await pool.apply(cases.task_seen, (None,)) == (True, True, 0)
            assert await pool.apply(cases.timeout_first_step, (0.01,)) == ("timed out", 0)

    run(main())


def test_a_queued_call_is_cancelled_without_running(tmp_path):
    async def main():
        async with ferroloop.Pool(1, concurrency=1) as pool:
            marker = str(tmp_path / "long")
            first = asyncio.ensure_future(pool.apply(h.wait_cancelled, (marker, 30)))
            while not os.path.exists(marker + ".started"):
                await asyncio.sleep(0.01)
            flag = str(tmp_path / "queued")
            queued = asyncio.ensure_future(pool.apply(h.wait_cancelled, (flag, 30)))
            await asyncio.sleep(0.1)  # sent, waiting behind the first
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            assert await pool.apply(h.noop, (5,)) == 5
            assert not os.path.exists(flag + ".started")  # never ran

    run(main())


def test_runners_stay_within_concurrency():
    async def main():
        async with ferroloop.Pool(1, concurrency=3) as pool:
            # quick calls and suspended ones mixed: at most 3 suspended at once
            args = [0.02 if i % 4 == 0 else 0 for i in range(200)]
            peaks = await pool.map(h.running_concurrently, args)
            assert max(peaks) == 3

    run(main())


@pytest.mark.parametrize("fn", [cases.exit_now, cases.exit_later])
def test_system_exit_in_a_call_ends_its_worker(fn):
    """SystemExit is not a call's error: it ends the worker (as it ends a loop), the call is
    lost and the worker replaced."""

    async def main():
        async with ferroloop.Pool(1, concurrency=2) as pool:
            with pytest.raises(ferroloop.WorkerLostError, match="exit code 3"):
                await pool.apply(fn, (3,))
            assert await pool.map(cases.many_steps, [1, 2, 3]) == [1, 2, 3]

    run(main())


def test_an_exception_whose_str_fails_still_answers():
    async def main():
        async with ferroloop.Pool(1, concurrency=1) as pool:
            with pytest.raises(cases.BadStr):
                await pool.apply(cases.raise_bad_str, (1,))
            assert await pool.apply(cases.many_steps, (2,)) == 2

    run(main())


def test_quick_calls_leave_the_loop_turns():
    """Calls that never wait still let the worker's loop run between them: a timer of a
    waiting call fires on time while 600 calls of 2 ms run (without the turns it would
    wait for the worker's whole queue: 150 calls, 0.3 s)."""

    async def main():
        async with ferroloop.Pool(1, concurrency=4) as pool:
            late = asyncio.ensure_future(pool.apply(cases.late_by, (0.1,)))
            await asyncio.sleep(0.03)  # it waits in the worker
            busy = asyncio.ensure_future(pool.map(cases.busy, [2] * 600))
            assert await busy == [2] * 600
            return await late

    assert run(main()) < 0.1


def test_a_task_factory_of_the_users_does_not_change_the_runners():
    """An initializer that makes the worker's loop start tasks eagerly: the runners are not
    made by it (they stay within concurrency, and the worker never stalls)."""

    async def main():
        async with ferroloop.Pool(1, concurrency=2, initializer=cases.eager_factory) as pool:
            for _ in range(5):
                assert await pool.map(cases.many_steps, [0, 1, 0, 2] * 5) == [0, 1, 0, 2] * 5
                peaks = await pool.map(h.running_concurrently, [0.005] * 12)
                assert max(peaks) == 2

    run(main())
