"""A small program written against ferroloop's typed API (``make lint`` runs mypy --strict on it).

    python examples/typed_user.py

It runs coroutines on ferroloop in each of the four ways the package offers:
``ferroloop.run``, a loop from ``ferroloop.new_event_loop()``,
``asyncio.Runner(loop_factory=ferroloop.new_event_loop)`` and ``asyncio.run`` after
``ferroloop.install()``, and prints one line per way. ``typing.assert_type`` (a no-op at run
time) states the types a checker must infer from the package's annotations.
"""

from __future__ import annotations

import asyncio
from typing import assert_type

import ferroloop


async def fetch(name: str, delay: float) -> tuple[str, float]:
    """Stand-in for an I/O call: ``(name, seconds it took)``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.sleep(delay)
    return name, loop.time() - start


async def fetch_all(names: list[str]) -> dict[str, float]:
    results = await asyncio.gather(*(fetch(name, 0.01) for name in names))
    return dict(results)


async def running_loop() -> str:
    loop = asyncio.get_running_loop()
    return "ferroloop.EventLoop" if isinstance(loop, ferroloop.EventLoop) else repr(loop)


def with_run() -> str:
    results = ferroloop.run(fetch_all(["a", "b", "c"]))
    assert_type(results, dict[str, float])
    slowest = max(results.values())
    return f"ferroloop.run: {len(results)} fetches in parallel, slowest {slowest * 1e3:.0f} ms"


def with_new_event_loop() -> str:
    loop = ferroloop.new_event_loop()
    assert_type(loop, ferroloop.EventLoop)
    try:
        fired: list[str] = []
        timer = loop.call_later(0.01, fired.append, "timer")
        assert_type(timer.when(), float)
        name, took = loop.run_until_complete(fetch("direct", 0.02))
        assert_type(took, float)
        return (
            f"new_event_loop: run_until_complete -> {name!r} in {took * 1e3:.0f} ms, "
            f"call_later fired {fired}"
        )
    finally:
        loop.close()


def with_runner() -> str:
    with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
        first = runner.run(fetch("first", 0.0))
        assert_type(first, tuple[str, float])
        rest = runner.run(fetch_all(["second", "third"]))
        where = runner.run(running_loop())
    return f"asyncio.Runner(loop_factory=ferroloop.new_event_loop): {1 + len(rest)} runs on {where}"


def with_install() -> str:
    ferroloop.install()
    try:
        where = asyncio.run(running_loop())
    finally:
        asyncio.set_event_loop_policy(None)
    return f"ferroloop.install() then asyncio.run: on {where}"


def main() -> None:
    print(f"ferroloop {ferroloop.__version__}")
    for way in (with_run, with_new_event_loop, with_runner, with_install):
        print(way())


if __name__ == "__main__":
    main()
