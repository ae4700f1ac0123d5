"""Subprocesses (``asyncio.create_subprocess_exec`` / ``create_subprocess_shell``, i.e.
``loop.subprocess_exec`` / ``subprocess_shell``) with CPython 3.11 semantics.

Children are small shell commands (``sh``, coreutils) or, where the test needs a signal
handler or an inherited descriptor, ``sys.executable -c``. Every process a test starts is
killed, waited for and has its transport closed at teardown, even when the test fails.
"""

import asyncio
import glob
import os
import resource
import signal
import subprocess
import sys
import threading

import pytest

from loop_helpers import run, xfail_on

PIPE = asyncio.subprocess.PIPE
STDOUT = asyncio.subprocess.STDOUT
DEVNULL = asyncio.subprocess.DEVNULL
PY = sys.executable


class Procs:
    """The processes of one test; all killed, reaped and closed at teardown."""

    def __init__(self, loop):
        self.loop = loop
        self.procs = []

    async def exec(self, *args, **kwargs):
        proc = await asyncio.create_subprocess_exec(*args, **kwargs)
        self.procs.append(proc)
        return proc

    async def shell(self, cmd, **kwargs):
        proc = await asyncio.create_subprocess_shell(cmd, **kwargs)
        self.procs.append(proc)
        return proc

    def close_all(self):
        live = [p for p in self.procs if p.returncode is None]
        for p in live:
            try:
                p.kill()
            except ProcessLookupError:
                pass
        usable = not self.loop.is_closed() and not self.loop.is_running()

        async def reap():
            await asyncio.gather(*(p.wait() for p in live))

        # close the pipes first: wait() also waits for them, and a grandchild (the ``tr``
        # of ``sh -c``) may hold them open after its parent was killed
        for p in self.procs:
            p._transport.close()
        if live and usable:
            self.loop.run_until_complete(asyncio.wait_for(reap(), 5))
        if self.procs and usable:
            self.loop.run_until_complete(asyncio.sleep(0.01))


@pytest.fixture
def procs(loop):
    p = Procs(loop)
    yield p
    p.close_all()


def child_pids():
    """The pids of this process's children (of all its threads), zombies included."""
    pids = set()
    for path in glob.glob("/proc/self/task/*/children"):
        try:
            with open(path) as f:
                pids.update(int(pid) for pid in f.read().split())
        except OSError:  # the thread exited meanwhile
            pass
    return pids


def zombies():
    found = []
    for pid in child_pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            found.append(pid)
    return found


# -- pipes and communicate() ------------------------------------------------------------


def test_communicate_with_stdin_stdout_stderr_pipes(loop, procs):
    async def main():
        p = await procs.exec(
            "sh", "-c", "tr a-z A-Z; echo to-stderr >&2",
            stdin=PIPE, stdout=PIPE, stderr=PIPE,
        )
        assert isinstance(p.pid, int) and p.pid > 0
        assert p.returncode is None
        assert p.stdin is not None and p.stdout is not None and p.stderr is not None
        out, err = await p.communicate(b"hello pipes\n")
        return out, err, p.returncode

    assert run(loop, main()) == (b"HELLO PIPES\n", b"to-stderr\n", 0)


def test_communicate_large_data(loop, procs):
    payload = bytes(range(256)) * 4096  # 1 MiB: more than the pipes hold

    async def main():
        p = await procs.exec("cat", stdin=PIPE, stdout=PIPE)
        out, err = await p.communicate(payload)
        return out == payload, err, p.returncode

    assert run(loop, main(), timeout=10) == (True, None, 0)


def test_streams_readline_and_write(loop, procs):
    async def main():
        p = await procs.exec("cat", stdin=PIPE, stdout=PIPE)
        lines = []
        for word in (b"alpha", b"beta"):
            p.stdin.write(word + b"\n")
            await p.stdin.drain()
            lines.append(await p.stdout.readline())
        p.stdin.close()
        assert await p.stdout.read() == b""  # EOF once cat exits
        return lines, await p.wait()

    assert run(loop, main()) == ([b"alpha\n", b"beta\n"], 0)


