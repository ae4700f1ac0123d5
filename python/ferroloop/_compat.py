"""Every private name of CPython's asyncio that ferroloop uses, resolved for the running
interpreter in this one module.

ferroloop inherits ``asyncio.BaseEventLoop`` and reuses asyncio's once-per-connection code
(docs/architecture.md), so it leans on names CPython does not promise. Each is listed here
with what it is used for, looked up once at import and handed out as a module attribute;
the rest of the package (and the extension, which imports its classes from here) uses
these attributes, never ``asyncio.x._y`` directly. When a CPython release removes or moves
one, ``import ferroloop`` fails at once with ``MissingPrivateName`` naming it, and
tests/test_compat.py (which walks ``PRIVATE_NAMES`` and the attribute lists below) fails
naming it, instead of a loop that breaks at the first connection.

Where the versions differ, the difference is resolved here (``format_callback_source``,
``SERVER_DETACH_ON_DEL``...) or the code is ferroloop's own (``_server.py``,
``_streams.py``'s ``_stop_serving``).

Types: typeshed describes some of these names (``_FlowControlMixin``, ``_SendfileMode``,
``SSLProtocol``'s state) and not others. Each name is annotated here with the type ferroloop
relies on; a class typeshed lacks is declared, for the type checker only, with the members
ferroloop uses (its run-time value is still the interpreter's class, from ``_private``).
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import sys
import weakref
from asyncio import (
    base_events,
    base_subprocess,
    constants,
    events,
    format_helpers,
    futures,
    selector_events,
    transports,
    unix_events,
)
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

VERSION = sys.version_info[:2]


class MissingPrivateName(ImportError):
    """A private asyncio name ferroloop needs is missing from this CPython."""


#: ``(qualified name, what ferroloop does with it)`` for every private module-level name.
PRIVATE_NAMES: dict[str, str] = {}


def _private(module: ModuleType | type, name: str, why: str) -> Any:
    qualified = f"{module.__name__}.{name}"
    PRIVATE_NAMES[qualified] = why
    try:
        return getattr(module, name)
    except AttributeError:
        raise MissingPrivateName(
            f"ferroloop needs {qualified} ({why}), which CPython "
            f"{sys.version.split()[0]} does not have"
        ) from None


# -- running loop, futures, formatting -------------------------------------------------------

get_running_loop: Callable[[], events.AbstractEventLoop | None] = _private(
    events, "_get_running_loop", "ferroloop.run refuses to nest")
set_running_loop: Callable[[events.AbstractEventLoop | None], None] = _private(
    events, "_set_running_loop", "run_forever marks the running loop")
set_result_unless_cancelled: Callable[[futures.Future[Any], Any], None] = _private(
    futures, "_set_result_unless_cancelled", "a connection's waiter is woken after connection_made")
_format_callback_source: Callable[..., str] = _private(
    format_helpers, "_format_callback_source", "Handle repr and callback error messages")
format_handle: Callable[[object], str] = _private(
    base_events, "_format_handle", "the slow-callback warning's text")
check_ssl_socket: Callable[[socket.socket], None] = _private(
    base_events, "_check_ssl_socket", "sock_* refuse SSL sockets")
HAS_IPv6: bool = _private(base_events, "_HAS_IPv6", "sock_connect resolves IPv6 addresses")
if TYPE_CHECKING:
    SendfileMode = constants._SendfileMode
    FlowControlMixin = transports._FlowControlMixin
else:
    SendfileMode = _private(constants, "_SendfileMode", "transports declare native sendfile")
    FlowControlMixin = _private(
        transports, "_FlowControlMixin", "asyncio's sendfile fallback checks isinstance")

# 3.13 shows a callback's arguments only in debug mode (`debug=`); 3.11 and 3.12 always do.
_FORMAT_TAKES_DEBUG = "debug" in inspect.signature(_format_callback_source).parameters


def format_callback_source(callback: object, args: tuple[Any, ...] | None, debug: bool) -> str:
    """asyncio's text for a callback and its arguments, as this version writes it."""
    if _FORMAT_TAKES_DEBUG:
        return _format_callback_source(callback, args, debug=debug)
    return _format_callback_source(callback, args)


# -- asyncio's classes whose code ferroloop reuses (the engine issue replaces them) ------------

