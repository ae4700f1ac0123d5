"""Fixtures shared by the suite: every loop test runs on asyncio, ferroloop and uvloop.

* ``loop_factory``: parametrized over the loop implementations (ids: asyncio, ferroloop,
  uvloop when importable). Its value is a zero-argument callable returning a new loop.
* ``loop``: a new loop from ``loop_factory`` with an exception handler that records its
  calls. At teardown the test FAILS if the handler was called and the test did not ask
  for the calls with the ``handler_calls`` fixture; the loop is then closed and the
  descriptors open before the test are compared with those open after it.
* ``@pytest.mark.xfail_on(name, reason=...)``: a strict xfail applied only to the
  ``name`` parametrization (``loop_helpers.xfail_on`` builds the marker). Reasons start with
  "ferroloop bug:", "ferroloop-specific:" or "uvloop differs:".
"""

import asyncio
import gc
import os
import socket
import threading

import pytest

import ferroloop

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional
    uvloop = None

LOOP_FACTORIES = {
    "asyncio": asyncio.new_event_loop,
    "ferroloop": ferroloop.new_event_loop,
}
if uvloop is not None:
    LOOP_FACTORIES["uvloop"] = uvloop.new_event_loop

DEBUG_ENV = bool(os.environ.get("PYTHONASYNCIODEBUG"))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "xfail_on(name, reason): strict xfail for one loop implementation only"
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or "loop_factory" not in callspec.params:
            continue
        name = callspec.params["loop_factory"]
        for mark in item.iter_markers("xfail_on"):
            target = mark.args[0]
            targets = (target,) if isinstance(target, str) else tuple(target)
            if name in targets and mark.kwargs.get("condition", True):
                item.add_marker(
                    pytest.mark.xfail(strict=True, reason=mark.kwargs["reason"])
                )


@pytest.fixture(scope="session", autouse=True)
def _warm_up_loops():
    """Create and close one loop of each kind once: libraries that open process-wide
    descriptors on first use (uvloop's libuv) must not look like a test's leak."""
    for factory in LOOP_FACTORIES.values():
        lp = factory()
        lp.run_until_complete(asyncio.sleep(0))
        lp.close()
    asyncio.set_event_loop(None)


@pytest.fixture
def no_process_left():
    """Fails a test that leaves a process of its own behind (the pool tests use it)."""
    import pool_helpers as h

    yield
    left = h.descendants()
    if left:
        left = set(h.wait_gone(left, timeout=3.0))
    assert not left, f"processes left behind: {left}"


@pytest.fixture(params=list(LOOP_FACTORIES))
def loop_factory(request):
    """A callable creating a new event loop of one implementation."""
    return LOOP_FACTORIES[request.param]


@pytest.fixture
def loop_name(loop_factory, request):
    return request.node.callspec.params["loop_factory"]


def _open_fds():
    try:
        return set(os.listdir("/proc/self/fd"))
    except OSError:  # pragma: no cover - not Linux
        return set()


class HandlerRecorder:
    def __init__(self):
        self.calls = []
        self.expected = False

    def __call__(self, loop, context):
        self.calls.append(context)


@pytest.fixture
def loop(loop_factory):
    """A new loop with a recording exception handler; fails on unexpected handler calls."""
    fds_before = _open_fds()
    recorder = HandlerRecorder()
    lp = loop_factory()
    lp._test_recorder = recorder
    lp.set_exception_handler(recorder)
    yield lp
    try:
        if not lp.is_closed():
            if lp.is_running():  # pragma: no cover - a test bug
                pytest.fail("the loop is still running at teardown")
            lp.close()
    finally:
        asyncio.set_event_loop(None)
    assert asyncio.events._get_running_loop() is None, "a running loop was left set"
    if recorder.calls and not recorder.expected:
        pytest.fail(
            "the loop's exception handler was called unexpectedly: "
            + "; ".join(repr(c.get("message")) + " " + repr(c.get("exception")) for c in recorder.calls)
        )
    del lp
    leaked = _open_fds() - fds_before
    if leaked:  # maybe only garbage not yet collected: collect, then look again
        gc.collect()
        leaked = _open_fds() - fds_before
    # descriptors opened by the test and still open now (a closed-and-reused number is not
    # a leak: compare what the numbers point at)
    real = []
    for fd in leaked:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor
        real.append((fd, target))
    assert not real, f"descriptors leaked: {real}"


@pytest.fixture
def handler_calls(loop):
    """The contexts passed to the loop's exception handler; the test expects calls."""
    loop._test_recorder.expected = True
    return loop._test_recorder.calls


@pytest.fixture
def debug_loop(loop):
    """The ``loop`` in debug mode."""
    loop.set_debug(True)
    return loop


def pytest_report_header(config):
    return "loops: " + ", ".join(LOOP_FACTORIES) + (" (PYTHONASYNCIODEBUG)" if DEBUG_ENV else "")


@pytest.fixture
def other_thread():
    """Start functions on helper threads; join them at teardown."""
    threads = []

    def start(fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        threads.append(t)
        t.start()
        return t

    yield start
    for t in threads:
        t.join(5)
        assert not t.is_alive(), "a helper thread did not finish"


@pytest.fixture
def pair():
    """A connected non-blocking socket pair, closed after the test."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()