# -- exit status and signals ------------------------------------------------------------


def test_returncode_exit_3(loop, procs):
    async def main():
        p = await procs.exec("sh", "-c", "exit 3")
        rc = await p.wait()
        return rc, p.returncode

    assert run(loop, main()) == (3, 3)


def test_kill_reports_minus_sigkill(loop, procs):
    async def main():
        p = await procs.exec("sleep", "30")
        p.kill()
        return await p.wait()

    assert run(loop, main()) == -signal.SIGKILL == -9


def test_terminate_reports_minus_sigterm(loop, procs):
    async def main():
        p = await procs.exec("sleep", "30")
        p.terminate()
        return await p.wait()

    assert run(loop, main()) == -signal.SIGTERM == -15


def test_send_signal_sigint_to_child_that_handles_it(loop, procs):
    child = (
        "import signal, sys, time\n"
        "def on_int(signum, frame):\n"
        "    print('got', signum, flush=True)\n"
        "    sys.exit(7)\n"
        "signal.signal(signal.SIGINT, on_int)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )

    async def main():
        p = await procs.exec(PY, "-c", child, stdout=PIPE)
        assert await p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGINT)
        out = await p.stdout.read()
        return out, await p.wait()

    assert run(loop, main()) == (f"got {int(signal.SIGINT)}\n".encode(), 7)


def test_signals_after_exit_raise_process_lookup_error(loop, procs):
    async def main():
        p = await procs.exec("true")
        assert await p.wait() == 0
        for send in (p.kill, p.terminate, lambda: p.send_signal(signal.SIGINT)):
            with pytest.raises(ProcessLookupError):
                send()
        return p.returncode

    assert run(loop, main()) == 0


# -- standard streams -------------------------------------------------------------------


def test_stderr_stdout_merges(loop, procs):
    async def main():
        p = await procs.exec(
            "sh", "-c", "echo out; echo err >&2; echo out2", stdout=PIPE, stderr=STDOUT
        )
        assert p.stderr is None
        out, err = await p.communicate()
        return out, err, p.returncode

    assert run(loop, main()) == (b"out\nerr\nout2\n", None, 0)


def test_stdout_devnull(loop, procs):
    async def main():
        p = await procs.exec("sh", "-c", "echo hidden; echo shown >&2", stdout=DEVNULL, stderr=PIPE)
        assert p.stdout is None
        out, err = await p.communicate()
        return out, err, p.returncode

    assert run(loop, main()) == (None, b"shown\n", 0)


