"""OpenTelemetry metrics for ferroloop loops (needs ``opentelemetry-api``).

    import ferroloop.otel
    loop = ferroloop.new_event_loop()
    ferroloop.otel.instrument(loop)                  # the global MeterProvider
    ferroloop.otel.instrument(loop, meter_provider=provider, attributes={"service": "api"})

Each instrumented loop is observed when the metrics are collected (by the SDK's reader, on
its own thread): nothing runs in the loop's turn. The instruments read ``loop.stats()``:

=====================================  =================  ======  ================================
instrument                             kind               unit    from ``LoopStats``
=====================================  =================  ======  ================================
``ferroloop.loop.turns``               ObservableCounter  {turn}  ``turns``
``ferroloop.loop.callbacks``           ObservableCounter  {call}  ``callbacks``
``ferroloop.loop.io_events``           ObservableCounter  {event} ``io_events``
``ferroloop.loop.timers_fired``        ObservableCounter  {timer} ``timers_fired``
``ferroloop.loop.poll_time``           ObservableCounter  s       ``poll_time`` (idle)
``ferroloop.loop.run_time``            ObservableCounter  s       ``run_time``
``ferroloop.loop.slow_callbacks``      ObservableCounter  {call}  ``slow_callbacks``
``ferroloop.loop.timer_lag``           ObservableGauge    s       ``timer_lag``
``ferroloop.loop.longest_callback``    ObservableGauge    s       ``longest_callback`` (if timed)
=====================================  =================  ======  ================================

Every observation carries ``ferroloop.loop.id`` (``id(loop)`` in hex) and the attributes
given to ``instrument``. A loop is observed until ``uninstrument(loop)`` or until it is
garbage-collected; a closed loop still reports its final counts.
"""

from __future__ import annotations

import importlib.util
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if importlib.util.find_spec("opentelemetry") is None:
    raise ImportError(
        "ferroloop.otel needs the OpenTelemetry API: pip install 'ferroloop[otel]' "
        "(or opentelemetry-api)"
    )

from opentelemetry import metrics  # noqa: E402  (after the check above, on purpose)

from . import __version__

if TYPE_CHECKING:
    from ._loop import EventLoop
    from ._monitor import LoopStats

__all__ = ["instrument", "uninstrument"]

_Attributes = Mapping[str, str | bool | int | float]

# (name, unit, description, the value read from LoopStats: None is not reported)
_COUNTERS: list[tuple[str, str, str, Callable[[LoopStats], float | int | None]]] = [
    ("turns", "{turn}", "Turns of the event loop", lambda s: s.turns),
    ("callbacks", "{call}", "Callbacks (handles) run", lambda s: s.callbacks),
    ("io_events", "{event}", "Readiness events turned into callbacks", lambda s: s.io_events),
    ("timers_fired", "{timer}", "Timer handles that came due", lambda s: s.timers_fired),
    ("poll_time", "s", "Time the loop spent idle, in polls that could block",
     lambda s: s.poll_time),
    ("run_time", "s", "Time the loop spent running (not idle)", lambda s: s.run_time),
    ("slow_callbacks", "{call}", "Callbacks that took slow_callback_duration or more",
     lambda s: s.slow_callbacks),
]
_GAUGES: list[tuple[str, str, str, Callable[[LoopStats], float | int | None]]] = [
    ("timer_lag", "s", "How late the last due timers ran", lambda s: s.timer_lag),
    ("longest_callback", "s", "The longest timed callback", lambda s: s.longest_callback),
]


class _Observed:
    """The loops one MeterProvider observes, and the instruments registered on it."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.loops: weakref.WeakKeyDictionary[EventLoop, dict[str, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self.lock = threading.Lock()
        for name, unit, description, read in _COUNTERS:
            meter.create_observable_counter(
                f"ferroloop.loop.{name}", callbacks=[self._callback(read)], unit=unit,
                description=description,
            )
        for name, unit, description, read in _GAUGES:
            meter.create_observable_gauge(
                f"ferroloop.loop.{name}", callbacks=[self._callback(read)], unit=unit,
                description=description,
            )

    def _callback(
        self, read: Callable[[LoopStats], float | int | None]
    ) -> Callable[[metrics.CallbackOptions], Iterable[metrics.Observation]]:
        def observe(options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
            with self.lock:
                loops = list(self.loops.items())
            out = []
            for loop, attributes in loops:
                value = read(loop.stats())
                if value is not None:
                    out.append(metrics.Observation(value, attributes))
            return out

        return observe


_providers: dict[int, tuple[object, _Observed]] = {}
_providers_lock = threading.Lock()


def instrument(
    loop: EventLoop,
    *,
    meter_provider: metrics.MeterProvider | None = None,
    attributes: _Attributes | None = None,
) -> None:
    """Report ``loop``'s counters through OpenTelemetry metrics (the global MeterProvider
    unless one is given). Instrumenting a loop again replaces its attributes."""
    stats = getattr(loop, "stats", None)
    if not callable(stats):
        raise TypeError(f"a ferroloop loop was expected, got {type(loop).__name__}")
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    with _providers_lock:
        entry = _providers.get(id(provider))
        if entry is None or entry[0] is not provider:
            meter = metrics.get_meter("ferroloop", __version__, meter_provider=provider)
            entry = (provider, _Observed(meter))
            _providers[id(provider)] = entry
    observed = entry[1]
    attrs: dict[str, Any] = {"ferroloop.loop.id": f"{id(loop):#x}"}
    attrs.update(attributes or {})
    with observed.lock:
        observed.loops[loop] = attrs


def uninstrument(loop: EventLoop) -> None:
    """Stop reporting ``loop`` (on every MeterProvider it was instrumented with)."""
    with _providers_lock:
        entries = list(_providers.values())
    for _, observed in entries:
        with observed.lock:
            observed.loops.pop(loop, None)
