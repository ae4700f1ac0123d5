"""TLS echo and HTTPS benchmarks: asyncio, uvloop and ferroloop alternated in one run.

rloop is listed as absent: it has no TLS (``create_server(ssl=...)`` raises
NotImplementedError in rloop 0.5).

Two TLS echo server styles, each echoing 1 KiB, 10 KiB and 100 KiB messages over 10
concurrent connections, plus HTTPS:

    proto    loop.create_server(ssl=ctx) with a Protocol: data_received -> transport.write
    streams  asyncio.start_server(ssl=ctx); reader.read(64 KiB), writer.write + drain()
    https    uvicorn (httptools) with --ssl-keyfile/--ssl-certfile, a hello-world ASGI app,
             driven by wrk over https:// (50 keep-alive connections, one wrk thread)

The servers are bench_echo.py's (``EchoProtocol``, ``_streams_echo``) and bench_http.py's
(``app``) with ``ssl=`` added; each cell (case x loop x round) starts a fresh server
process (this script with ``--serve``), waits for READY, runs the load generator and kills
the server. The server context is ``ssl.SSLContext(PROTOCOL_TLS_SERVER)`` with a throwaway
self-signed P-256 certificate for localhost/127.0.0.1 made with the ``openssl`` command at
start-up: TLS 1.3, the default cipher suite (the client prints what was negotiated).

The echo load generator is ``tls_echo_client.c``, the TLS twin of ``echo_client.c``: C,
OpenSSL (libssl-dev's headers are needed: ``/usr/include/openssl/ssl.h``), one thread,
epoll, non-blocking sockets after a blocking handshake per connection that verifies the
certificate and the name "localhost"; one message in flight per connection, every reply
checked. It is compiled with ``cc -O2 ... -lssl -lcrypto`` into
``benches/.build/tls_echo_client`` on first use and whenever the source is newer, and it is
the same process for every loop. The HTTPS load generator is ``wrk`` (installed by
``scripts/install-wrk.sh`` when missing).

Rounds rotate the loop order; ratios are paired per round (ferroloop / uvloop that round),
median [min-max]. Throughput on this shared 2-core machine swings between runs; the server's
CPU time per message (from /proc/<pid>/stat over the client's run) is the steadier metric.

    python benches/bench_tls.py                       # all cases, 3 rounds (~2 min)
    python benches/bench_tls.py --quick               # one short round (~40 s smoke run)
    python benches/bench_tls.py --cases proto_1k,https --markdown --json out.json
    python benches/bench_tls.py --serve proto --loop uvloop --cert C --key K   # a server alone
"""

import argparse
import asyncio
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_echo as echo  # noqa: E402  (servers, cell plumbing, table helpers)
import bench_http as http  # noqa: E402  (the ASGI app, wrk)
from ferroloop import _bench  # noqa: E402

REFERENCE = "ferroloop"
BASELINE = "uvloop"
DEFAULT_LOOPS = ("asyncio", "uvloop", "ferroloop")
ABSENT = {"rloop": "no TLS (create_server/create_connection with ssl= raise "
                   "NotImplementedError in rloop 0.5)"}

CLIENT_SRC = os.path.join(HERE, "tls_echo_client.c")
CLIENT_BIN = os.path.join(echo.BUILD_DIR, "tls_echo_client")
OPENSSL_HEADER = "/usr/include/openssl/ssl.h"
HOST = echo.HOST
SERVER_NAME = "localhost"
KiB = echo.KiB


# -- certificates -------------------------------------------------------------------------


