"""Functions the pool tests run in worker processes (workers import them by name), and the
check that no process is left behind."""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import os
import signal
import threading
import time
from multiprocessing import forkserver, resource_tracker

state: dict[str, object] = {}
current = contextvars.ContextVar("current", default=None)


async def double(x):
    await asyncio.sleep(0.001)
    return 2 * x


async def noop(x):
    return x


def square(x):
    return x * x


async def add(a, b, *, c=0):
    await asyncio.sleep(0)
    return a + b + c


async def sleep_then(delay, value):
    await asyncio.sleep(delay)
    return value


async def pid_after(delay):
    await asyncio.sleep(delay)
    return os.getpid()


async def fail(x):
    await asyncio.sleep(0)
    raise ValueError(f"bad value {x}")


class OddError(Exception):
    """Does not unpickle: its __init__ needs two arguments."""

    def __init__(self, a, b):
        super().__init__(f"odd {a} {b}")


async def fail_odd(x):
    raise OddError(x, x + 1)


async def unpicklable_result(x):
    return threading.Lock()


async def die(how):
    await asyncio.sleep(0.01)
    if how == "exit":
        os._exit(3)
    elif how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "segv":
        ctypes.string_at(0)
    raise AssertionError(how)


async def die_if(x, bad):
    if x == bad:
        await asyncio.sleep(0.05)
        os._exit(7)
    await asyncio.sleep(0.2)
    return x


async def wait_cancelled(path, delay):
    """Sleeps; writes 'cancelled' to ``path`` when its coroutine is cancelled."""
    with open(path + ".started", "w") as f:
        f.write(str(os.getpid()))
    try:
        await asyncio.sleep(delay)
    except asyncio.CancelledError:
        with open(path, "w") as f:
            f.write("cancelled")
        raise
    return "finished"


async def running_concurrently(delay):
    """How many calls of this function run at once in this worker (the peak)."""
    n = state.get("running", 0) + 1
    state["running"] = n
    state["peak"] = max(state.get("peak", 0), n)
    await asyncio.sleep(delay)
    state["running"] = state["running"] - 1
    return state["peak"]


def init_sync(value):
    state["init"] = value


async def init_async(value):
    await asyncio.sleep(0)
    state["init"] = ("async", value, type(asyncio.get_running_loop()).__module__)


def init_fail():
    raise RuntimeError("initializer says no")


def init_exit():
    os._exit(5)


async def get_state(key):
    return state.get(key)


async def loop_module(_):
    loop = asyncio.get_running_loop()
    return type(loop).__module__, asyncio.current_task() is not None


def wait_gone(pids, timeout=5.0):
    """Wait until none of ``pids`` exists (reaped); returns those still there."""
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if _exists(p)]
        if left:
            time.sleep(0.02)
    return left


def wait_exited(pids, timeout=5.0):
    """Wait until each of ``pids`` has exited (a zombie counts: once its parent is gone
    too, reaping it is init's job); returns those still running."""
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if _running(p)]
        if left:
            time.sleep(0.01)
    return left


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _exists(pid):
    """Whether ``pid`` exists, zombies included (a zombie is a process nobody reaped)."""
    return os.path.exists(f"/proc/{pid}")


def descendants():
    """This process's descendants, except multiprocessing's own helpers (the forkserver and
    the resource tracker: shared by every pool and pool of the process, long-lived)."""
    helpers = {
        getattr(forkserver._forkserver, "_forkserver_pid", None),
        getattr(resource_tracker._resource_tracker, "_pid", None),
    }
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().split(") ", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        parents[int(entry)] = ppid
    me = os.getpid()
    found = set()
    frontier = {me}
    while frontier:
        nxt = {p for p, pp in parents.items() if pp in frontier and p not in found}
        found |= nxt
        frontier = nxt
    return found - helpers


async def wait_cancelled_long(path):
    return await wait_cancelled(path, 30)


async def fail_or_wait(path):
    """Raises at once for None; else waits (30 s) for its cancellation."""
    if path is None:
        await asyncio.sleep(0.2)
        raise ValueError("failed first")
    return await wait_cancelled(path, 30)


async def big(n):
    """A result of n bytes."""
    await asyncio.sleep(0)
    return b"x" * n


async def size_of(data):
    return len(data)
