"""CPython's own unit tests of its datagram, pipe and TLS transports, run on ferroloop's.

ferroloop's datagram and pipe transports (``_datagram.py``, ``_pipes.py``) and its TLS
protocol (``_sslproto.py``) are its own classes with asyncio's behaviour. CPython tests its
classes of the same behaviour (``test_selector_events.SelectorDatagramTransportTests``,
``test_unix_events.UnixReadPipeTransportTests`` and ``UnixWritePipeTransportTests``,
``test_sslproto.SslProtoHandshakeTests``) with a mocked socket, pipe or ``SSLObject`` on
asyncio's test loop; here each of those tests runs with
asyncio's class replaced by ferroloop's, on the running interpreter's copy of the suite
(3.11, 3.12 and 3.13 differ). Over asyncio's test loop the transports run their Python
paths (the native ones need ferroloop's loop: tests/test_datagram.py,
tests/test_pipes.py and tests/test_tls.py cover those, on asyncio and ferroloop alike);
the TLS protocol's per-record paths are native on any loop, so they run here too, and
its suite runs a second time on ferroloop's loop.
"""

from __future__ import annotations

import unittest
from asyncio import selector_events, sslproto, unix_events
from unittest import mock

import pytest

from ferroloop import _datagram, _flow, _pipes, _sslproto

test_selector_events = pytest.importorskip("test.test_asyncio.test_selector_events")
test_unix_events = pytest.importorskip("test.test_asyncio.test_unix_events")
test_sslproto = pytest.importorskip("test.test_asyncio.test_sslproto")

#: (CPython's test class, the module attribute its tests construct, ferroloop's class)
SUITES = [
    (test_selector_events.SelectorDatagramTransportTests,
     (test_selector_events, "_SelectorDatagramTransport"), _datagram.DatagramTransport),
    (test_unix_events.UnixReadPipeTransportTests,
     (unix_events, "_UnixReadPipeTransport"), _pipes.ReadPipeTransport),
    (test_unix_events.UnixWritePipeTransportTests,
     (unix_events, "_UnixWritePipeTransport"), _pipes.WritePipeTransport),
    (test_sslproto.SslProtoHandshakeTests, (sslproto, "SSLProtocol"), _sslproto.SSLProtocol),
]

#: ferroloop's module of each class, and asyncio's whose ``logger`` the tests mock
LOGGERS = {
    _datagram.DatagramTransport: (_datagram, selector_events),
    _pipes.ReadPipeTransport: (_pipes, unix_events),
    _pipes.WritePipeTransport: (_pipes, unix_events),
    _sslproto.SSLProtocol: (_sslproto, sslproto),
}


class _LoggerOf:
    """asyncio's module's ``logger`` as it is at each call: a test's mock, while one runs."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module.logger, name)

CASES = [
    pytest.param(cls, target, ours, name, id=f"{cls.__name__}.{name}")
    for cls, target, ours in SUITES
    for name in unittest.TestLoader().getTestCaseNames(cls)
]


def test_every_suite_has_tests():
    # a suite that lost its tests (renamed in a new CPython) must not pass by running none
    for cls, _, _ in SUITES:
        assert len(unittest.TestLoader().getTestCaseNames(cls)) >= 10, cls


@pytest.mark.parametrize("cls, target, ours, name", CASES)
def test_cpython_transport_test(cls, target, ours, name):
    module, attr = target
    result = unittest.TestResult()
    ours_module, asyncios = LOGGERS[ours]
    with mock.patch.object(module, attr, ours), \
            mock.patch.object(ours_module, "logger", _LoggerOf(asyncios)), \
            mock.patch.object(_flow, "logger", _LoggerOf(asyncios)):
        cls(name).run(result)
    problems = result.failures + result.errors
    assert not problems, problems[0][1]
    assert not result.skipped, result.skipped
    assert result.testsRun == 1


SSL_CASES = [
    pytest.param(name, id=name)
    for name in unittest.TestLoader().getTestCaseNames(test_sslproto.SslProtoHandshakeTests)
]


@pytest.mark.parametrize("name", SSL_CASES)
def test_cpython_sslproto_test_on_ferroloops_loop(name):
    # the same tests with ferroloop's loop under the protocol (asyncio.new_event_loop in
    # their setUp): its run phase is what write batching (sslproto.rs) depends on
    import ferroloop

    made = []

    def new_event_loop():
        made.append(ferroloop.new_event_loop())
        return made[-1]

    result = unittest.TestResult()
    with mock.patch.object(sslproto, "SSLProtocol", _sslproto.SSLProtocol), \
            mock.patch.object(_sslproto, "logger", _LoggerOf(sslproto)), \
            mock.patch("asyncio.new_event_loop", new_event_loop):
        test_sslproto.SslProtoHandshakeTests(name).run(result)
    assert len(made) == 1 and isinstance(made[0], ferroloop.EventLoop), made
    problems = result.failures + result.errors
    assert not problems, problems[0][1]
    assert not result.skipped, result.skipped
    assert result.testsRun == 1
