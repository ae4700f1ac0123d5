"""``ferroloop._compat``: every private asyncio name ferroloop uses resolves on the running
interpreter, and the private attributes its native paths read exist on the real objects.

ferroloop-only (there is nothing to compare on asyncio or uvloop): when a CPython release
moves a name, a test here fails naming it. Each object checked is a real one built on a
ferroloop loop (an ``SSLProtocol``, a datagram transport, pipe transports, the loop), and
each assertion message names the missing attribute.
"""

import ast
import asyncio
import functools
import importlib
import os
import ssl
import subprocess
import sys

import pytest

import ferroloop
from ferroloop import _compat


@pytest.fixture
def floop():
    """A new ferroloop loop, closed after the test."""
    lp = ferroloop.new_event_loop()
    yield lp
    lp.close()
    asyncio.set_event_loop(None)


def _resolve(qualified):
    """The object ``qualified`` names: ``package.module.name[.attr]``, or
    ``Class.attr`` for a class ``_compat`` holds (``_private(SomeClass, ...)`` qualifies
    the name with the class's ``__name__``)."""
    parts = qualified.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        rest = parts[i:]
        break
    else:
        classes = [
            v for v in vars(_compat).values() if isinstance(v, type) and v.__name__ == parts[0]
        ]
        assert len(classes) == 1, f"{qualified}: no single class {parts[0]} in _compat"
        obj, rest = classes[0], parts[1:]
        assert obj.__module__.startswith("asyncio."), f"{qualified}: {obj} is not asyncio's"
    for name in rest:
        obj = getattr(obj, name)
    return obj


def test_private_names_are_listed():
    assert len(_compat.PRIVATE_NAMES) >= 20
    for qualified, why in _compat.PRIVATE_NAMES.items():
        assert isinstance(why, str) and why, f"{qualified} has no reason"
    for expected in (
        "asyncio.events._get_running_loop",
        "asyncio.format_helpers._format_callback_source",
        "asyncio.unix_events._UnixSubprocessTransport",
        "BaseSelectorEventLoop._accept_connection",
        "_UnixSelectorEventLoop.create_unix_server",
    ):
        assert expected in _compat.PRIVATE_NAMES


@pytest.mark.parametrize("qualified", sorted(_compat.PRIVATE_NAMES))
def test_private_name_resolves(qualified):
    try:
        obj = _resolve(qualified)
    except AttributeError as exc:
        pytest.fail(
            f"{qualified} ({_compat.PRIVATE_NAMES[qualified]}) does not resolve on CPython "
            f"{sys.version.split()[0]}: {exc}"
        )
    assert obj is not None or qualified.endswith("_HAS_IPv6"), f"{qualified} is None"


def test_private_names_are_the_ones_compat_hands_out():
    assert _compat.get_running_loop is asyncio.events._get_running_loop
    assert _compat.set_running_loop is asyncio.events._set_running_loop
    assert _compat.SelectorEventLoop is asyncio.selector_events.BaseSelectorEventLoop
    assert _compat.UnixSelectorEventLoop is asyncio.unix_events._UnixSelectorEventLoop
    assert _compat.Server is asyncio.base_events.Server


def test_missing_private_name_names_module_and_name(monkeypatch):
    # _private records every name it is asked for: keep the real list unchanged
    monkeypatch.setattr(_compat, "PRIVATE_NAMES", dict(_compat.PRIVATE_NAMES))
    with pytest.raises(_compat.MissingPrivateName) as info:
        _compat._private(asyncio.events, "no_such_name", "a test asks for it")
    message = str(info.value)
    assert "asyncio.events.no_such_name" in message
    assert "a test asks for it" in message
    assert sys.version.split()[0] in message
    assert isinstance(info.value, ImportError)
    assert info.value.__cause__ is None and info.value.__suppress_context__


# -- private attributes of the real objects ---------------------------------------------------


