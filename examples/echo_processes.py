"""The seeds' echo server (seed 003's ``handle_client``) in N processes, each on ferroloop.

Multi-process + coroutines for a server: every process runs one ferroloop loop serving many
connections; the processes share one port in one of two ways:

* ``--share reuse_port`` (default): each process binds its own listening socket to the same
  port with ``SO_REUSEPORT``; the kernel spreads new connections over them.
* ``--share inherit``: the parent binds and listens once; each process serves that same
  socket (inherited: passed to the process, as gunicorn's workers share theirs).

SIGTERM (or Ctrl-C) to the parent stops it gracefully: the parent passes SIGTERM on to its
processes; each stops accepting, lets its open connections finish (``--grace`` seconds at
most, then closes them) and exits; the parent exits once they all have.

    python examples/echo_processes.py --processes 2 --port 8888
    python examples/echo_processes.py --share inherit --port 0   # prints the port chosen
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import socket
import sys

import ferroloop


async def handle_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # seed 003's handler, without the prints per message
    while True:
        data = await reader.read(100)
        if not data:
            break
        message = data.decode()
        writer.write(f"服务器收到: {message}".encode())
        await writer.drain()
    writer.close()


async def serve(sock: socket.socket | None, host: str, port: int, grace: float) -> int:
    """One process's server; returns how many connections it served."""
    loop = asyncio.get_running_loop()
    served = 0
    clients: set[asyncio.Task[None]] = set()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        served += 1
        task = asyncio.current_task()
        assert task is not None
        clients.add(task)
        try:
            await handle_client(reader, writer)
        finally:
            clients.discard(task)

    if sock is not None:
        server = await asyncio.start_server(on_client, sock=sock)
    else:
        server = await asyncio.start_server(on_client, host, port, reuse_port=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    say(f"worker {os.getpid()} serving")
    await stop.wait()
    # graceful: no new connections; the open ones finish (bounded by `grace`)
    server.close()
    if clients:
        _, pending = await asyncio.wait(set(clients), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
    await server.wait_closed()
    return served


def say(line: str) -> None:
    """One line to stdout in one write: the processes share it, lines must not interleave."""
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (line + "\n").encode())


def worker_main(sock: socket.socket | None, host: str, port: int, grace: float) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    served = ferroloop.run(serve(sock, host, port, grace))
    say(f"worker {os.getpid()} stopped after {served} connections")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--share", choices=["reuse_port", "inherit"], default="reuse_port")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds open connections get")
    parser.add_argument("--start-method", default="forkserver")
    args = parser.parse_args(argv)

    ctx = multiprocessing.get_context(args.start_method)
    # the parent's socket: the listening socket itself (inherit), or for reuse_port a bound,
    # not listening, placeholder that holds the port (and finds one for --port 0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if args.share == "reuse_port":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    if args.share == "inherit":
        sock.listen(1024)
        sock.setblocking(False)
    shared = sock if args.share == "inherit" else None

    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for p in processes:
            if p.pid is not None and p.exitcode is None:
                os.kill(p.pid, signal.SIGTERM)

    processes = [
        ctx.Process(target=worker_main, args=(shared, args.host, port, args.grace))
        for _ in range(args.processes)
    ]
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for p in processes:
        p.start()
    if shared is not None:
        # each process has its own copy now: the parent's would keep the port open (and
        # accepting into its backlog) after the workers close theirs
        sock.close()
    pids = " ".join(str(p.pid) for p in processes)
    say(f"serving on {args.host}:{port} ({args.share}) with {args.processes} processes: {pids}")
    for p in processes:
        p.join()
    sock.close()
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    say(f"stopped (worker exit codes: {failed})" if failed else "stopped")
    return 0 if stopping and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
