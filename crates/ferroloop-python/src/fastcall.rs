//! A vectorcall entry point for `loop.call_soon`, bound once per loop.
//!
//! Decision (measured with callgrind, docs/performance.md): asyncio's C `Task` reaches the
//! loop through `getattr(loop, "call_soon")(step, context=ctx)` on every step. Through the
//! generic pymethod path that costs a bound-method allocation, PyO3's keyword parsing and
//! its trampoline. Here the loop instead stores, in its instance `__dict__`, a builtin
//! function bound to itself (`PyCFunction_NewEx`, `METH_FASTCALL | METH_KEYWORDS`): the
//! attribute lookup returns it without allocating and the call lands in `call_soon_fast`
//! with the arguments still on the caller's stack. The Python side installs it only when
//! `call_soon` is not overridden by a subclass.
//!
//! Threading: called by CPython with the GIL held, on any thread.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use pyo3::exceptions::PyTypeError;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};
use pyo3::ffi;

use crate::event_loop::EventLoop;

/// The method definition must outlive every function object made from it: leaked once.
struct Def(*mut ffi::PyMethodDef);
// SAFETY: the definition is written once, before publication by OnceLock, and only read
// afterwards (by CPython, under the GIL).
unsafe impl Send for Def {}
// SAFETY: as above.
unsafe impl Sync for Def {}

fn call_soon_def() -> *mut ffi::PyMethodDef {
    static DEF: OnceLock<Def> = OnceLock::new();
    DEF.get_or_init(|| {
        Def(Box::into_raw(Box::new(ffi::PyMethodDef {
            ml_name: c"call_soon".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer { PyCFunctionFastWithKeywords: call_soon_fast },
            ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            ml_doc: c"Arrange for a callback to be called as soon as possible.".as_ptr(),
        })))
    })
    .0
}

/// `loop.call_soon` bound to `slf` as a builtin function object.
pub fn bind_call_soon(slf: &Bound<'_, EventLoop>) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    // SAFETY: the def is 'static; slf is a live object that the function will own a
    // reference to; NULL module is allowed. Returns a new reference or NULL + exception.
    unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyCFunction_NewEx(call_soon_def(), slf.as_ptr(), std::ptr::null_mut()))
    }
    .map(Bound::unbind)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic in ferroloop".to_string()
    }
}

fn call_soon_impl(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Py<PyAny>> {
    // SAFETY: CPython passes the bound `self` (our loop, kept alive by the function).
    let slf = unsafe { Bound::from_borrowed_ptr(py, slf) };
    let slf = slf.cast::<EventLoop>()?;
    let nargs = (nargsf as usize) & !ffi::PY_VECTORCALL_ARGUMENTS_OFFSET;
    if nargs == 0 {
        return Err(PyTypeError::new_err(
            "call_soon() missing 1 required positional argument: 'callback'",
        ));
    }
    // SAFETY: `args` holds `nargs` positional references followed by one per keyword,
    // all borrowed from the caller for the duration of the call.
    let argv = unsafe { std::slice::from_raw_parts(args, nargs + kwcount(kwnames)) };
    // SAFETY: borrowed references valid for the call (see above).
    let callback = unsafe { Bound::from_borrowed_ptr(py, argv[0]) };
    let rest = if nargs == 1 {
        PyTuple::empty(py)
    } else {
        // SAFETY: as above.
        PyTuple::new(py, argv[1..nargs].iter().map(|p| unsafe { Bound::from_borrowed_ptr(py, *p) }))?
    };
    let mut context = None;
    if !kwnames.is_null() {
        // SAFETY: kwnames is a tuple of str when non-NULL (vectorcall protocol).
        let names = unsafe { Bound::from_borrowed_ptr(py, kwnames) };
        let names = names.cast::<PyTuple>()?;
        let interned = pyo3::intern!(py, "context");
        for (i, name) in names.iter().enumerate() {
            let name = name.cast::<PyString>()?;
            // keyword names are usually interned: compare pointers before text
            if !name.is(interned) && name.to_str()? != "context" {
                return Err(PyTypeError::new_err(format!(
                    "call_soon() got an unexpected keyword argument '{}'",
                    name.to_str()?
                )));
            }
            // SAFETY: as above.
            context = Some(unsafe { Bound::from_borrowed_ptr(py, argv[nargs + i]) });
        }
    }
    EventLoop::call_soon(slf, callback, rest, context).map(|h| h.into_any())
}

fn kwcount(kwnames: *mut ffi::PyObject) -> usize {
    if kwnames.is_null() {
        0
    } else {
        // SAFETY: kwnames is a tuple when non-NULL.
        unsafe { ffi::PyTuple_GET_SIZE(kwnames) as usize }
    }
}

unsafe extern "C" fn call_soon_fast(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls builtin functions with the GIL held.
    let py = unsafe { Python::assume_attached() };
    let result = catch_unwind(AssertUnwindSafe(|| call_soon_impl(py, slf, args, nargsf, kwnames)));
    let err = match result {
        Ok(Ok(obj)) => return obj.into_ptr(),
        Ok(Err(e)) => e,
        Err(payload) => PanicException::new_err(panic_message(&*payload)),
    };
    err.restore(py);
    std::ptr::null_mut()
}
