"""``LoopBase``: what ``self`` is in the mixins of ``EventLoop``, told to the type checker.

``EventLoop`` (``_loop.py``) is the native loop and asyncio's ``BaseEventLoop`` plus one mixin
per area (``_streams.py``, ``_sock.py``, ``_signals.py``...). A mixin calls both bases'
methods and other mixins' through ``self``. To a type checker each mixin derives from
``LoopBase``: both bases, the state the mixins share and the private ``BaseEventLoop``
methods they call (typeshed lists none). At run time the mixins derive from ``object``: they
import this class only under ``TYPE_CHECKING``, so ``EventLoop``'s MRO is the one written in
``_loop.py``.
"""

from __future__ import annotations

import socket
import weakref
from asyncio import base_events, transports
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from . import _native

if TYPE_CHECKING:
    from socket import _GetAddrInfoResult  # typeshed's: socket.getaddrinfo's result
    from typing import type_check_only

    from _typeshed import FileDescriptorLike

    # The native scheduling methods return ``_native.Handle``/``TimerHandle``, which have
    # ``asyncio.Handle``'s API without being its subclasses: their definitions differ from
    # ``BaseEventLoop``'s, hence the ignore.
    @type_check_only
    class LoopBase(_native.EventLoop, base_events.BaseEventLoop):  # type: ignore[misc]
        #: the live transports by descriptor (``_sock.py``'s ``_ensure_fd_no_transport``)
        _transports: weakref.WeakValueDictionary[int, transports.BaseTransport]

        # -- another mixin's ------------------------------------------------------------
        def _ensure_fd_no_transport(self, fd: FileDescriptorLike) -> None: ...

        # -- BaseEventLoop's private methods ------------------------------------------------
        def _check_closed(self) -> None: ...
        def _check_running(self) -> None: ...
        def _set_coroutine_origin_tracking(self, enabled: bool) -> None: ...
        def _asyncgen_firstiter_hook(self, agen: AsyncGenerator[Any, Any]) -> None: ...
        def _asyncgen_finalizer_hook(self, agen: AsyncGenerator[Any, Any]) -> None: ...
        async def _ensure_resolved(
            self,
            address: Any,
            *,
            family: int = 0,
            type: int = socket.SOCK_STREAM,
            proto: int = 0,
            flags: int = 0,
            loop: base_events.BaseEventLoop,
        ) -> _GetAddrInfoResult: ...
