"""docs/usage.md: asyncio.Runner given ferroloop's loop factory (Python 3.11+)."""

import asyncio

import ferroloop


async def main() -> str:
    return type(asyncio.get_running_loop()).__module__


with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
    print(runner.run(main()))
