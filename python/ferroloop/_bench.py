"""Shared measuring code for ``python -m ferroloop bench``, ``examples/demo.py`` and
``benches/bench_core.py``.

Everything here is plain asyncio: a "loop" is a name plus a factory that returns a new
event loop, and every measurement runs in a fresh loop through
``asyncio.Runner(loop_factory=...)``. Times are taken inside the coroutine with
``time.perf_counter`` so loop creation and teardown are not counted.
"""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, TextIO, TypeVar

_T = TypeVar("_T")

__all__ = [
    "LoopSpec",
    "available_loops",
    "versions_line",
    "sleep0",
    "floor_sleep0",
    "run_timed",
    "rotated",
    "ratio_stats",
    "fmt_time",
    "fmt_ratio",
    "compare_sleep0",
    "ProgressLine",
    "sleep0_table",
]


class LoopSpec:
    """A loop under test: ``name``, ``factory`` (returns a new loop) and ``version``."""

    def __init__(
        self, name: str, factory: Callable[[], asyncio.AbstractEventLoop], version: str
    ) -> None:
        self.name = name
        self.factory = factory
        self.version = version

    def __repr__(self) -> str:
        return f"<LoopSpec {self.name} {self.version}>"


def _asyncio_factory() -> asyncio.AbstractEventLoop:
    # Not ``asyncio.new_event_loop``: after ``ferroloop.install()`` (``python -m ferroloop
    # run``) that would return a ferroloop loop.
    return asyncio.SelectorEventLoop()


def _dist_version(name: str) -> str:
    """The installed distribution's version (uvloop exports ``__version__`` only at
    runtime, not in its type stubs; the distribution metadata is the public record)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def available_loops(
    names: Iterable[str] = ("asyncio", "uvloop", "rloop", "ferroloop"),
) -> tuple[list[LoopSpec], list[tuple[str, str]]]:
    """``(specs, skipped)``: the installed loops among ``names`` (in that order) and a
    list of ``(name, reason)`` for those that could not be imported."""
    specs: list[LoopSpec] = []
    skipped: list[tuple[str, str]] = []
    for name in names:
        try:
            if name == "asyncio":
                specs.append(LoopSpec(name, _asyncio_factory, platform.python_version()))
            elif name == "uvloop":
                import uvloop

                specs.append(LoopSpec(name, uvloop.new_event_loop, _dist_version(name)))
            elif name == "rloop":
                import rloop

                specs.append(LoopSpec(name, rloop.new_event_loop, _dist_version(name)))
            elif name == "ferroloop":
                import ferroloop

                specs.append(LoopSpec(name, ferroloop.new_event_loop, ferroloop.__version__))
            else:
                skipped.append((name, "unknown loop"))
        except ImportError as exc:
            skipped.append((name, f"not installed ({exc})"))
    return specs, skipped


def versions_line(specs: Iterable[LoopSpec]) -> str:
    """One line naming the interpreter and every loop's version."""
    impl = f"{platform.python_implementation()} {platform.python_version()}"
    loops = ", ".join(f"{s.name} {s.version}" for s in specs)
    return f"python: {impl} ({sys.executable}); loops: {loops}"


# -- the sleep(0) case --------------------------------------------------------------------


async def sleep0(n: int) -> float:
    """``await asyncio.sleep(0)`` ``n`` times in one task; returns the seconds it took."""
    sleep = asyncio.sleep
    t0 = time.perf_counter()
    for _ in range(n):
        await sleep(0)
    return time.perf_counter() - t0


def floor_sleep0(n: int) -> float:
    """The same coroutine driven by bare ``coro.send(None)``, no loop at all: the cost of
    the coroutine machinery itself (``asyncio.sleep(0)`` yields a bare ``None``)."""
    coro = sleep0(n)
    send = coro.send
    try:
        while True:
            send(None)
    except StopIteration as stop:
        seconds: float = stop.value
        return seconds


def run_timed(
    factory: Callable[[], asyncio.AbstractEventLoop],
    coro_fn: Callable[..., Coroutine[Any, Any, _T]],
    *args: Any,
) -> _T:
    """Run ``coro_fn(*args)`` to completion in a fresh loop from ``factory``; return its
    result (a time in seconds, for the measuring coroutines here)."""
    gc.collect()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro_fn(*args))


def rotated(items: Iterable[_T], k: int) -> list[_T]:
    """``items`` rotated left by ``k``: round ``k`` of a benchmark starts with a different
    loop, so no loop always runs first (cold) or last (warm)."""
    listed = list(items)
    if not listed:
        return listed
    k %= len(listed)
    return listed[k:] + listed[:k]


# -- statistics and formatting ------------------------------------------------------------


