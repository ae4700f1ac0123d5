"""The ferroloop package: run(), install(), EventLoopPolicy, Runner, the CLI, and GC."""

import asyncio
import gc
import os
import re
import subprocess
import sys
import textwrap
import warnings
import weakref

import pytest

import ferroloop


@pytest.fixture
def restore_policy():
    policy = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(policy)
    asyncio.set_event_loop(None)


def test_run_returns_result():
    async def main(x):
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0)
        return x, type(loop)

    assert ferroloop.run(main(3)) == (3, ferroloop.EventLoop)


def test_run_propagates_exception():
    async def main():
        raise LookupError("x")

    with pytest.raises(LookupError):
        ferroloop.run(main())


def test_run_debug_flag():
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert ferroloop.run(main(), debug=True) is True
    assert ferroloop.run(main(), debug=False) is False


def test_run_closes_loop_and_cancels_tasks():
    state = {}

    async def forever():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise

    async def main():
        state["loop"] = asyncio.get_running_loop()
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)

    ferroloop.run(main())
    assert state["cancelled"] is True
    assert state["loop"].is_closed()


def test_run_from_running_loop_raises():
    async def inner():
        pass

    async def main():
        coro = inner()
        try:
            with pytest.raises(RuntimeError, match="running event loop"):
                ferroloop.run(coro)
        finally:
            coro.close()

    ferroloop.run(main())


def test_install_makes_asyncio_run_use_ferroloop(restore_policy):
    ferroloop.install()
    assert isinstance(asyncio.get_event_loop_policy(), ferroloop.EventLoopPolicy)

    async def main():
        return type(asyncio.get_running_loop())

    assert asyncio.run(main()) is ferroloop.EventLoop
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop, ferroloop.EventLoop)
    finally:
        loop.close()


def test_event_loop_policy(restore_policy):
    policy = ferroloop.EventLoopPolicy()
    assert isinstance(policy, asyncio.AbstractEventLoopPolicy)
    loop = policy.new_event_loop()
    try:
        assert isinstance(loop, ferroloop.EventLoop)
        assert isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()
    assert "ferroloop" in repr(policy)


def test_new_event_loop_type():
    loop = ferroloop.new_event_loop()
    try:
        assert isinstance(loop, ferroloop.EventLoop)
        assert isinstance(loop, asyncio.BaseEventLoop)
    finally:
        loop.close()


def test_asyncio_runner_loop_factory():
    async def main():
        return type(asyncio.get_running_loop())

    with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
        assert runner.run(main()) is ferroloop.EventLoop
        assert runner.run(main()) is ferroloop.EventLoop
        loop = runner.get_loop()
    assert loop.is_closed()


def test_version():
    """One version everywhere: the extension's (Cargo's), the distribution metadata's and
    the CLI's."""
    from importlib.metadata import version

    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", ferroloop.__version__)
    assert version("ferroloop") == ferroloop.__version__
    out = subprocess.run([sys.executable, "-m", "ferroloop", "--version"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.split()[:2] == ["ferroloop", ferroloop.__version__]


def test_cli_run_script(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, sys

            async def main():
                loop = asyncio.get_running_loop()
                print(type(loop).__module__.split('.')[0], type(loop).__name__)
                print(sys.argv[1:])
                print(__name__)

            asyncio.run(main())
            """
        )
    )
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "ferroloop", "run", str(script), "a", "--b", "c d"],
        capture_output=True,
        text=True,
        timeout=20,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == ["ferroloop EventLoop", "['a', '--b', 'c d']", "__main__"]


def test_cli_script_exit_code(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text("import sys\nsys.exit(3)\n")
    proc = subprocess.run(
        [sys.executable, "-m", "ferroloop", "run", str(script)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 3


def _collected(ref):
    for _ in range(3):
        gc.collect()
    return ref() is None


def test_gc_cycle_loop_handle_callback_after_close(loop_factory):
    loop = loop_factory()

    class Holder:
        def __init__(self, lp):
            self.loop = lp

        def cb(self):
            pass

    loop.call_soon(Holder(loop).cb)
    loop.call_later(100, Holder(loop).cb)
    ref = weakref.ref(loop)
    loop.close()
    del loop
    assert _collected(ref)


def test_gc_after_running(loop_factory):
    loop = loop_factory()

    async def main():
        lp = asyncio.get_running_loop()
        lp.call_later(100, lambda: lp)
        fut = lp.create_future()
        lp.call_soon(fut.set_result, lp)
        return await fut

    assert loop.run_until_complete(main()) is loop
    ref = weakref.ref(loop)
    loop.close()
    del loop
    assert _collected(ref)


def test_gc_unclosed_loop_with_pending_timer(loop_factory):
    loop = loop_factory()
    loop.call_later(100, lambda lp=loop: lp)  # the cycle: loop -> handle -> loop
    ref = weakref.ref(loop)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del loop
        collected = _collected(ref)
    if not collected:
        # close it for real so the descriptors do not leak into the rest of the run
        lp = ref()
        lp.close()
        del lp
        gc.collect()
    assert collected


def _recycle_a_handle(loop_factory):
    """Create, run and free one handle, so that an implementation with a handle freelist
    has one to hand out next."""
    lp = loop_factory()
    h = lp.call_soon(lambda: None)
    lp.stop()
    lp.run_forever()
    del h
    lp.close()
    del lp
    gc.collect()


def test_gc_unclosed_loop_with_ready_handle(loop_factory):
    _recycle_a_handle(loop_factory)
    loop = loop_factory()
    loop.call_soon(lambda lp=loop: lp)  # the cycle: loop -> handle -> loop
    ref = weakref.ref(loop)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del loop
        collected = _collected(ref)
    if not collected:
        lp = ref()
        lp.close()
        del lp
        gc.collect()
    assert collected


def test_gc_object_keeps_its_fired_and_cancelled_timers(loop_factory):
    # `self.timer = loop.call_later(.., self.cb)`: after the timer fired or was cancelled,
    # the object and its handle form a cycle that the collector must free (ferroloop's
    # handles are not GC-tracked; they drop their callback once run or cancelled)
    class Obj:
        def __init__(self, lp, delay):
            self.timer = lp.call_later(delay, self.cb)
            self.soon = lp.call_soon(self.cb)

        def cb(self):
            pass

    loop = loop_factory()
    try:
        fired = [Obj(loop, 0) for _ in range(3)]
        cancelled = [Obj(loop, 100) for _ in range(3)]
        for o in cancelled:
            o.timer.cancel()
        refs = [weakref.ref(o) for o in fired + cancelled]
        loop.run_until_complete(asyncio.sleep(0.01))
        del fired, cancelled, o
        gc.collect()
        alive = sum(r() is not None for r in refs)
    finally:
        loop.close()
    assert alive == 0


def test_gc_object_handle_callback_cycle(loop_factory):
    # the common pattern: an object keeps the handle of its own bound-method callback
    class Obj:
        def __init__(self, lp):
            self.handle = lp.call_soon(self.cb)

        def cb(self):
            pass

    _recycle_a_handle(loop_factory)
    loop = loop_factory()
    try:
        objs = [Obj(loop) for _ in range(5)]
        refs = [weakref.ref(o) for o in objs]
        loop.stop()
        loop.run_forever()
        del objs
        gc.collect()
        alive = sum(r() is not None for r in refs)
    finally:
        loop.close()
    assert alive == 0
