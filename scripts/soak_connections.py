"""Connection soak: many short TCP connections on one ferroloop loop; fds and memory flat.

One loop runs an echo server (a ``Protocol``, and every tenth connection a streams handler)
and clients that each connect, send a message, read the echo and close, ``--concurrency``
at a time. After a warm-up the open fd count (/proc/self/fd) and the RSS are sampled; at
the end every transport must be gone (no ``SocketTransport`` or transport core left after
``gc.collect()``) and the server must have seen every connection lost.

    python scripts/soak_connections.py            # 200,000 connections
    python scripts/soak_connections.py --short    # 10,000 (the test target)
    python scripts/soak_connections.py --tls --count 10000   # TLS: a handshake per connection

With ``--tls`` both ends speak TLS (a throwaway certificate made with the ``openssl``
command), every connection is a full handshake, and no ``SSLProtocol`` may survive either.

Exit status 1 on a leak or a wrong echo.
"""

import argparse
import asyncio
import gc
import os
import ssl
import subprocess
import sys
import tempfile
import time

import ferroloop
from ferroloop import _native, _sslproto
from ferroloop._transports import SocketTransport

PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024


def fd_count():
    return len(os.listdir("/proc/self/fd"))


def rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


class Echo(asyncio.Protocol):
    lost = 0

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return None  # close

    def connection_lost(self, exc):
        Echo.lost += 1
        self.transport = None


async def stream_echo(reader, writer):
    data = await reader.read(1024)
    writer.write(data)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


TLS = {}  # "server" and "client" contexts when --tls


def make_tls_contexts(tmp):
    key, cert = os.path.join(tmp, "key.pem"), os.path.join(tmp, "cert.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cert)
    return {"server": server, "client": client}


async def one_client(port, i):
    tls = {"ssl": TLS["client"], "server_hostname": "localhost"} if TLS else {}
    reader, writer = await asyncio.open_connection("127.0.0.1", port, **tls)
    message = b"hello %d" % i
    writer.write(message)
    got = await reader.readexactly(len(message))
    writer.close()
    await writer.wait_closed()
    if got != message:
        raise AssertionError(f"connection {i}: echo {got!r} != {message!r}")


async def run(count, concurrency, warmup, samples):
    loop = asyncio.get_running_loop()
    tls = {"ssl": TLS["server"]} if TLS else {}
    server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=1024, **tls)
    streams_server = await asyncio.start_server(stream_echo, "127.0.0.1", 0, backlog=1024, **tls)
    port = server.sockets[0].getsockname()[1]
    streams_port = streams_server.sockets[0].getsockname()[1]
    sample_every = max(1, (count - warmup) // 10)
    base = None
    done = 0
    while done < count:
        batch = min(concurrency, count - done)
        await asyncio.gather(
            *(one_client(streams_port if (done + k) % 10 == 0 else port, done + k) for k in range(batch))
        )
        done += batch
        if base is None and done >= warmup:
            gc.collect()
            base = (fd_count(), rss_bytes(), sys.getallocatedblocks())
        elif base is not None and (done - warmup) // sample_every > len(samples):
            samples.append((done, fd_count(), rss_bytes()))
    # let the server sides finish closing
    for _ in range(100):
        if Echo.lost >= count - (count + 9) // 10:
            break
        await asyncio.sleep(0.01)
    server.close()
    streams_server.close()
    await server.wait_closed()
    await streams_server.wait_closed()
    return base


def main():
    parser = argparse.ArgumentParser(description="ferroloop connection soak")
    parser.add_argument("--short", action="store_true", help="10,000 connections instead of 200,000")
    parser.add_argument("--count", type=int, help="number of connections (overrides --short)")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--tls", action="store_true", help="TLS on every connection (a handshake each)")
    parser.add_argument("--fd-tolerance", type=int, default=4)
    parser.add_argument("--rss-tolerance-mb", type=float, default=8.0)
    args = parser.parse_args()
    count = args.count or (10_000 if args.short else 200_000)
    warmup = max(args.concurrency * 5, count // 10)

    print(f"connection soak: {count:,} {'TLS ' if args.tls else ''}connections, "
          f"{args.concurrency} at a time, ferroloop {ferroloop.__version__}")
    if args.tls:
        with tempfile.TemporaryDirectory() as tmp:
            TLS.update(make_tls_contexts(tmp))
    t0 = time.perf_counter()
    samples = []
    base_fds, base_rss, base_blocks = ferroloop.run(run(count, args.concurrency, warmup, samples))
    gc.collect()
    end_fds, end_rss, end_blocks = fd_count(), rss_bytes(), sys.getallocatedblocks()
    elapsed = time.perf_counter() - t0

    print(f"  after warm-up ({warmup:,}): {base_fds} fds, RSS {base_rss / MIB:.1f} MiB")
    print("  samples (connections: fds, RSS MiB): "
          + ", ".join(f"{c:,}: {f}, {r / MIB:.1f}" for c, f, r in samples))
    print(f"  end: {end_fds} fds, RSS {end_rss / MIB:.1f} MiB; {elapsed:.1f}s "
          f"({count / elapsed:,.0f} connections/s)")

    failures = []
    fd_growth = end_fds - base_fds
    rss_growth = end_rss - base_rss
    print(f"  fd growth after warm-up: {fd_growth:+d} (tolerance {args.fd_tolerance})")
    print(f"  RSS growth after warm-up: {rss_growth / MIB:+.2f} MiB "
          f"(tolerance {args.rss_tolerance_mb} MiB)")
    # Python objects left behind: a leak of one small object per connection (a few dozen
    # bytes, far below the RSS tolerance) still shows here
    blocks_per_conn = (end_blocks - base_blocks) / (count - warmup)
    print(f"  Python memory blocks after warm-up: {end_blocks - base_blocks:+,} "
          f"({blocks_per_conn:+.3f} per connection, tolerance 0.1)")
    if blocks_per_conn > 0.1:
        failures.append(f"object leak: {blocks_per_conn:.3f} Python memory blocks per connection")
    if fd_growth > args.fd_tolerance:
        failures.append(f"fd leak: {fd_growth} more fds")
    if rss_growth > args.rss_tolerance_mb * MIB:
        failures.append(f"memory leak: RSS grew {rss_growth / MIB:.2f} MiB")
    kinds = (SocketTransport, _native.SocketTransportCore, _sslproto.SSLProtocol,
             _sslproto._SSLProtocolTransport)
    alive = [o for o in gc.get_objects() if isinstance(o, kinds)]
    print(f"  transports alive after gc.collect(): {len(alive)}")
    if alive:
        failures.append(f"{len(alive)} transport object(s) still alive")
    expected_lost = count - (count + 9) // 10
    print(f"  server-side connection_lost calls: {Echo.lost:,} (expected {expected_lost:,})")
    if Echo.lost != expected_lost:
        failures.append(f"connection_lost called {Echo.lost} times, expected {expected_lost}")

    if failures:
        for f in failures:
            print(f"FAIL {f}")
        return 1
    print("OK   no fd, memory or transport leak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
