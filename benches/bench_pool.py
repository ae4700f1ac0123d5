"""Multi-process + coroutines: ferroloop.Pool vs aiomultiprocess.Pool vs a multiprocessing.Pool
of asyncio.run workers, alternated in one run.

Two parts:

* ``crawl``: the seeds' crawler (seed 003's ``fetch`` + "extract the titles" exercise) on a
  local site: a server started by the bench (its own process, ferroloop, ``--latency`` ms
  per response to stand for a remote site) serves ``--pages`` HTML pages of about 30 KB;
  each call fetches one page (a new connection, HTTP/1.1 over asyncio streams) and parses it
  (``html.parser``: title, links, a word count: the CPU-bound step). Each pool runs it with
  1 process and with ``--processes`` (default: the CPU count), ``--concurrency`` coroutines
  per process; pages per second, median [min-max] over the rounds.
* ``overhead``: the cost per call of a no-op: ``ferroloop.Pool.map`` of a coroutine that
  returns its argument, of a plain function (the pool's transport alone) and of a coroutine
  that waits once, vs ``multiprocessing.Pool.map`` of a function that returns its argument,
  with the batch ferroloop's pool uses for that map (``concurrency`` + prefetch per worker)
  and with multiprocessing's default chunk size; µs per call.

    python benches/bench_pool.py [--quick] [--rounds 5] [--markdown] [--only crawl|overhead]

The pools are started (and warmed with one small map) outside the timed part.
"""

from __future__ import annotations

import argparse
import asyncio
import html.parser
import math
import multiprocessing
import os
import socket
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import ferroloop  # noqa: E402

try:
    import aiomultiprocess
except ImportError:  # pragma: no cover - optional comparison
    aiomultiprocess = None

# -- the site -------------------------------------------------------------------------------

WORDS = ("协程 event loop coroutine 事件循环 await task future process core crawler page "
         "link title 并发 parser socket").split()


def page_html(n: int, pages: int) -> bytes:
    links = "".join(f'<li><a href="/page/{(n * 7 + i) % pages}">page {(n * 7 + i) % pages}</a></li>'
                    for i in range(40))
    paras = "".join(
        "<p>" + " ".join(WORDS[(n + i * j) % len(WORDS)] for j in range(60)) + "</p>"
        for i in range(30)
    )
    body = f"<html><head><title>Page {n}</title></head><body><h1>Page {n}</h1><ul>{links}</ul>{paras}</body></html>"
    return body.encode()


async def serve_site(sock: socket.socket, pages: int, latency: float, ready) -> None:
    bodies = [page_html(n, pages) for n in range(pages)]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                n = int(path.rsplit("/", 1)[1]) % pages
                if latency:
                    await asyncio.sleep(latency)
                body = bodies[n]
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
                if b"close" in head.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, sock=sock, backlog=4096)
    ready.set()
    async with server:
        await server.serve_forever()


def site_main(sock: socket.socket, pages: int, latency: float, ready) -> None:
    ferroloop.run(serve_site(sock, pages, latency, ready))


# -- the crawler: one call per page -----------------------------------------------------------


class TitleParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.links: list[str] = []
        self.words: dict[str, int] = {}
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self._in_title = True
        elif tag == "a":
            self.links.extend(v for k, v in attrs if k == "href" and v)

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        for word in data.split():
            self.words[word] = self.words.get(word, 0) + 1


async def fetch(url: str) -> bytes:
    host, port, path = url.split("|")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        return await reader.readexactly(length)
    finally:
        writer.close()


def parse(body: bytes) -> tuple[str, int, int]:
    parser = TitleParser()
    parser.feed(body.decode())
    return parser.title, len(parser.links), sum(parser.words.values())


async def crawl_one(url: str) -> tuple[str, int, int]:
    return parse(await fetch(url))


_PAGES: dict[int, bytes] = {}


async def parse_only(n: int) -> tuple[str, int, int]:
    """The CPU-bound step alone (the page made here, no I/O)."""
    body = _PAGES.get(n)
    if body is None:
        body = _PAGES[n] = page_html(n, 1000)
    return parse(body)


async def crawl_chunk_async(urls: list[str], concurrency: int) -> list[tuple[str, int, int]]:
    sem = asyncio.Semaphore(concurrency)

    async def one(url):
        async with sem:
            return await crawl_one(url)

    return await asyncio.gather(*(one(u) for u in urls))


