"""gunicorn with uvicorn's worker (the ``uvicorn-worker`` package), on ferroloop.

    gunicorn app:app -k ferroloop.uvicorn_worker.UvicornWorker

uvicorn's worker runs its server with ``loop="auto"``: uvloop when it is importable, else
``asyncio.SelectorEventLoop``, whatever asyncio's policy says, so ``ferroloop.install()``
in gunicorn's ``post_fork`` does not reach it. This subclass changes only that setting, to
the loop factory ``"ferroloop:new_event_loop"`` (uvicorn >= 0.36 takes an import string
there). ``uvicorn.workers.UvicornWorker``, the worker uvicorn itself once shipped, is
deprecated in favour of the ``uvicorn-worker`` package.
"""

from __future__ import annotations

from typing import Any, ClassVar

import uvicorn_worker  # type: ignore[import-untyped]  # no py.typed (uvicorn-worker 0.4)

__all__ = ["UvicornWorker"]


class UvicornWorker(uvicorn_worker.UvicornWorker):  # type: ignore[misc]  # untyped base
    """uvicorn-worker's ``UvicornWorker``, serving on a ferroloop loop."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        **uvicorn_worker.UvicornWorker.CONFIG_KWARGS,
        "loop": "ferroloop:new_event_loop",
    }
