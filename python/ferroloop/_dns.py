"""``getaddrinfo``/``getnameinfo``: numeric queries answered on the loop thread.

A numeric host (an IPv4/IPv6 literal or None) with a numeric or absent port never needs a
resolver, so ``socket.getaddrinfo`` answers it at once without blocking: no trip through the
executor, and the result is the stdlib's own. The coroutine still yields to the loop once,
as asyncio's does (other tasks run while it is awaited). Anything else goes to the default
executor, as in asyncio.
"""

import socket
import types
from asyncio import base_events

_inet_pton = socket.inet_pton
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_NI_NUMERIC = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV


@types.coroutine
def _yield_once():
    """Suspend the awaiting task for one loop turn (a bare yield, as ``sleep(0)``)."""
    yield


def _is_numeric_host(host):
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


def _is_numeric_port(port):
    if port is None or type(port) is int:
        return True
    if isinstance(port, bytes):
        return port.isdigit()
    return isinstance(port, str) and port.isdigit() and port.isascii()


class DnsMixin:
    __slots__ = ()

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        if _is_numeric_host(host) and _is_numeric_port(port) and not self._debug:
            result = socket.getaddrinfo(host, port, family, type, proto, flags)
            await _yield_once()
            return result
        return await base_events.BaseEventLoop.getaddrinfo(
            self, host, port, family=family, type=type, proto=proto, flags=flags
        )

    async def getnameinfo(self, sockaddr, flags=0):
        if flags & _NI_NUMERIC == _NI_NUMERIC:
            result = socket.getnameinfo(sockaddr, flags)
            await _yield_once()
            return result
        return await base_events.BaseEventLoop.getnameinfo(self, sockaddr, flags)
