"""docs/usage.md, "uvicorn": the command line (one worker and two), ``uvicorn.run`` from a
script, and ``python -m ferroloop run`` of a script that keeps uvicorn's default loop; each
server run for real in a subprocess, asked which loop serves it."""

import importlib.util

import pytest
from recipe_helpers import FERROLOOP_LOOP, Server, run_script, startup_loops

UVICORN_PORT = r"Uvicorn running on http://127\.0\.0\.1:(\d+)"
UVICORN = ["-m", "uvicorn", "--host", "127.0.0.1", "--port", "0"]


def served_by(server):
    """Start-up done, one request: (module, pid) of the loop that answered it."""
    port = server.port(UVICORN_PORT)
    module, pid = server.get(port).split()
    return module, int(pid)


def test_cli_loop_import_string(tmp_path):
    with Server([*UVICORN, "--loop", "ferroloop:new_event_loop", "asgi_app:app"], tmp_path) as srv:
        module, pid = served_by(srv)
        assert module == FERROLOOP_LOOP
        assert startup_loops(srv, 1) == [(FERROLOOP_LOOP, pid)]
        assert srv.stop() == 0


def test_cli_two_workers(tmp_path):
    args = [*UVICORN, "--loop", "ferroloop:new_event_loop", "--workers", "2", "asgi_app:app"]
    with Server(args, tmp_path) as srv:
        module, pid = served_by(srv)
        workers = startup_loops(srv, 2)
        assert [m for m, _ in workers] == [FERROLOOP_LOOP] * 2, workers
        assert len({p for _, p in workers}) == 2, workers
        assert (module, pid) in workers
        assert srv.stop() == 0


def test_cli_loop_module_alone_is_refused(tmp_path):
    """``--loop ferroloop`` is not a loop uvicorn knows nor an import string: it exits."""
    with Server([*UVICORN, "--loop", "ferroloop", "asgi_app:app"], tmp_path) as srv:
        srv.wait_for(r'Import string "ferroloop" must be in format "<module>:<attribute>"')
        assert srv.proc.wait(10) != 0


def test_uvicorn_run_loop_import_string(tmp_path):
    with Server(["serve_uvicorn.py", "0"], tmp_path) as srv:
        assert served_by(srv)[0] == FERROLOOP_LOOP
        assert srv.stop() == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_ferroloop_run_redirects_uvicorn_auto_loop(workers, tmp_path):
    args = ["-m", "ferroloop", "run", "serve_uvicorn_default.py", "0", str(workers)]
    with Server(args, tmp_path) as srv:
        module, _ = served_by(srv)
        assert module == FERROLOOP_LOOP
        loops = startup_loops(srv, workers)
        assert [m for m, _ in loops] == [FERROLOOP_LOOP] * workers, loops
        assert srv.stop() == 0


def test_ferroloop_run_keeps_an_explicit_loop(tmp_path):
    """Only "auto" is redirected: a loop the script names is the loop it gets."""
    script = tmp_path / "configs.py"
    script.write_text(
        "import uvicorn\n"
        "for loop in ('auto', 'asyncio', 'uvloop', 'none', 'ferroloop:new_event_loop'):\n"
        "    print(uvicorn.Config('asgi_app:app', loop=loop).loop, end=' ')\n"
    )
    assert run_script(["-m", "ferroloop", "run", str(script)], tmp_path).split() == [
        "ferroloop:new_event_loop", "asyncio", "uvloop", "none", "ferroloop:new_event_loop",
    ]


def test_control_uvicorn_auto_loop_without_ferroloop_run(tmp_path):
    """The check can fail: the same script under plain ``python`` serves on uvicorn's
    "auto" choice, uvloop when installed, else asyncio's selector loop."""
    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio.unix_events"
    with Server(["serve_uvicorn_default.py", "0"], tmp_path) as srv:
        assert served_by(srv)[0] == expected
        assert srv.stop() == 0
