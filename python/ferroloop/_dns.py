"""``getaddrinfo``/``getnameinfo``: numeric queries answered on the loop thread.

A numeric host (an IPv4/IPv6 literal or None) with a numeric or absent port never needs a
resolver, so ``socket.getaddrinfo`` answers it at once without blocking: no trip through the
executor, and the result is the stdlib's own. The coroutine still yields to the loop once,
as asyncio's does (other tasks run while it is awaited). Anything else goes to the default
executor, as in asyncio.
"""

from __future__ import annotations

import socket
import types
from asyncio import base_events
from collections.abc import Generator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from socket import _GetAddrInfoResult  # typeshed's: socket.getaddrinfo's result

    from ._loopbase import LoopBase
else:
    LoopBase = object

_inet_pton = socket.inet_pton
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_NI_NUMERIC = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV


@types.coroutine
def _yield_once() -> Generator[None, None, None]:
    """Suspend the awaiting task for one loop turn (a bare yield, as ``sleep(0)``)."""
    yield


def _is_numeric_host(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        try:
            host = host.decode("idna")
        except UnicodeError:
            return False
    if not isinstance(host, str) or not host:
        return False
    try:
        _inet_pton(_AF_INET, host)
        return True
    except OSError:
        pass
    try:
        _inet_pton(_AF_INET6, host)
        return True
    except OSError:
        return False


def _is_numeric_port(port: object) -> bool:
    if port is None or type(port) is int:
        return True
    if isinstance(port, bytes):
        return port.isdigit()
    return isinstance(port, str) and port.isdigit() and port.isascii()


class DnsMixin(LoopBase):
    __slots__ = ()

    async def getaddrinfo(
        self,
        host: bytes | str | None,
        port: bytes | str | int | None,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> _GetAddrInfoResult:
        if _is_numeric_host(host) and _is_numeric_port(port) and not self._debug:
            result = socket.getaddrinfo(host, port, family, type, proto, flags)
            await _yield_once()
            return result
        return await base_events.BaseEventLoop.getaddrinfo(
            self, host, port, family=family, type=type, proto=proto, flags=flags
        )

    async def getnameinfo(
        self, sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int = 0
    ) -> tuple[str, str]:
        if flags & _NI_NUMERIC == _NI_NUMERIC:
            result = socket.getnameinfo(sockaddr, flags)
            await _yield_once()
            return result
        return await base_events.BaseEventLoop.getnameinfo(self, sockaddr, flags)
