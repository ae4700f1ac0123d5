"""docs/usage.md, "gunicorn": uvicorn's worker and aiohttp's worker on ferroloop, each
gunicorn run for real in a subprocess (two workers), asked which loop serves.

Stopped with SIGTERM, gunicorn's graceful shutdown. (SIGINT makes gunicorn send SIGQUIT to
its workers, which uvicorn-worker 0.4's workers do not act on, on any loop: the master then
waits for its graceful_timeout, uvicorn-worker issue #2.)"""

import signal

import pytest
from recipe_helpers import FERROLOOP_LOOP, Server, startup_loops

GUNICORN = ["-m", "gunicorn", "--bind", "127.0.0.1:0", "--workers", "2"]
GUNICORN_PORT = r"Listening at: http://127\.0\.0\.1:(\d+)"

RECIPES = {
    "uvicorn-worker": ["-k", "ferroloop.uvicorn_worker.UvicornWorker", "asgi_app:app"],
    "aiohttp-worker": [
        "-k", "ferroloop.aiohttp_worker.GunicornWebWorker", "aiohttp_app:make_app",
    ],
    "aiohttp-worker-post-fork": [
        "-c", "gunicorn_conf.py", "-k", "aiohttp.GunicornWebWorker", "aiohttp_app:make_app",
    ],
}


@pytest.mark.parametrize("args", list(RECIPES.values()), ids=list(RECIPES))
def test_gunicorn_workers_serve_on_ferroloop(args, tmp_path):
    with Server([*GUNICORN, *args], tmp_path) as srv:
        port = srv.port(GUNICORN_PORT)
        workers = startup_loops(srv, 2)
        assert [m for m, _ in workers] == [FERROLOOP_LOOP] * 2, workers
        assert len({p for _, p in workers}) == 2, workers
        module, pid = srv.get(port).split()
        assert (module, int(pid)) in workers
        assert srv.stop(signal.SIGTERM) == 0
