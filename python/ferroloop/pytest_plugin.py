"""pytest-asyncio's tests on ferroloop: ``pytest -p ferroloop.pytest_plugin``.

Not a ``pytest11`` entry point: installing ferroloop changes no test run. A suite opts in on
the command line, or with the same words in its configuration::

    [tool.pytest.ini_options]
    addopts = "-p ferroloop.pytest_plugin"

Every test and fixture that pytest-asyncio runs then runs on a ferroloop loop:

* pytest-asyncio >= 1.4: through its ``pytest_asyncio_loop_factories`` hook, answered with
  one factory, ``{"ferroloop": ferroloop.new_event_loop}`` (one factory: tests are not
  multiplied, and on pytest >= 8.4 their ids do not change). The hook is ``trylast``: a
  suite's own ``pytest_asyncio_loop_factories`` (in its conftest.py) answers first and wins.
* pytest-asyncio 0.23 to 1.3 (no such hook): a session-scoped ``event_loop_policy`` fixture
  returning ``ferroloop.EventLoopPolicy()``, the override those versions document (1.4
  deprecated it in favour of the hook, so it is used only where the hook is missing). A
  suite's own ``event_loop_policy`` fixture in its conftest.py still wins.

Without pytest-asyncio (not installed, or disabled with ``-p no:asyncio``) there is nothing
to run on ferroloop: the plugin stops the run with a usage error rather than pass silently
on another loop.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable, Mapping

import pytest

import ferroloop

HOOK = "pytest_asyncio_loop_factories"
# the name pytest-asyncio's entry point registers its plugin under
PYTEST_ASYNCIO = "asyncio"


@pytest.hookimpl(optionalhook=True, trylast=True)
def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """pytest-asyncio >= 1.4: the loop factory of every asyncio test and fixture."""
    return {"ferroloop": ferroloop.new_event_loop}


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(PYTEST_ASYNCIO):
        raise pytest.UsageError(
            "ferroloop.pytest_plugin runs pytest-asyncio's tests on ferroloop, and "
            "pytest-asyncio is not installed (or is disabled with -p no:asyncio)"
        )
    hook_caller = getattr(config.hook, HOOK, None)
    if hook_caller is None or hook_caller.spec is None:
        # pytest-asyncio < 1.4. Registered now, after pytest-asyncio, so that this
        # fixture overrides pytest-asyncio's own (the later plugin's definition wins).
        config.pluginmanager.register(event_loop_policy_plugin(), "ferroloop-event-loop-policy")


def event_loop_policy_plugin() -> types.ModuleType:
    """pytest-asyncio 0.23 to 1.3: ferroloop's policy for the loops it creates. A plugin
    module of its own, made only then (defined in this module, pytest would always see the
    fixture, and pytest-asyncio >= 1.4 warns when ``event_loop_policy`` is overridden)."""

    @pytest.fixture(scope="session")
    def event_loop_policy() -> asyncio.AbstractEventLoopPolicy:
        return ferroloop.EventLoopPolicy()

    plugin = types.ModuleType(f"{__name__}.event_loop_policy")
    plugin.event_loop_policy = event_loop_policy  # type: ignore[attr-defined]
    return plugin