if TYPE_CHECKING:

    # typeshed has no stubs for these classes: what ferroloop uses of them

    class UnixSubprocessTransport(base_subprocess.BaseSubprocessTransport):
        """``asyncio.unix_events._UnixSubprocessTransport``."""

    class Server(base_events.Server):
        """``asyncio.base_events.Server`` with the private state ``_server.Server`` uses."""

        _sockets: list[socket.socket] | None
        _active_count: int
        _clients: weakref.WeakSet[transports.Transport]  # 3.13 (_server.py: every version)
        if sys.version_info >= (3, 13):
            def _attach(self, transport: transports.Transport) -> None: ...
            def _detach(self, transport: transports.Transport) -> None: ...
        else:
            def _attach(self) -> None: ...
            def _detach(self) -> None: ...
        def _wakeup(self) -> None: ...

else:
    UnixSubprocessTransport = _private(
        unix_events, "_UnixSubprocessTransport", "subprocess transport over ferroloop's pipes")
    Server = base_events.Server
# only functions are taken from these two (``_streams.py``): Any to the type checker
SelectorEventLoop: Any = _private(
    selector_events, "BaseSelectorEventLoop", "accepting connections, sendfile (functions reused)")
UnixSelectorEventLoop: Any = _private(
    unix_events, "_UnixSelectorEventLoop", "Unix sockets, sock_sendfile (functions reused)")

#: Methods of asyncio's loops that ferroloop's loop takes over unchanged (``_streams.py``).
#: None uses ``super()`` or state that ferroloop's loop lacks, on any supported version.
SELECTOR_LOOP_METHODS = ("_start_serving", "_accept_connection", "_accept_connection2",
                         "_sendfile_native")
UNIX_LOOP_METHODS = ("create_unix_connection", "_sock_sendfile_native",
                     "_sock_sendfile_native_impl", "_sock_sendfile_update_filepos",
                     "_sock_add_cancellation_callback")
for _name in SELECTOR_LOOP_METHODS:
    _private(SelectorEventLoop, _name, "reused by ferroloop's loop (_streams.py)")
for _name in UNIX_LOOP_METHODS:
    _private(UnixSelectorEventLoop, _name, "reused by ferroloop's loop (_streams.py)")
_private(UnixSelectorEventLoop, "create_unix_server", "reused by ferroloop's loop (_streams.py)")
for _name in ("_wait", "_process_exited"):
    _private(UnixSubprocessTransport, _name, "the loop reports a child's exit")

#: Attributes of the loop, set by asyncio's ``__init__`` or read by the reused methods above.
LOOP_ATTRIBUTES = ("_task_factory", "_current_handle", "_default_executor", "_asyncgens",
                   "_asyncgens_shutdown_called", "_executor_shutdown_called")

#: 3.12+: a new socket or datagram transport refuses a descriptor another live transport
#: owns (``_ensure_fd_no_transport`` in the selector loop's ``_make_*_transport``).
TRANSPORT_CHECKS_FD = (
    "_ensure_fd_no_transport" in SelectorEventLoop._make_socket_transport.__code__.co_names
)

#: 3.13 gives ``Server._attach``/``_detach`` the transport and tracks clients in a WeakSet;
#: an unclosed transport collected by the GC detaches itself (3.11 and 3.12: a count).
SERVER_TRACKS_CLIENTS = "transport" in inspect.signature(Server._attach).parameters
SERVER_DETACH_ON_DEL = SERVER_TRACKS_CLIENTS

#: 3.11 and 3.12: ``Task.uncancel()`` bringing the count of cancellation requests back to 0
#: leaves a request not delivered yet in place (``_must_cancel``; 3.13 clears it). The pool's
#: runner tasks (``_pool_worker.py``) run one call after another, so after each call they read
#: this attribute too: a call that did ``cancel()`` then ``uncancel()`` on its own task ends
#: cancelled, as its own task would, and the request cannot reach the next call. ``None`` on
#: 3.13+, or where the attribute is gone (then ``cancelling()`` alone: such a call ends with
#: its value and the next call on its runner is cancelled at its first wait).
TASK_MUST_CANCEL: str | None = (
    "_must_cancel" if VERSION < (3, 13) and hasattr(asyncio.Task, "_must_cancel") else None
)
if TASK_MUST_CANCEL is not None:
    PRIVATE_NAMES["asyncio.Task._must_cancel"] = "a pool runner's pending cancellation (3.11, 3.12)"
