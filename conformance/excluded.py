"""Tests that are not run on ferroloop, each with the reason.

These tests exercise asyncio's own machinery rather than an event loop: asyncio's selector
and proactor loops, ``BaseEventLoop`` instantiated directly with a mocked selector, mocked
transports, child watchers, Windows. Running them "against ferroloop" would either run them
on asyncio's classes (a pass that says nothing about ferroloop) or fail for reasons that
are not ferroloop's.

One more rule is applied while the tests run (``bindings.install``): a test that asks
``test_utils.TestCase.new_test_loop(gen)`` for asyncio's fake-clock ``TestLoop`` (a
``BaseEventLoop`` subclass whose time is driven by the generator) is reported as excluded
with the reason ``bindings.FAKE_CLOCK``. ``new_test_loop()`` without a generator returns a
ferroloop loop, so the many tests that use it only as "a loop" do run on ferroloop.

Patterns are ``module``, ``module.Class`` or ``module.Class.test``; the most specific wins.
An exclusion that only one CPython version's copy of the suite needs is listed in
``EXCLUDED_IN`` under that version, with a reason that names it.
"""

import sys

ASYNCIO_LOOPS = "bound to asyncio's own selector loop; the Ferro... class of the module runs these tests on ferroloop"
BASE_LOOP = "runs on asyncio.BaseEventLoop() with a mocked selector (asyncio's internals); the Ferro... class runs these tests on ferroloop"
ASYNCIO_CLASSES = "tests an asyncio class with mocks (no event loop or a mock loop), not the event loop"
WATCHERS = "tests asyncio's child watchers with mocked os.waitpid, not the event loop"
WATCHER_VARIANTS = "the same subprocess tests with another of asyncio's child watchers; SubprocessThreadedWatcherTests (the default watcher) runs them once"
WINDOWS = "Windows only (proactor, IOCP, windows_utils)"

EXCLUDED_MODULES = {
    "test_selector_events": "tests asyncio's BaseSelectorEventLoop and its transports with mocked selectors (its SelectorDatagramTransportTests run on ferroloop's datagram transport in tests/test_cpython_transport_tests.py)",
    "test_proactor_events": WINDOWS,
    "test_windows_events": WINDOWS,
    "test_windows_utils": WINDOWS,
    "test_protocols": "tests asyncio's abstract protocol classes; no event loop",
    "test_transports": "tests asyncio's abstract transport classes; no event loop",
}

