"""Pipes: ``connect_read_pipe``/``connect_write_pipe`` (``BaseEventLoop``) need these factories.

Interim decision (the pipes issue makes them native): the transports are asyncio's own Unix
pipe transports from the installed interpreter. They use only the loop's public and
``_add_reader``/``_add_writer`` API, so they behave on ferroloop exactly as on asyncio
(pipes, sockets and character devices accepted; regular files refused with asyncio's
``ValueError``).
"""

from asyncio import unix_events


class PipesMixin:
    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return unix_events._UnixReadPipeTransport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return unix_events._UnixWritePipeTransport(self, pipe, protocol, waiter, extra)
