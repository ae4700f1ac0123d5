"""What broke on CPython 3.13, and the loop API that differs between CPython versions.

Each test runs on asyncio, ferroloop and uvloop (conftest.py) and asserts the running
interpreter's own asyncio semantics on every loop:

* streams over TCP and Unix sockets up to ``server.wait_closed()`` (3.13 changed
  ``Server._attach`` and a ferroloop server hung there without an error);
* task factories and task names (3.13.0 names an unnamed factory task "None");
* ``eager_start`` and the eager task factory (3.12+);
* ``shutdown_default_executor(timeout=)`` (3.12+);
* ``Server.wait_closed`` (3.12.1+ waits for the connections), ``close_clients`` and
  ``abort_clients`` (3.13's API, ferroloop's on every version);
* 3.13's ``create_unix_server(cleanup_socket=)``, ``create_server(keep_alive=)`` and the
  ``_run_forever_setup``/``_run_once``/``_run_forever_cleanup`` split.

A ``skipif`` on the version only marks an API the running interpreter does not have.
"""

import asyncio
import contextvars
import inspect
import os
import re
import socket
import sys
import threading
import time

import pytest

import ferroloop
from loop_helpers import PY313, run, xfail_on

PY312 = sys.version_info >= (3, 12)
NEEDS_312 = pytest.mark.skipif(not PY312, reason="the API is new in Python 3.12")
NEEDS_313 = pytest.mark.skipif(not PY313, reason="the API is new in Python 3.13")

TIMEOUT = 2.0  # each step that could hang fails after this many seconds


async def step(aw, timeout=TIMEOUT):
    """``await aw`` that fails fast instead of hanging."""
    return await asyncio.wait_for(aw, timeout)


# -- streams: start_server + open_connection on one loop, up to wait_closed -----------------


async def _echo_one_line(server, open_connection):
    """Send a line to ``server``, read it back, close the client, close the server."""
    reader, writer = await step(open_connection())
    writer.write(b"hello 3.13\n")
    line = await step(reader.readline())
    writer.close()
    await step(writer.wait_closed())
    server.close()
    await step(server.wait_closed())
    return line


def _line_echo_handler(handled):
    async def handle(reader, writer):
        try:
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        finally:
            handled.set_result(None)

    return handle


def test_streams_tcp_echo_then_wait_closed(loop):
    async def main():
        handled = loop.create_future()
        server = await step(asyncio.start_server(_line_echo_handler(handled), "127.0.0.1", 0))
        host, port = server.sockets[0].getsockname()[:2]
        line = await _echo_one_line(server, lambda: asyncio.open_connection(host, port))
        await step(handled)
        return line, server.is_serving()

    assert run(loop, main()) == (b"hello 3.13\n", False)


def test_streams_unix_echo_then_wait_closed(loop, tmp_path):
    path = str(tmp_path / "echo.sock")

    async def main():
        handled = loop.create_future()
        server = await step(asyncio.start_unix_server(_line_echo_handler(handled), path))
        line = await _echo_one_line(server, lambda: asyncio.open_unix_connection(path))
        await step(handled)
        return line, server.is_serving()

    assert run(loop, main()) == (b"hello 3.13\n", False)


# -- task factories and task names ----------------------------------------------------------


def _recording_factory(calls):
    """A task factory recording the keywords it is called with; it builds an asyncio Task
    from the ones this version's Task accepts."""

    def factory(loop, coro, **kwargs):
        calls.append(kwargs)
        accepted = {k: v for k, v in kwargs.items() if k in ("name", "context")}
        return asyncio.Task(coro, loop=loop, **accepted)

    return factory


async def _noop():
    return None


def _unnamed_factory_task_names(loop):
    """The names of tasks made by ``loop.create_task(coro)`` and ``asyncio.create_task(coro)``
    with a task factory set and no name, task numbers replaced by ``<n>``."""

    async def main():
        tasks = [loop.create_task(_noop()), asyncio.create_task(_noop())]
        await asyncio.gather(*tasks)
        return [t.get_name() for t in tasks]

    loop.set_task_factory(lambda lp, coro, **kwargs: asyncio.Task(coro, loop=lp))
    try:
        names = loop.run_until_complete(main())
    finally:
        loop.set_task_factory(None)
    return [re.sub(r"^Task-\d+$", "Task-<n>", name) for name in names]


