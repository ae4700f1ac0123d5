"""uvicorn under ``python -m ferroloop run``: its default ``loop="auto"`` becomes ferroloop.

uvicorn does not ask asyncio's policy for its loop. ``Config(loop="auto")`` (the default of
``uvicorn.run`` and of the ``uvicorn`` command) hands ``asyncio.run`` a loop factory of its
own: uvloop's when uvloop is importable, else ``asyncio.SelectorEventLoop``. So
``ferroloop.install()``, all that ``run`` does for a plain asyncio script, does not reach a
script that calls ``uvicorn.run(app)``: it would serve on uvloop.

``run`` therefore also calls :func:`redirect_auto_loop`: an import hook that, once
``uvicorn.config`` is imported, wraps ``Config.__init__`` so that ``loop="auto"`` becomes
``"ferroloop:new_event_loop"``. The choice is an import string stored on the config, so it
reaches the worker processes uvicorn spawns for ``workers=N`` and ``reload=True`` (they
unpickle the config). An explicit ``loop="asyncio"``, ``"uvloop"`` or import string is
kept: the script asked for that loop. uvicorn older than 0.36 (``Config`` without
``get_loop_factory``) takes no loop factory at all, so nothing is changed there and a
``RuntimeWarning`` says so.

Cost: one entry at the head of ``sys.meta_path``, a string comparison per import.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

CONFIG_MODULE = "uvicorn.config"
LOOP = "ferroloop:new_event_loop"
TOO_OLD = (
    "python -m ferroloop run: this uvicorn (< 0.36) takes no loop factory, so its "
    'loop="auto" still serves on uvloop when uvloop is installed; upgrade uvicorn, '
    'or pass loop="asyncio" (under ferroloop run, asyncio\'s loop is ferroloop)'
)


def redirect_auto_loop() -> None:
    """Make uvicorn's ``loop="auto"`` mean ferroloop in this process (and its uvicorn workers)."""
    module = sys.modules.get(CONFIG_MODULE)
    if module is not None:
        patch_config(module)
    elif not any(isinstance(finder, ConfigFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, ConfigFinder())


def patch_config(module: ModuleType) -> None:
    """Wrap ``module.Config.__init__``: ``loop="auto"`` becomes ferroloop's loop."""
    config_class: Any = module.Config
    if getattr(config_class.__init__, "__ferroloop_wrapped__", False):
        return
    if not hasattr(config_class, "get_loop_factory"):
        warnings.warn(TOO_OLD, RuntimeWarning, stacklevel=2)
        return
    original_init = config_class.__init__

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        if self.loop == "auto":
            self.loop = LOOP

    __init__.__ferroloop_wrapped__ = True  # type: ignore[attr-defined]
    config_class.__init__ = __init__


class ConfigFinder(importlib.abc.MetaPathFinder):
    """Finds ``uvicorn.config`` where the path finder would, and patches it once executed."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname != CONFIG_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = PatchAfterExec(spec.loader)
        return spec


class PatchAfterExec(importlib.abc.Loader):
    """The path finder's loader, then :func:`patch_config`; the module keeps the real loader."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        patch_config(module)
