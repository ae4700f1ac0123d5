"""Run docs/usage.md's recipes (tests/integration/recipes/) in subprocesses and ask which
loop served.

Every recipe's program answers ``<loop class module> <pid>`` (the servers, to any request;
their apps also print ``startup on <module> in <pid>`` in each worker) or prints the loop
class module (the scripts); the tests compare it with ``FERROLOOP_LOOP``. A server is
started in its own session (process group) and the whole group is killed when the test
ends, whatever happened: no process outlives its test. Timeouts are bounded; ports are
picked by the servers (port 0) and read from their output.
"""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import ferroloop

RECIPES = Path(__file__).resolve().parent / "recipes"
FERROLOOP_LOOP = ferroloop.EventLoop.__module__  # "ferroloop._loop"
PACKAGE_ROOT = str(Path(ferroloop.__file__).resolve().parent.parent)
START_TIMEOUT = 20.0  # seconds for a server to print its port (debug mode, 2 cores, CI load)
STOP_TIMEOUT = 5.0


def recipe_env(tmp_path):
    """The test's environment with this ferroloop first on the path, and gunicorn's control
    socket (recent gunicorn opens one) in the test's own directory, not ~/.gunicorn."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p
    )
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_script(args, tmp_path, timeout=20):
    """Run ``python ARGS`` in the recipes directory; its stdout's last line."""
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=RECIPES,
        env=recipe_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.strip().splitlines()[-1]


class Server:
    """A server command run in the recipes directory, its output (stdout and stderr) in a
    file; a context manager that kills its process group on exit."""

    def __init__(self, args, tmp_path, name="server"):
        self.args = args
        self.log_path = tmp_path / f"{name}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=RECIPES,
            env=recipe_env(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.kill()

    def output(self):
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern, count=1, timeout=START_TIMEOUT):
        """The first ``count`` matches of ``pattern`` in the output, waiting for them."""
        deadline = time.monotonic() + timeout
        while True:
            matches = list(re.finditer(pattern, self.output()))
            if len(matches) >= count:
                return matches[:count]
            if self.proc.poll() is not None or time.monotonic() > deadline:
                code = self.proc.returncode
                state = f"exited {code}" if code is not None else f"no match in {timeout} s"
                raise AssertionError(
                    f"{self.args}: {state} waiting for {pattern!r} x{count}:\n{self.output()}"
                )
            time.sleep(0.05)

    def port(self, pattern=r"http://127\.0\.0\.1:(\d+)"):
        return int(self.wait_for(pattern)[0].group(1))

    def get(self, port, path="/", timeout=START_TIMEOUT):
        """One request; the body, decoded. Refused connections are retried until
        ``timeout``: with worker processes the port is bound by the parent before a worker
        listens on it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
                    assert resp.status == 200
                    return resp.read().decode()
            except urllib.error.URLError as exc:
                if not isinstance(exc.reason, ConnectionRefusedError):
                    raise
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{self.args}: {exc}\n{self.output()}") from exc
            time.sleep(0.05)

    def stop(self, sig=signal.SIGINT):
        """Ask the server to stop as a user would (Ctrl-C); its exit status."""
        self.proc.send_signal(sig)
        return self.proc.wait(STOP_TIMEOUT)

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(STOP_TIMEOUT)
        finally:
            self.log.close()


def startup_loops(server, count):
    """``count`` workers' ``startup on MODULE in PID`` lines: [(module, pid)]."""
    matches = server.wait_for(r"startup on (\S+) in (\d+)", count)
    return [(m.group(1), int(m.group(2))) for m in matches]