def _asyncio_unnamed_factory_task_names():
    lp = asyncio.new_event_loop()
    try:
        return _unnamed_factory_task_names(lp)
    finally:
        lp.close()
        asyncio.set_event_loop(None)


# 3.13.0's create_task calls task.set_name(name) even when name is None (a CPython bug):
# the task is named "None"; 3.11 and 3.12 keep "Task-<n>"
_ASYNCIO_NAMES_UNNAMED_NONE = "None" in _asyncio_unnamed_factory_task_names()
_UVLOOP_FACTORY_KEYWORDS = (
    "uvloop differs: calls the task factory with context= on every call (and eager_start= "
    "on 3.13), so a (loop, coro) factory raises TypeError"
)


def test_task_factory_create_task_names(loop):
    calls = []
    loop.set_task_factory(_recording_factory(calls))

    async def main():
        x = loop.create_task(_noop(), name="x")
        y = asyncio.create_task(_noop(), name="y")  # inside a running task
        await step(asyncio.gather(x, y))
        return x.get_name(), y.get_name()

    assert run(loop, main()) == ("x", "y")
    # the factory is not given the name: the loop names the task the factory returns
    assert calls and all(c.get("name") is None for c in calls)


@xfail_on(
    "uvloop",
    "uvloop differs: keeps 'Task-<n>' for an unnamed factory task where 3.13.0's asyncio "
    "names it 'None'",
    condition=_ASYNCIO_NAMES_UNNAMED_NONE,
)
def test_task_factory_unnamed_task_named_as_asyncio(loop):
    expected = _asyncio_unnamed_factory_task_names()  # "None" on 3.13.0, else "Task-<n>"
    assert expected in (["None", "None"], ["Task-<n>", "Task-<n>"])
    assert _unnamed_factory_task_names(loop) == expected


def test_task_factory_gets_context_when_create_task_does(loop):
    calls = []
    var = contextvars.ContextVar("var", default="outside")
    loop.set_task_factory(_recording_factory(calls))

    async def read_var():
        return var.get()

    async def main():
        ctx = contextvars.copy_context()
        ctx.run(var.set, "inside")
        with_ctx = loop.create_task(read_var(), context=ctx)
        without = loop.create_task(read_var())
        results = await step(asyncio.gather(with_ctx, without))
        return ctx, results

    ctx, results = run(loop, main())
    assert results == ["inside", "outside"]
    # the first call got the context; the second got none (asyncio: not even context=None)
    assert calls[-2]["context"] is ctx
    assert calls[-1].get("context") is None


@xfail_on("uvloop", _UVLOOP_FACTORY_KEYWORDS)
def test_task_factory_two_argument_factory(loop):
    made = []

    def factory(lp, coro):  # the (loop, coro) signature asyncio documents
        task = asyncio.Task(coro, loop=lp)
        made.append(task)
        return task

    async def main():
        loop.set_task_factory(factory)
        coros = [_noop(), _noop()]
        try:
            a = loop.create_task(coros[0], name="a")
            b = asyncio.create_task(coros[1], name="b")
        except TypeError:
            for c in coros:
                c.close()
            raise
        await step(asyncio.gather(a, b))
        return a, b

    a, b = run(loop, main())
    assert (a.get_name(), b.get_name()) == ("a", "b")
    assert made[-2:] == [a, b]


# -- create_task with other keywords (eager_start) ----------------------------------------

# ferroloop passes keywords other than name and context on: to the task factory when one is
# set (every version), to asyncio.Task otherwise (3.12+ accepts eager_start there). asyncio's
# create_task on 3.11-3.13 takes name and context only (3.14 accepts any keyword).


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="3.14's create_task accepts **kwargs")
def test_asyncio_create_task_refuses_other_keywords():
    lp = asyncio.new_event_loop()
    try:
        coro = _noop()
        with pytest.raises(TypeError, match="eager_start"):
            lp.create_task(coro, eager_start=True)
        coro.close()
        lp.set_task_factory(lambda lp, coro, **kwargs: asyncio.Task(coro, loop=lp))
        coro = _noop()
        with pytest.raises(TypeError, match="eager_start"):
            lp.create_task(coro, eager_start=True)
        coro.close()
    finally:
        lp.close()
        asyncio.set_event_loop(None)


