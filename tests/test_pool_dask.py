"""ferroloop.Pool(cluster=client): the workers are actors in a Dask ``distributed`` cluster,
each running a ferroloop loop; the same API, concurrency and fault behaviour as local workers.
The cluster (a ``LocalCluster`` of 2 worker processes) is started and stopped here."""

import asyncio
import os
import threading
import time

import distributed  # an optional dependency of ferroloop; scripts/requirements-dev.txt
import pool_helpers as h
import pytest

import ferroloop


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster
    left = h.wait_gone(h.descendants(), timeout=5.0)
    assert not left, f"processes left behind by the cluster: {left}"


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster) as client:
        yield client


def pool_threads():
    return [t.name for t in threading.enumerate() if t.name == "ferroloop.Pool-dask-worker"]


@pytest.fixture(autouse=True)
def no_worker_loop_left(client):
    """After each test the pools' loops in the Dask workers have ended."""
    yield
    deadline = time.monotonic() + 5
    while True:
        left = {a: n for a, n in client.run(pool_threads).items() if n}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"pool worker threads left in the Dask workers: {left}"


def worker_pids(client):
    return set(client.run(os.getpid).values())


def run(coro):
    return ferroloop.run(asyncio.wait_for(coro, 30))


def test_api_on_dask_workers(client):
    async def main():
        async with ferroloop.Pool(cluster=client, concurrency=4) as pool:
            assert pool.processes == 2
            assert await pool.map(h.double, range(20)) == [2 * i for i in range(20)]
            assert await pool.starmap(h.add, [(1, 2), (3, 4)]) == [3, 7]
            assert await pool.apply(h.add, (1, 2), {"c": 10}) == 13
            assert [x async for x in pool.imap(h.double, range(10))] == [2 * i for i in range(10)]
            got = [x async for x in pool.imap_unordered(h.double, range(10))]
            assert sorted(got) == [2 * i for i in range(10)]
            assert await pool.map(h.loop_module, range(2)) == [("ferroloop._loop", True)] * 2
            pids = set(await pool.map(h.pid_after, [0.05] * 8))
            assert pids == worker_pids(client) and os.getpid() not in pids
            # `concurrency` calls at once per worker
            peaks = await pool.map(h.running_concurrently, [0.05] * 16)
            assert max(peaks) == 4

    run(main())


def test_async_client_on_the_pools_loop(cluster):
    async def main():
        async with distributed.Client(cluster.scheduler_address, asynchronous=True) as client:
            async with ferroloop.Pool(cluster=client, processes=1, concurrency=2) as pool:
                assert await pool.map(h.double, range(5)) == [0, 2, 4, 6, 8]

    run(main())


def test_initializer_and_errors(client):
    async def main():
        async with ferroloop.Pool(
            cluster=client, initializer=h.init_async, initargs=("d",)
        ) as pool:
            got = await pool.map(h.get_state, ["init"] * 4)
            assert all(v == ("async", "d", "ferroloop._loop") for v in got)
            with pytest.raises(ValueError, match="bad value 3") as info:
                await pool.apply(h.fail, (3,))
            assert isinstance(info.value.__cause__, ferroloop.RemoteTraceback)
            assert "in fail" in str(info.value.__cause__)

        with pytest.raises(ferroloop.BrokenPoolError, match="initializer"):
            async with ferroloop.Pool(cluster=client, initializer=h.init_fail):
                pass

    run(main())


def test_cancellation_reaches_the_dask_worker(client, tmp_path):
    async def main():
        async with ferroloop.Pool(cluster=client, processes=1) as pool:
            marker = str(tmp_path / "dask")
            task = asyncio.ensure_future(pool.apply(h.wait_cancelled, (marker, 30)))
            deadline = time.monotonic() + 10
            while not os.path.exists(marker + ".started"):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            while not os.path.exists(marker):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)

    run(main())


def test_lost_dask_worker_fails_its_calls_and_is_replaced(client):
    async def main():
        async with ferroloop.Pool(cluster=client, concurrency=2) as pool:
            t0 = time.monotonic()
            with pytest.raises(ferroloop.WorkerLostError, match="Dask worker"):
                await pool.apply(h.die, ("exit",))
            assert time.monotonic() - t0 < 10
            # replaced (on the surviving worker, or the one its nanny restarted)
            for _ in range(100):
                if pool.processes == 2 and len(pool._workers) == 2:
                    break
                await asyncio.sleep(0.05)
            assert await pool.map(h.double, range(6)) == [0, 2, 4, 6, 8, 10]

    run(main())
    client.wait_for_workers(2, timeout=20)


def test_an_actor_dropped_by_dask_ends_its_loop(client):
    """A pool that vanished without stopping its workers (its process died): its actors'
    loops end (no poll comes any more; or Dask drops the actor)."""
    from ferroloop._pool_dask import DaskActor

    future = client.submit(DaskActor, 2, None, (), 0.5, actor=True, pure=False)
    actor = future.result(timeout=10)
    actor.start().result(timeout=10)
    assert any(client.run(pool_threads).values())
    del actor
    future.release()
    # (no_worker_loop_left checks the thread ends)
