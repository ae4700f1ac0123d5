"""ferroloop: the asyncio event loop, rebuilt in Rust.

    ferroloop.run(main())                      # like asyncio.run
    asyncio.Runner(loop_factory=ferroloop.new_event_loop)
    ferroloop.install()                        # make it asyncio's default loop
    async with ferroloop.Pool() as pool: ...   # worker processes, a ferroloop loop each
"""

import asyncio as _asyncio
from collections.abc import Coroutine as _Coroutine
from typing import Any as _Any
from typing import TypeVar as _TypeVar

from . import _compat, _native
from ._loop import EventLoop
from ._monitor import LoopStats
from ._pool import BrokenPoolError, Pool, RemoteError, RemoteTraceback, WorkerLostError

__version__ = _native.__version__
__all__ = [
    "EventLoop",
    "EventLoopPolicy",
    "LoopStats",
    "new_event_loop",
    "run",
    "install",
    "Pool",
    "WorkerLostError",
    "BrokenPoolError",
    "RemoteTraceback",
    "RemoteError",
]

_T = _TypeVar("_T")


def new_event_loop() -> EventLoop:
    """A new ferroloop event loop."""
    return EventLoop()


class EventLoopPolicy(_asyncio.DefaultEventLoopPolicy):
    """An event loop policy whose loops are ferroloop's (asyncio's default Unix policy
    otherwise, child watchers included)."""

    _loop_factory = EventLoop

    def __repr__(self) -> str:
        return "<ferroloop.EventLoopPolicy>"


def install() -> None:
    """Make ferroloop the loop of ``asyncio.run`` and ``asyncio.new_event_loop``."""
    _asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main: _Coroutine[_Any, _Any, _T], *, debug: bool | None = None) -> _T:
    """Run coroutine ``main`` on a new ferroloop loop and return its result (``asyncio.run``)."""
    if _compat.get_running_loop() is not None:
        raise RuntimeError("ferroloop.run() cannot be called from a running event loop")
    with _asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