@NEEDS_312
def test_ferroloop_create_task_eager_start_without_factory():
    lp = ferroloop.new_event_loop()
    order = []

    async def quick():
        order.append("quick")
        return 7

    async def slow():
        order.append("slow: first step")
        await asyncio.sleep(0)
        order.append("slow: second step")
        return 8

    async def main():
        q = lp.create_task(quick(), eager_start=True)
        assert q.done() and q.result() == 7  # ran to the end inside create_task
        s = lp.create_task(slow(), eager_start=True, name="eager")
        assert not s.done() and order == ["quick", "slow: first step"]
        assert s.get_name() == "eager"
        lazy = lp.create_task(quick(), eager_start=False)
        assert not lazy.done()
        return await step(asyncio.gather(q, s, lazy))

    try:
        assert lp.run_until_complete(main()) == [7, 8, 7]
        assert order == ["quick", "slow: first step", "slow: second step", "quick"]
    finally:
        lp.close()
        asyncio.set_event_loop(None)


def test_ferroloop_create_task_other_keywords_reach_factory():
    lp = ferroloop.new_event_loop()
    calls = []
    lp.set_task_factory(_recording_factory(calls))

    async def main():
        a = lp.create_task(_noop(), eager_start=True)
        b = lp.create_task(_noop(), eager_start=False, name="b")
        c = lp.create_task(_noop())  # no extra keyword: asyncio's own factory call
        await step(asyncio.gather(a, b, c))
        return b.get_name()

    try:
        assert lp.run_until_complete(main()) == "b"
        assert calls[-3:] == [{"eager_start": True}, {"eager_start": False, "name": "b"}, {}]
    finally:
        lp.close()
        asyncio.set_event_loop(None)


# -- the eager task factory (3.12+) ----------------------------------------------------------

_UVLOOP_EAGER = (
    "uvloop differs: on 3.13 it calls the task factory with eager_start=, which "
    "asyncio.eager_task_factory does not accept (TypeError)"
)


def create_task(loop, coro, **kwargs):
    """``loop.create_task(coro, **kwargs)``, closing the coroutine if that raises (uvloop
    on 3.13: a TypeError), so that the failure is the test's and not a later warning."""
    try:
        return loop.create_task(coro, **kwargs)
    except BaseException:
        coro.close()
        raise


@NEEDS_312
@xfail_on("uvloop", _UVLOOP_EAGER, condition=PY313)
def test_eager_task_factory_first_step_at_creation(loop):
    order = []

    async def quick():
        order.append("quick")
        return 1

    async def slow():
        order.append("slow: first step")
        await asyncio.sleep(0)
        order.append("slow: second step")
        return 2

    async def main():
        loop.set_task_factory(asyncio.eager_task_factory)
        q = create_task(loop, quick(), name="q")
        assert q.done() and q.result() == 1 and q.get_name() == "q"
        s = create_task(loop, slow())
        assert not s.done()
        assert order == ["quick", "slow: first step"]
        assert await step(s) == 2
        return order

    assert run(loop, main()) == ["quick", "slow: first step", "slow: second step"]


@NEEDS_312
@xfail_on("uvloop", _UVLOOP_EAGER, condition=PY313)
def test_create_eager_task_factory_custom_constructor(loop):
    class MyTask(asyncio.Task):
        pass

    async def quick():
        return "done"

    async def main():
        loop.set_task_factory(asyncio.create_eager_task_factory(MyTask))
        t = create_task(loop, quick(), name="mine")
        assert type(t) is MyTask
        assert t.done() and t.result() == "done" and t.get_name() == "mine"
        u = asyncio.create_task(asyncio.sleep(0, "later"))
        assert type(u) is MyTask and not u.done()
        return await step(u)

    assert run(loop, main()) == "later"


