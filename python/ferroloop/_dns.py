"""``getaddrinfo``/``getnameinfo``: numeric queries answered on the loop thread.

A numeric host (an IPv4/IPv6 literal or None) with a numeric or absent port never needs a
resolver, so ``socket.getaddrinfo`` answers it at once without blocking: the coroutine
returns without a trip through the executor, and the result is the stdlib's own. Anything
else goes to the default executor, as in asyncio.
"""

import socket
from asyncio import base_events

_inet_pton = socket.inet_pton
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_NI_NUMERIC = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV


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
            return socket.getaddrinfo(host, port, family, type, proto, flags)
        return await base_events.BaseEventLoop.getaddrinfo(
            self, host, port, family=family, type=type, proto=proto, flags=flags
        )

    async def getnameinfo(self, sockaddr, flags=0):
        if flags & _NI_NUMERIC == _NI_NUMERIC:
            return socket.getnameinfo(sockaddr, flags)
        return await base_events.BaseEventLoop.getnameinfo(self, sockaddr, flags)
