"""docs/usage.md: ferroloop.run, asyncio.run's twin."""

import asyncio

import ferroloop


async def main() -> str:
    return type(asyncio.get_running_loop()).__module__


print(ferroloop.run(main()))