EXCLUDED = {
    **EXCLUDED_MODULES,
    # test_base_events: only the loop-API parts run on ferroloop.
    "test_base_events.BaseEventLoopTests": BASE_LOOP,
    "test_base_events.BaseEventLoopWithSelectorTests": ASYNCIO_LOOPS,
    "test_base_events.BaseLoopSockSendfileTests": "bound to asyncio's BaseSelectorEventLoop; FerroLoopSockSendfileTests runs these tests on ferroloop",
    "test_events.FerroEventLoopTests.test_timeout_rounding": "asyncio internals: builds its assertion from loop._selector (asyncio's selector object), which a native reactor does not have",
    "test_events.TestPyGetEventLoop.test_get_event_loop_returns_running_loop2": "the test installs asyncio.DefaultEventLoopPolicy() itself, so its loops are asyncio's",
    "test_events.TestCGetEventLoop.test_get_event_loop_returns_running_loop2": "the test installs asyncio.DefaultEventLoopPolicy() itself, so its loops are asyncio's",
    "test_events.TestPyGetEventLoop.test_get_event_loop_returns_running_loop": "the test installs its own subclass of asyncio.DefaultEventLoopPolicy, so its loop is asyncio's",
    "test_events.TestCGetEventLoop.test_get_event_loop_returns_running_loop": "the test installs its own subclass of asyncio.DefaultEventLoopPolicy, so its loop is asyncio's",
    "test_base_events.FerroLoopSockSendfileTests.test__sock_sendfile_native_failure": "asserts that BaseSelectorEventLoop has no native sendfile; ferroloop has one, as asyncio's Unix loop does (test_unix_events and test_sendfile run it)",
    "test_base_events.FerroLoopSockSendfileTests.test_sock_sendfile_no_fallback": "asserts that BaseSelectorEventLoop has no native sendfile; ferroloop has one, as asyncio's Unix loop does (test_unix_events and test_sendfile run it)",
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_blocking_error": "asyncio internals: asserts the writer registration through loop._selector.get_key(), which a native reactor does not have",
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_cancel1": "asyncio internals: asserts the writer registration through loop._selector.get_key(), which a native reactor does not have",
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_cancel2": "asyncio internals: asserts the writer registration through loop._selector.get_key(), which a native reactor does not have",
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_exception": "asyncio internals: asserts the writer registration through loop._selector.get_key(), which a native reactor does not have",
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_os_error_first_call": "asyncio internals: asserts the writer registration through loop._selector.get_key(), which a native reactor does not have",
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_os_error_next_call": "asyncio internals: asserts the writer registration through loop._selector.get_key(), which a native reactor does not have",
    "test_base_events.BaseEventTests": "tests asyncio's address helpers (_ipaddr_info...), no event loop",
    "test_base_events.TestSelectorUtils": "tests asyncio's _set_nodelay helper, no event loop",
    # test_events
    "test_events.SelectEventLoopTests": ASYNCIO_LOOPS,
    "test_events.PollEventLoopTests": ASYNCIO_LOOPS,
    "test_events.EPollEventLoopTests": ASYNCIO_LOOPS,
    "test_events.HandleTests": "tests asyncio.Handle with a mock loop; ferroloop's handles are tested in tests/",
    "test_events.TimerTests": "tests asyncio.TimerHandle with a mock loop; ferroloop's handles are tested in tests/",
    "test_events.AbstractEventLoopTests": "tests that AbstractEventLoop's methods raise NotImplementedError",
    "test_events.PolicyTests": "tests asyncio's own policy classes (they create asyncio's loops)",
    "test_events.TestServer": ASYNCIO_CLASSES,
    "test_events.TestAbstractServer": ASYNCIO_CLASSES,
    # test_sock_lowlevel, test_sendfile, test_server, test_buffered_proto, test_sslproto
    "test_sock_lowlevel.SelectEventLoopTests": ASYNCIO_LOOPS,
    "test_sock_lowlevel.PollEventLoopTests": ASYNCIO_LOOPS,
    "test_sock_lowlevel.EPollEventLoopTests": ASYNCIO_LOOPS,
    "test_sendfile.SelectEventLoopTests": ASYNCIO_LOOPS,
    "test_sendfile.PollEventLoopTests": ASYNCIO_LOOPS,
    "test_sendfile.EPollEventLoopTests": ASYNCIO_LOOPS,
    "test_server.SelectorStartServerTests": ASYNCIO_LOOPS,
    "test_server.ProactorStartServerTests": WINDOWS,
    "test_buffered_proto.BufferedProtocolSelectorTests": ASYNCIO_LOOPS,
    "test_buffered_proto.BufferedProtocolProactorTests": WINDOWS,
    "test_sslproto.SelectorStartTLSTests": ASYNCIO_LOOPS,
    "test_sslproto.ProactorStartTLSTests": WINDOWS,
    # test_pep492, test_runners
    "test_pep492.LockTests": BASE_LOOP,
    "test_pep492.StreamReaderTests": BASE_LOOP,
    "test_pep492.CoroutineTests": BASE_LOOP,
    "test_runners.RunTests": BASE_LOOP,
    "test_runners.RunnerTests": BASE_LOOP,
    # test_subprocess
    "test_subprocess.GenericWatcherTests.test_create_subprocess_fails_with_inactive_watcher": "asserts that subprocess creation asks the policy's child watcher; ferroloop watches its children itself with a pidfd per child (docs/compatibility.md)",
    "test_subprocess.SubprocessTransportTests": "tests asyncio's BaseSubprocessTransport with a mocked process",
    "test_subprocess.SubprocessSafeWatcherTests": WATCHER_VARIANTS,
    "test_subprocess.SubprocessFastWatcherTests": WATCHER_VARIANTS,
    "test_subprocess.SubprocessPidfdWatcherTests": WATCHER_VARIANTS,
    "test_subprocess.SubprocessMultiLoopWatcherTests": WATCHER_VARIANTS,
    # test_unix_events
    "test_unix_events.SelectorEventLoopSignalTests": "tests asyncio's _UnixSelectorEventLoop signal code with a mocked signal module",
    "test_unix_events.SelectorEventLoopUnixSocketTests": ASYNCIO_LOOPS,
    "test_unix_events.UnixReadPipeTransportTests": "tests asyncio's _UnixReadPipeTransport with mocked fds (run on ferroloop's class in tests/test_cpython_transport_tests.py)",
    "test_unix_events.UnixWritePipeTransportTests": "tests asyncio's _UnixWritePipeTransport with mocked fds (run on ferroloop's class in tests/test_cpython_transport_tests.py)",
    "test_unix_events.AbstractChildWatcherTests": WATCHERS,
    "test_unix_events.BaseChildWatcherTests": WATCHERS,
    "test_unix_events.SafeChildWatcherTests": WATCHERS,
    "test_unix_events.FastChildWatcherTests": WATCHERS,
    "test_unix_events.PolicyTests": "tests asyncio's _UnixDefaultEventLoopPolicy and its child watcher",
}

#: {(major, minor): {pattern: reason}}: exclusions for that CPython version only (its copy
#: of the suite differs); each reason names the version.
EXCLUDED_IN = {
    (3, 12): {
        "test_subprocess.GenericWatcherTests.test_create_subprocess_with_pidfd": "3.12's copy: passes only after test_create_subprocess_fails_with_inactive_watcher (excluded above) has called set_event_loop() on the policy; run alone, it fails on asyncio's own loop too (checked with python3.12 -m unittest)",
    },
    (3, 13): {
        "test_runners.FerroRunTests.test_loop_factory_default_event_loop": "3.13's copy: the test passes loop_factory=asyncio.EventLoop itself and asserts that the loop is asyncio's SelectorEventLoop",
    },
}
EXCLUDED.update(EXCLUDED_IN.get(sys.version_info[:2], {}))


def reason_for(test_id):
    """The exclusion reason of ``test_id`` (``module.Class.test``), or None."""
    parts = test_id.split(".")
    for n in range(len(parts), 0, -1):
        reason = EXCLUDED.get(".".join(parts[:n]))
        if reason is not None:
            return reason
    return None