def make_cert(directory):
    """A self-signed P-256 certificate for localhost and 127.0.0.1: (cert, key) paths."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
           "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
           "-days", "2", "-subj", f"/CN={SERVER_NAME}",
           "-addext", f"subjectAltName=DNS:{SERVER_NAME},IP:{HOST}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"making the test certificate failed: {done.stderr.strip()}")
    return cert, key


def server_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


# -- the servers: run in a child process (--serve) ---------------------------------------


async def serve_proto(addr, ctx):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(echo.EchoProtocol, *addr, ssl=ctx)
    echo._announce(server.sockets[0])
    await echo._forever()


async def serve_streams(addr, ctx):
    server = await asyncio.start_server(echo._streams_echo, *addr, ssl=ctx)
    echo._announce(server.sockets[0])
    await echo._forever()


async def serve_https(addr, cert, key):
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(addr)
    sock.listen(1024)
    config = uvicorn.Config(http.app, http="httptools", loop="none", lifespan="off",
                            log_level="error", access_log=False, ws="none",
                            ssl_certfile=cert, ssl_keyfile=key)
    echo._announce(sock)
    await uvicorn.Server(config).serve(sockets=[sock])


SERVERS = ("proto", "streams", "https")


def serve(style, loop_name, port, cert, key):
    """The server child: run one style on one loop until killed."""
    specs, skipped = _bench.available_loops([loop_name])
    if not specs:
        print(f"ERROR {loop_name}: {skipped[0][1] if skipped else 'unknown loop'}", flush=True)
        return 2
    addr = (HOST, port)
    if style == "https":
        coro = serve_https(addr, cert, key)
    else:
        coro = (serve_proto if style == "proto" else serve_streams)(addr, server_context(cert, key))
    try:
        with asyncio.Runner(loop_factory=specs[0].factory) as runner:
            runner.run(coro)
    except Exception as exc:
        print(f"ERROR {echo._describe(exc)}", flush=True)
        traceback.print_exc()
        return 2
    return 0


# -- the cases ----------------------------------------------------------------------------

ECHO_CONNS = 10
CASES = OrderedDict()
for _style in ("proto", "streams"):
    for _label, _size in echo.ECHO_SIZES:
        CASES[f"{_style}_{_label}"] = echo.Case(_style, "echo", _size, ECHO_CONNS)
CASES["https"] = echo.Case("https", "https", len(http.BODY), 50)


# -- the load generators ------------------------------------------------------------------


def build_client(log):
    """Compile tls_echo_client.c unless the binary is there and newer; return its path."""
    if (os.path.exists(CLIENT_BIN)
            and os.path.getmtime(CLIENT_BIN) >= os.path.getmtime(CLIENT_SRC)):
        return CLIENT_BIN
    if not os.path.exists(OPENSSL_HEADER):
        sys.exit(f"{OPENSSL_HEADER} is missing: install libssl-dev to build the TLS client")
    os.makedirs(echo.BUILD_DIR, exist_ok=True)
    ignore = os.path.join(echo.BUILD_DIR, ".gitignore")
    if not os.path.exists(ignore):
        with open(ignore, "w") as fh:
            fh.write("# build output of benches/bench_echo.py and bench_tls.py\n*\n")
    tmp = f"{CLIENT_BIN}.tmp{os.getpid()}"
    cmd = [os.environ.get("CC", "cc"), "-O2", "-o", tmp, CLIENT_SRC, "-lssl", "-lcrypto"]
    log("building the TLS load generator: " + " ".join(shlex.quote(a) for a in cmd))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"compiling {CLIENT_SRC} failed:\n{done.stderr}")
    os.replace(tmp, CLIENT_BIN)
    return CLIENT_BIN


def _start_server(case, loop_name, opts):
    cmd = [sys.executable, os.path.abspath(__file__), "--serve", case.style, "--loop",
           loop_name, "--port", "0", "--cert", opts.cert, "--key", opts.key]
    errfile = tempfile.TemporaryFile()
    server = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=errfile, preexec_fn=echo._die_with_parent)
    return server, errfile


def run_echo(case, port, client, opts):
    """The TLS echo client against ``port``: its RESULT (and its INFO line)."""
    cmd = [client, "-a", HOST, "-p", port, "-C", opts.cert, "-H", SERVER_NAME,
           "-c", str(case.conns), "-n", str(case.size), "-w", str(opts.warmup),
           "-d", str(opts.duration), "-t", str(opts.stall)]
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=opts.timeout, preexec_fn=echo._die_with_parent)
    except subprocess.TimeoutExpired:
        raise echo.CellError(f"client still running after {opts.timeout:.0f} s") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise echo.CellError(lines[0] if lines else f"client exited with {done.returncode}")
    result = echo.parse_result(done.stdout)
    for line in done.stdout.splitlines():
        if line.startswith("INFO "):
            opts.tls_info = opts.tls_info or line[5:]
    return result


def run_wrk(port, wrk, opts):
    """wrk over https://: rate, p50_us, p99_us, count (requests), elapsed."""
    cmd = [wrk, "--latency", "-t1", f"-c{opts.https_connections}",
           f"-d{opts.https_duration}s", f"https://{HOST}:{port}/"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True,
                             timeout=opts.https_duration + 30).stdout
        r = http.parse_wrk(out)
    except (subprocess.TimeoutExpired, RuntimeError) as exc:
        raise echo.CellError(str(exc)) from None
    if r["non2xx"] or r["socket_errors"] or not r["requests"]:
        raise echo.CellError(f"wrk: {r['requests']} requests, {r['non2xx']} non-2xx, "
                             f"{r['socket_errors']} socket errors")
    return {"rate": r["rate"], "p50_us": r["p50"] * 1e6, "p99_us": r["p99"] * 1e6,
            "count": r["requests"], "elapsed": r["requests"] / r["rate"], "cpu": None}


