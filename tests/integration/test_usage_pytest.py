"""docs/usage.md, "pytest": a small suite of pytest-asyncio and anyio tests run by pytest in
a subprocess, with ``-p ferroloop.pytest_plugin``, with it in ``addopts``, and without it
(the plugin is not auto-loaded: without it, pytest-asyncio's tests stay on asyncio)."""

import re
import subprocess
import sys
import textwrap

from recipe_helpers import FERROLOOP_LOOP, recipe_env

SUITE = {
    "test_loops.py": """
        import asyncio

        import pytest
        import pytest_asyncio


        def loop_module():
            return type(asyncio.get_running_loop()).__module__


        @pytest_asyncio.fixture
        async def fixture_loop():
            return loop_module()


        @pytest.mark.asyncio
        async def test_pytest_asyncio(fixture_loop):
            print("pytest-asyncio test on", loop_module(), "fixture on", fixture_loop)


        @pytest.mark.anyio
        async def test_anyio():
            print("anyio test on", loop_module())
        """,
    # anyio's own pytest plugin: the asyncio backend with ferroloop's loop factory
    "conftest.py": """
        import pytest

        import ferroloop


        @pytest.fixture
        def anyio_backend():
            return "asyncio", {"loop_factory": ferroloop.new_event_loop}
        """,
}
INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


def run_suite(tmp_path, ini_extra="", args=()):
    suite = tmp_path / "suite"
    suite.mkdir()
    for name, text in SUITE.items():
        (suite / name).write_text(textwrap.dedent(text))
    (suite / "pytest.ini").write_text(INI + ini_extra)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", *args],
        cwd=suite,
        env=recipe_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout, proc.stdout
    return re.findall(r"(?:pytest-asyncio|anyio) test on \S+(?: fixture on \S+)?", proc.stdout)


def on_ferroloop(pytest_asyncio_loop):
    return [
        f"pytest-asyncio test on {pytest_asyncio_loop} fixture on {pytest_asyncio_loop}",
        f"anyio test on {FERROLOOP_LOOP}",
    ]


def test_plugin_on_command_line(tmp_path):
    lines = run_suite(tmp_path, args=["-p", "ferroloop.pytest_plugin"])
    assert lines == on_ferroloop(FERROLOOP_LOOP)


def test_plugin_in_addopts(tmp_path):
    lines = run_suite(tmp_path, ini_extra="addopts = -p ferroloop.pytest_plugin\n")
    assert lines == on_ferroloop(FERROLOOP_LOOP)


def test_without_plugin_pytest_asyncio_stays_on_asyncio(tmp_path):
    assert run_suite(tmp_path) == on_ferroloop("asyncio.unix_events")
