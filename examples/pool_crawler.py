"""The seeds' crawler on every core: ``ferroloop.Pool`` (``make lint`` type-checks it).

Seed 003's exercise, "a concurrent crawler that fetches pages and extracts their titles",
with the seeds' answer to multiple cores (seed 004: multi-process + coroutines). The parent's
loop serves a small site on 127.0.0.1 (so the example needs no network); a pool of worker
processes, each a ferroloop loop running ``--concurrency`` fetches at once, fetches every page
and parses it (the CPU-bound step that needs more than one core).

    python examples/pool_crawler.py [--pages 200] [--processes 2] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import html.parser
import time
from typing import assert_type

import ferroloop

# -- in each worker -------------------------------------------------------------------------

#: opened once per worker by the initializer (it runs inside the worker's loop)
limits: asyncio.Semaphore | None = None


async def init_worker(max_connections: int) -> None:
    global limits
    limits = asyncio.Semaphore(max_connections)


class TitleParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


async def fetch_title(url: tuple[str, int, str]) -> str:
    """Fetch one page (HTTP/1.1 over asyncio streams) and return its title."""
    host, port, path = url
    assert limits is not None, "the initializer runs first"
    async with limits:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            writer.write(request.encode())
            body = await reader.read()
        finally:
            writer.close()
    parser = TitleParser()
    parser.feed(body.decode().split("\r\n\r\n", 1)[1])
    return parser.title


# -- in the parent ------------------------------------------------------------------------------


async def serve_site(pages: int) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        n = int(request.split(b" ")[1].rsplit(b"/", 1)[1])
        words = " ".join(f"word{(n * i) % 97}" for i in range(2000))
        body = f"<html><head><title>Page {n}</title></head><body><p>{words}</p></body></html>"
        await asyncio.sleep(0.005)  # a remote site's latency
        writer.write(
            f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode()
        )
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def main(pages: int, processes: int, concurrency: int) -> None:
    server = await serve_site(pages)
    port: int = server.sockets[0].getsockname()[1]
    urls = [("127.0.0.1", port, f"/page/{n}") for n in range(pages)]
    async with server:
        start = time.perf_counter()
        async with ferroloop.Pool(
            processes, concurrency=concurrency, initializer=init_worker, initargs=(concurrency,)
        ) as pool:
            titles = await pool.map(fetch_title, urls)
            assert_type(titles, list[str])
            first = await pool.apply(fetch_title, (urls[0],))
            assert_type(first, str)
            done = 0
            async for title in pool.imap_unordered(fetch_title, urls[:10]):
                assert_type(title, str)
                done += 1
        elapsed = time.perf_counter() - start
    assert titles == [f"Page {n}" for n in range(pages)] and first == "Page 0" and done == 10
    print(f"{pages} pages in {elapsed:.2f} s with {processes} processes x {concurrency} "
          f"coroutines: {titles[0]!r} ... {titles[-1]!r}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    ferroloop.run(main(args.pages, args.processes, args.concurrency))