def run_cell(case, loop_name, tools, opts):
    """Start a server, run the load generator against it, stop the server. The result
    gains ``server_cpu``: the server's CPU seconds / the run's wall seconds."""
    server, errfile = _start_server(case, loop_name, opts)
    with errfile:
        try:
            port = echo._wait_ready(server, errfile, opts.timeout)
            if case.kind == "https":
                time.sleep(0.3)  # uvicorn serves a moment after the socket is announced
            cpu0, t0 = echo._cpu_seconds(server.pid), time.monotonic()
            try:
                if case.kind == "https":
                    result = run_wrk(port, tools["wrk"], opts)
                else:
                    result = run_echo(case, port, tools["client"], opts)
            except echo.CellError as exc:
                why = echo._server_error(server, errfile)
                raise echo.CellError(f"{why} ({exc})" if why else str(exc)) from None
            cpu1, t1 = echo._cpu_seconds(server.pid), time.monotonic()
            if server.poll() is not None:
                raise echo.CellError(f"server exited with status {server.returncode} during "
                                     f"the run: {echo._tail(errfile)}")
            result["server_cpu"] = (cpu1 - cpu0) / (t1 - t0) if None not in (cpu0, cpu1) else None
            return result
        finally:
            echo._stop(server)
            server.stdout.close()


def run_all(cases, specs, tools, opts, log):
    rows = OrderedDict((case, {s.name: [] for s in specs}) for case in cases)
    errors = {}
    for rnd in range(opts.rounds):
        for case in cases:
            for spec in _bench.rotated(specs, rnd):
                try:
                    result = run_cell(CASES[case], spec.name, tools, opts)
                except echo.CellError as exc:  # one loop failing must not stop the others
                    result = None
                    if (case, spec.name) not in errors:
                        errors[(case, spec.name)] = str(exc)
                        log(f"  ERROR {case} on {spec.name}: {exc}")
                rows[case][spec.name].append(result)
        log(f"round {rnd + 1}/{opts.rounds} done")
    return rows, errors


# -- reporting ----------------------------------------------------------------------------


def server_cost_us(r):
    """Server CPU time per message (echo) or per request (https), in microseconds: its
    mean CPU fraction over the run times the measured window, over the count."""
    if r is None or r.get("server_cpu") is None or not r["count"]:
        return None
    return r["server_cpu"] * r["elapsed"] / r["count"] * 1e6


