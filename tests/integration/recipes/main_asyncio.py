"""docs/usage.md: an unchanged asyncio script, for ``python -m ferroloop run main_asyncio.py``."""

import asyncio


async def main() -> str:
    return type(asyncio.get_running_loop()).__module__


print(asyncio.run(main()))
