"""HTTP hello-world on uvicorn (httptools): asyncio vs uvloop vs rloop vs ferroloop, driven by wrk.

Each cell starts a fresh server process (this script with ``--serve LOOP``: uvicorn with
``http="httptools"``, ``loop="none"``, a plain ASGI app answering ``Hello, world!``), waits
until it listens, runs ``wrk`` (a separate C process that does not change with the loop)
for ``--duration`` seconds with ``--connections`` connections, and stops the server. Loops
are rotated inside each round; per round, ferroloop's rate is divided by the faster of
uvloop and rloop (median [min-max] over rounds). The server's CPU time per request is
reported too: on this shared 2-core machine it varies less than throughput.

    python benches/bench_http.py                 # 3 rounds, 3 s per cell
    python benches/bench_http.py --quick         # 1 round, 1 s per cell
    python benches/bench_http.py --markdown

wrk comes from Debian's package: ``scripts/install-wrk.sh`` installs it when missing (this
script calls it).
"""

import argparse
import asyncio
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

from ferroloop import _bench  # noqa: E402

REFERENCE = "ferroloop"
BASELINES = ("uvloop", "rloop")
BODY = b"Hello, world!"


# -- the server child -------------------------------------------------------------------


async def app(scope, receive, send):
    """The smallest ASGI app: a fixed plain-text response."""
    if scope["type"] != "http":
        return
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())],
    })
    await send({"type": "http.response.body", "body": BODY})


def serve(loop_name):
    import uvicorn

    specs, skipped = _bench.available_loops([loop_name])
    if not specs:
        print(f"ERROR {loop_name}: {skipped}", flush=True)
        return 1
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    config = uvicorn.Config(app, http="httptools", loop="none", lifespan="off",
                            log_level="error", access_log=False, ws="none")
    server = uvicorn.Server(config)
    print(f"READY {sock.getsockname()[1]}", flush=True)
    with asyncio.Runner(loop_factory=specs[0].factory) as runner:
        runner.run(server.serve(sockets=[sock]))
    return 0


# -- the parent -------------------------------------------------------------------------


def ensure_wrk():
    if shutil.which("wrk"):
        return shutil.which("wrk")
    script = os.path.join(HERE, "..", "scripts", "install-wrk.sh")
    subprocess.run(["bash", script], check=True)
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("wrk is not installed and scripts/install-wrk.sh could not install it")
    return path


def _cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _seconds(text):
    m = re.match(r"([\d.]+)(us|ms|s)$", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


def parse_wrk(out):
    """requests/s, p50 and p99 latency (s), non-2xx and socket errors from wrk --latency."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if not (rate and p50 and p99 and total):
        raise RuntimeError("could not parse wrk output: " + out.strip()[-300:])
    return {
        "rate": float(rate.group(1)),
        "requests": int(total.group(1)),
        "p50": _seconds(p50.group(1)),
        "p99": _seconds(p99.group(1)),
        "non2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
    }


def run_cell(loop_name, wrk, args):
    server = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve", loop_name],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        line = server.stdout.readline().decode().strip()
        if not line.startswith("READY "):
            err = server.stderr.read().decode(errors="replace").strip().splitlines()[-1:]
            return None, f"server failed: {line or err}"
        port = int(line.split()[1])
        time.sleep(0.2)  # uvicorn starts serving after READY
        cpu0 = _cpu_seconds(server.pid)
        t0 = time.monotonic()
        out = subprocess.run(
            [wrk, "--latency", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s",
             f"http://127.0.0.1:{port}/"],
            capture_output=True, text=True, timeout=args.duration + 30,
        ).stdout
        t1 = time.monotonic()
        cpu1 = _cpu_seconds(server.pid)
        result = parse_wrk(out)
        if result["non2xx"] or result["socket_errors"]:
            return None, f"{result['non2xx']} non-2xx responses, {result['socket_errors']} socket errors"
        if cpu0 is not None and cpu1 is not None and result["requests"]:
            result["server_us_per_request"] = (cpu1 - cpu0) / (result["rate"] * (t1 - t0)) * 1e6
        return result, None
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _ratio(row, key, names, higher_is_better=True):
    base = [n for n in BASELINES if n in names]
    ratios = []
    for rnd, ref in enumerate(row.get(REFERENCE, [])):
        others = [row[b][rnd][key] for b in base if row[b][rnd] is not None and row[b][rnd].get(key)]
        if ref is None or not ref.get(key) or not others:
            continue
        ratios.append(ref[key] / max(others) if higher_is_better else min(others) / ref[key])
    return _bench.fmt_ratio(_bench.ratio_stats(ratios))


def _med(results, key):
    vals = [r[key] for r in results if r is not None and r.get(key) is not None]
    return statistics.median(vals) if vals else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", metavar="LOOP", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=3, help="seconds of wrk per cell")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--loops", default="asyncio,uvloop,rloop,ferroloop")
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s per cell")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    if args.quick:
        args.rounds, args.duration = 1, 1
    wrk = ensure_wrk()
    specs, skipped = _bench.available_loops([n.strip() for n in args.loops.split(",")])
    names = [s.name for s in specs]
    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print(_bench.versions_line(specs))
    print(f"wrk: {args.threads} thread(s), {args.connections} connections, {args.duration} s per cell, "
          f"{args.rounds} round(s); server: uvicorn + httptools, one process per cell")
    for name, reason in skipped:
        print(f"skipping {name}: {reason}")
    row = {n: [] for n in names}
    errors = {}
    for rnd in range(args.rounds):
        for name in _bench.rotated(names, rnd):
            result, err = run_cell(name, wrk, args)
            if err:
                errors[name] = err
            row[name].append(result)
        print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    def fmt_s(s):
        return "n/a" if s is None else (f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.0f} us")

    headers = ["loop", "requests/s", "p50", "p99", "server CPU us/request"]
    lines = []
    for n in names:
        lines.append([n, _bench.fmt_time(None) if _med(row[n], "rate") is None else f"{_med(row[n], 'rate'):,.0f}",
                      fmt_s(_med(row[n], "p50")), fmt_s(_med(row[n], "p99")),
                      "n/a" if _med(row[n], "server_us_per_request") is None
                      else f"{_med(row[n], 'server_us_per_request'):.1f}"])
    print()
    if args.markdown:
        print("| " + " | ".join(headers) + " |")
        print("|" + "---|" * len(headers))
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        print(_bench._table(headers, lines))
    if REFERENCE in names:
        print(f"\n{REFERENCE} / best of {','.join(b for b in BASELINES if b in names)}: "
              f"requests/s {_ratio(row, 'rate', names)}; "
              f"server CPU per request {_ratio(row, 'server_us_per_request', names, False)} (> 1: ferroloop cheaper)")
    for name, err in errors.items():
        print(f"error: {name}: {err}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
