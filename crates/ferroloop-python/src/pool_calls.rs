//! The per-call steps of a `ferroloop.Pool` worker (`python/ferroloop/_pool_worker.py`).
//!
//! A worker runs its calls one after another inside a few long-lived runner tasks (as many as
//! the pool's `concurrency`) instead of a task per call; what a task per call gave each call
//! is kept here:
//!
//! - `pool_call(fn, kind, arg)` makes a fresh copy of the current context (the runner's, which
//!   no call ever changes), calls `fn(arg)` / `fn(*arg)` / `fn(*arg[0], **arg[1])` inside it
//!   and, when that makes a coroutine, runs the coroutine's first step inside it too, as a
//!   task's first step would run inside the task's own context;
//! - `pool_send(ctx, coro, value)` runs a later step of a suspended call inside its context.
//!
//! Both use `PyIter_Send` (public since 3.10), so a coroutine that returns costs no
//! `StopIteration`. They answer with a tuple:
//!
//! - `(True, value)`: finished with `value`;
//! - `(False, yielded, coro, ctx)` (`pool_call`) or `(False, yielded)` (`pool_send`): the
//!   coroutine is suspended, having yielded `yielded` (the future it waits on) to the task;
//! - `(None, obj, ctx)` (`pool_call` only): `fn` returned a generator or an awaitable that is not
//!   a coroutine; the worker decides in Python (`inspect.isawaitable`) what it is.
//!
//! An exception from the call or from the step propagates as itself.
//!
//! Threading: called from Python with the GIL held, on the worker loop's thread.

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::py_helpers;

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

/// Runs `f` with `ctx` entered (as `ctx.run` does), exiting it whatever `f` returns.
fn entered<T>(
    py: Python<'_>,
    ctx: &Bound<'_, PyAny>,
    f: impl FnOnce() -> PyResult<T>,
) -> PyResult<T> {
    // SAFETY: ctx is a live exact Context we hold (made by PyContext_CopyCurrent or handed
    // back by the worker); PyContext_Enter type-checks it and sets an exception on failure
    // (for instance when it is already entered).
    if unsafe { ffi::PyContext_Enter(ctx.as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    let result = f();
    // SAFETY: we entered ctx above, on this thread, and nothing in between exits it.
    if unsafe { ffi::PyContext_Exit(ctx.as_ptr()) } != 0 {
        let exit_err = PyErr::fetch(py);
        return Err(result.err().unwrap_or(exit_err));
    }
    result
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

/// Runs one call of a pool worker in a new copy of the current context (see the module's
/// header for the answer's shapes).
#[pyfunction]
pub fn pool_call<'py>(
    func: &Bound<'py, PyAny>,
    kind: u8,
    arg: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyTuple>> {
    let py = func.py();
    let ctx = py_helpers::copy_context(py)?.into_bound(py);
    enum Outcome<'py> {
        Value(Py<PyAny>),
        Suspended(Py<PyAny>, Bound<'py, PyAny>),
        Look(Bound<'py, PyAny>),
    }
    let outcome = entered(py, &ctx, || {
        let result = apply(func, kind, arg)?;
        // SAFETY: a type check on a live object.
        if unsafe { ffi::PyCoro_CheckExact(result.as_ptr()) } != 0 {
            return Ok(match send(py, &result, &py.None().into_bound(py))? {
                Step::Returned(value) => Outcome::Value(value),
                Step::Yielded(yielded) => Outcome::Suspended(yielded, result),
            });
        }
        if maybe_awaitable(&result) {
            return Ok(Outcome::Look(result));
        }
        Ok(Outcome::Value(result.unbind()))
    })?;
    match outcome {
        Outcome::Value(value) => PyTuple::new(
            py,
            [
                true.into_pyobject(py)?.to_owned().into_any(),
                value.into_bound(py),
            ],
        ),
        Outcome::Suspended(yielded, coro) => PyTuple::new(
            py,
            [
                false.into_pyobject(py)?.to_owned().into_any(),
                yielded.into_bound(py),
                coro,
                ctx,
            ],
        ),
        Outcome::Look(obj) => PyTuple::new(py, [py.None().into_bound(py), obj, ctx]),
    }
}

/// Runs a later step of a suspended call: `coro.send(value)` inside `ctx`; `(True, value)`
/// when it returns, `(False, yielded)` when it suspends again.
#[pyfunction]
pub fn pool_send<'py>(
    ctx: &Bound<'py, PyAny>,
    coro: &Bound<'py, PyAny>,
    value: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyTuple>> {
    let py = ctx.py();
    let (done, value) = match entered(py, ctx, || send(py, coro, value))? {
        Step::Returned(v) => (true, v),
        Step::Yielded(v) => (false, v),
    };
    PyTuple::new(
        py,
        [
            done.into_pyobject(py)?.to_owned().into_any(),
            value.into_bound(py),
        ],
    )
}
