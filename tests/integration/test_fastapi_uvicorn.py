"""A FastAPI app served in-process by uvicorn (httptools parser) on the loop under test.

The app follows seed 003's FastAPI example (``read_root`` awaiting ``asyncio.sleep``,
``read_item(item_id: int)``) plus a POST endpoint echoing its JSON body. uvicorn runs as
``uvicorn.Server(config).serve()`` in a task of the loop under test (``loop="none"``: it
does not create or choose a loop), listening on 127.0.0.1 port 0; an aiohttp client on
the same loop sends 50 concurrent requests, checks every response, then the server is
shut down with ``should_exit`` and its task awaited.
"""

import asyncio
import contextlib

import uvicorn
from aiohttp import ClientSession
from fastapi import FastAPI

from loop_helpers import run

N_REQUESTS = 50
SLEEP = 0.05


class Stats:
    def __init__(self):
        self.events = []
        self.in_flight = 0
        self.peak = 0


def make_app(stats):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        stats.events.append("startup")
        yield
        stats.events.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/")
    async def read_root():
        stats.in_flight += 1
        stats.peak = max(stats.peak, stats.in_flight)
        try:
            await asyncio.sleep(SLEEP)  # 模拟异步操作
        finally:
            stats.in_flight -= 1
        return {"message": "Hello World"}

    @app.get("/items/{item_id}")
    async def read_item(item_id: int):
        await asyncio.sleep(0)
        return {"item_id": item_id, "name": f"Item {item_id}"}

    @app.post("/echo")
    async def echo(body: dict):
        return {"received": body, "keys": sorted(body)}

    return app


async def wait_started(server, task):
    for _ in range(500):
        if server.started:
            return
        if task.done():
            task.result()  # raises what stopped the server
            raise AssertionError("uvicorn's serve() returned before starting")
        await asyncio.sleep(0.01)
    raise AssertionError("uvicorn did not start")


async def one_request(session, base, n):
    kind = n % 3
    if kind == 0:
        async with session.get(f"{base}/items/{n}") as resp:
            assert resp.status == 200, (n, resp.status, await resp.text())
            assert resp.headers["content-type"] == "application/json"
            assert resp.headers["server"] == "uvicorn"
            return n, await resp.json()
    if kind == 1:
        payload = {"n": n, "text": "数据" * n, "items": list(range(n))}
        async with session.post(f"{base}/echo", json=payload) as resp:
            assert resp.status == 200, (n, resp.status, await resp.text())
            return n, await resp.json()
    async with session.get(f"{base}/") as resp:
        assert resp.status == 200, (n, resp.status, await resp.text())
        return n, await resp.json()


def expected_response(n):
    kind = n % 3
    if kind == 0:
        return {"item_id": n, "name": f"Item {n}"}
    if kind == 1:
        payload = {"n": n, "text": "数据" * n, "items": list(range(n))}
        return {"received": payload, "keys": sorted(payload)}
    return {"message": "Hello World"}


async def serve_and_query():
    stats = Stats()
    config = uvicorn.Config(
        make_app(stats),
        host="127.0.0.1",
        port=0,
        http="httptools",
        loop="none",
        ws="none",
        lifespan="on",
        log_config=None,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await wait_started(server, task)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        async with ClientSession() as session:
            results = await asyncio.gather(
                *[one_request(session, base, n) for n in range(N_REQUESTS)]
            )
            # a bad request is answered too (FastAPI's validation of the path parameter)
            async with session.get(f"{base}/items/not-a-number") as resp:
                bad_status = resp.status
                bad_body = await resp.json()
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 5)
    assert task.result() is None
    return stats, results, (bad_status, bad_body), server


def test_fastapi_uvicorn_50_concurrent_requests(loop):
    stats, results, (bad_status, bad_body), server = run(loop, serve_and_query(), timeout=15)

    assert len(results) == N_REQUESTS
    assert sorted(n for n, _ in results) == list(range(N_REQUESTS))
    for n, body in results:
        assert body == expected_response(n), f"request {n}: {body!r}"
    assert bad_status == 422
    assert bad_body["detail"][0]["loc"] == ["path", "item_id"]
    # the lifespan ran both ways and the server closed its listener and connections
    assert stats.events == ["startup", "shutdown"]
    assert server.server_state.connections == set()
    assert all(not srv.is_serving() for srv in server.servers)
    # the sleeping endpoint's requests overlapped on the server
    assert stats.in_flight == 0
    assert stats.peak > 1, f"requests were handled one at a time (peak {stats.peak})"
