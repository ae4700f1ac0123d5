"""An aiohttp app that says which loop serves it: ``<loop class module> <pid>`` at ``/``.

``make_app`` is also what gunicorn's aiohttp worker calls (an async app factory). At
startup it prints ``startup on <module> in <pid>``.
"""

import asyncio
import os

from aiohttp import web


def which_loop() -> str:
    return f"{type(asyncio.get_running_loop()).__module__} {os.getpid()}"


async def index(request: web.Request) -> web.Response:
    return web.Response(text=which_loop())


async def on_startup(app: web.Application) -> None:
    print(f"startup on {which_loop().replace(' ', ' in ')}", flush=True)


async def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", index)
    app.on_startup.append(on_startup)
    return app
