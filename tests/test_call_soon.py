"""loop.call_soon: FIFO order, arguments, contexts, handles and their repr."""

import asyncio
import contextvars
import functools
import re

import pytest

from loop_helpers import PY311, UVLOOP_REPR, run_briefly, shows_args, xfail_on

var = contextvars.ContextVar("var", default="default")


def test_fifo_order(loop):
    out = []
    for i in range(100):
        loop.call_soon(out.append, i)
    run_briefly(loop)
    assert out == list(range(100))


def test_args_passed_positionally(loop):
    out = []
    loop.call_soon(lambda *a: out.append(a))
    loop.call_soon(lambda *a: out.append(a), 1)
    loop.call_soon(lambda *a: out.append(a), 1, "two", None, 4.0, (5,), [6])
    run_briefly(loop)
    assert out == [(), (1,), (1, "two", None, 4.0, (5,), [6])]


def test_callable_kinds(loop):
    out = []

    class C:
        def meth(self, x):
            out.append(("meth", x))

        def __call__(self, x):
            out.append(("call", x))

    loop.call_soon(C().meth, 1)
    loop.call_soon(C(), 2)
    loop.call_soon(functools.partial(out.append, ("partial", 3)))
    run_briefly(loop)
    assert out == [("meth", 1), ("call", 2), ("partial", 3)]


def test_keyword_arguments_rejected(loop):
    with pytest.raises(TypeError):
        loop.call_soon(print, end="")


def test_returns_handle(loop):
    h = loop.call_soon(lambda: None)
    assert isinstance(h, asyncio.Handle) or type(h).__name__ == "Handle"
    assert not isinstance(h, asyncio.TimerHandle) and type(h).__name__ != "TimerHandle"
    assert h.cancelled() is False
    run_briefly(loop)


def test_context_argument_honoured(loop):
    ctx = contextvars.Context()
    ctx.run(var.set, "in-ctx")
    seen = []
    loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    loop.call_soon(lambda: seen.append(var.get()))
    run_briefly(loop)
    assert seen == ["in-ctx", "default"]


def test_context_changes_stay_in_given_context(loop):
    ctx = contextvars.Context()
    loop.call_soon(var.set, "changed", context=ctx)
    run_briefly(loop)
    assert ctx[var] == "changed"
    assert var.get() == "default"


def test_callbacks_scheduled_together_do_not_see_each_others_changes(loop):
    """Handles scheduled from one context each run in their own copy of it: a variable one
    sets is seen by what it schedules, by no sibling, and not after it returns."""
    seen = []

    def setter(tag):
        var.set(tag)
        loop.call_soon(lambda: seen.append(("child", tag, var.get())))
        seen.append(("setter", tag, var.get()))

    def reader(tag):
        seen.append(("reader", tag, var.get()))

    for i in range(3):
        loop.call_soon(setter, i)
        loop.call_soon(reader, i)
    loop.call_later(0, setter, "t")
    loop.call_later(0, reader, "t")
    run_briefly(loop, 4)
    assert seen == [
        ("setter", 0, 0), ("reader", 0, "default"),
        ("setter", 1, 1), ("reader", 1, "default"),
        ("setter", 2, 2), ("reader", 2, "default"),
        ("setter", "t", "t"), ("reader", "t", "default"),
        ("child", 0, 0), ("child", 1, 1), ("child", 2, 2), ("child", "t", "t"),
    ]
    assert var.get() == "default"


@xfail_on("uvloop", reason="uvloop differs: its Handle has no _run() to call by hand")
def test_handle_run_inside_another_callback_keeps_its_context(loop):
    """A handle run by hand from inside another handle's callback (both scheduled from the
    same context) sees its own context, not the running callback's changes."""
    seen = []
    run_inner = []

    def outer():
        var.set("outer")
        run_inner[0]()  # the next handle, by hand (the loop runs it again after)
        seen.append(("outer", var.get()))

    loop.call_soon(outer)
    inner = loop.call_soon(lambda: seen.append(("inner", var.get())))
    run_inner.append(inner._run)
    run_briefly(loop)
    assert seen == [("inner", "default"), ("outer", "outer"), ("inner", "default")]


