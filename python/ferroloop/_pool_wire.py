"""The pool's messages: what a parent and a worker say to each other, and how they are framed.

Shared by both sides of ``ferroloop.Pool`` (``_pool.py`` in the parent, ``_pool_worker.py`` in
a worker) and by every kind of worker (local processes over pipes, Dask workers through their
actors), so the fault rules are written once:

* A message is a tuple whose first item is one of the ``OP_*`` numbers below. Over a pipe it
  travels as one frame: an 8-byte big-endian length, then the pickled tuple.
* Calls travel in batches: ``(OP_CALLS, [(first_id, count, kind, payload), ...])``, where
  ``payload`` is ``pickle.dumps((fn, [arg, ...]))`` on its own, so a batch whose function or
  arguments cannot be unpickled in the worker fails exactly its calls (ids ``first_id`` ..
  ``first_id + count - 1``) and nothing else.
* Results travel in batches too: ``(OP_RESULTS, [(first_id, count), ...], values,
  [(id, error), ...])``: runs of consecutive call ids (calls that finish in the order they
  came, the usual case, make one run per batch), then their values in the same order,
  pickled on its own for the same reason; an ``error`` is an ``ErrorInfo`` (type
  name, message, traceback text, the pickled exception or ``None``), so an exception that
  cannot cross still reaches the caller as its type name, message and the worker's traceback.

What runs per call here is a few tuple operations; what runs per batch is one ``pickle.dumps``
and one ``pickle.loads``: the batching is where the cost per call is saved (docs/pool.md has
the measurement).
"""

from __future__ import annotations

import pickle
import struct
import traceback
from typing import Any

#: parent -> worker: ``(OP_CALLS, [(first_id, count, kind, payload), ...])``
OP_CALLS = 1
#: parent -> worker: ``(OP_CANCEL, [id, ...])``, cancel those calls' coroutines
OP_CANCEL = 2
#: parent -> worker: ``(OP_STOP,)``, cancel what is left and exit
OP_STOP = 3
#: worker -> parent: ``(OP_READY, pid)``, the initializer has run
OP_READY = 4
#: worker -> parent: ``(OP_INIT_FAILED, ErrorInfo)``, the initializer raised; the worker exits
OP_INIT_FAILED = 5
#: worker -> parent: ``(OP_RESULTS, [(first_id, count), ...], pickled [value, ...],
#: [(id, ErrorInfo), ...])``
OP_RESULTS = 6

#: how a call's argument is applied: ``fn(arg)``, ``fn(*arg)``, ``fn(*arg[0], **arg[1])``
KIND_ONE = 0
KIND_STAR = 1
KIND_APPLY = 2

PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL
HEADER = struct.Struct("!Q")

#: ``(qualified type name, str(exc), traceback text, pickled exception or None)``
ErrorInfo = tuple[str, str, str, bytes | None]


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a pool worker, as text: set as the
    ``__cause__`` of the exception the caller receives (as ``multiprocessing.pool`` does), so
    printing that exception shows where in the worker it was raised."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class RemoteError(Exception):
    """An exception raised in a pool worker that could not be recreated in the caller's
    process (it could not be pickled there, or unpickled here): its type's qualified name
    is ``type_name``; the message is ``"<type name>: <message>"``."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name


def frame(message: tuple[Any, ...]) -> bytes:
    """One message as a frame (the length, then the pickled tuple)."""
    payload = pickle.dumps(message, PICKLE_PROTOCOL)
    return HEADER.pack(len(payload)) + payload


def type_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def error_info(exc: BaseException) -> ErrorInfo:
    """What crosses the process boundary for an exception raised by a call."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        pickled: bytes | None = pickle.dumps(exc, PICKLE_PROTOCOL)
    except Exception:
        pickled = None
    try:
        message = str(exc)
    except Exception:  # its __str__ raised: the call still gets an answer
        message = "<exception str() failed>"
    return (type_name(type(exc)), message, tb, pickled)


def rebuild_error(info: ErrorInfo) -> BaseException:
    """The exception for the caller: the worker's own exception when it unpickles here, a
    ``RemoteError`` naming its type otherwise; its ``__cause__`` is the worker's traceback."""
    name, message, tb, pickled = info
    exc: BaseException | None = None
    if pickled is not None:
        try:
            loaded = pickle.loads(pickled)
        except Exception:
            loaded = None
        if isinstance(loaded, BaseException):
            exc = loaded
    if exc is None:
        exc = RemoteError(name, message)
    exc.__cause__ = RemoteTraceback(f'\n"""\n{tb}"""')
    return exc


class FrameReader:
    """Cuts a byte stream into messages: ``feed(data)`` calls ``on_message`` for each
    complete frame. A frame that does not unpickle raises from ``feed`` (the stream cannot be
    trusted any more: the caller treats the peer as lost)."""

    __slots__ = ("_buf", "_on_message")

    def __init__(self, on_message: Any) -> None:
        self._buf = bytearray()
        self._on_message = on_message

    def feed(self, data: bytes) -> None:
        buf = self._buf
        if buf:
            buf += data
            view: bytes | bytearray = buf
        else:
            view = data
        size = len(view)
        pos = 0
        header = HEADER
        on_message = self._on_message
        while size - pos >= 8:
            (n,) = header.unpack_from(view, pos)
            end = pos + 8 + n
            if end > size:
                break
            on_message(pickle.loads(view[pos + 8 : end]))
            pos = end
        if view is buf:
            del buf[:pos]
        elif pos < size:
            buf += view[pos:]

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buf)