def crawl_chunk(args: tuple[list[str], int]) -> list[tuple[str, int, int]]:
    """A multiprocessing.Pool task: asyncio.run over a chunk of urls."""
    urls, concurrency = args
    return asyncio.run(crawl_chunk_async(urls, concurrency))


async def noop(x):
    return x


async def noop_wait(x):
    """A no-op that waits once (one loop turn), as a call doing I/O does."""
    await asyncio.sleep(0)
    return x


def noop_sync(x):
    return x


def noop_coroutine_bare(x):
    """The no-op coroutine run the cheapest way there is: one ``send``, no loop, no task."""
    coro = noop(x)
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("noop() did not finish in one step")


# -- the pools ---------------------------------------------------------------------------------


async def run_ferroloop_pool(processes, concurrency, urls, warm):
    async with ferroloop.Pool(processes, concurrency=concurrency) as pool:
        await pool.map(crawl_one, warm)
        t0 = time.perf_counter()
        results = await pool.map(crawl_one, urls)
        elapsed = time.perf_counter() - t0
    check(results, urls)
    return elapsed


async def run_parse_only(processes, concurrency, pages):
    async with ferroloop.Pool(processes, concurrency=concurrency) as pool:
        await pool.map(parse_only, range(pages))  # warm: each worker makes its pages once
        t0 = time.perf_counter()
        results = await pool.map(parse_only, range(pages))
        elapsed = time.perf_counter() - t0
    if len(results) != pages:
        raise RuntimeError("wrong results")
    return elapsed


async def run_aiomultiprocess(processes, concurrency, urls, warm):
    async with aiomultiprocess.Pool(processes, childconcurrency=concurrency) as pool:
        await pool.map(crawl_one, warm)
        t0 = time.perf_counter()
        results = await pool.map(crawl_one, urls)
        elapsed = time.perf_counter() - t0
    check(results, urls)
    return elapsed


def run_mp_asyncio(processes, concurrency, urls, warm):
    with multiprocessing.get_context("forkserver").Pool(processes) as pool:
        pool.map(crawl_chunk, [(warm, concurrency)] * processes)
        t0 = time.perf_counter()
        # one chunk per process and round of `concurrency`: each task is one asyncio.run
        size = max(1, min(math.ceil(len(urls) / processes), 4 * concurrency))
        chunks = [(urls[i:i + size], concurrency) for i in range(0, len(urls), size)]
        results = [r for part in pool.map(crawl_chunk, chunks, chunksize=1) for r in part]
        elapsed = time.perf_counter() - t0
    check(results, urls)
    return elapsed


def check(results, urls):
    if len(results) != len(urls) or not all(r[0].startswith("Page ") for r in results):
        raise RuntimeError("the crawl returned wrong results")


async def overhead_ferroloop(processes, concurrency, n, fn=noop):
    async with ferroloop.Pool(processes, concurrency=concurrency) as pool:
        await pool.map(fn, range(1000))
        t0 = time.perf_counter()
        await pool.map(fn, range(n))
        return (time.perf_counter() - t0) / n * 1e6


def overhead_mp(processes, n, chunksize, fn=noop_sync):
    with multiprocessing.get_context("forkserver").Pool(processes) as pool:
        pool.map(fn, range(1000))
        t0 = time.perf_counter()
        pool.map(fn, range(n), chunksize=chunksize)
        return (time.perf_counter() - t0) / n * 1e6


def spread(values, fmt="{:,.0f}"):
    med = statistics.median(values)
    return f"{fmt.format(med)} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def table(header, rows, markdown):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
        lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    else:
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths))]
        lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer pages, calls and rounds")
    parser.add_argument("--processes", type=int, default=ferroloop._pool._cpu_count())
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--pages", type=int, default=600)
    parser.add_argument("--latency", type=float, default=5.0, help="ms per response")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200_000, help="no-op calls (overhead)")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--only", choices=("crawl", "overhead"),
                        help="only the crawl (with its parse step) or only the overhead")
    args = parser.parse_args()
    if args.quick:
        args.pages, args.rounds, args.calls = 150, 2, 20_000

    if args.only != "overhead":
        crawl(args)
    if args.only != "crawl":
        overhead(args)


