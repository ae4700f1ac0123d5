"""docs/usage.md: asyncio.run given ferroloop's loop factory (Python 3.12+)."""

import asyncio

import ferroloop


async def main() -> str:
    return type(asyncio.get_running_loop()).__module__


print(asyncio.run(main(), loop_factory=ferroloop.new_event_loop))