def ratio_stats(ratios: Iterable[float | None]) -> tuple[float, float, float] | None:
    """``(median, min, max)`` of a list of per-round ratios (None if empty)."""
    known = [r for r in ratios if r is not None]
    if not known:
        return None
    return statistics.median(known), min(known), max(known)


def fmt_time(seconds_per_op: float | None) -> str:
    """A per-operation time with a unit that keeps 3 significant digits."""
    if seconds_per_op is None:
        return "n/a"
    ns = seconds_per_op * 1e9
    if ns < 1000:
        return f"{ns:.0f} ns" if ns >= 100 else f"{ns:.1f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} us"
    return f"{ns / 1e6:.2f} ms"


def fmt_ratio(stats: tuple[float, float, float] | None) -> str:
    """``1.23x [1.10-1.31]`` from ``ratio_stats`` output."""
    if stats is None:
        return "n/a"
    med, lo, hi = stats
    if lo == hi:
        return f"{med:.2f}x"
    return f"{med:.2f}x [{lo:.2f}-{hi:.2f}]"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()
    out = [line, "  ".join("-" * w for w in widths)]
    for row in rows:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(out)


# -- the sleep(0) comparison ----------------------------------------------------------------


def compare_sleep0(
    n: int,
    rounds: int,
    specs: Sequence[LoopSpec] | None = None,
    progress: Callable[[str], object] | None = None,
) -> dict[str, list[float]]:
    """Measure ``sleep0(n)`` on every loop and the floor, ``rounds`` times, rotating the
    loop order each round. Returns ``{name: [seconds per round]}`` with a ``"floor"`` key.
    ``progress`` (optional) is called with a short string before each measurement
    (``"round 2/3: uvloop (8/15)"``): it names the one now running."""
    if specs is None:
        specs, _ = available_loops()
    results: dict[str, list[float]] = {s.name: [] for s in specs}
    results["floor"] = []
    total = rounds * (len(specs) + 1)
    step = 0
    for rnd in range(rounds):
        gc.collect()
        for spec in [None, *rotated(specs, rnd)]:  # None: the floor, first in every round
            name = "floor" if spec is None else spec.name
            step += 1
            if progress:
                progress(f"round {rnd + 1}/{rounds}: {name} ({step}/{total})")
            if spec is None:
                results[name].append(floor_sleep0(n))
            else:
                results[name].append(run_timed(spec.factory, sleep0, n))
    return results


class ProgressLine:
    """A ``progress`` callback for ``compare_sleep0``: on a terminal, one line on
    ``stream`` rewritten in place (``\\r``) and cut to the terminal's width so it never
    wraps; elsewhere (a log, a pipe) one plain line per call. ``clear()`` erases the
    rewritten line, so what is printed next starts on a clean line."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._rewrite = stream.isatty()
        self._shown = 0  # characters of the line now on the terminal
        self._t0 = time.perf_counter()

    def __call__(self, text: str) -> None:
        line = f"{text}, {time.perf_counter() - self._t0:.0f} s elapsed"
        if not self._rewrite:
            self._stream.write(line + "\n")
        else:
            line = line[: max(self._columns() - 1, 1)]
            self._stream.write("\r" + line + " " * max(self._shown - len(line), 0))
            self._shown = len(line)
        self._stream.flush()

    def _columns(self) -> int:
        try:
            columns = os.get_terminal_size(self._stream.fileno()).columns
        except (OSError, ValueError):
            columns = 0
        return columns if columns > 0 else 80  # 0: a terminal that does not say

    def clear(self) -> None:
        if self._shown:
            self._stream.write("\r" + " " * self._shown + "\r")
            self._stream.flush()
            self._shown = 0


def sleep0_table(results: dict[str, list[float]], n: int, reference: str = "ferroloop") -> str:
    """A text table of ``compare_sleep0`` results: per-step time (median of rounds), the
    overhead above the floor, and how much faster ``reference`` is (paired per round)."""
    floor = results["floor"]
    ref = results.get(reference)
    headers = ["loop", "time/step", "above floor", f"{reference} speedup"]
    rows = [["floor (coro.send)", fmt_time(statistics.median(floor) / n), "-", "-"]]
    for name, times in results.items():
        if name == "floor":
            continue
        per_step = statistics.median(times) / n
        above = statistics.median([(t - f) / n for t, f in zip(times, floor)])
        if ref is None or name == reference:
            speed = "-"
        else:
            speed = fmt_ratio(ratio_stats([t / r for t, r in zip(times, ref)]))
        rows.append([name, fmt_time(per_step), fmt_time(above), speed])
    rounds = len(floor)
    title = (
        f"await asyncio.sleep(0) x {n:,} in one task, {rounds} round(s), median"
        + (" [min-max] of paired per-round ratios" if rounds > 1 else "")
    )
    return title + "\n" + _table(headers, rows)
