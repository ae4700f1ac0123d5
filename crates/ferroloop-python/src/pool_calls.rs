//! The per-call steps of a `ferroloop.Pool` worker (`python/ferroloop/_pool_worker.py`).
//!
//! A worker runs its calls one after another inside a few long-lived runner tasks (as many as
//! the pool's `concurrency`) instead of a task per call; what a task per call gave each call
//! is kept here:
//!
//! - `CallQueue.run` takes the queued calls in order; for each it makes a fresh copy of the
//!   current context (the runner's, which no call ever changes), calls `fn(arg)` / `fn(*arg)`
//!   / `fn(*arg[0], **arg[1])` inside it and, when that makes a coroutine, runs the
//!   coroutine's first step inside it too, as a task's first step runs inside the task's own
//!   context. A call that finishes there is appended to the result lists and the next one
//!   runs, without going back to Python;
//! - a call that suspends there comes back as a `CallSteps`, which its runner awaits: each
//!   later step (`send`, `throw`, `close`, forwarded as `yield from` forwards them) runs
//!   inside the call's context too, without a Python frame of its own.
//!
//! Coroutines are driven with `PyIter_Send` (public since 3.10), so a coroutine that returns
//! in its first step costs no `StopIteration`. `run` answers a call that needs Python with
//! `(id, step)`, `step` one of:
//!
//! - `(True, value)`: finished with `value` while the runner has a cancellation pending;
//! - `(False, steps)`: suspended; `steps` is the `CallSteps` to await;
//! - `(None, obj, ctx)`: `fn` returned a generator or an awaitable that is not a coroutine;
//!   the worker decides in Python (`inspect.isawaitable`) what it is;
//! - an exception: the call raised it.
//!
//! Threading: called from Python with the GIL held, on the worker loop's thread. The queue is
//! borrowed only between calls, never while a call runs (a call's code may do anything).

use pyo3::exceptions::{PyStopIteration, PyValueError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySet, PyString, PyTuple};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::{context, py_helpers};

/// `fn(arg)`
const KIND_ONE: u8 = 0;
/// `fn(*arg)`
const KIND_STAR: u8 = 1;
/// `fn(*arg[0], **arg[1])`
const KIND_APPLY: u8 = 2;

/// The outcome of one step of a coroutine.
enum Step {
    Returned(Py<PyAny>),
    Yielded(Py<PyAny>),
}

/// One `send(value)` into `coro` without a `StopIteration` for its return.
fn send(py: Python<'_>, coro: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<Step> {
    let mut out: *mut ffi::PyObject = std::ptr::null_mut();
    // SAFETY: coro and value are live objects we hold; PyIter_Send stores a new reference in
    // `out` for PYGEN_RETURN and PYGEN_NEXT, and sets an exception for PYGEN_ERROR.
    let status = unsafe { ffi::PyIter_Send(coro.as_ptr(), value.as_ptr(), &mut out) };
    match status {
        // SAFETY: `out` is a new reference (non-NULL) for these two results.
        ffi::PySendResult::PYGEN_RETURN => {
            Ok(Step::Returned(unsafe { Py::from_owned_ptr(py, out) }))
        }
        // SAFETY: as above.
        ffi::PySendResult::PYGEN_NEXT => Ok(Step::Yielded(unsafe { Py::from_owned_ptr(py, out) })),
        ffi::PySendResult::PYGEN_ERROR => Err(PyErr::fetch(py)),
    }
}

/// True for what `fn` may return that the worker must look at in Python: a generator (a
/// generator-based coroutine is awaitable, another generator is a value) or an object with
/// `__await__` that is not a coroutine.
fn maybe_awaitable(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: type checks and reads of the type's slots on a live object.
    unsafe {
        if ffi::PyGen_Check(obj.as_ptr()) != 0 {
            return true;
        }
        let tp = ffi::Py_TYPE(obj.as_ptr());
        let slots = (*tp).tp_as_async;
        !slots.is_null() && (*slots).am_await.is_some()
    }
}

