"""TLS record paths on ferroloop: asyncio's ``sslproto.SSLProtocol`` against ferroloop's
(``_sslproto.SSLProtocol``, whose state and per-record paths are its native base
``_native.SSLProtocolCore``).

One process, one loop: a TLS client and a TLS echo server talk over loopback, one message
in flight, ``N`` round trips; the measure is the process's CPU time per round trip (both
ends: two decryptions, two encryptions, four socket calls), so the other core's load
matters less than for wall time. The two protocol classes alternate within each round.

    python benches/bench_tls_paths.py [--size 1024] [--rounds 5] [--n 20000] [--parts 2]

``--parts K`` makes the server answer each message with K writes in the same callback (an
HTTP response's headers and body are two): asyncio encrypts each write into its own TLS
record at once, ferroloop encrypts a run phase's small writes together when it ends.
"""

import argparse
import asyncio
import os
import ssl
import statistics
import subprocess
import tempfile
import time
from asyncio import sslproto

import ferroloop
from ferroloop import _sslproto, _streams


def make_contexts(tmp):
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
    return server, client


class Echo(asyncio.Protocol):
    parts = 1

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        step = -(-len(data) // self.parts)
        for i in range(0, len(data), step):
            self.transport.write(data[i:i + step])


class PingPong(asyncio.Protocol):
    def __init__(self, message, n, done):
        self.message, self.n, self.done = message, n, done
        self.count = self.got = 0

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.message)

    def data_received(self, data):
        self.got += len(data)
        if self.got < len(self.message):
            return
        self.got -= len(self.message)
        self.count += 1
        if self.count == self.n:
            self.done.set_result(None)
        else:
            self.transport.write(self.message)


async def one_run(server_ctx, client_ctx, message, n):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    done = loop.create_future()
    transport, _ = await loop.create_connection(
        lambda: PingPong(message, n, done), "127.0.0.1", port,
        ssl=client_ctx, server_hostname="localhost")
    t0 = time.process_time()
    await done
    cpu = time.process_time() - t0
    transport.close()
    server.close()
    await server.wait_closed()
    return cpu / n


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="message size (bytes)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=20000, help="round trips per measurement")
    parser.add_argument("--parts", type=int, default=1,
                        help="writes per answer, in one callback (default 1)")
    args = parser.parse_args()
    Echo.parts = max(1, args.parts)
    classes = {"asyncio SSLProtocol": sslproto.SSLProtocol, "ferroloop SSLProtocol": _sslproto.SSLProtocol}
    with tempfile.TemporaryDirectory() as tmp:
        server_ctx, client_ctx = make_contexts(tmp)
        message = b"x" * args.size
        times = {name: [] for name in classes}
        try:
            for r in range(args.rounds):
                order = list(classes) if r % 2 == 0 else list(reversed(classes))
                for name in order:
                    _streams._sslproto.SSLProtocol = classes[name]
                    times[name].append(ferroloop.run(one_run(server_ctx, client_ctx, message, args.n)))
        finally:
            _streams._sslproto.SSLProtocol = classes["ferroloop SSLProtocol"]
    slow, fast = times["asyncio SSLProtocol"], times["ferroloop SSLProtocol"]
    ratios = sorted(s / f for s, f in zip(slow, fast))
    print(f"TLS ping-pong, {args.size} B messages answered in {Echo.parts} write(s), {args.n} "
          f"round trips x {args.rounds} rounds, CPU time per round trip (both ends)")
    for name, ts in times.items():
        print(f"  {name:22} median {statistics.median(ts) * 1e6:6.1f} us   "
              f"[{min(ts) * 1e6:.1f}-{max(ts) * 1e6:.1f}]")
    print(f"  asyncio's / ferroloop's, paired per round: {statistics.median(ratios):.2f}x "
          f"[{ratios[0]:.2f}-{ratios[-1]:.2f}]")


if __name__ == "__main__":
    main()