@NEEDS_312
@xfail_on("uvloop", _UVLOOP_EAGER, condition=PY313)
def test_eager_task_factory_create_task_from_callback(loop):
    tasks = []
    errors = []
    seen = []

    async def quick():
        seen.append(asyncio.current_task())
        return 3

    def callback():
        try:
            t = create_task(loop, quick())
            tasks.append(t)
            seen.append(("done at creation", t.done()))
            seen.append(("current task after", asyncio.current_task()))
        except BaseException as exc:  # reported from main(), not the exception handler
            errors.append(exc)

    async def main():
        loop.set_task_factory(asyncio.eager_task_factory)
        done = loop.create_future()
        loop.call_soon(callback)
        loop.call_soon(done.set_result, None)
        await step(done)
        if errors:
            raise errors[0]
        return await step(tasks[0])

    assert run(loop, main()) == 3
    assert seen == [tasks[0], ("done at creation", True), ("current task after", None)]


@NEEDS_312
@xfail_on("uvloop", _UVLOOP_EAGER, condition=PY313)
def test_eager_task_current_task(loop):
    async def who(pause):
        me = asyncio.current_task()
        if pause:
            await asyncio.sleep(0)
        assert asyncio.current_task() is me
        return me

    async def main():
        outer = asyncio.current_task()
        loop.set_task_factory(asyncio.eager_task_factory)
        t = create_task(loop, who(False))
        assert t.done() and t.result() is t
        assert asyncio.current_task() is outer  # restored after the eager step
        u = create_task(loop, who(True))
        assert asyncio.current_task() is outer
        assert await step(u) is u
        return True

    assert run(loop, main()) is True


@NEEDS_312
@xfail_on("uvloop", _UVLOOP_EAGER, condition=PY313)
def test_eager_task_factory_gather(loop):
    async def job(i):
        if i % 2:
            await asyncio.sleep(0.001 * i)
        return i * i

    async def main():
        loop.set_task_factory(asyncio.eager_task_factory)
        tasks = [create_task(loop, job(i)) for i in range(6)]
        assert [t.done() for t in tasks] == [True, False] * 3
        from_tasks = await step(asyncio.gather(*tasks))
        from_coros = await step(asyncio.gather(*(job(i) for i in range(6))))
        return from_tasks, from_coros

    squares = [i * i for i in range(6)]
    assert run(loop, main()) == (squares, squares)


# -- shutdown_default_executor -------------------------------------------------------------


def test_shutdown_default_executor_joins_threads(loop):
    async def main():
        ident = await step(loop.run_in_executor(None, threading.get_ident))
        await step(loop.shutdown_default_executor())
        with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
            loop.run_in_executor(None, threading.get_ident)
        return ident

    assert run(loop, main()) != threading.get_ident()


# 3.13 bounds the wait for the executor with the timeout (then warns and stops waiting);
# 3.12.1 awaits the executor's full shutdown and bounds only the join of its thread after it
_TIMEOUT_BOUNDS_SHUTDOWN = "timeouts.timeout" in inspect.getsource(
    asyncio.BaseEventLoop.shutdown_default_executor
)
_EXECUTOR_WARNING = "The executor did not finishing joining its threads within 0.1 seconds."


@NEEDS_312
@xfail_on(
    "uvloop",
    "uvloop differs: shutdown_default_executor awaits the executor's full shutdown "
    "(3.12.1's semantics), so timeout= does not bound the wait",
    condition=_TIMEOUT_BOUNDS_SHUTDOWN,
)
def test_shutdown_default_executor_timeout(loop):
    release = threading.Event()
    threads_before = set(threading.enumerate())

    async def main():
        started = threading.Event()

        def blocking():
            started.set()
            release.wait(5)

        job = loop.run_in_executor(None, blocking)
        await step(loop.run_in_executor(None, started.wait, 5))  # job is on a thread
        loop.call_later(0.6, release.set)  # the job blocks 0.6 s, longer than the timeout
        t0 = time.monotonic()
        try:
            if _TIMEOUT_BOUNDS_SHUTDOWN:
                with pytest.warns(RuntimeWarning, match=re.escape(_EXECUTOR_WARNING)):
                    await step(loop.shutdown_default_executor(timeout=0.1))
            else:
                await step(loop.shutdown_default_executor(timeout=0.1))
            elapsed = time.monotonic() - t0
        finally:
            release.set()
        await step(job)
        # every thread the executor and its shutdown started ends
        deadline = time.monotonic() + TIMEOUT
        while set(threading.enumerate()) - threads_before and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return elapsed

    elapsed = run(loop, main())
    if _TIMEOUT_BOUNDS_SHUTDOWN:
        assert elapsed < 0.5
    else:
        assert elapsed >= 0.5
    assert not set(threading.enumerate()) - threads_before


