"""docs/usage.md: anyio on ferroloop, through its asyncio backend's loop_factory option."""

import asyncio

import anyio

import ferroloop


async def main() -> str:
    await anyio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


print(anyio.run(main, backend="asyncio", backend_options={"loop_factory": ferroloop.new_event_loop}))
