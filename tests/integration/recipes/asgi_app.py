"""An ASGI app that says which loop serves it: ``<loop class module> <pid>`` for any request.

At startup (the lifespan protocol, run in each worker process) it prints ``startup on
<module> in <pid>``, so that a test sees every worker's loop, not only the ones its
requests happen to reach.
"""

import asyncio
import os


def which_loop() -> str:
    return f"{type(asyncio.get_running_loop()).__module__} {os.getpid()}"


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                print(f"startup on {which_loop().replace(' ', ' in ')}", flush=True)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        body = which_loop().encode()
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"connection", b"close")],
        })
        await send({"type": "http.response.body", "body": body})
