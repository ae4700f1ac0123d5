"""The seeds' aiohttp crawler (seed 003, "异步爬虫" / "I/O密集型任务") against a local server.

The seed's program: ``fetch(session, url)`` reads one page with
``async with session.get(url) as response: return await response.text()``, and ``main()``
opens one ``aiohttp.ClientSession`` and runs ``asyncio.gather(*[fetch(session, url) ...])``
over the URLs; its second version, ``download()``, reads the body with ``response.read()``
over 25 URLs. Here the URLs are 25 distinct pages of an aiohttp web server started in the
same test on 127.0.0.1 port 0, each answering after a short ``asyncio.sleep`` so that the
fetches have to overlap. Both the server and the client run on the loop under test.
"""

import asyncio
import hashlib

from aiohttp import ClientSession, web

from loop_helpers import run

PAGES = 25
DELAY = 0.05  # the server's per-page think time


def page_body(i):
    """Page ``i``'s deterministic content; sizes grow to ~100 KB so some bodies span many reads."""
    digest = hashlib.sha256(str(i).encode()).hexdigest()
    line = f"page {i} line {{}} {digest}\n"
    return f"<html><title>page {i}</title><body>\n" + "".join(
        line.format(n) for n in range(1 + i * 40)
    ) + "</body></html>\n"


class PageServer:
    """An aiohttp web application serving /page/{i}, counting requests in flight."""

    def __init__(self):
        self.in_flight = 0
        self.peak = 0
        self.served = []
        self.runner = None
        self.base_url = None

    async def page(self, request):
        i = int(request.match_info["i"])
        if not 0 <= i < PAGES:
            raise web.HTTPNotFound()
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(DELAY)
            self.served.append(i)
            return web.Response(text=page_body(i), content_type="text/html")
        finally:
            self.in_flight -= 1

    async def start(self):
        app = web.Application()
        app.router.add_get("/page/{i}", self.page)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        assert host == "127.0.0.1" and port > 0
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self):
        await self.runner.cleanup()


# -- the seed's crawler ---------------------------------------------------------------


async def fetch(session, url):
    async with session.get(url) as response:
        assert response.status == 200, (url, response.status)
        return await response.text()


async def download(session, url):
    async with session.get(url) as response:
        assert response.status == 200, (url, response.status)
        content = await response.read()
        return content


async def crawl(urls):
    async with ClientSession() as session:
        # 并发爬取所有URL (fetch every URL concurrently)
        tasks = [fetch(session, url) for url in urls]
        results = await asyncio.gather(*tasks)
        downloads = await asyncio.gather(*[download(session, url) for url in urls])
    return results, downloads


async def settle():
    """Let closed transports finish closing (connection_lost runs on a later turn)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def crawler_main():
    server = PageServer()
    await server.start()
    try:
        urls = [f"{server.base_url}/page/{i}" for i in range(PAGES)]
        results, downloads = await crawl(urls)
    finally:
        await server.stop()
        await settle()
    return server, results, downloads


def test_aiohttp_crawler_25_pages(loop):
    server, results, downloads = run(loop, crawler_main(), timeout=10)

    assert len(results) == PAGES and len(downloads) == PAGES
    for i, (text, raw) in enumerate(zip(results, downloads)):
        expected = page_body(i)
        assert text == expected, f"page {i}: got {len(text)} chars, expected {len(expected)}"
        assert raw == expected.encode(), f"page {i}: download differs"
    # every page served exactly once per round, nothing else
    assert sorted(server.served) == sorted(list(range(PAGES)) * 2)
    assert server.in_flight == 0
    # the fetches overlapped: the server had several requests in flight at once
    assert server.peak > 1, f"requests were served one at a time (peak in flight {server.peak})"


def test_aiohttp_crawler_with_runner(loop_factory):
    """The same crawl under ``asyncio.Runner(loop_factory=...)`` (the seed's ``asyncio.run``)."""
    probe = loop_factory()
    probe.close()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        assert type(runner.get_loop()) is type(probe)
        server, results, downloads = runner.run(asyncio.wait_for(crawler_main(), 10))
    assert results == [page_body(i) for i in range(PAGES)]
    assert downloads == [page_body(i).encode() for i in range(PAGES)]
    assert server.peak > 1, f"requests were served one at a time (peak in flight {server.peak})"