def paired(row, names, value, higher_is_better=True):
    """Per round: ferroloop / uvloop (or uvloop / ferroloop for costs), median [min-max]."""
    if REFERENCE not in names or BASELINE not in names:
        return None
    ratios = []
    for ref, base in zip(row[REFERENCE], row[BASELINE]):
        a, b = value(ref), value(base)
        if a and b:
            ratios.append(a / b if higher_is_better else b / a)
    return _bench.fmt_ratio(_bench.ratio_stats(ratios))


def _rate(r):
    return None if r is None else r["rate"]


def build_tables(rows, names):
    with_ratio = REFERENCE in names and BASELINE in names
    rate_h = ["case", "msg", "conns"] + [f"{n} msg/s" for n in names]
    lat_h = ["case"] + [f"{n} p50 / p99" for n in names]
    cost_h = ["case", "unit"] + [f"{n} us" for n in names]
    if with_ratio:
        rate_h.append(f"{REFERENCE} / {BASELINE}")
        cost_h.append(f"{BASELINE} / {REFERENCE}")
    rate_b, lat_b, cost_b = [], [], []
    for case, row in rows.items():
        spec = CASES[case]
        msg = echo._fmt_size(spec.size) if spec.kind == "echo" else "GET /"
        line = [case, msg, str(spec.conns)]
        line += [echo._fmt_rate(echo._median([_rate(r) for r in row[n]])) for n in names]
        lat = [case]
        for n in names:
            p50 = echo._median(echo._values(row[n], "p50_us"))
            p99 = echo._median(echo._values(row[n], "p99_us"))
            lat.append("n/a" if p99 is None else f"{echo._fmt_us(p50)} / {echo._fmt_us(p99)}")
        cost = [case, "message" if spec.kind == "echo" else "request"]
        cost += [echo._fmt_rate(echo._median([server_cost_us(r) for r in row[n]]), 1)
                 for n in names]
        if with_ratio:
            line.append(paired(row, names, _rate))
            cost.append(paired(row, names, server_cost_us, higher_is_better=False))
        rate_b.append(line)
        lat_b.append(lat)
        cost_b.append(cost)
    return (rate_h, rate_b), (lat_h, lat_b), (cost_h, cost_b)