@xfail_on("uvloop", "uvloop differs: its Handle has no _run()")
def test_nested_runs_by_hand_see_their_own_contexts(loop):
    """Handles of two contexts run by hand inside each other's callbacks, three deep (then
    cancelled, so the loop does not run them again): each sees the variables of the context
    it was scheduled in, whatever the callbacks around it set."""
    seen = []
    handles = {}

    def a():
        var.set("a")
        handles["c"]._run()
        handles["c"].cancel()
        seen.append(("a", var.get()))

    def b():
        seen.append(("b", var.get()))

    def c():
        seen.append(("c-before", var.get()))
        var.set("c")
        handles["b"]._run()
        handles["b"].cancel()
        seen.append(("c", var.get()))

    def schedule_ab():
        handles["a"] = loop.call_soon(a)
        handles["b"] = loop.call_soon(b)

    def schedule_c():
        var.set("t")
        handles["c"] = loop.call_soon(c)

    contextvars.copy_context().run(schedule_ab)
    contextvars.copy_context().run(schedule_c)
    run_briefly(loop)
    assert seen == [("c-before", "t"), ("b", "default"), ("c", "c"), ("a", "a")]
    assert var.get() == "default"


def test_set_in_one_callback_is_not_seen_by_the_next_of_the_same_context(loop):
    """Many handles scheduled from one context: what each callback sets stays its own, and
    a callback scheduled by a callback sees what that callback had set."""
    seen = []

    def cb(i):
        seen.append((i, var.get()))
        var.set(f"set by {i}")
        if i == 0:
            loop.call_soon(lambda: seen.append(("child of 0", var.get())))

    for i in range(50):
        loop.call_soon(cb, i)
    run_briefly(loop, 2)
    assert seen == [(i, "default") for i in range(50)] + [("child of 0", "set by 0")]
    assert var.get() == "default"


def test_default_context_is_a_copy(loop):
    token = var.set("at-call-time")
    seen = []

    def cb():
        seen.append(var.get())
        var.set("inside-callback")
        loop.call_soon(lambda: seen.append(var.get()))

    try:
        loop.call_soon(cb)
        var.set("changed-after")
        run_briefly(loop, 2)
        # the callback saw the value at call_soon time, its change stayed in its copy
        # (and the copy was inherited by what it scheduled)
        assert seen == ["at-call-time", "inside-callback"]
        assert var.get() == "changed-after"
    finally:
        var.reset(token)


def test_each_call_gets_its_own_copy(loop):
    seen = []

    def cb(n):
        seen.append(var.get())
        var.set(n)

    loop.call_soon(cb, 1)
    loop.call_soon(cb, 2)
    loop.call_soon(cb, 3, context=None)
    run_briefly(loop)
    assert seen == ["default", "default", "default"]


GET_CONTEXT_311 = "asyncio < 3.12 has no Handle.get_context()"


@xfail_on("asyncio", GET_CONTEXT_311, condition=PY311)
@xfail_on("uvloop", "uvloop differs: Handle has no get_context()")
def test_get_context_default_copy(loop):
    token = var.set("x")
    try:
        h = loop.call_soon(lambda: None)
        assert isinstance(h.get_context(), contextvars.Context)
        assert h.get_context()[var] == "x"
        var.set("y")
        assert h.get_context()[var] == "x"
    finally:
        var.reset(token)
    run_briefly(loop)


@xfail_on("asyncio", GET_CONTEXT_311, condition=PY311)
@xfail_on("uvloop", "uvloop differs: Handle has no get_context()")
def test_get_context_returns_given_context(loop):
    ctx = contextvars.copy_context()
    h = loop.call_soon(lambda: None, context=ctx)
    assert h.get_context() is ctx
    run_briefly(loop)


