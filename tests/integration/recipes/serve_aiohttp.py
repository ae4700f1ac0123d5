"""docs/usage.md: aiohttp's run_app on a ferroloop loop.  python serve_aiohttp.py [PORT]"""

import sys

from aiohttp import web
from aiohttp_app import make_app

import ferroloop

if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    web.run_app(make_app(), host="127.0.0.1", port=port, loop=ferroloop.new_event_loop())
