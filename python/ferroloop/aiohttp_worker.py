"""gunicorn with aiohttp's worker, on ferroloop.

    gunicorn app:make_app -k ferroloop.aiohttp_worker.GunicornWebWorker

aiohttp's ``GunicornWebWorker`` takes its loop from ``asyncio.new_event_loop()`` when the
worker process starts; this one installs ferroloop's policy first, as aiohttp's own
``GunicornUVLoopWebWorker`` does for uvloop. Without this class, aiohttp's worker and a
gunicorn config whose ``post_fork`` calls ``ferroloop.install()`` do the same
(docs/usage.md).
"""

from __future__ import annotations

from aiohttp import worker

import ferroloop

__all__ = ["GunicornWebWorker"]


class GunicornWebWorker(worker.GunicornWebWorker):
    """aiohttp's gunicorn worker, serving on a ferroloop loop."""

    def init_process(self) -> None:
        ferroloop.install()
        super().init_process()
