"""Helpers imported by the test modules (fixtures live in conftest.py)."""

import asyncio
import sys

import pytest


def xfail_on(name, reason, condition=True):
    """A strict xfail for the ``name`` loop only (asyncio, ferroloop or uvloop; or a tuple
    of names), applied when ``condition`` is true."""
    return pytest.mark.xfail_on(name, reason=reason, condition=condition)


def run(loop, coro, timeout=5.0):
    """``loop.run_until_complete(coro)`` with a safety timeout."""
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def run_briefly(loop, turns=1):
    """Run ``turns`` iterations of the loop (stop() before run_forever runs one turn)."""
    for _ in range(turns):
        loop.stop()
        loop.run_forever()


PY311 = sys.version_info < (3, 12)
PY313 = sys.version_info >= (3, 13)


def shows_args(loop):
    """Whether asyncio's handle reprs and callback messages show the arguments: always
    before 3.13, only in debug mode from 3.13 (they may hold sensitive data)."""
    return not PY313 or loop.get_debug()
UVLOOP_REPR = "uvloop differs: Handle/TimerHandle repr has no arguments, when= or 'cancelled'"
UVLOOP_NO_RECVFROM = "uvloop differs: sock_recvfrom/sock_recvfrom_into/sock_sendto raise NotImplementedError"