# -- Server.wait_closed, close_clients, abort_clients ---------------------------------------


class ServerSide(asyncio.Protocol):
    """Server-side protocol: records its transport and the end of the connection."""

    def __init__(self, loop, registry):
        self.transport = None
        self.made = loop.create_future()
        self.lost = loop.create_future()
        registry.append(self)

    def connection_made(self, transport):
        self.transport = transport
        self.made.set_result(None)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


class ClientSide(asyncio.Protocol):
    def __init__(self, loop):
        self.data = bytearray()
        self.lost = loop.create_future()

    def data_received(self, data):
        self.data += data

    def connection_lost(self, exc):
        self.lost.set_result(exc)


async def _serve_and_connect(loop, clients):
    registry = []
    server = await step(loop.create_server(lambda: ServerSide(loop, registry), "127.0.0.1", 0))
    addr = server.sockets[0].getsockname()
    connected = []
    for _ in range(clients):
        tr, pr = await step(loop.create_connection(lambda: ClientSide(loop), *addr))
        connected.append((tr, pr))
    while len(registry) < clients:
        await asyncio.sleep(0.001)
    for p in registry:
        await step(p.made)
    return server, registry, connected


@xfail_on(
    "uvloop",
    "uvloop differs: wait_closed() after close() returns at once with connections still "
    "open (3.11's semantics on every version)",
    condition=PY312,
)
def test_server_wait_closed_waits_for_connections(loop):
    async def main():
        server, registry, [(client, client_proto)] = await _serve_and_connect(loop, 1)
        try:
            server.close()
            if PY312:  # 3.12.1+: wait_closed() waits until every connection is gone
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(server.wait_closed(), 0.2)
                client.close()
                await step(client_proto.lost)
                registry[0].transport.close()
                assert await step(registry[0].lost) is None
                await step(server.wait_closed())
            else:  # 3.11: it returns once the server is closed
                await asyncio.wait_for(server.wait_closed(), 0.2)
                assert not registry[0].lost.done()
            return server.is_serving()
        finally:
            await _close_all(server, registry, [(client, client_proto)])

    assert run(loop, main()) is False


async def _close_all(server, registry, connected):
    """Close the server and both ends of every connection; wait for them to be lost."""
    server.close()
    for tr, _ in connected:
        tr.close()
    for p in registry:
        p.transport.close()
    for p in registry:
        await step(p.lost)
    for _, pr in connected:
        await step(pr.lost)


_CLIENTS_API = "close_clients()/abort_clients() are new in Python 3.13"


@pytest.mark.parametrize("method", ["close_clients", "abort_clients"])
@xfail_on("uvloop", "uvloop differs: its Server has no close_clients()/abort_clients()")
def test_server_close_clients_abort_clients(loop, loop_name, method):
    if loop_name == "asyncio" and not hasattr(asyncio.base_events.Server, "close_clients"):
        pytest.skip(f"asyncio {sys.version.split()[0]}: {_CLIENTS_API}")

    async def main():
        server, registry, connected = await _serve_and_connect(loop, 2)
        try:
            for p in registry:
                p.transport.write(b"bye")
            server.close()
            getattr(server, method)()
            server_excs = [await step(p.lost) for p in registry]
            client_excs = [await step(pr.lost) for _, pr in connected]
            await step(server.wait_closed())
        finally:
            await _close_all(server, registry, connected)
        return server_excs, client_excs, [bytes(pr.data) for _, pr in connected]

    server_excs, client_excs, received = run(loop, main())
    assert server_excs == [None, None]
    if method == "close_clients":  # a close flushes what was written; the peer sees EOF
        assert client_excs == [None, None]
        assert received == [b"bye", b"bye"]
    else:  # an abort drops it
        for exc in client_excs:
            assert exc is None or isinstance(exc, ConnectionResetError)


# -- 3.13: create_unix_server(cleanup_socket=), create_server(keep_alive=) -----------------


