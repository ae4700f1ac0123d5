"""Datagram endpoints: the transport ``BaseEventLoop.create_datagram_endpoint`` asks for.

Interim decision (the datagram issue makes this native): the transport is asyncio's own
``_SelectorDatagramTransport`` from the installed interpreter, which works on any loop with
``_add_reader``/``_add_writer``; this subclass only replaces what reads asyncio's selector
(``repr``) and tells the native loop which descriptors transports own (the fast
``_ensure_fd_no_transport`` pre-check of ``sock_*``).
"""

from asyncio import selector_events


class DatagramTransport(selector_events._SelectorDatagramTransport):
    """asyncio's datagram transport on a ferroloop loop."""

    def __init__(self, loop, sock, protocol, address=None, waiter=None, extra=None):
        super().__init__(loop, sock, protocol, address, waiter, extra)
        self._fd_loop = loop
        loop._transport_fd_taken(self._sock_fd)

    def __repr__(self):
        info = [self.__class__.__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        if self._loop is not None and not self._loop.is_closed():
            info.append(f"write=<bufsize={self.get_write_buffer_size()}>")
        return "<{}>".format(" ".join(info))

    def _call_connection_lost(self, exc):
        try:
            super()._call_connection_lost(exc)
        finally:
            loop, self._fd_loop = self._fd_loop, None
            if loop is not None:
                loop._transport_fd_released(self._sock_fd)


class DatagramMixin:
    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        return DatagramTransport(self, sock, protocol, address, waiter, extra)
