"""docs/usage.md: aiohttp's AppRunner inside a program run by ferroloop.run.

    python serve_aiohttp_runner.py [PORT]      # serves until Ctrl-C (SIGINT) or SIGTERM
"""

import asyncio
import signal
import sys

from aiohttp import web
from aiohttp_app import make_app

import ferroloop


async def main(port: int) -> None:
    runner = web.AppRunner(await make_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"Serving on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    ferroloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8080))
