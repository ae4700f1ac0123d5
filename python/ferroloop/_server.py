"""``Server``: asyncio's server object, with one connection bookkeeping on every version.

``BaseEventLoop.create_server`` builds the interpreter's own ``asyncio.base_events.Server``;
the loop turns it into this subclass (``adopt``) before it accepts anything, in
``_start_serving``. The subclass owns what changed between versions: 3.11 and 3.12 count
connections (``_attach()``/``_detach()``, ``_active_count``), 3.13 keeps them in a WeakSet
(``_attach(transport)``/``_detach(transport)``, ``_clients``) and adds ``close_clients`` and
``abort_clients``. Here both are kept, so the inherited ``close`` and ``wait_closed`` of
each version see the state they read, and every version has ``close_clients`` and
``abort_clients``. Once per connection: Python. The methods follow asyncio's ``Server`` of
3.11 and 3.13 (PSF licence, see NOTICE).
"""

from __future__ import annotations

import weakref
from asyncio import base_events, transports
from typing import cast

from . import _compat


class Server(_compat.Server):
    """asyncio's ``Server`` (``loop.create_server``, ``create_unix_server``)."""

    def _attach(self, transport: transports.Transport | None = None) -> None:
        assert self._sockets is not None
        if transport is not None:
            self._clients.add(transport)
        self._active_count += 1

    def _detach(self, transport: transports.Transport | None = None) -> None:
        if transport is not None:
            self._clients.discard(transport)
        self._active_count -= 1
        if self._sockets is None and self._no_connections():
            self._wakeup()

    def _no_connections(self) -> bool:
        # 3.13: the transports still alive; 3.11, 3.12: the count
        if _compat.SERVER_TRACKS_CLIENTS:
            return len(self._clients) == 0
        return self._active_count == 0

    if not hasattr(_compat.Server, "close_clients"):
        # 3.11 and 3.12: 3.13's API, over the same `_clients` (3.13 has its own)

        def close_clients(self) -> None:
            """Close every connection this server accepted that is still open."""
            for transport in self._clients.copy():
                transport.close()

        def abort_clients(self) -> None:
            """Abort every connection this server accepted that is still open."""
            for transport in self._clients.copy():
                transport.abort()


def adopt(server: base_events.Server) -> Server:
    """Make an ``asyncio.base_events.Server`` this class, keeping its state; idempotent."""
    if type(server) is _compat.Server:
        namespace = server.__dict__
        if "_clients" not in namespace:
            namespace["_clients"] = weakref.WeakSet()
        if "_active_count" not in namespace:
            namespace["_active_count"] = len(namespace["_clients"])
        server.__class__ = Server
    return cast(Server, server)
