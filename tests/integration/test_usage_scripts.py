"""docs/usage.md, "asyncio programs": each way of running a script on ferroloop, run for real
in a subprocess, and the loop the program ran on."""

import sys

import pytest
from recipe_helpers import FERROLOOP_LOOP, run_script

RECIPES = {
    "ferroloop.run": ["main_ferroloop_run.py"],
    "asyncio.Runner(loop_factory=)": ["main_runner.py"],
    "asyncio.run(loop_factory=)": pytest.param(
        ["main_asyncio_run.py"],
        marks=pytest.mark.skipif(
            sys.version_info < (3, 12), reason="asyncio.run() takes loop_factory from Python 3.12"
        ),
    ),
    "ferroloop.install()": ["main_install.py"],
    "python -m ferroloop run": ["-m", "ferroloop", "run", "main_asyncio.py"],
    "anyio.run(backend_options=)": ["main_anyio.py"],
}


@pytest.mark.parametrize("args", list(RECIPES.values()), ids=list(RECIPES))
def test_script_runs_on_ferroloop(args, tmp_path):
    assert run_script(args, tmp_path) == FERROLOOP_LOOP


def test_control_plain_python_runs_on_asyncio(tmp_path):
    """The check can fail: the same unchanged script under plain ``python`` is on asyncio."""
    assert run_script(["main_asyncio.py"], tmp_path) == "asyncio.unix_events"