/// `fn(arg)`, `fn(*arg)` or `fn(*arg[0], **arg[1])`.
fn apply<'py>(
    func: &Bound<'py, PyAny>,
    kind: u8,
    arg: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = func.py();
    match kind {
        KIND_ONE => func.call1((arg,)),
        KIND_STAR => func.call(as_tuple(arg)?, None),
        KIND_APPLY => {
            let args = arg.get_item(0)?;
            let kwargs = arg.get_item(1)?;
            let kwargs = match kwargs.cast_exact::<PyDict>() {
                Ok(d) => d.clone(),
                Err(_) => {
                    let d = PyDict::new(py);
                    d.update(kwargs.cast()?)?;
                    d
                }
            };
            func.call(as_tuple(&args)?, Some(&kwargs))
        }
        _ => Err(PyValueError::new_err(format!(
            "ferroloop.Pool: unknown call kind {kind}"
        ))),
    }
}

/// `tuple(seq)`, without a copy when it already is one.
fn as_tuple<'py>(seq: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyTuple>> {
    if let Ok(t) = seq.cast_exact::<PyTuple>() {
        return Ok(t.clone());
    }
    // SAFETY: PySequence_Tuple returns a new reference to a tuple, or NULL with an exception.
    let t = unsafe { Bound::from_owned_ptr_or_err(seq.py(), ffi::PySequence_Tuple(seq.as_ptr()))? };
    // SAFETY: PySequence_Tuple's result is a tuple.
    Ok(unsafe { t.cast_into_unchecked() })
}

/// What one call's first step came to.
enum Outcome<'py> {
    Value(Py<PyAny>),
    Suspended(CallSteps),
    Look(Bound<'py, PyAny>, Bound<'py, PyAny>),
}

/// Runs one call, and its coroutine's first step, in a new copy of the current context.
fn first_step<'py>(
    func: &Bound<'py, PyAny>,
    kind: u8,
    arg: &Bound<'py, PyAny>,
) -> PyResult<Outcome<'py>> {
    let py = func.py();
    let ctx = py_helpers::copy_context(py)?.into_bound(py);
    context::in_context(py, &ctx, || {
        let result = apply(func, kind, arg)?;
        // SAFETY: a type check on a live object.
        if unsafe { ffi::PyCoro_CheckExact(result.as_ptr()) } != 0 {
            return Ok(match send(py, &result, &py.None().into_bound(py))? {
                Step::Returned(value) => Outcome::Value(value),
                Step::Yielded(yielded) => Outcome::Suspended(CallSteps {
                    ctx: ctx.clone().unbind(),
                    coro: result.unbind(),
                    first: Some(yielded),
                }),
            });
        }
        if maybe_awaitable(&result) {
            return Ok(Outcome::Look(result, ctx.clone()));
        }
        Ok(Outcome::Value(result.unbind()))
    })
}

/// `(flag, ...)`, the tuple that describes a step to Python.
fn step_tuple<'py>(
    py: Python<'py>,
    flag: Option<bool>,
    items: impl IntoIterator<Item = Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let flag = match flag {
        Some(b) => b.into_pyobject(py)?.to_owned().into_any(),
        None => py.None().into_bound(py),
    };
    let mut all = vec![flag];
    all.extend(items);
    PyTuple::new(py, all)
}

/// One queued call.
struct Call {
    id: u64,
    func: Py<PyAny>,
    kind: u8,
    arg: Py<PyAny>,
}

/// A worker's calls not started yet, in order, and the loop that runs them (see the header).
#[pyclass(module = "ferroloop._native")]
pub struct CallQueue {
    calls: VecDeque<Call>,
}

#[pymethods]
impl CallQueue {
    #[new]
    fn new() -> Self {
        CallQueue {
            calls: VecDeque::new(),
        }
    }

