"""Bind CPython's loop-parametrised test classes to ferroloop.

CPython builds its real-loop test classes by mixing a test mixin with a hook that makes the
loop (``create_event_loop``, ``new_loop`` or ``setUp``) and instantiating one class per
selector. Here each such mixin gets one more concrete class, named ``Ferro...``, whose hook
returns ``ferroloop.new_event_loop()``. The classes are injected into the CPython test module
(so module fixtures and test ids work as for the module's own classes); the original
selector/proactor-bound classes are excluded in ``excluded.py``.

Besides the classes, ``install()`` binds what the whole process uses:

* the asyncio policy is ``ferroloop.EventLoopPolicy()``, and stays so when a test resets it
  with ``set_event_loop_policy(None)``;
* ``test_utils.TestCase.new_test_loop()`` without a clock generator returns a ferroloop
  loop; with a generator the test needs asyncio's fake-clock ``TestLoop`` and is skipped
  with ``FAKE_CLOCK`` as reason, which the runner counts as excluded, not as passed.
"""

import asyncio
import unittest
from asyncio import events
from unittest import mock

import ferroloop

FAKE_CLOCK = "ferroloop-conformance: runs on asyncio's fake-clock TestLoop, not on a real loop"


def _ferro_loop(self=None):
    return ferroloop.new_event_loop()


def install():
    """Bind the process-wide defaults (policy, ``new_test_loop``) to ferroloop."""
    from test.test_asyncio import utils as test_utils

    def init_policy():
        with events._lock:
            if events._event_loop_policy is None:
                events._event_loop_policy = ferroloop.EventLoopPolicy()

    events._init_event_loop_policy = init_policy
    asyncio.set_event_loop_policy(ferroloop.EventLoopPolicy())

    def new_test_loop(self, gen=None):
        if gen is not None:
            raise unittest.SkipTest(FAKE_CLOCK)
        loop = ferroloop.new_event_loop()
        self.set_event_loop(loop)
        return loop

    test_utils.TestCase.new_test_loop = new_test_loop


def _add(module, name, bases, **namespace):
    """Create class ``name`` in ``module`` (so its id is ``module.name``)."""
    namespace.update(__module__=module.__name__, __qualname__=name)
    setattr(module, name, type(name, bases, namespace))


def _setup_with_ferro_loop(base_setup):
    """A ``setUp`` that runs ``base_setup`` and then sets ``self.loop`` to a ferroloop loop.

    For classes whose own ``setUp`` only builds asyncio's loop (and mocks its selector):
    ``base_setup`` is the ``setUp`` of their base class, which the replaced one called first.
    """
    def setUp(self):
        base_setup(self)
        self.loop = ferroloop.new_event_loop()
        self.set_event_loop(self.loop)
    return setUp


def _only_tests_of(mixin, hidden):
    """Namespace entries hiding the tests of ``hidden`` that ``mixin`` does not define."""
    return {name: None for name in vars(hidden)
            if name.startswith("test") and name not in vars(mixin)}


def bind_test_events(m):
    from test.test_asyncio import utils as test_utils
    _add(m, "FerroEventLoopTests", (m.EventLoopTestsMixin, test_utils.TestCase),
         create_event_loop=_ferro_loop)
    # The subprocess tests need the Unix mixin (it installs a child watcher); the tests of
    # EventLoopTestsMixin are hidden here because FerroEventLoopTests runs them already.
    _add(m, "FerroSubprocessTests",
         (m.UnixEventLoopTestsMixin, m.SubprocessTestsMixin, test_utils.TestCase),
         create_event_loop=_ferro_loop,
         **_only_tests_of(m.SubprocessTestsMixin, m.EventLoopTestsMixin))


def bind_test_sock_lowlevel(m):
    from test.test_asyncio import utils as test_utils
    _add(m, "FerroSockTests", (m.BaseSockTestsMixin, test_utils.TestCase),
         create_event_loop=_ferro_loop)


def bind_test_sendfile(m):
    from test.test_asyncio import utils as test_utils
    _add(m, "FerroSendfileTests", (m.SendfileTestsBase, test_utils.TestCase),
         create_event_loop=_ferro_loop)


# The selector-bound classes below add tests of their own, so the Ferro class derives from
# them and only replaces the loop hook.

def bind_test_buffered_proto(m):
    _add(m, "FerroBufferedProtocolTests", (m.BufferedProtocolSelectorTests,),
         new_loop=_ferro_loop)


def bind_test_server(m):
    _add(m, "FerroStartServerTests", (m.SelectorStartServerTests,), new_loop=_ferro_loop)


def bind_test_sslproto(m):
    _add(m, "FerroStartTLSTests", (m.SelectorStartTLSTests,), new_loop=_ferro_loop)


def bind_test_base_events(m):
    from test.test_asyncio import utils as test_utils
    _add(m, "FerroBaseEventLoopWithSelectorTests", (m.BaseEventLoopWithSelectorTests,),
         setUp=_setup_with_ferro_loop(test_utils.TestCase.setUp))

    def sendfile_setup(self):
        # BaseLoopSockSendfileTests.setUp imports BaseSelectorEventLoop and instantiates it.
        with mock.patch("asyncio.selector_events.BaseSelectorEventLoop", ferroloop.EventLoop):
            m.BaseLoopSockSendfileTests.setUp(self)

    _add(m, "FerroLoopSockSendfileTests", (m.BaseLoopSockSendfileTests,), setUp=sendfile_setup)


def bind_test_unix_events(m):
    from test.test_asyncio import utils as test_utils
    _add(m, "FerroUnixSocketTests", (m.SelectorEventLoopUnixSocketTests,),
         setUp=_setup_with_ferro_loop(test_utils.TestCase.setUp))


def bind_test_pep492(m):
    from test.test_asyncio import utils as test_utils
    for name in ("LockTests", "StreamReaderTests", "CoroutineTests"):
        _add(m, "Ferro" + name, (getattr(m, name),),
             setUp=_setup_with_ferro_loop(test_utils.TestCase.setUp))


def _runner_test_loop(self):
    """``test_runners.BaseTest.new_loop`` on ferroloop: a real loop that records whether
    ``shutdown_asyncgens`` ran (what ``BaseTest.tearDown`` checks)."""
    loop = ferroloop.new_event_loop()
    loop.shutdown_ag_run = False
    real_shutdown = loop.shutdown_asyncgens

    async def shutdown_asyncgens():
        loop.shutdown_ag_run = True
        await real_shutdown()

    loop.shutdown_asyncgens = shutdown_asyncgens
    return loop


def bind_test_runners(m):
    _add(m, "FerroRunTests", (m.RunTests,), new_loop=_runner_test_loop)
    _add(m, "FerroRunnerTests", (m.RunnerTests,), new_loop=_runner_test_loop)


def bind(module_name, module):
    """Add the ``Ferro...`` classes of ``module`` (if it has loop-parametrised classes)."""
    binder = globals().get("bind_" + module_name)
    if binder is not None:
        binder(module)
