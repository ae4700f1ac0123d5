"""Echo-server benchmarks: asyncio, uvloop, rloop and ferroloop alternated in one run.

Three server styles, each echoing 1 KiB, 10 KiB and 100 KiB messages over 10 concurrent
connections, plus a bulk transfer (64 MiB one way, a 4-byte ack back) to a streams and a
Protocol server:

    sock     loop.sock_accept / sock_recv(64 KiB) / sock_sendall, one task per connection
    streams  asyncio.start_server; reader.read(64 KiB), writer.write + await drain()
    proto    loop.create_server with a Protocol: data_received -> transport.write

Every cell (case x loop x round) starts its own server process (this script with
``--serve``), so each loop gets a fresh interpreter; the server listens on 127.0.0.1 (or a
Unix socket with ``--unix``), says READY, the load generator runs, and the server is
killed. The load generator is ``echo_client.c`` (one thread, epoll; compiled with ``cc -O2``
into ``benches/.build/echo_client`` on first use and whenever the source is newer): it never
changes with the loop under test, checks every reply, keeps one message in flight per
connection, and measures messages/s and per-message latency (CLOCK_MONOTONIC) after a
warm-up. TCP_NODELAY is set on both ends in every style.

Rounds rotate the loop order; ratios are paired per round (ferroloop rate / the faster of
uvloop and rloop in that round, so > 1 means ferroloop is faster), median [min-max]. A
loop that fails a case (NotImplementedError, a stall, a wrong reply) shows "n/a" there.

    python benches/bench_echo.py                      # all cases, 3 rounds (~4 min)
    python benches/bench_echo.py --quick              # one short round (~30 s smoke run)
    python benches/bench_echo.py --cases proto_1k,bulk_proto --markdown --json out.json
    python benches/bench_echo.py --serve proto --loop uvloop --port 8888   # a server alone
"""

import argparse
import asyncio
import functools
import json
import os
import platform
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import OrderedDict

from ferroloop import _bench

REFERENCE = "ferroloop"
BASELINES = ("uvloop", "rloop")  # the ratio column compares against the faster of these

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_SRC = os.path.join(HERE, "echo_client.c")
BUILD_DIR = os.path.join(HERE, ".build")
CLIENT_BIN = os.path.join(BUILD_DIR, "echo_client")

HOST = "127.0.0.1"
READ_SIZE = 64 * 1024  # bytes per sock_recv / reader.read in the servers
ACK = b"ACK!"  # the bulk server's reply per transfer (echo_client.c knows it too)
KiB = 1024
MiB = 1024 * KiB


# -- the servers: run in a child process (--serve) ---------------------------------------


def _set_nodelay(sock):
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass  # a loop's transport may hide the socket; its default then applies


def _announce(sock):
    """Tell the parent where we listen: ``READY <port>`` or ``READY <path>``."""
    name = sock.getsockname()
    print(f"READY {name[1] if isinstance(name, tuple) else name}", flush=True)


async def _forever():
    await asyncio.get_running_loop().create_future()