def _close_unconnected(proto):
    """Close the app transport an SSLProtocol makes at once (unwrapped, never connected:
    close() only marks it closed), or its __del__ warns (ResourceWarning)."""
    proto._app_transport.close()
    assert proto._app_transport.is_closing()


def test_sslprotocol_is_ferroloops_own_with_asyncios_attributes(floop):
    # no asyncio TLS class is reused (the engine issue), yet code written against asyncio's
    # SSLProtocol finds every attribute asyncio's sets, under the same name
    from ferroloop import _sslproto

    assert not any(c.__module__.startswith("asyncio.") and "SSL" in c.__name__
                   for c in _sslproto.SSLProtocol.__mro__)
    assert not any(c.__module__.startswith("asyncio.") and "SSL" in c.__name__
                   for c in _sslproto._SSLProtocolTransport.__mro__)
    theirs = asyncio.sslproto.SSLProtocol(
        floop, asyncio.Protocol(), ssl.create_default_context(), None)
    ours = _sslproto.SSLProtocol(floop, asyncio.Protocol(), ssl.create_default_context(), None)
    try:
        missing = [a for a in vars(theirs) if not hasattr(ours, a)]
        assert not missing, f"ferroloop's SSLProtocol lacks {missing}"
        methods = [a for a in dir(type(theirs)) if not hasattr(ours, a)]
        assert not methods, f"ferroloop's SSLProtocol lacks {methods}"
        transport_methods = [a for a in dir(type(theirs._app_transport))
                             if hasattr(theirs._app_transport, a)
                             and not hasattr(ours._app_transport, a)]
        assert not transport_methods, transport_methods
        assert ours._state.name == theirs._state.name == "UNWRAPPED"
        assert ours.max_size == theirs.max_size
        assert ((ours._incoming_high_water, ours._outgoing_high_water)
                == (theirs._incoming_high_water, theirs._outgoing_high_water))
    finally:
        _close_unconnected(theirs)
        _close_unconnected(ours)


def test_datagram_and_pipe_transports_are_ferroloops_own(floop):
    # no class of asyncio's private transports is reused or patched (the engine issue)
    rfd, wfd = os.pipe()
    rpipe, wpipe = os.fdopen(rfd, "rb", 0), os.fdopen(wfd, "wb", 0)

    async def main():
        dt, _ = await floop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        rt, _ = await floop.connect_read_pipe(asyncio.Protocol, rpipe)
        wt, _ = await floop.connect_write_pipe(asyncio.BaseProtocol, wpipe)
        try:
            return [type(t) for t in (dt, rt, wt)]
        finally:
            for t in (dt, wt, rt):
                t.close()
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    try:
        kinds = floop.run_until_complete(main())
    finally:
        rpipe.close()
        wpipe.close()
    assert [k.__module__ for k in kinds] == [
        "ferroloop._datagram", "ferroloop._pipes", "ferroloop._pipes"]
    assert issubclass(kinds[0], asyncio.DatagramTransport)
    assert issubclass(kinds[1], asyncio.ReadTransport)
    assert issubclass(kinds[2], asyncio.WriteTransport)
    private = (asyncio.selector_events._SelectorTransport, asyncio.unix_events._UnixReadPipeTransport,
               asyncio.unix_events._UnixWritePipeTransport, asyncio.transports._FlowControlMixin)
    for kind in kinds:
        assert not any(c in kind.__mro__ for c in private), kind.__mro__


def test_loop_attributes(floop):
    missing = [a for a in _compat.LOOP_ATTRIBUTES if not hasattr(floop, a)]
    assert not missing, f"ferroloop's loop lacks {missing}"