@NEEDS_313
@pytest.mark.parametrize("cleanup", [True, False, "default"])
def test_create_unix_server_cleanup_socket(loop, tmp_path, cleanup):
    path = tmp_path / "server.sock"
    kwargs = {} if cleanup == "default" else {"cleanup_socket": cleanup}

    async def main():
        server = await step(loop.create_unix_server(asyncio.Protocol, str(path), **kwargs))
        assert path.is_socket()
        server.close()
        await step(server.wait_closed())
        return path.exists()

    exists = run(loop, main())
    assert exists is (cleanup is False)  # cleanup_socket defaults to True on 3.13
    if exists:
        os.unlink(path)


@NEEDS_313
def test_create_unix_server_cleanup_socket_keeps_a_replaced_file(loop, tmp_path):
    path = tmp_path / "server.sock"

    async def main():
        server = await step(loop.create_unix_server(asyncio.Protocol, str(path)))
        os.unlink(path)
        path.write_text("not the server's socket")  # a new inode at the same path
        server.close()
        await step(server.wait_closed())
        return path.read_text()

    assert run(loop, main()) == "not the server's socket"


@NEEDS_313
@pytest.mark.parametrize("keep_alive", [True, None])
@xfail_on("uvloop", "uvloop differs: create_server() has no keep_alive argument (TypeError)")
def test_create_server_keep_alive(loop, keep_alive):
    async def main():
        server = await step(
            loop.create_server(asyncio.Protocol, "127.0.0.1", 0, keep_alive=keep_alive)
        )
        try:
            return [s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) for s in server.sockets]
        finally:
            server.close()
            await step(server.wait_closed())

    values = run(loop, main())
    assert len(values) == 1
    assert bool(values[0]) is bool(keep_alive)


# -- 3.13: run_forever split into _run_forever_setup / _run_once / _run_forever_cleanup -----


@xfail_on("uvloop", "uvloop differs: no _run_forever_setup/_run_once/_run_forever_cleanup")
def test_run_forever_setup_run_once_cleanup(loop, loop_name):
    if loop_name == "asyncio" and not hasattr(asyncio.BaseEventLoop, "_run_forever_setup"):
        pytest.skip(f"asyncio {sys.version.split()[0]} has no _run_forever_setup (3.13's split)")
    seen = []
    timer_fired = []

    def callback():
        seen.append((asyncio.get_running_loop(), loop.is_running()))

    loop.call_soon(callback)
    loop.call_later(0.01, timer_fired.append, True)
    loop._run_forever_setup()
    try:
        loop._run_once()
        assert seen == [(loop, True)]
        turns = 0
        while not timer_fired:  # _run_once waits for the timer
            loop._run_once()
            turns += 1
            assert turns < 100
    finally:
        loop._run_forever_cleanup()
    assert not loop.is_running()
    assert asyncio.events._get_running_loop() is None
    with pytest.raises(RuntimeError, match="no running event loop"):
        asyncio.get_running_loop()
    # the loop runs normally afterwards
    assert loop.run_until_complete(asyncio.sleep(0, "again")) == "again"


# -- 3.12+: a transport refuses a descriptor another live transport owns ---------------------

FD_OWNED = "3.12+ asyncio refuses a descriptor a live transport owns"


@pytest.mark.skipif(not PY312, reason="the check is new in Python 3.12")
@xfail_on("uvloop", "uvloop differs: a second transport on an owned socket is accepted")
def test_second_stream_transport_on_one_socket_refused(loop):
    a, b = socket.socketpair()
    a.setblocking(False)

    async def main():
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
        try:
            with pytest.raises(RuntimeError, match="is used by transport"):
                await loop.connect_accepted_socket(asyncio.Protocol, a)
        finally:
            transport.close()
            await asyncio.sleep(0)

    try:
        run(loop, main())
    finally:
        b.close()


@pytest.mark.skipif(not PY312, reason="the check is new in Python 3.12")
@xfail_on("uvloop", "uvloop differs: a second transport on an owned socket is accepted")
def test_second_datagram_transport_on_one_socket_refused(loop):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)

    async def main():
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sock)
        try:
            with pytest.raises(RuntimeError, match="is used by transport"):
                await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sock)
        finally:
            transport.close()
            await asyncio.sleep(0)

    run(loop, main())