async def serve_sock(addr, bulk_bytes):
    """One task per connection: sock_recv, sock_sendall what came, until EOF."""
    loop = asyncio.get_running_loop()
    if isinstance(addr, str):
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(addr)
    lsock.listen(128)
    lsock.setblocking(False)
    _announce(lsock)
    tasks = set()
    while True:
        conn, _ = await loop.sock_accept(lsock)
        conn.setblocking(False)
        _set_nodelay(conn)
        task = loop.create_task(_sock_echo(loop, conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def _sock_echo(loop, conn):
    with conn:
        try:
            while True:
                data = await loop.sock_recv(conn, READ_SIZE)
                if not data:
                    return
                await loop.sock_sendall(conn, data)
        except ConnectionError:
            pass


async def _streams_echo(reader, writer):
    _set_nodelay(writer.get_extra_info("socket"))
    try:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _streams_bulk(bulk_bytes, reader, writer):
    """Count bytes; every ``bulk_bytes`` of them, reply ACK."""
    _set_nodelay(writer.get_extra_info("socket"))
    count = 0
    try:
        while True:
            data = await reader.read(READ_SIZE * 4)
            if not data:
                break
            count += len(data)
            while count >= bulk_bytes:
                count -= bulk_bytes
                writer.write(ACK)
                await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve_streams(addr, bulk_bytes):
    handler = functools.partial(_streams_bulk, bulk_bytes) if bulk_bytes else _streams_echo
    if isinstance(addr, str):
        server = await asyncio.start_unix_server(handler, path=addr)
    else:
        server = await asyncio.start_server(handler, *addr)
    _announce(server.sockets[0])
    await _forever()


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        _set_nodelay(transport.get_extra_info("socket"))
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class BulkProtocol(asyncio.Protocol):
    """Count bytes; every ``bulk_bytes`` of them, reply ACK."""

    def __init__(self, bulk_bytes):
        self.bulk_bytes = bulk_bytes
        self.count = 0

    def connection_made(self, transport):
        _set_nodelay(transport.get_extra_info("socket"))
        self.transport = transport

    def data_received(self, data):
        self.count += len(data)
        while self.count >= self.bulk_bytes:
            self.count -= self.bulk_bytes
            self.transport.write(ACK)


async def serve_proto(addr, bulk_bytes):
    loop = asyncio.get_running_loop()
    factory = functools.partial(BulkProtocol, bulk_bytes) if bulk_bytes else EchoProtocol
    if isinstance(addr, str):
        server = await loop.create_unix_server(factory, path=addr)
    else:
        server = await loop.create_server(factory, *addr)
    _announce(server.sockets[0])
    await _forever()


class DatagramEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def serve_udp(addr, bulk_bytes):
    """A DatagramProtocol that sends every datagram back to where it came from."""
    if isinstance(addr, str):
        raise ValueError("the udp case runs over 127.0.0.1 only")
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(DatagramEcho, local_addr=addr)
    _announce(transport.get_extra_info("socket"))
    await _forever()


SERVERS = OrderedDict([("sock", serve_sock), ("streams", serve_streams), ("proto", serve_proto),
                       ("udp", serve_udp)])


def _describe(exc):
    """``Type: message``; for a bare ``raise NotImplementedError``, where it was raised."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if not str(exc):
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            last = frames[-1]
            text += f" (raised in {os.path.basename(last.filename)}:{last.name})"
    return text


def serve(style, loop_name, port, unix, bulk_bytes):
    """The server child: run one style on one loop until killed (SIGTERM)."""
    specs, skipped = _bench.available_loops([loop_name])
    if not specs:
        print(f"ERROR {loop_name}: {skipped[0][1] if skipped else 'unknown loop'}", flush=True)
        return 2
    if unix and os.path.exists(unix):
        os.unlink(unix)
    addr = unix if unix else (HOST, port)
    try:
        with asyncio.Runner(loop_factory=specs[0].factory) as runner:
            runner.run(SERVERS[style](addr, bulk_bytes))
    except Exception as exc:
        print(f"ERROR {_describe(exc)}", flush=True)
        traceback.print_exc()
        return 2
    return 0


# -- the cases ----------------------------------------------------------------------------


class Case:
    def __init__(self, style, kind, size, conns):
        self.style = style  # key of SERVERS
        self.kind = kind  # "echo" or "bulk"
        self.size = size  # bytes per message (echo) or per transfer (bulk)
        self.conns = conns

    @property
    def reply(self):
        return self.size if self.kind == "echo" else len(ACK)


ECHO_CONNS = 10
BULK_CONNS = 1
ECHO_SIZES = (("1k", 1 * KiB), ("10k", 10 * KiB), ("100k", 100 * KiB))
BULK_SIZE = 64 * MiB

CASES = OrderedDict()
for _style in ("sock", "streams", "proto"):
    for _label, _size in ECHO_SIZES:
        CASES[f"{_style}_{_label}"] = Case(_style, "echo", _size, ECHO_CONNS)
for _style in ("streams", "proto"):
    CASES[f"bulk_{_style}"] = Case(_style, "bulk", BULK_SIZE, BULK_CONNS)
# UDP echo of 100-byte datagrams, 10 connected client sockets (echo_client.c -D)
CASES["udp_100"] = Case("udp", "echo", 100, ECHO_CONNS)


def _fmt_size(n):
    if n % MiB == 0:
        return f"{n // MiB} MiB"
    if n % KiB == 0:
        return f"{n // KiB} KiB"
    return f"{n} B"


# -- the load generator -------------------------------------------------------------------


def build_client(log):
    """Compile echo_client.c unless the binary is there and newer; return its path."""
    if (os.path.exists(CLIENT_BIN)
            and os.path.getmtime(CLIENT_BIN) >= os.path.getmtime(CLIENT_SRC)):
        return CLIENT_BIN
    os.makedirs(BUILD_DIR, exist_ok=True)
    ignore = os.path.join(BUILD_DIR, ".gitignore")
    if not os.path.exists(ignore):
        with open(ignore, "w") as fh:
            fh.write("# build output of benches/bench_echo.py\n*\n")
    tmp = f"{CLIENT_BIN}.tmp{os.getpid()}"
    cmd = [os.environ.get("CC", "cc"), "-O2", "-o", tmp, CLIENT_SRC]
    log("building the load generator: " + " ".join(shlex.quote(a) for a in cmd))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"compiling {CLIENT_SRC} failed:\n{done.stderr}")
    os.replace(tmp, CLIENT_BIN)  # atomic: a concurrent run never sees half a binary
    return CLIENT_BIN


def parse_result(stdout):
    """``{key: float}`` from the client's ``RESULT k=v ...`` line."""
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            return {k: float(v) for k, v in (kv.split("=", 1) for kv in line.split()[1:])}
    raise CellError(f"no RESULT line from the client: {stdout.strip()[-200:]!r}")


# -- running ------------------------------------------------------------------------------


class CellError(Exception):
    pass


def _load_prctl():
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None


_PRCTL = _load_prctl() if sys.platform.startswith("linux") else None
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """Popen preexec_fn: the child gets SIGTERM when this process dies (Linux), so no
    server or client outlives an interrupted or killed benchmark."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def _tail(fh, lines=3):
    fh.seek(0)
    text = fh.read().decode(errors="replace")
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) if kept else "(no output)"


def _wait_ready(server, errfile, timeout):
    """The server's READY value (port or path); CellError if it fails or stays silent."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CellError(f"server not listening after {timeout:.0f} s")
        ready, _, _ = select.select([server.stdout], [], [], left)
        if not ready:
            continue
        line = server.stdout.readline().decode(errors="replace").strip()
        if line.startswith("READY "):
            return line[6:]
        if line.startswith("ERROR "):
            raise CellError(line[6:])
        if not line:
            rc = server.wait()
            raise CellError(f"server exited with status {rc}: {_tail(errfile, 1)}")


def _stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cpu_seconds(pid):
    """User + system CPU seconds of process ``pid`` so far (None without /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _server_error(server, errfile):
    """Why the server exited (after READY): its ERROR line, else its stderr."""
    try:
        server.wait(timeout=0.5)  # a client failure may come just before the server's exit
    except subprocess.TimeoutExpired:
        return None
    for line in server.stdout.read().decode(errors="replace").splitlines():
        if line.startswith("ERROR "):
            return line[6:]
    return f"server exited with status {server.returncode}: {_tail(errfile)}"


def run_cell(case, loop_name, client, opts, unix_path):
    """Start a server, run the client against it, stop the server: the client's result,
    plus ``server_cpu`` (the server's CPU time / the client's run time, None without /proc)."""
    serve_cmd = [sys.executable, os.path.abspath(__file__), "--serve", case.style,
                 "--loop", loop_name]
    serve_cmd += ["--socket", unix_path] if unix_path else ["--port", "0"]
    if case.kind == "bulk":
        serve_cmd += ["--bulk-bytes", str(case.size)]
    with tempfile.TemporaryFile() as errfile:
        server = subprocess.Popen(serve_cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=errfile, preexec_fn=_die_with_parent)
        try:
            where = _wait_ready(server, errfile, opts.timeout)
            client_cmd = [client] + (["-u", where] if unix_path else ["-a", HOST, "-p", where])
            client_cmd += ["-c", str(case.conns), "-n", str(case.size), "-r", str(case.reply),
                           "-w", str(opts.warmup), "-d", str(opts.duration),
                           "-t", str(opts.stall)]
            if case.style == "udp":
                client_cmd.append("-D")
            cpu0, t0 = _cpu_seconds(server.pid), time.monotonic()
            try:
                done = subprocess.run(client_cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                      text=True, timeout=opts.timeout,
                                      preexec_fn=_die_with_parent)
            except subprocess.TimeoutExpired:
                raise CellError(f"client still running after {opts.timeout:.0f} s; "
                                f"server: {_tail(errfile)}") from None
            cpu1, t1 = _cpu_seconds(server.pid), time.monotonic()
            if done.returncode != 0:
                client_error = (done.stderr.strip().splitlines()[-1:]
                                or [f"client exited with status {done.returncode}"])[0]
                server_error = _server_error(server, errfile)
                if server_error:
                    raise CellError(f"{server_error} (client: {client_error})")
                raise CellError(f"{client_error}; server stderr: {_tail(errfile)}")
            if server.poll() is not None:
                raise CellError(f"server exited with status {server.returncode} during the "
                                f"run: {_tail(errfile)}")
            result = parse_result(done.stdout)
            result["server_cpu"] = (cpu1 - cpu0) / (t1 - t0) if None not in (cpu0, cpu1) else None
            return result
        finally:
            _stop(server)
            server.stdout.close()


def run_all(cases, specs, rounds, client, opts, log):
    """Returns (rows, errors): rows[case] = {loop: [client result per round, None on
    error]}; errors = {(case, loop): first error message}."""
    rows = OrderedDict((case, {s.name: [] for s in specs}) for case in cases)
    errors = {}
    tmpdir = tempfile.mkdtemp(prefix="bench_echo-") if opts.unix else None
    try:
        for rnd in range(rounds):
            for case in cases:
                for spec in _bench.rotated(specs, rnd):
                    unix_path = (os.path.join(tmpdir, "echo.sock")
                                 if tmpdir and CASES[case].style != "udp" else None)
                    try:
                        result = run_cell(CASES[case], spec.name, client, opts, unix_path)
                    except CellError as exc:  # one loop failing must not stop the others
                        result = None
                        if (case, spec.name) not in errors:
                            errors[(case, spec.name)] = str(exc)
                            log(f"  ERROR {case} on {spec.name}: {exc}")
                    rows[case][spec.name].append(result)
            log(f"round {rnd + 1}/{rounds} done")
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
    return rows, errors


# -- reporting ----------------------------------------------------------------------------


def _values(results, key):
    return [r[key] if r is not None else None for r in results]


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def baselines(names):
    """The loops the ratio compares against: uvloop and rloop, else all but the reference."""
    return [n for n in BASELINES if n in names] or [n for n in names if n != REFERENCE]


def best_ratios(row, names, key):
    """Per round: reference / the best baseline that round (None where missing)."""
    base = baselines(names)
    ratios = []
    for rnd, ref in enumerate(_values(row[REFERENCE], key)):
        others = [_values(row[b], key)[rnd] for b in base]
        others = [o for o in others if o is not None]
        ratios.append(ref / max(others) if ref is not None and others and max(others) > 0
                      else None)
    return ratios


def _fmt_rate(value, digits=0):
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _fmt_us(us):
    if us is None:
        return "n/a"
    if us < 1000:
        return f"{us:.0f} us" if us >= 10 else f"{us:.1f} us"
    return f"{us / 1000:.2f} ms"


def _ratio_header(names):
    return f"{REFERENCE} / best of {','.join(baselines(names))}"


def build_echo_table(rows, specs):
    names = [s.name for s in specs]
    with_ratio = REFERENCE in names and len(baselines(names)) > 0
    headers = ["case", "msg", "conns"] + [f"{n} req/s" for n in names]
    if with_ratio:
        headers.append(_ratio_header(names))
    body = []
    for case, row in rows.items():
        spec = CASES[case]
        if spec.kind != "echo":
            continue
        line = [case, _fmt_size(spec.size), str(spec.conns)]
        line += [_fmt_rate(_median(_values(row[n], "rate"))) for n in names]
        if with_ratio:
            line.append(_bench.fmt_ratio(_bench.ratio_stats(best_ratios(row, names, "rate"))))
        body.append(line)
    return headers, body


def build_latency_table(rows, specs):
    names = [s.name for s in specs]
    headers = ["case"] + [f"{n} p50 / p99" for n in names]
    body = []
    for case, row in rows.items():
        if CASES[case].kind != "echo":
            continue
        line = [case]
        for n in names:
            p50, p99 = _median(_values(row[n], "p50_us")), _median(_values(row[n], "p99_us"))
            line.append("n/a" if p99 is None else f"{_fmt_us(p50)} / {_fmt_us(p99)}")
        body.append(line)
    return headers, body


def _server_cost(r, kind):
    """Server CPU time per echoed message (us) or per MB received (us): robust against the
    scheduling noise of a shared machine, where throughput swings 2-4x between runs."""
    if r is None or r.get("server_cpu") is None:
        return None
    if kind == "echo":
        return r["server_cpu"] * r["elapsed"] / r["count"] * 1e6 if r["count"] else None
    return r["server_cpu"] / r["mbps"] * 1e6 if r["mbps"] else None


def build_cost_table(rows, specs):
    """Server CPU cost per unit of work, and best baseline / ferroloop per round (> 1:
    ferroloop spends less CPU)."""
    names = [s.name for s in specs]
    with_ratio = REFERENCE in names and len(baselines(names)) > 0
    headers = ["case", "unit"] + [f"{n} us" for n in names]
    if with_ratio:
        headers.append(f"best of {','.join(baselines(names))} / {REFERENCE}")
    body = []
    for case, row in rows.items():
        kind = CASES[case].kind
        costs = {n: [_server_cost(r, kind) for r in row[n]] for n in names}
        line = [case, "message" if kind == "echo" else "MB"]
        line += [_fmt_rate(_median(costs[n]), 1) for n in names]
        if with_ratio:
            ratios = []
            for rnd, ref in enumerate(costs[REFERENCE]):
                others = [costs[b][rnd] for b in baselines(names) if costs[b][rnd] is not None]
                ratios.append(min(others) / ref if ref and others else None)
            line.append(_bench.fmt_ratio(_bench.ratio_stats(ratios)))
        body.append(line)
    return headers, body


def build_bulk_table(rows, specs):
    names = [s.name for s in specs]
    with_ratio = REFERENCE in names and len(baselines(names)) > 0
    headers = ["case", "transfer", "conns"] + [f"{n} MB/s" for n in names]
    if with_ratio:
        headers.append(_ratio_header(names))
    body = []
    for case, row in rows.items():
        spec = CASES[case]
        if spec.kind != "bulk":
            continue
        line = [case, _fmt_size(spec.size), str(spec.conns)]
        line += [_fmt_rate(_median(_values(row[n], "mbps"))) for n in names]
        if with_ratio:
            line.append(_bench.fmt_ratio(_bench.ratio_stats(best_ratios(row, names, "mbps"))))
        body.append(line)
    return headers, body


def render(headers, body, markdown):
    if markdown:
        out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        out += ["| " + " | ".join(str(c) for c in line) + " |" for line in body]
        return "\n".join(out)
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *body)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in body]
    return "\n".join(out)


def busy_client_notes(rows, limit=0.9):
    """Cells where the client used more than ``limit`` of a core in some round: there it
    may be the bottleneck (more so when the server was not busy all the time)."""
    notes = []
    for case, row in rows.items():
        for name, results in row.items():
            busy = [r for r in results if r is not None and r["cpu"] > limit]
            if not busy:
                continue
            worst = max(busy, key=lambda r: r["cpu"])
            server = worst.get("server_cpu")
            server = f" (server {server:.0%})" if server is not None else ""
            notes.append(f"note: {case} on {name}: the client used {worst['cpu']:.0%} of a core"
                         f"{server} in {len(busy)} of {len(results)} round(s); it may be "
                         "the limit there")
    return notes


# -- command line -------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Echo servers (sock_*, streams, Protocol) and bulk transfer: "
                    "asyncio vs uvloop vs rloop vs ferroloop, alternated in one run."
    )
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (~30 s): one round, --duration 0.25, --warmup 0.1")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, 1 with --quick)")
    parser.add_argument("--duration", type=float,
                        help="measured seconds per cell (default 1.25, 0.25 with --quick)")
    parser.add_argument("--warmup", type=float,
                        help="unmeasured seconds before it (default 0.25, 0.1 with --quick)")
    parser.add_argument("--cases", default=",".join(CASES),
                        help="comma-separated cases (default all): " + ",".join(CASES))
    parser.add_argument("--loops", default="asyncio,uvloop,rloop,ferroloop",
                        help="comma-separated loops (default asyncio,uvloop,rloop,ferroloop)")
    parser.add_argument("--unix", action="store_true",
                        help="serve on a Unix socket instead of TCP 127.0.0.1")
    parser.add_argument("--json", metavar="FILE", help="write the raw results to FILE")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument("--stall", type=float, default=5,
                        help="a cell fails when no reply completes for this long (s, default 5)")
    parser.add_argument("--timeout", type=float, default=60,
                        help="a cell fails when the server is not listening, or the client "
                             "not done, after this long (s, default 60)")
    serve_group = parser.add_argument_group("server child (what the benchmark runs per cell)")
    serve_group.add_argument("--serve", choices=list(SERVERS), metavar="STYLE",
                             help="run one echo server (" + ", ".join(SERVERS) + ") and print "
                                  "READY <port|path> once listening")
    serve_group.add_argument("--loop", default="asyncio", help="the server's loop")
    serve_group.add_argument("--port", type=int, default=0, help="TCP port (0: any free)")
    serve_group.add_argument("--socket", metavar="PATH", help="Unix socket path instead of TCP")
    serve_group.add_argument("--bulk-bytes", type=int, default=0,
                             help="count bytes and ACK every this many instead of echoing")
    args = parser.parse_args(argv)
    if args.serve:
        return args
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.duration is None:
        args.duration = 0.25 if args.quick else 1.25
    if args.warmup is None:
        args.warmup = 0.1 if args.quick else 0.25
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be > 0 and --warmup >= 0")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.serve:
        return serve(args.serve, args.loop, args.port, args.socket, args.bulk_bytes)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop the current server
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    specs, skipped = _bench.available_loops([n.strip() for n in args.loops.split(",") if n.strip()])
    client = build_client(log)
    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print(_bench.versions_line(specs))
    print(f"platform: {platform.platform()}; cpus: {os.cpu_count()}; rounds: {args.rounds}; "
          f"warm-up {args.warmup:g} s + {args.duration:g} s measured per cell; "
          f"{'unix socket' if args.unix else 'tcp ' + HOST}; cases: {','.join(args.cases)}")
    print(f"client: {os.path.relpath(client)} (epoll, one thread, separate process); "
          f"server: {os.path.basename(__file__)} --serve STYLE --loop LOOP, fresh per cell")
    for name, reason in skipped:
        print(f"skipping {name}: {reason}")
    if REFERENCE not in [s.name for s in specs]:
        print(f"note: {REFERENCE} not measured, no ratio column")
    sys.stdout.flush()

    t_start = time.monotonic()
    rows, errors = run_all(args.cases, specs, args.rounds, client, args, log)
    log(f"total {time.monotonic() - t_start:.0f} s")

    names = [s.name for s in specs]
    ratio_note = (f"; {_ratio_header(names)} = paired per-round ratio of rates, median "
                  f"[min-max], > 1: {REFERENCE} faster" if REFERENCE in names and baselines(names)
                  else "")
    echo_table = build_echo_table(rows, specs)
    if echo_table[1]:
        print()
        print(f"echo: messages/s over all connections (median of rounds){ratio_note}")
        print(render(*echo_table, args.markdown))
        print()
        print("echo: per-message latency p50 / p99, measured in the client (median of rounds)")
        print(render(*build_latency_table(rows, specs), args.markdown))
    bulk_table = build_bulk_table(rows, specs)
    if bulk_table[1]:
        print()
        print("bulk: client -> server throughput, MB/s = 1e6 bytes/s, 4-byte ack per transfer "
              "(median of rounds)")
        print(render(*bulk_table, args.markdown))
    cost_table = build_cost_table(rows, specs)
    if cost_table[1]:
        print()
        print("server CPU time per message (echo) or per MB received (bulk), median of rounds; "
              "the ratio is per round, > 1: ferroloop spends less CPU")
        print(render(*cost_table, args.markdown))
    for note in busy_client_notes(rows):
        print(note)
    for (case, loop), message in errors.items():
        print(f"error: {case} on {loop}: {message}")

    if args.json:
        raw = {
            "argv": sys.argv,
            "python": sys.version,
            "platform": platform.platform(),
            "loops": {s.name: s.version for s in specs},
            "skipped": dict(skipped),
            "rounds": args.rounds,
            "warmup": args.warmup,
            "duration": args.duration,
            "transport": "unix" if args.unix else "tcp",
            "unit": "client RESULT per round: rate = messages/s, mbps = 1e6 bytes/s, *_us; "
                    "cpu / server_cpu = CPU time / wall time of client / server",
            "cases": {c: {"style": CASES[c].style, "kind": CASES[c].kind,
                          "size": CASES[c].size, "conns": CASES[c].conns} for c in args.cases},
            "rows": rows,
            "errors": {f"{c}/{name}": m for (c, name), m in errors.items()},
        }
        with open(args.json, "w") as fh:
            json.dump(raw, fh, indent=1)
        print(f"raw results written to {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