@pytest.mark.parametrize(
    "source, names",
    [
        (_compat.SelectorEventLoop, _compat.SELECTOR_LOOP_METHODS),
        (_compat.UnixSelectorEventLoop, _compat.UNIX_LOOP_METHODS),
    ],
    ids=["selector", "unix"],
)
def test_reused_loop_methods_are_asyncios(source, names):
    for name in names:
        if name == "_start_serving":  # ferroloop's wrapper adopts the Server, then calls it
            continue
        assert getattr(ferroloop.EventLoop, name) is getattr(source, name), (
            f"ferroloop.EventLoop.{name} is not {source.__name__}.{name}"
        )


# -- format_callback_source -------------------------------------------------------------------


def _callback(a, b):
    pass


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize(
    "callback, args",
    [
        (_callback, (1, "two")),
        (functools.partial(_callback, 1), ("two",)),
        (print, ("builtin",)),
    ],
    ids=["function", "partial", "builtin"],
)
def test_format_callback_source_matches_asyncio_handle_repr(debug, callback, args):
    aloop = asyncio.new_event_loop()
    try:
        aloop.set_debug(debug)
        handle = asyncio.Handle(callback, args, aloop)
        text = _compat.format_callback_source(callback, args, debug)
        r = repr(handle)
    finally:
        aloop.close()
        asyncio.set_event_loop(None)
    prefix = f"<Handle {text}"
    assert r.startswith(prefix), (r, text)
    rest = r[len(prefix):]
    # debug mode adds where the handle was created
    assert rest == ">" or (debug and rest.startswith(" created at ")), (r, text)
    shows_args = sys.version_info < (3, 13) or debug
    assert (repr(args[-1]) in text) is shows_args, text
    if callback is _callback:
        code = _callback.__code__
        assert text.endswith(f" at {code.co_filename}:{code.co_firstlineno}"), text


def test_compat_server_flags_match_the_running_version():
    # 3.13 hands the transport to Server._attach/_detach and keeps the clients in a WeakSet
    assert _compat.SERVER_TRACKS_CLIENTS is (sys.version_info >= (3, 13))
    assert _compat.SERVER_DETACH_ON_DEL is _compat.SERVER_TRACKS_CLIENTS
    assert _compat.VERSION == sys.version_info[:2]


# -- CPython's private structures (crates/ferroloop-python/src/private_api.rs) -------------

_FAST_PATHS_OFF = os.environ.get("FERROLOOP_PRIVATE_FAST_PATHS") in ("0", "off", "false")


def _fast_paths_in_child(value):
    env = dict(os.environ, FERROLOOP_PRIVATE_FAST_PATHS=value)
    out = subprocess.run(
        [sys.executable, "-c", "import ferroloop._native as n; print(sorted(n.private_fast_paths().items()))"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    return dict(ast.literal_eval(out))


def test_private_fast_paths_on_for_the_versions_they_know():
    paths = _fast_paths_in_child("1")
    # 3.11 to 3.13: each layout is known and the import-time checks pass
    assert paths == dict(allowed=True, context_layout=True, thread_state_context=True,
                         bytes_resize=True, ssl_object_inner=True), paths


def test_private_fast_paths_forced_off():
    paths = _fast_paths_in_child("0")
    assert not any(paths.values()), paths


def test_this_run_uses_the_switch_it_was_given():
    from ferroloop import _native
    paths = _native.private_fast_paths()
    assert paths["allowed"] is not _FAST_PATHS_OFF
    if _FAST_PATHS_OFF:
        assert not paths["thread_state_context"] and not paths["context_layout"]


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, ferroloop.new_event_loop])
def test_task_must_cancel_is_named_where_uncancel_leaves_a_request(loop_factory):
    """The pool's runners read ``TASK_MUST_CANCEL`` exactly where ``cancel()`` then
    ``uncancel()`` still delivers the cancellation at the next wait (3.11, 3.12)."""

    async def main():
        task = asyncio.current_task()
        task.cancel()
        task.uncancel()
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            return True
        return False

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        delivered = runner.run(main())
    assert (_compat.TASK_MUST_CANCEL is not None) == delivered
