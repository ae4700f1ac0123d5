"""ferroloop.Pool: the API in the good case (map, starmap, imap, imap_unordered, apply,
initializer, maxtasksperchild, concurrency, start methods), on asyncio's and ferroloop's loop
in the parent. The faults are in test_pool_faults.py. Every test checks that no worker
process is left behind."""

import asyncio
import itertools
import os
import subprocess
import sys

import pool_helpers as h
import pytest

import ferroloop

PARENT_LOOPS = {"asyncio": asyncio.new_event_loop, "ferroloop": ferroloop.new_event_loop}


#: every test checks that no worker process is left behind (conftest.py)
pytestmark = pytest.mark.usefixtures("no_process_left")


def run(coro, loop_factory=ferroloop.new_event_loop):
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(asyncio.wait_for(coro, 20))


@pytest.mark.parametrize("parent", list(PARENT_LOOPS))
def test_map_starmap_apply_imap(parent):
    async def main():
        async with ferroloop.Pool(2, concurrency=4) as pool:
            assert await pool.map(h.double, range(20)) == [2 * i for i in range(20)]
            assert await pool.starmap(h.add, [(1, 2), (3, 4)]) == [3, 7]
            assert await pool.apply(h.add, (1, 2), {"c": 10}) == 13
            assert await pool.apply(h.add, [5, 6]) == 11
            assert [x async for x in pool.imap(h.double, range(30))] == [2 * i for i in range(30)]
            got = [x async for x in pool.imap_unordered(h.double, iter(range(30)))]
            assert sorted(got) == [2 * i for i in range(30)]
            assert await pool.map(h.double, []) == []
            assert [x async for x in pool.imap(h.double, [])] == []
            # a plain function is called; its value is the result
            assert await pool.map(h.square, range(5)) == [0, 1, 4, 9, 16]
            pids = pool.worker_pids()
            assert len(pids) == 2
        return pids

    pids = run(main(), PARENT_LOOPS[parent])
    assert h.wait_gone(pids) == []


def test_workers_run_ferroloop_in_tasks():
    async def main():
        async with ferroloop.Pool(1) as pool:
            return await pool.map(h.loop_module, range(3))

    assert run(main()) == [("ferroloop._loop", True)] * 3


def test_calls_spread_over_workers_and_run_concurrently():
    async def main():
        async with ferroloop.Pool(2, concurrency=5) as pool:
            pids = await pool.map(h.pid_after, [0.05] * 10)
            # 10 calls of 50 ms, 5 at once per worker: one round, both workers
            assert len(set(pids)) == 2
            peaks = await pool.map(h.running_concurrently, [0.05] * 20)
            assert max(peaks) == 5

    run(main())


def test_many_calls_at_once_batch():
    async def main():
        async with ferroloop.Pool(2, concurrency=8) as pool:
            calls = [pool.apply(h.noop, (i,)) for i in range(300)]
            assert await asyncio.gather(*calls) == list(range(300))
            assert await pool.map(h.noop, range(5000)) == list(range(5000))

    run(main())


def test_large_arguments_and_results():
    async def main():
        async with ferroloop.Pool(2, concurrency=4) as pool:
            assert await pool.map(h.size_of, [b"a" * 3_000_000, b"b" * 10]) == [3_000_000, 10]
            results = await pool.map(h.big, [4_000_000, 1, 2_000_000])
            assert [len(r) for r in results] == [4_000_000, 1, 2_000_000]

    run(main())


def test_imap_reads_input_lazily():
    taken = []

    def source():
        for i in range(10_000):
            taken.append(i)
            yield i

    async def main():
        async with ferroloop.Pool(1, concurrency=2, prefetch=2) as pool:
            it = pool.imap(h.noop, source())
            assert [await it.__anext__() for _ in range(3)] == [0, 1, 2]
            # a bounded window, not the whole input
            assert len(taken) < 100
            await it.aclose()
            with pytest.raises(StopAsyncIteration):
                await it.__anext__()

    run(main())


