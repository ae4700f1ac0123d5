"""docs/usage.md, "aiohttp": ``web.run_app(..., loop=ferroloop.new_event_loop())`` and an
``AppRunner`` under ``ferroloop.run``, each run for real in a subprocess and asked which
loop serves."""

import signal

import pytest
from recipe_helpers import FERROLOOP_LOOP, Server, startup_loops

RECIPES = {
    "run_app": (["serve_aiohttp.py", "0"], r"Running on http://127\.0\.0\.1:(\d+)"),
    "AppRunner": (["serve_aiohttp_runner.py", "0"], r"Serving on http://127\.0\.0\.1:(\d+)"),
}


@pytest.mark.parametrize("args, port_line", list(RECIPES.values()), ids=list(RECIPES))
def test_aiohttp_serves_on_ferroloop(args, port_line, tmp_path):
    with Server(args, tmp_path) as srv:
        port = srv.port(port_line)
        module, pid = srv.get(port).split()
        assert module == FERROLOOP_LOOP
        assert startup_loops(srv, 1) == [(FERROLOOP_LOOP, int(pid))]
        assert srv.stop(signal.SIGTERM) == 0