    /// Queue `func` over `args`: the calls `first_id`, `first_id + 1`, ...
    fn extend(
        &mut self,
        first_id: u64,
        func: &Bound<'_, PyAny>,
        kind: u8,
        args: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        if kind > KIND_APPLY {
            return Err(PyValueError::new_err(format!(
                "ferroloop.Pool: unknown call kind {kind}"
            )));
        }
        for (id, arg) in (first_id..).zip(args.try_iter()?) {
            self.calls.push_back(Call {
                id,
                func: func.clone().unbind(),
                kind,
                arg: arg?.unbind(),
            });
        }
        Ok(())
    }

    fn __len__(&self) -> usize {
        self.calls.len()
    }

    /// Drop every queued call.
    fn clear(slf: &Bound<'_, Self>) {
        // (dropped after the borrow: an argument's __del__ may run any code)
        let calls = std::mem::take(&mut slf.borrow_mut().calls);
        drop(calls);
    }

    /// Drop the queued calls whose ids are in `ids`; returns their ids, in queue order.
    fn remove(slf: &Bound<'_, Self>, ids: &Bound<'_, PySet>) -> PyResult<Vec<u64>> {
        let calls = std::mem::take(&mut slf.borrow_mut().calls);
        let mut kept = VecDeque::with_capacity(calls.len());
        let mut removed = Vec::new();
        let mut dropped = Vec::new();
        for call in calls {
            if ids.contains(call.id)? {
                removed.push(call.id);
                dropped.push(call);
            } else {
                kept.push_back(call);
            }
        }
        let mut this = slf.borrow_mut();
        // (calls queued meanwhile, by an argument's __eq__ or __hash__, stay after the kept)
        kept.append(&mut this.calls);
        this.calls = kept;
        drop(this);
        drop(dropped);
        Ok(removed)
    }

    /// Runs queued calls in order. A call that finishes in its first step is appended to
    /// `ids` and `values` and the next one runs. Returns `None` when the queue is empty,
    /// when `ids` holds `limit` results (for the worker to send them) or after about `budget`
    /// seconds (for the runner to give the loop a turn), else `(id, step)` for the call
    /// that needs Python (see the header). A call that finishes while its runner `task` has
    /// a cancellation pending (the call cancelled its own task) is returned as
    /// `(True, value)`.
    ///
    /// The runner starts each call with no cancellation pending, and a call that does not
    /// suspend cannot have one delivered, so one look tells: where `uncancel()` leaves a
    /// request in place (3.11, 3.12) the attribute named `must_cancel`, which `cancel()` sets
    /// on a running task (a `cancel()` then `uncancel()` included); else `task.cancelling()`,
    /// which `uncancel()` clears together with the request (3.13+).
    fn run<'py>(
        slf: &Bound<'py, Self>,
        ids: &Bound<'py, PyList>,
        values: &Bound<'py, PyList>,
        limit: usize,
        budget: f64,
        task: &Bound<'py, PyAny>,
        must_cancel: Option<&Bound<'py, PyString>>,
    ) -> PyResult<Option<(u64, Bound<'py, PyAny>)>> {
        let py = slf.py();
        let deadline = Instant::now() + Duration::from_secs_f64(budget.max(0.0));
        let pending = Pending::of(task, must_cancel)?;
        let mut finished: u32 = 0;
        while ids.len() < limit {
            let Some(call) = slf.borrow_mut().calls.pop_front() else {
                return Ok(None);
            };
            let (func, arg) = (call.func.into_bound(py), call.arg.into_bound(py));
            let step = match first_step(&func, call.kind, &arg) {
                Err(err) => {
                    return Ok(Some((
                        call.id,
                        err.into_value(py).into_bound(py).into_any(),
                    )))
                }
                Ok(Outcome::Value(value)) => {
                    if pending.check()? {
                        step_tuple(py, Some(true), [value.into_bound(py)])?
                    } else {
                        ids.append(call.id)?;
                        values.append(value)?;
                        // (the clock every few calls: reading it costs a tenth of a call)
                        finished = finished.wrapping_add(1);
                        if finished.is_multiple_of(CLOCK_EVERY) && Instant::now() >= deadline {
                            return Ok(None);
                        }
                        continue;
                    }
                }
                Ok(Outcome::Suspended(steps)) => {
                    step_tuple(py, Some(false), [Bound::new(py, steps)?.into_any()])?
                }
                Ok(Outcome::Look(obj, ctx)) => step_tuple(py, None, [obj, ctx])?,
            };
            return Ok(Some((call.id, step.into_any())));
        }
        Ok(None)
    }
}

