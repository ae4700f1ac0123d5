"""The seeds' echo server in N processes on ferroloop (examples/echo_processes.py): sharing
one port with reuse_port=True, or one inherited listening socket; SIGTERM stops it
gracefully (open connections are served to their end), and no process is left."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pool_helpers as h
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "echo_processes.py")


def echo(sock, text):
    sock.sendall(text.encode())
    expected = f"服务器收到: {text}".encode()
    got = b""
    while len(got) < len(expected):
        chunk = sock.recv(100)
        assert chunk, "connection closed early"
        got += chunk
    return got.decode()


@pytest.mark.parametrize("share", ["reuse_port", "inherit"])
def test_echo_server_in_processes(share):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, EXAMPLE, "--processes", "2", "--port", "0", "--share", share,
         "--grace", "5"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first = proc.stdout.readline()
        m = re.match(r"serving on 127.0.0.1:(\d+) \((\w+)\) with 2 processes: (\d+) (\d+)", first)
        assert m, first
        port = int(m.group(1))
        pids = [int(m.group(3)), int(m.group(4))]
        serving = {proc.stdout.readline().strip() for _ in range(2)}
        assert serving == {f"worker {p} serving" for p in pids}

        for i in range(40):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                assert echo(s, f"hello {i}") == f"服务器收到: hello {i}"

        # graceful: a connection open when SIGTERM arrives is served to its end
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            assert echo(s, "before") == "服务器收到: before"
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert echo(s, "during shutdown") == "服务器收到: during shutdown"
            # and no new connection is accepted
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == 0, out
    served = [int(n) for n in re.findall(r"stopped after (\d+) connections", out)]
    assert len(served) == 2 and sum(served) == 41, out
    if share == "reuse_port":
        # the kernel spreads connections over the processes' sockets (40 connections from
        # different source ports all hashed to one socket: probability 2**-39)
        assert min(served) > 0, out
    assert h.wait_gone(pids) == []