# -- command line -------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="TLS echo (Protocol, streams) and HTTPS (uvicorn + wrk): asyncio vs "
                    "uvloop vs ferroloop, alternated in one run."
    )
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: one round, --duration 0.25, --warmup 0.1, "
                             "--https-duration 1")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, 1 with --quick)")
    parser.add_argument("--duration", type=float,
                        help="measured seconds per echo cell (default 1.25, 0.25 with --quick)")
    parser.add_argument("--warmup", type=float,
                        help="unmeasured seconds before it (default 0.25, 0.1 with --quick)")
    parser.add_argument("--https-duration", type=int,
                        help="seconds of wrk per https cell (default 3, 1 with --quick)")
    parser.add_argument("--https-connections", type=int, default=50,
                        help="wrk connections (default 50)")
    parser.add_argument("--cases", default=",".join(CASES),
                        help="comma-separated cases (default all): " + ",".join(CASES))
    parser.add_argument("--loops", default=",".join(DEFAULT_LOOPS),
                        help=f"comma-separated loops (default {','.join(DEFAULT_LOOPS)})")
    parser.add_argument("--json", metavar="FILE", help="write the raw results to FILE")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument("--stall", type=float, default=5,
                        help="an echo cell fails when no reply completes for this long (s)")
    parser.add_argument("--timeout", type=float, default=60,
                        help="a cell fails when the server is not listening, or the client "
                             "not done, after this long (s, default 60)")
    serve_group = parser.add_argument_group("server child (what the benchmark runs per cell)")
    serve_group.add_argument("--serve", choices=SERVERS, metavar="STYLE",
                             help="run one server (" + ", ".join(SERVERS) + ") and print "
                                  "READY <port> once listening")
    serve_group.add_argument("--loop", default="asyncio", help="the server's loop")
    serve_group.add_argument("--port", type=int, default=0, help="TCP port (0: any free)")
    serve_group.add_argument("--cert", help="certificate (PEM) of the server")
    serve_group.add_argument("--key", help="private key (PEM) of the server")
    args = parser.parse_args(argv)
    if args.serve:
        if not (args.cert and args.key):
            parser.error("--serve needs --cert and --key")
        return args
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.duration is None:
        args.duration = 0.25 if args.quick else 1.25
    if args.warmup is None:
        args.warmup = 0.1 if args.quick else 0.25
    if args.https_duration is None:
        args.https_duration = 1 if args.quick else 3
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0 or args.https_duration < 1:
        parser.error("--rounds and --https-duration must be >= 1, --duration > 0, "
                     "--warmup >= 0")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.serve:
        return serve(args.serve, args.loop, args.port, args.cert, args.key)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    wanted = [n.strip() for n in args.loops.split(",") if n.strip()]
    absent = [(n, ABSENT[n]) for n in wanted if n in ABSENT]
    specs, skipped = _bench.available_loops([n for n in wanted if n not in ABSENT])
    names = [s.name for s in specs]
    tools = {}
    if any(CASES[c].kind == "echo" for c in args.cases):
        tools["client"] = build_client(log)
    if "https" in args.cases:
        tools["wrk"] = http.ensure_wrk()
    certdir = tempfile.mkdtemp(prefix="bench_tls-")
    try:
        args.cert, args.key = make_cert(certdir)
        args.tls_info = None
        print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
        print(_bench.versions_line(specs))
        print(f"platform: {platform.platform()}; cpus: {os.cpu_count()}; rounds: "
              f"{args.rounds}; echo: warm-up {args.warmup:g} s + {args.duration:g} s "
              f"measured per cell; https: wrk -t1 -c{args.https_connections} "
              f"-d{args.https_duration}s; tcp {HOST}; {ssl.OPENSSL_VERSION}")
        print("load: " + "; ".join(
            ([f"{os.path.relpath(tools['client'])} (C, OpenSSL, epoll, one thread, "
              "separate process)"] if "client" in tools else [])
            + (["wrk over https:// against uvicorn + httptools"] if "wrk" in tools else [])))
        for name, reason in absent + skipped:
            print(f"absent: {name}: {reason}")
        sys.stdout.flush()

        t_start = time.monotonic()
        rows, errors = run_all(args.cases, specs, tools, args, log)
        log(f"total {time.monotonic() - t_start:.0f} s")
    finally:
        shutil.rmtree(certdir, ignore_errors=True)

    rates, lats, costs = build_tables(rows, names)
    if args.tls_info:
        print(f"negotiated: {args.tls_info}")
    ratio = (f"; {REFERENCE} / {BASELINE} = paired per-round ratio, median [min-max], > 1: "
             f"{REFERENCE} faster" if REFERENCE in names and BASELINE in names else "")
    print()
    print(f"throughput: echoed messages/s (https: requests/s), median of rounds{ratio}")
    print(echo.render(*rates, args.markdown))
    print()
    print("latency p50 / p99 per message (echo: measured in the client; https: wrk)")
    print(echo.render(*lats, args.markdown))
    print()
    print(f"server CPU time per message / request, median of rounds; {BASELINE} / "
          f"{REFERENCE} per round, > 1: {REFERENCE} spends less CPU")
    print(echo.render(*costs, args.markdown))
    echo_rows = OrderedDict((c, r) for c, r in rows.items() if CASES[c].kind == "echo")
    for note in echo.busy_client_notes(echo_rows):
        print(note)
    for (case, loop), message in errors.items():
        print(f"error: {case} on {loop}: {message}")

    if args.json:
        raw = {
            "argv": sys.argv,
            "python": sys.version,
            "openssl": ssl.OPENSSL_VERSION,
            "platform": platform.platform(),
            "loops": {s.name: s.version for s in specs},
            "absent": dict(absent + skipped),
            "rounds": args.rounds,
            "tls": args.tls_info,
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
