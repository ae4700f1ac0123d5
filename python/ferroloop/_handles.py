"""Rare paths of native handles, in Python: repr, error reports, debug-mode helpers.

The extension calls these once per error, per ``repr`` or only in debug mode, so they use
asyncio's own ``format_helpers`` and produce exactly asyncio's text.
"""

from __future__ import annotations

import sys
import traceback
from asyncio import base_events, coroutines, format_helpers
from typing import TYPE_CHECKING, Any, cast

from . import _compat, _native

if TYPE_CHECKING:
    from ._loop import EventLoop


def _debug(handle: _native.Handle) -> bool:
    loop = handle._loop
    return loop is not None and loop.get_debug()


def handle_repr(handle: _native.Handle) -> str:
    info = [type(handle).__name__]
    cancelled = handle._cancelled
    if cancelled:
        info.append("cancelled")
    callback = handle._callback
    if callback is not None:
        info.append(_compat.format_callback_source(callback, handle._args, _debug(handle)))
    tb = handle._source_traceback
    if tb:
        filename, lineno = tb[-1][0], tb[-1][1]
        info.append(f"created at {filename}:{lineno}")
    when = getattr(handle, "_when", None)
    if when is not None:
        info.insert(2 if cancelled else 1, f"when={when}")
    return "<{}>".format(" ".join(info))


def report_callback_error(handle: _native.Handle, exc: BaseException) -> None:
    source = _compat.format_callback_source(handle._callback, handle._args, _debug(handle))
    context: dict[str, Any] = {
        "message": f"Exception in callback {source}",
        "exception": exc,
        "handle": handle,
    }
    tb = handle._source_traceback
    if tb:
        context["source_traceback"] = tb
    # the ferroloop loop that made it (a handle lets go of it only after its run)
    cast("EventLoop", handle._loop).call_exception_handler(context)


def source_traceback() -> traceback.StackSummary:
    # frame 1 is the Python code that called the native call_soon/call_later
    return format_helpers.extract_stack(sys._getframe(1))


def log_slow_callback(handle: _native.Handle, seconds: float) -> None:
    # looked up at call time, so a test patching asyncio.base_events.logger sees it
    base_events.logger.warning(  # type: ignore[attr-defined]  # not in typeshed
        "Executing %s took %.3f seconds", _compat.format_handle(handle), seconds
    )


def describe_handle(handle: _native.Handle) -> str:
    """A handle as asyncio's slow-callback warning names it (a task's step shows the task).
    A ``__repr__`` that fails is named in the text rather than raised: this is monitoring,
    and the callback itself already ran."""
    try:
        return _compat.format_handle(handle)
    except Exception as exc:
        return f"<{type(handle).__name__} (repr failed: {exc!r})>"


def check_callback(callback: object, method: str) -> None:
    if coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(callback):
        raise TypeError(f"coroutines cannot be used with {method}()")
    if not callable(callback):
        raise TypeError(f"a callable object was expected by {method}(), got {callback!r}")
