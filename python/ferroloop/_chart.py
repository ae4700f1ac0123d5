"""``python -m ferroloop bench --chart FILE``: the sleep(0) comparison as a picture.

One horizontal bar per loop, the median time per ``await asyncio.sleep(0)`` over the rounds,
with a min-max whisker for the spread and a dot for every round; the floor (the same
coroutine driven by bare ``coro.send(None)``, no loop) is the first bar and a dashed line
through the others, so the part of each bar that is the loop's own cost reads at a glance.

matplotlib is an optional dependency (``pip install 'ferroloop[chart]'``): this module is
imported only when ``--chart`` is given, and importing it is how the CLI checks that
matplotlib is there before the benchmark runs. The figure is drawn on its own Agg canvas,
never through pyplot: no display, no global backend switch, no figure left open.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
from collections.abc import Mapping, Sequence

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ._bench import LoopSpec, fmt_time

__all__ = ["FORMATS", "sleep0_chart"]

#: file suffixes ``sleep0_chart`` writes, and the format each one selects
FORMATS = {".png": "png", ".svg": "svg"}

_FLOOR_LABEL = "floor\n(coro.send)"
_HIGHLIGHT = "ferroloop"
_COLOURS = {"floor": "#d5d9de", _HIGHLIGHT: "#c4501b"}  # others: _OTHER
_OTHER = "#7d8b99"
_INK = "#24292f"
_MUTED = "#57606a"


def _unit(max_ns: float) -> tuple[str, float]:
    """The axis unit for times up to ``max_ns``: its label and its size in ns."""
    if max_ns < 10_000:
        return "ns", 1.0
    if max_ns < 10_000_000:
        return "µs", 1e3
    return "ms", 1e6


def _label(seconds: float) -> str:
    return fmt_time(seconds).replace(" us", " µs")


def _versions(specs: Sequence[LoopSpec]) -> str:
    """The interpreter and every loop's version, one line."""
    impl = f"{platform.python_implementation()} {platform.python_version()}"
    loops = [f"{s.name} {s.version}" for s in specs if s.name != "asyncio"]
    return "  ·  ".join([impl, *loops])


def sleep0_chart(
    results: Mapping[str, Sequence[float]],
    n: int,
    specs: Sequence[LoopSpec],
    path: str,
) -> None:
    """Draw ``compare_sleep0(n, ...)`` results (``{name: [seconds per round]}``, with a
    ``"floor"`` key) to ``path``; the suffix (``FORMATS``) picks PNG or SVG."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path!r}: a chart file name ends in .png or .svg")
    fmt = FORMATS[suffix]

    names = ["floor", *(name for name in results if name != "floor")]
    per_step = {name: [t / n for t in results[name]] for name in names}
    medians = {name: statistics.median(per_step[name]) for name in names}
    unit, scale = _unit(max(max(v) for v in per_step.values()) * 1e9)

    def to_unit(seconds: float) -> float:
        return seconds * 1e9 / scale

    rounds = len(results["floor"])
    with matplotlib.rc_context({
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial", "sans-serif"],
        "font.size": 11,
        # SVG: text stays text (small, selectable; the viewer's sans-serif draws it), and no
        # random ids or timestamp: a redrawn chart differs only where its numbers (and date) do
        "svg.fonttype": "none",
        "svg.hashsalt": "ferroloop",
    }):
        fig = Figure(figsize=(8.0, 1.75 + 0.52 * len(names)), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()

        ys = list(range(len(names)))
        colours = [_COLOURS.get(name, _OTHER) for name in names]
        ax.barh(ys, [to_unit(medians[name]) for name in names], height=0.62, color=colours,
                zorder=2)
        right = 0.0
        for y, name in zip(ys, names):
            values = [to_unit(v) for v in per_step[name]]
            med, lo, hi = to_unit(medians[name]), min(values), max(values)
            if rounds > 1:
                ax.errorbar([med], [y], xerr=[[med - lo], [hi - med]], fmt="none",
                            ecolor=_INK, elinewidth=1.2, capsize=4, zorder=3)
                ax.scatter(values, [y] * len(values), s=11, color=_INK, alpha=0.55,
                           linewidths=0, zorder=4)
            bold = name == _HIGHLIGHT
            value = ax.annotate(_label(medians[name]), (hi, y), xytext=(7, 0),
                                textcoords="offset points", va="center", ha="left",
                                fontsize=10.5, color=_INK,
                                fontweight="bold" if bold else "normal")
            if rounds > 1 and hi > lo:
                spread_text = f"{_label(min(per_step[name]))} – {_label(max(per_step[name]))}"
                ax.annotate(spread_text, (1, 0.5), xycoords=value, xytext=(7, 0),
                            textcoords="offset points", va="center", ha="left",
                            fontsize=9, color=_MUTED)
            right = max(right, hi)

        ax.axvline(to_unit(medians["floor"]), color=_MUTED, linestyle=(0, (4, 3)), linewidth=1,
                   zorder=1)

        ax.set_yticks(ys, [_FLOOR_LABEL if name == "floor" else name for name in names])
        for tick, name in zip(ax.get_yticklabels(), names):
            if name == _HIGHLIGHT:
                tick.set_fontweight("bold")
            elif name == "floor":
                tick.set_color(_MUTED)
                tick.set_fontsize(9.5)
        ax.invert_yaxis()
        # room on the right for the value labels of the longest bar
        ax.set_xlim(0, right * 1.45)
        ax.set_xlabel(f"time per step ({unit}), lower is better", color=_MUTED)
        ax.grid(axis="x", color="#e6e8eb", linewidth=0.8, zorder=0)
        ax.set_axisbelow(True)
        ax.tick_params(axis="y", length=0)
        ax.tick_params(axis="x", colors=_MUTED)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.spines["bottom"].set_color("#b9c0c8")

        spread = f"median of {rounds} rounds, whisker min–max, a dot per round" \
            if rounds > 1 else "1 round"
        ax.set_title(
            f"{_versions(specs)}\n{n:,} steps per measurement; {spread}",
            fontsize=9.5, color=_MUTED, loc="left",
        )
        fig.suptitle("await asyncio.sleep(0): time per step", x=0.01, ha="left",
                     fontsize=14, fontweight="bold", color=_INK)
        machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
        fig.supxlabel(f"python -m ferroloop bench · {datetime.date.today()} · {machine}",
                      x=0.99, ha="right", fontsize=8, color="#8c959f")

        metadata: dict[str, str | None] = {"Date": None} if fmt == "svg" else {}
        fig.savefig(path, format=fmt, dpi=150, metadata=metadata, facecolor="white")
