"""Seeing into the loop: loop.stats(), the slow-callback report outside debug mode, the
watchdog, FERROLOOP_SLOW_CALLBACKS and the OpenTelemetry instruments (ferroloop's own API,
so these run on ferroloop only)."""

import asyncio
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import ferroloop


@pytest.fixture
def loop():
    loop = ferroloop.new_event_loop()
    # outside debug mode, also when the suite runs with PYTHONASYNCIODEBUG=1
    loop.set_debug(False)
    yield loop
    loop.close()


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == "asyncio" and r.levelno == logging.WARNING]


def test_counters_count_turns_callbacks_timers_and_io(loop):
    a, b = socket.socketpair()
    try:
        got = []

        async def main():
            for _ in range(10):
                loop.call_soon(got.append, 1)
            await asyncio.sleep(0)
            fired = loop.create_future()
            loop.call_later(0.001, fired.set_result, None)
            await fired
            readable = loop.create_future()
            loop.add_reader(a, lambda: readable.done() or readable.set_result(a.recv(1)))
            b.send(b"x")
            await readable
            loop.remove_reader(a)

        before = loop.stats()
        loop.run_until_complete(main())
        after = loop.stats()
    finally:
        a.close()
        b.close()
    assert got == [1] * 10
    assert before.turns == before.callbacks == 0
    assert after.turns > 2
    assert after.callbacks >= 10 + 3
    assert after.timers_fired >= 1
    assert after.io_events >= 1
    assert 0 <= after.timer_lag <= after.max_timer_lag
    assert after.callback_timing is False
    assert after.longest_callback is None and after.longest_callback_repr is None
    assert isinstance(after, ferroloop.LoopStats)


def test_idle_and_running_time(loop):
    async def main():
        await asyncio.sleep(0.05)       # idle: in a poll that blocks
        time.sleep(0.03)                # busy: inside a callback (the task's step)

    loop.run_until_complete(main())
    s = loop.stats()
    assert 0.04 <= s.poll_time < 0.5, s
    assert 0.025 <= s.run_time < 0.5, s
    # not running: the totals stay put, and stay readable after close
    time.sleep(0.02)
    loop.close()
    assert loop.stats().run_time == s.run_time


def test_timer_lag_shows_a_blocked_loop(loop):
    async def main():
        fired = loop.create_future()
        loop.call_later(0.01, fired.set_result, None)
        time.sleep(0.06)                # the timer is due while the loop is blocked
        await fired

    loop.run_until_complete(main())
    s = loop.stats()
    assert 0.04 <= s.timer_lag < 1.0, s
    assert s.max_timer_lag >= s.timer_lag


def test_stats_readable_from_another_thread(loop):
    seen = []

    async def main():
        t = threading.Thread(target=lambda: seen.append(loop.stats()))
        t.start()
        while t.is_alive():
            await asyncio.sleep(0.001)

    loop.run_until_complete(main())
    assert len(seen) == 1 and seen[0].turns >= 1


def test_no_report_by_default(loop, caplog):
    loop.slow_callback_duration = 0.01
    loop.call_soon(time.sleep, 0.03)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert _warnings(caplog) == []
    assert loop.stats().slow_callbacks == 0


def test_slow_callback_report_outside_debug_mode(loop, caplog):
    def blocker():
        time.sleep(0.06)

    loop.slow_callback_duration = 0.04
    loop.set_slow_callback_report(True)
    assert loop.get_debug() is False
    loop.call_soon(blocker)
    loop.call_soon(time.sleep, 0.001)      # fast: not reported
    loop.run_until_complete(asyncio.sleep(0.01))
    warnings = _warnings(caplog)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("Executing <Handle test_slow_callback_report_outside_debug_mode.<locals>.blocker()")
    took = float(warnings[0].split(" took ")[1].split()[0])
    assert 0.05 <= took < 1.0
    s = loop.stats()
    assert s.callback_timing and s.slow_callbacks == 1
    assert 0.05 <= s.longest_callback < 1.0
    assert "blocker" in s.longest_callback_repr


def test_slow_callback_duration_is_honoured(loop, caplog):
    loop.set_slow_callback_report(True)
    loop.slow_callback_duration = 0.2
    loop.call_soon(time.sleep, 0.03)
    loop.run_until_complete(asyncio.sleep(0))
    assert _warnings(caplog) == []
    loop.slow_callback_duration = 0.01
    loop.call_soon(time.sleep, 0.03)
    loop.run_until_complete(asyncio.sleep(0))
    assert len(_warnings(caplog)) == 1
    assert loop.stats().slow_callbacks == 1


def test_a_slow_task_step_names_the_task(loop, caplog):
    async def crunch():
        time.sleep(0.03)

    loop.slow_callback_duration = 0.01
    loop.set_slow_callback_report(True)
    loop.run_until_complete(crunch())
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "crunch()" in warnings[0] and "Task" in warnings[0], warnings