def test_an_unread_imap_does_not_block_other_calls():
    async def main():
        async with ferroloop.Pool(1, concurrency=2, prefetch=0) as pool:
            it = pool.imap(h.noop, itertools.count())  # endless, read once
            assert await it.__anext__() == 0
            await asyncio.sleep(0.05)
            assert await pool.apply(h.add, (1, 2)) == 3
            await it.aclose()

    run(main())


def test_imap_raises_an_error_of_the_input_at_its_position():
    def source():
        yield 1
        yield 2
        raise OSError("input broke")

    async def main():
        async with ferroloop.Pool(1) as pool:
            got = []
            with pytest.raises(OSError, match="input broke"):
                async for x in pool.imap(h.double, source()):
                    got.append(x)
            assert got == [2, 4]

    run(main())


@pytest.mark.parametrize("init", ["sync", "async"])
def test_initializer_runs_in_each_worker_loop(init):
    async def main():
        fn = h.init_sync if init == "sync" else h.init_async
        async with ferroloop.Pool(2, initializer=fn, initargs=("x",)) as pool:
            return await pool.map(h.get_state, ["init"] * 8)

    expected = "x" if init == "sync" else ["async", "x", "ferroloop._loop"]
    got = run(main())
    assert all((list(v) if isinstance(v, tuple) else v) == expected for v in got)


def test_maxtasksperchild_replaces_workers():
    async def main():
        async with ferroloop.Pool(1, concurrency=2, maxtasksperchild=3) as pool:
            pids = []
            for _ in range(4):
                pids += await pool.map(h.pid_after, [0.001] * 3)
            return pids

    pids = run(main())
    assert len(pids) == 12
    # each group of three ran in a new process
    assert len(set(pids)) == 4
    assert h.wait_gone(set(pids)) == []


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_start_methods(method):
    async def main():
        async with ferroloop.Pool(2, concurrency=4, context=method) as pool:
            assert await pool.map(h.double, range(10)) == [2 * i for i in range(10)]
            return pool.worker_pids()

    pids = run(main())
    assert h.wait_gone(pids) == []


def test_pool_argument_checks():
    with pytest.raises(ValueError):
        ferroloop.Pool(0)
    with pytest.raises(ValueError):
        ferroloop.Pool(concurrency=0)
    with pytest.raises(ValueError):
        ferroloop.Pool(maxtasksperchild=0)
    with pytest.raises(TypeError):
        ferroloop.Pool(initializer=3)

    async def main():
        pool = ferroloop.Pool(1)
        with pytest.raises(RuntimeError, match="not started"):
            await pool.map(h.noop, [1])
        async with pool:
            pass
        with pytest.raises(RuntimeError, match="closed"):
            await pool.map(h.noop, [1])

    run(main())


def test_dask_is_imported_only_for_a_cluster():
    code = (
        "import sys, ferroloop; "
        "assert 'distributed' not in sys.modules and 'ferroloop._pool_dask' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_start_close_and_terminate():
    async def main():
        pool = ferroloop.Pool(1)
        await pool.start()
        assert await pool.apply(h.noop, (5,)) == 5
        pids = pool.worker_pids()
        await pool.close()
        await pool.close()  # idempotent
        assert h.wait_gone(pids) == []

        pool = ferroloop.Pool(2)
        await pool.start()
        pids = pool.worker_pids()
        pool.terminate()  # kills at once, no waiting on the loop
        assert h.wait_gone(pids) == []
        with pytest.raises(RuntimeError, match="closed"):
            await pool.map(h.noop, [1])
        await pool.close()

    run(main())


def test_crawler_example():
    """examples/pool_crawler.py: the seeds' crawler on a pool (it checks its own results)."""
    example = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "examples", "pool_crawler.py")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(
        [sys.executable, example, "--pages", "40", "--processes", "2", "--concurrency", "4"],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    ).stdout
    assert "40 pages in" in out and "'Page 0' ... 'Page 39'" in out