def test_cancel_before_run(loop):
    out = []
    h = loop.call_soon(out.append, 1)
    loop.call_soon(out.append, 2)
    assert not h.cancelled()
    h.cancel()
    assert h.cancelled()
    h.cancel()  # idempotent
    assert h.cancelled()
    run_briefly(loop)
    assert out == [2]


def test_cancel_from_earlier_callback_same_turn(loop):
    out = []
    h2 = None

    def first():
        out.append(1)
        h2.cancel()

    loop.call_soon(first)
    h2 = loop.call_soon(out.append, 2)
    loop.call_soon(out.append, 3)
    run_briefly(loop)
    assert out == [1, 3]


def test_cancel_after_run_is_harmless(loop):
    out = []
    h = loop.call_soon(out.append, 1)
    run_briefly(loop)
    h.cancel()
    assert h.cancelled()
    assert out == [1]


def test_callbacks_scheduled_during_turn_run_next_turn(loop):
    out = []

    def cb(n):
        out.append(n)
        loop.call_soon(out.append, f"child-{n}")

    loop.call_soon(cb, 1)
    loop.call_soon(cb, 2)
    loop.stop()
    loop.run_forever()
    assert out == [1, 2]
    loop.stop()
    loop.run_forever()
    assert out == [1, 2, "child-1", "child-2"]


def test_stop_in_callback_finishes_the_turn(loop):
    out = []
    loop.call_soon(out.append, 1)
    loop.call_soon(loop.stop)
    loop.call_soon(out.append, 2)
    loop.run_forever()
    # stop() takes effect at the end of the turn: the rest of the turn runs
    assert out == [1, 2]


def _src_name(fn):
    return fn.__qualname__


@xfail_on("uvloop", UVLOOP_REPR)
def test_handle_repr(loop):
    def callback(a, b):
        pass

    h = loop.call_soon(callback, 1, "x")
    r = repr(h)
    assert r.startswith("<Handle ")
    assert ("callback(1, 'x')" if shows_args(loop) else "callback()") in r
    assert "cancelled" not in r
    if loop.get_debug():
        assert re.search(r"created at .*test_call_soon\.py:\d+>$", r), r
    h.cancel()
    r2 = repr(h)
    assert r2.startswith("<Handle cancelled")
    if loop.get_debug():
        # debug mode keeps the repr of the callback after cancel()
        assert "callback(1, 'x')" in r2
    else:
        assert r2 == "<Handle cancelled>"
    run_briefly(loop)


@xfail_on("uvloop", UVLOOP_REPR)
def test_timer_handle_repr(loop):
    def callback():
        pass

    h = loop.call_later(10, callback)
    r = repr(h)
    assert r.startswith(f"<TimerHandle when={h.when()} ")
    assert "callback()" in r
    h.cancel()
    r2 = repr(h)
    assert r2.startswith(f"<TimerHandle cancelled when={h.when()}")
    if not loop.get_debug():
        assert r2 == f"<TimerHandle cancelled when={h.when()}>"


def test_handle_repr_debug_created_at(debug_loop):
    loop = debug_loop

    def callback():
        pass

    h = loop.call_soon(callback)
    assert re.search(r"created at .*test_call_soon\.py:\d+>$", repr(h)), repr(h)
    t = loop.call_later(1, callback)
    assert re.search(r"created at .*test_call_soon\.py:\d+>$", repr(t)), repr(t)
    t.cancel()
    run_briefly(loop)


@xfail_on("uvloop", UVLOOP_REPR)
def test_repr_of_partial_callback(loop):
    h = loop.call_soon(functools.partial(print, 1), 2)
    assert ("print(1)(2)" if shows_args(loop) else "print()()") in repr(h)
    h.cancel()