def test_stdin_from_file_descriptor(loop, procs, tmp_path):
    path = tmp_path / "input.txt"
    path.write_bytes(b"line one\nline two\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        async def main():
            p = await procs.exec("cat", stdin=fd, stdout=PIPE)
            assert p.stdin is None
            out, _ = await p.communicate()
            return out, p.returncode

        assert run(loop, main()) == (b"line one\nline two\n", 0)
    finally:
        os.close(fd)


def test_exec_missing_program_raises_file_not_found(loop, procs):
    async def main():
        with pytest.raises(FileNotFoundError):
            await procs.exec("/nonexistent/ferroloop-no-such-program", stdout=PIPE, stderr=PIPE)
        assert procs.procs == []

    run(loop, main())


# -- shell, cwd, env, pass_fds, preexec_fn ------------------------------------------------


def test_shell_pipeline(loop, procs):
    async def main():
        p = await procs.shell("printf 'b\\na\\nc\\n' | sort | tr a-z A-Z; exit 5", stdout=PIPE)
        out, _ = await p.communicate()
        return out, p.returncode

    assert run(loop, main()) == (b"A\nB\nC\n", 5)


def test_cwd_and_env(loop, procs, tmp_path):
    async def main():
        p = await procs.exec(
            "sh", "-c", 'pwd; echo "$FERRO_VAR"; echo "${HOME-unset}"',
            stdout=PIPE, cwd=tmp_path, env={"FERRO_VAR": "value", "PATH": os.environ["PATH"]},
        )
        out, _ = await p.communicate()
        return out, p.returncode

    # env= replaces the environment (HOME is not inherited)
    expected = f"{os.path.realpath(tmp_path)}\nvalue\nunset\n".encode()
    assert run(loop, main()) == (expected, 0)


def test_pass_fds(loop, procs):
    r, w = os.pipe()
    r2, w2 = os.pipe()  # not passed: closed in the child (close_fds)
    child = (
        "import os, sys\n"
        "os.write(int(sys.argv[1]), b'via pass_fds')\n"
        "try:\n"
        "    os.fstat(int(sys.argv[2]))\n"
        "    print('inherited')\n"
        "except OSError:\n"
        "    print('closed')\n"
    )
    try:
        async def main():
            p = await procs.exec(PY, "-c", child, str(w), str(w2), stdout=PIPE, pass_fds=(w,))
            out, _ = await p.communicate()
            return out, p.returncode

        assert run(loop, main()) == (b"closed\n", 0)
        os.close(w)
        w = -1
        assert os.read(r, 100) == b"via pass_fds"
    finally:
        for fd in (r, w, r2, w2):
            if fd >= 0:
                os.close(fd)


def test_preexec_fn(loop, procs):
    child = "import os; print(os.getsid(0) == os.getpid(), os.getpgid(0) == os.getpid())"

    async def main():
        p = await procs.exec(PY, "-c", child, stdout=PIPE, preexec_fn=os.setsid)
        out, _ = await p.communicate()
        return out, p.returncode

    assert run(loop, main()) == (b"True True\n", 0)


@xfail_on(
    "uvloop",
    "uvloop differs: a spawn that failed in preexec_fn leaves the forked child unreaped "
    "(a zombie)",
)
def test_preexec_fn_raising_fails_the_spawn(loop, procs):
    def boom():
        raise RuntimeError("no")

    async def main():
        with pytest.raises(subprocess.SubprocessError, match="^Exception occurred in preexec_fn.$"):
            await procs.exec("true", stdout=PIPE, preexec_fn=boom)
        await asyncio.sleep(0.05)

    before = set(zombies())
    try:
        run(loop, main())
    finally:
        new = set(zombies()) - before
        for pid in new:  # reap them: later tests check that no zombie is left
            os.waitpid(pid, 0)
    assert not new, f"the failed spawn left zombies: {sorted(new)}"


# -- a child that is gone ---------------------------------------------------------------


@xfail_on(
    "uvloop",
    "uvloop differs: write() to the stdin of an exited child raises RuntimeError "
    "('unable to perform operation on <WriteUnixTransport closed=True ...>; the handler is "
    "closed') instead of being dropped",
)
def test_write_to_dead_child_stdin(loop, procs):
    """asyncio: write() is dropped silently, drain() raises ConnectionResetError."""

    async def main():
        p = await procs.exec("true", stdin=PIPE)
        assert await p.wait() == 0
        await asyncio.sleep(0.02)  # the stdin pipe transport has seen the closed read end
        assert p.stdin.transport.is_closing()
        p.stdin.write(b"nobody reads this")  # does not raise
        with pytest.raises(ConnectionResetError, match="^Connection lost$"):
            await p.stdin.drain()
        with pytest.raises(ConnectionResetError):
            await p.stdin.drain()  # and again

    run(loop, main())


def test_drain_raises_broken_pipe_when_child_exits_with_data_pending(loop, procs):
    async def main():
        p = await procs.exec("sh", "-c", "sleep 0.2", stdin=PIPE)  # never reads stdin
        p.stdin.write(b"x" * (1024 * 1024))  # more than the pipe holds: buffered
        with pytest.raises(BrokenPipeError):
            await p.stdin.drain()
        return await p.wait()

    assert run(loop, main()) == 0


def test_communicate_ignores_child_exiting_without_reading_stdin(loop, procs):
    async def main():
        p = await procs.exec("sh", "-c", "sleep 0.2", stdin=PIPE)  # never reads stdin
        # the child exits with most of the input pending: the BrokenPipeError is swallowed
        res = await p.communicate(b"y" * (1024 * 1024))
        return res, p.returncode

    assert run(loop, main()) == ((None, None), 0)


@xfail_on(
    "uvloop",
    "uvloop differs: communicate(input) to an exited child raises RuntimeError "
    "('unable to perform operation on <WriteUnixTransport closed=True ...>; the handler is "
    "closed') from stdin.write()",
)
def test_communicate_with_input_after_child_exited(loop, procs):
    async def main():
        p = await procs.exec("true", stdin=PIPE)
        assert await p.wait() == 0
        await asyncio.sleep(0.02)  # the stdin pipe transport has seen the closed read end
        res = await p.communicate(b"y" * 1000)  # the ConnectionResetError is swallowed
        return res, p.returncode

    assert run(loop, main()) == ((None, None), 0)


def test_wait_on_finished_process(loop, procs):
    async def main():
        p = await procs.exec("true")
        assert await p.wait() == 0
        assert await p.wait() == 0  # again: at once, the same code
        # a process that exited before anyone waited for it
        q = await procs.exec("sh", "-c", "exit 4")
        while q.returncode is None:
            await asyncio.sleep(0.005)
        assert await asyncio.wait_for(q.wait(), 1) == 4
        assert await q.communicate() == (None, None)
        return p.returncode, q.returncode

    assert run(loop, main()) == (0, 4)


# -- many processes ---------------------------------------------------------------------


async def _run_many(procs, n):
    async def one(i):
        p = await procs.exec("echo", str(i), stdout=PIPE)
        out, _ = await p.communicate()
        return p.pid, out, p.returncode

    results = await asyncio.gather(*(one(i) for i in range(n)))
    assert [(out, rc) for _, out, rc in results] == [(f"{i}\n".encode(), 0) for i in range(n)]
    pids = {pid for pid, _, _ in results}
    assert len(pids) == n
    return pids


def _assert_reaped(pids):
    left = pids & child_pids()
    assert not left, f"children not reaped: {sorted(left)}"
    assert zombies() == []


def test_hundred_concurrent_subprocesses_reaped(loop, procs):
    pids = run(loop, _run_many(procs, 100), timeout=20)
    _assert_reaped(pids)


if os.environ.get("FERRO_LONG") == "1":

    def test_five_hundred_concurrent_subprocesses_reaped(loop, procs):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        try:
            pids = run(loop, _run_many(procs, 500), timeout=60)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        _assert_reaped(pids)


# -- a loop in another thread -----------------------------------------------------------


def test_subprocess_on_loop_in_non_main_thread(loop, procs):
    async def main():
        assert threading.current_thread() is not threading.main_thread()
        p = await procs.exec("sh", "-c", "tr a-z A-Z; exit 3", stdin=PIPE, stdout=PIPE)
        out, _ = await p.communicate(b"threaded\n")
        k = await procs.exec("sleep", "30")
        k.kill()
        many = await _run_many(procs, 10)
        return out, p.returncode, await k.wait(), many | {p.pid, k.pid}

    result = []

    def target():
        try:
            result.append(("ok", run(loop, main(), timeout=10)))
        except BaseException as exc:  # re-raised on the main thread
            result.append(("error", exc))

    t = threading.Thread(target=target, name="loop-thread")
    t.start()
    t.join(15)
    assert not t.is_alive(), "the loop thread did not finish"
    [(kind, value)] = result
    if kind == "error":
        raise value
    out, rc, killed, pids = value
    assert (out, rc, killed) == (b"THREADED\n", 3, -9)
    _assert_reaped(pids)