def crawl(args) -> None:
    """The crawl with 1 process and N, then its parse step alone."""
    ctx = multiprocessing.get_context("forkserver")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    port = sock.getsockname()[1]
    ready = ctx.Event()
    site = ctx.Process(target=site_main, args=(sock, args.pages, args.latency / 1000, ready),
                       daemon=True)
    site.start()
    sock.close()
    if not ready.wait(30):
        raise RuntimeError("the site did not start")

    urls = [f"127.0.0.1|{port}|/page/{n}" for n in range(args.pages)]
    warm = urls[:8]
    configs = []
    for procs in sorted({1, args.processes}):
        configs.append(("ferroloop.Pool", procs,
                        lambda p=procs: ferroloop.run(run_ferroloop_pool(p, args.concurrency, urls, warm))))
        if aiomultiprocess is not None:
            configs.append(("aiomultiprocess.Pool", procs,
                            lambda p=procs: asyncio.run(run_aiomultiprocess(p, args.concurrency, urls, warm))))
        configs.append(("multiprocessing.Pool + asyncio.run", procs,
                        lambda p=procs: run_mp_asyncio(p, args.concurrency, urls, warm)))

    print(f"# crawl: {args.pages} pages of {len(page_html(0, args.pages)) // 1024} KB, "
          f"{args.latency:g} ms latency, concurrency {args.concurrency} per process, "
          f"{args.rounds} rounds (pages/s, median [min-max]); CPython {sys.version.split()[0]}")
    times = {(name, procs): [] for name, procs, _ in configs}
    for r in range(args.rounds):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for name, procs, fn in order:
            times[(name, procs)].append(fn())
    rows = []
    for name, procs, _ in configs:
        rates = [args.pages / t for t in times[(name, procs)]]
        one = statistics.median(args.pages / t for t in times[(name, 1)])
        rows.append((name, procs, spread(rates), f"{statistics.median(rates) / one:.2f}x"))
    table(("pool", "processes", "pages/s", "vs 1 process"), rows, args.markdown)
    site.terminate()
    site.join()

    # the CPU-bound step alone: how close N processes come to N times one
    print()
    print(f"# the parse step alone ({args.pages} pages, no I/O; pages/s, median [min-max])")
    cpu = {}
    counts = sorted({1, args.processes})
    for r in range(args.rounds):
        for procs in counts[r % len(counts):] + counts[:r % len(counts)]:
            cpu.setdefault(procs, []).append(
                ferroloop.run(run_parse_only(procs, args.concurrency, args.pages)))
    one = statistics.median(args.pages / t for t in cpu[1])
    rows = [("ferroloop.Pool", procs, spread([args.pages / t for t in cpu[procs]]),
             f"{statistics.median(args.pages / t for t in cpu[procs]) / one:.2f}x")
            for procs in counts]
    table(("pool", "processes", "pages/s", "vs 1 process"), rows, args.markdown)


def overhead(args) -> None:
    """The cost per call of a no-op, against multiprocessing.Pool.map."""
    n = args.calls
    procs = args.processes
    conc = args.concurrency
    batch = conc + max(conc, min(1024, math.ceil(n / (4 * procs))))
    default_chunk = math.ceil(n / (4 * procs))
    cases = [
        (f"ferroloop.Pool.map, no-op coroutine (concurrency {conc}, batch <= {batch})",
         lambda: ferroloop.run(overhead_ferroloop(procs, conc, n))),
        ("ferroloop.Pool.map, no-op function (same batches)",
         lambda: ferroloop.run(overhead_ferroloop(procs, conc, n, noop_sync))),
        ("ferroloop.Pool.map, a coroutine that waits once (sleep(0))",
         lambda: ferroloop.run(overhead_ferroloop(procs, conc, n, noop_wait))),
        (f"multiprocessing.Pool.map, no-op function, chunksize {batch}",
         lambda: overhead_mp(procs, n, batch)),
        (f"multiprocessing.Pool.map, no-op function, chunksize {default_chunk} (its default)",
         lambda: overhead_mp(procs, n, default_chunk)),
        (f"multiprocessing.Pool.map, the no-op coroutine run by one send(), chunksize {batch}",
         lambda: overhead_mp(procs, n, batch, noop_coroutine_bare)),
    ]
    print()
    print(f"# overhead: {n:,} calls over {procs} processes (us per call, median [min-max])")
    vals = {name: [] for name, _ in cases}
    for r in range(args.rounds):
        for name, fn in cases[r % len(cases):] + cases[:r % len(cases)]:
            vals[name].append(fn())
    ref = statistics.median(vals[cases[3][0]])
    rows = [(name, spread(v, "{:.2f}"), f"{statistics.median(v) / ref:.2f}x")
            for name, v in vals.items()]
    table(("case", "us/call", "vs mp, same batch"), rows, args.markdown)


if __name__ == "__main__":
    main()