/// `CallQueue.run` reads the clock after this many calls that finished.
const CLOCK_EVERY: u32 = 4;

/// How `CallQueue.run` looks for a cancellation pending on its runner task.
enum Pending<'py> {
    /// `getattr(task, must_cancel)` (3.11, 3.12)
    Attribute(Bound<'py, PyAny>, Bound<'py, PyString>),
    /// `task.cancelling()`, the bound method looked up once
    Cancelling(Bound<'py, PyAny>),
}

impl<'py> Pending<'py> {
    fn of(task: &Bound<'py, PyAny>, must_cancel: Option<&Bound<'py, PyString>>) -> PyResult<Self> {
        Ok(match must_cancel {
            Some(attr) => Pending::Attribute(task.clone(), attr.clone()),
            None => Pending::Cancelling(task.getattr(intern!(task.py(), "cancelling"))?),
        })
    }

    fn check(&self) -> PyResult<bool> {
        match self {
            Pending::Attribute(task, attr) => task.getattr(attr)?.is_truthy(),
            Pending::Cancelling(cancelling) => cancelling.call0()?.is_truthy(),
        }
    }
}

/// The rest of a call that suspended in its first step: awaited by its runner, it runs each
/// later step of the call's coroutine inside the call's context (see the header).
#[pyclass(module = "ferroloop._native")]
pub struct CallSteps {
    ctx: Py<PyAny>,
    coro: Py<PyAny>,
    /// what the first step yielded, until the runner's task has taken it
    first: Option<Py<PyAny>>,
}

impl CallSteps {
    /// One step: `send(value)` into the coroutine inside the call's context; what it yields,
    /// or `StopIteration(returned)`.
    fn step(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let (ctx, coro) = (self.ctx.bind(py), self.coro.bind(py));
        match context::in_context(py, ctx, || send(py, coro, value))? {
            Step::Yielded(yielded) => Ok(Some(yielded)),
            Step::Returned(returned) => Err(PyStopIteration::new_err((returned,))),
        }
    }

    /// `coro.<name>(*args)` inside the call's context.
    fn forward<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (ctx, coro) = (self.ctx.bind(py), self.coro.bind(py));
        context::in_context(py, ctx, || coro.call_method1(name, args.clone()))
    }
}

#[pymethods]
impl CallSteps {
    /// The steps of `coro`, not started yet, each run inside `ctx`.
    #[new]
    fn new(ctx: Py<PyAny>, coro: Py<PyAny>) -> Self {
        CallSteps {
            ctx,
            coro,
            first: None,
        }
    }

    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.first.take() {
            Some(first) => Ok(Some(first)),
            None => self.step(py, &py.None().into_bound(py)),
        }
    }

    fn send(&mut self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        match self.first.take() {
            // (a first send must be None, as into a just-started generator)
            Some(first) if value.is_none() => Ok(Some(first)),
            Some(_) => Err(pyo3::exceptions::PyTypeError::new_err(
                "can't send non-None value to a just-started coroutine",
            )),
            None => self.step(py, value),
        }
    }

    #[pyo3(signature = (*args))]
    fn throw<'py>(
        &mut self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.first = None;
        self.forward(py, "throw", args)
    }

    fn close<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.first = None;
        self.forward(py, "close", &PyTuple::empty(py))
    }
}
