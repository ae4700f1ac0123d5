"""docs/usage.md: ferroloop.install(), then asyncio as usual."""

import asyncio

import ferroloop


async def main() -> str:
    return type(asyncio.get_running_loop()).__module__


ferroloop.install()
print(asyncio.run(main()))