def test_call_soon_order_with_threadsafe_from_loop_thread(loop):
    out = []
    loop.call_soon(out.append, "a")
    loop.call_soon_threadsafe(out.append, "b")
    loop.call_soon(out.append, "c")
    run_briefly(loop)
    assert out == ["a", "b", "c"]


_var = contextvars.ContextVar("isolation_probe", default="unset")


def test_each_callback_runs_in_its_own_copy_of_the_context(loop):
    # consecutive call_soon() calls capture the same variables; what one callback sets
    # must be seen neither by the next one nor by the scheduling code
    seen = []

    def setter(tag):
        seen.append((tag, _var.get()))
        _var.set(tag)

    for tag in ("a", "b", "c"):
        loop.call_soon(setter, tag)
    loop.call_later(0, setter, "timer")
    _var.set("after-scheduling")
    loop.call_soon(setter, "d")
    run_briefly(loop)
    run_briefly(loop)
    assert sorted(seen) == sorted(
        [("a", "unset"), ("b", "unset"), ("c", "unset"), ("timer", "unset"), ("d", "after-scheduling")]
    )
    assert _var.get() == "after-scheduling"
    _var.set("unset")


def test_handles_kept_by_the_caller_stay_distinct_after_running(loop):
    # a loop may reuse the memory of handles nobody holds; held ones keep their identity
    out = []
    held = [loop.call_soon(out.append, i) for i in range(50)]
    run_briefly(loop)
    later = [loop.call_soon(out.append, i) for i in range(50, 100)]
    assert all(h not in later for h in held)  # identity: Handle has no __eq__
    assert len({id(h) for h in held + later}) == 100
    assert not any(h.cancelled() for h in held + later)
    held[0].cancel()  # cancelling a handle that ran does not touch a newer one
    run_briefly(loop)
    assert out == list(range(100))
    assert not any(h.cancelled() for h in later)


def test_weakly_referenced_handle_dies_after_running(loop):
    import gc
    import weakref

    out = []
    refs = [weakref.ref(loop.call_soon(out.append, i)) for i in range(20)]
    run_briefly(loop)
    for i in range(20, 60):
        loop.call_soon(out.append, i)
    gc.collect()
    # the handles died with their last strong reference: none came back as a new handle
    assert [r() for r in refs] == [None] * 20
    run_briefly(loop)
    assert out == list(range(60))


def test_handle_after_failed_callback_is_not_reused_while_reported(loop):
    reported = []
    reprs = []

    def handler(lp, ctx):
        reported.append(ctx["handle"])
        reprs.append(repr(ctx["handle"]))

    loop.set_exception_handler(handler)

    def boom():
        raise ValueError("boom")

    loop.call_soon(boom)
    run_briefly(loop)
    out = []
    fresh = [loop.call_soon(out.append, i) for i in range(10)]
    assert len(reported) == 1 and all(h is not reported[0] for h in fresh)
    assert "boom" in reprs[0]  # the report names the callback
    run_briefly(loop)
    assert out == list(range(10))


def test_default_context_follows_sets_between_calls(loop):
    seen = []

    def cb(tag):
        seen.append((tag, var.get()))

    token = var.set("one")
    try:
        for i in range(3):
            loop.call_soon(cb, f"a{i}")  # share one snapshot: nothing changed between
        var.set("two")
        loop.call_soon(cb, "b")
        var.set("one")  # the same value again, set anew
        loop.call_soon(cb, "c")
        ctx = contextvars.copy_context()
        ctx.run(var.set, "in-ctx")
        ctx.run(loop.call_soon, cb, "d")  # scheduled from inside another context
        loop.call_soon(cb, "e")
    finally:
        var.reset(token)
    loop.call_soon(cb, "f")
    run_briefly(loop)
    assert seen == [("a0", "one"), ("a1", "one"), ("a2", "one"), ("b", "two"),
                    ("c", "one"), ("d", "in-ctx"), ("e", "one"), ("f", "default")]