def test_report_off_again(loop, caplog):
    loop.slow_callback_duration = 0.01
    loop.set_slow_callback_report(True)
    loop.set_slow_callback_report(False)
    loop.call_soon(time.sleep, 0.03)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert _warnings(caplog) == []
    assert loop.stats().callback_timing is False


def test_debug_mode_reports_once(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01
    loop.set_slow_callback_report(True)
    loop.call_soon(time.sleep, 0.03)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert len(_warnings(caplog)) == 1
    s = loop.stats()
    assert s.slow_callbacks == 1 and s.longest_callback >= 0.025


def test_watchdog_captures_the_blocked_stack(loop, caplog):
    def inner_blocking_call():
        time.sleep(0.15)

    def blocker():
        inner_blocking_call()

    loop.slow_callback_duration = 0.04
    loop.set_slow_callback_report(True, watchdog=True)
    watchdog = loop._watchdog
    assert watchdog is not None and watchdog.is_alive()
    loop.call_soon(blocker)
    loop.run_until_complete(asyncio.sleep(0.01))
    warnings = _warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "the loop thread was blocked in:" in warnings[0]
    stack = warnings[0].split("blocked in:\n", 1)[1]
    assert "in blocker" in stack and "in inner_blocking_call" in stack
    # the watchdog thread ends with the loop
    loop.close()
    assert not watchdog.is_alive()


def test_watchdog_stops_when_turned_off(loop):
    loop.set_slow_callback_report(True, watchdog=True)
    watchdog = loop._watchdog
    loop.set_slow_callback_report(True)
    assert loop._watchdog is None and not watchdog.is_alive()
    assert loop.stats().callback_timing is True


def test_errors_and_interrupts_with_timing_on(loop):
    calls = []
    loop.set_exception_handler(lambda lp, ctx: calls.append(ctx["exception"]))
    loop.set_slow_callback_report(True)

    def boom():
        raise ValueError("boom")

    loop.call_soon(boom)
    loop.run_until_complete(asyncio.sleep(0))
    assert [type(e) for e in calls] == [ValueError]

    def interrupt():
        raise KeyboardInterrupt

    loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert loop._current_callback() is None


def test_environment_turns_the_report_on():
    code = textwrap.dedent("""
        import asyncio, logging, time, ferroloop
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        async def main():
            loop = asyncio.get_running_loop()
            loop.slow_callback_duration = 0.02
            loop.call_soon(time.sleep, 0.05)
            await asyncio.sleep(0.01)
            print("timing", loop.stats().callback_timing, loop._watchdog is not None)
        ferroloop.run(main())
    """)
    for value, watchdog in (("1", "False"), ("watchdog", "True")):
        env = dict(os.environ, FERROLOOP_SLOW_CALLBACKS=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"timing True {watchdog}"
        # (3.13 shows the arguments only in debug mode)
        assert "Executing <Handle sleep(" in out.stderr and " took 0.0" in out.stderr


def test_opentelemetry_instruments(loop):
    # opentelemetry-api and -sdk are test dependencies (scripts/requirements-dev.txt)
    from opentelemetry.sdk import metrics as sdk_metrics
    from opentelemetry.sdk.metrics import export

    import ferroloop.otel

    reader = export.InMemoryMetricReader()
    provider = sdk_metrics.MeterProvider(metric_readers=[reader])
    loop.set_slow_callback_report(True)
    ferroloop.otel.instrument(loop, meter_provider=provider, attributes={"service": "test"})
    loop.run_until_complete(asyncio.sleep(0.01))

    def collect():
        points = {}
        data = reader.get_metrics_data()
        for rm in data.resource_metrics if data is not None else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for p in metric.data.data_points:
                        points[metric.name] = (p.value, dict(p.attributes), metric.unit)
        return points

    points = collect()
    s = loop.stats()
    assert points["ferroloop.loop.turns"][0] == s.turns
    assert points["ferroloop.loop.callbacks"][0] == s.callbacks
    assert points["ferroloop.loop.poll_time"][2] == "s"
    assert "ferroloop.loop.longest_callback" in points
    assert points["ferroloop.loop.turns"][1] == {
        "ferroloop.loop.id": f"{id(loop):#x}", "service": "test"}
    ferroloop.otel.uninstrument(loop)
    assert "ferroloop.loop.turns" not in collect()
    other = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError, match="a ferroloop loop was expected"):
            ferroloop.otel.instrument(other, meter_provider=provider)
    finally:
        other.close()


def test_otel_without_opentelemetry_says_what_to_install():
    code = textwrap.dedent("""
        import importlib.util
        find_spec = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *a: None if name == "opentelemetry" else find_spec(name, *a)
        try:
            import ferroloop.otel
        except ImportError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'ferroloop[otel]'" in out.stdout
