//! Vectorcall entry points for `call_soon`, `call_soon_threadsafe`, `call_later` and
//! `call_at`, bound once per loop.
//!
//! Decision (measured with callgrind, docs/performance.md): asyncio's C `Task` reaches the
//! loop through `getattr(loop, "call_soon")(step, context=ctx)` on every step. Through the
//! generic pymethod path that costs a bound-method allocation, PyO3's keyword parsing and
//! its trampoline. Here the loop instead stores, in its instance `__dict__`, a builtin
//! function bound to itself (`PyCFunction_NewEx`, `METH_FASTCALL | METH_KEYWORDS`): the
//! attribute lookup returns it without allocating and the call lands in `call_soon_fast`
//! with the arguments still on the caller's stack. The Python side installs it only when
//! method is not overridden by a subclass.
//!
//! Threading: called by CPython with the GIL held, on any thread.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

use super::EventLoop;
use crate::py_helpers::panic_message;

/// The last keyword-name object seen to spell "context" (see `dispatch`); holds a strong
/// reference to it.
static KNOWN_CONTEXT_NAME: AtomicPtr<ffi::PyObject> = AtomicPtr::new(std::ptr::null_mut());

/// The method definitions must outlive every function object made from them: leaked once.
struct Def(*mut ffi::PyMethodDef);
// SAFETY: each definition is written once, before publication by OnceLock, and only read
// afterwards (by CPython, under the GIL).
unsafe impl Send for Def {}
// SAFETY: as above.
unsafe impl Sync for Def {}

type Impl =
    for<'py> fn(&Bound<'py, EventLoop>, Args<'_>, Option<Bound<'py, PyAny>>) -> PyResult<Py<PyAny>>;

/// The positional arguments of a vectorcall, borrowed from the caller's stack.
#[derive(Clone, Copy)]
struct Args<'a>(&'a [*mut ffi::PyObject]);

impl<'a> Args<'a> {
    /// Argument `i` as an owned reference (callers checked the count).
    fn get<'py>(self, py: Python<'py>, i: usize) -> Bound<'py, PyAny> {
        // SAFETY: a borrowed reference valid for the call; from_borrowed_ptr increfs it.
        unsafe { Bound::from_borrowed_ptr(py, self.0[i]) }
    }

    /// Arguments `from..` as a tuple (`*args`); the empty tuple is CPython's singleton.
    fn rest<'py>(self, py: Python<'py>, from: usize) -> PyResult<Bound<'py, PyTuple>> {
        let items = &self.0[from..];
        if items.is_empty() {
            return Ok(PyTuple::empty(py));
        }
        // SAFETY: PyTuple_New returns a new tuple or NULL with an exception; each slot gets
        // a new reference to a live argument (PyTuple_SET_ITEM steals it).
        unsafe {
            let t = ffi::PyTuple_New(items.len() as ffi::Py_ssize_t);
            let t = Bound::from_owned_ptr_or_err(py, t)?;
            for (i, p) in items.iter().enumerate() {
                ffi::Py_INCREF(*p);
                ffi::PyTuple_SET_ITEM(t.as_ptr(), i as ffi::Py_ssize_t, *p);
            }
            Ok(t.cast_into_unchecked())
        }
    }
}

/// Parse vectorcall arguments (`required` leading positionals, the rest as `*args`, and an
/// optional `context=` keyword), then run `f`.
// The last four parameters are CPython's vectorcall signature, passed through unchanged.
#[allow(clippy::too_many_arguments)]
fn dispatch(
    py: Python<'_>,
    name: &str,
    required: &[&str],
    f: Impl,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Py<PyAny>> {
    // SAFETY: CPython passes the bound `self`: the loop `bind_fast_methods` made this
    // function for (an `EventLoop` or a subclass, kept alive by the function). No checked
    // cast: through the Python subclass's long MRO it cost ~57 instructions per call.
    let slf = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<EventLoop>() };
    let slf = &slf;
    let nargs = (nargsf as usize) & !ffi::PY_VECTORCALL_ARGUMENTS_OFFSET;
    let nkw = if kwnames.is_null() {
        0
    } else {
        // SAFETY: kwnames is a tuple when non-NULL (vectorcall protocol).
        unsafe { ffi::PyTuple_GET_SIZE(kwnames) as usize }
    };
    let mut context = None;
    if nkw > 0 {
        let interned = pyo3::intern!(py, "context");
        for i in 0..nkw {
            // SAFETY: kwnames holds nkw borrowed str references; the values follow the
            // positionals in `args`, borrowed from the caller for the call.
            let (kname, value) = unsafe {
                (
                    Bound::from_borrowed_ptr(
                        py,
                        ffi::PyTuple_GET_ITEM(kwnames, i as ffi::Py_ssize_t),
                    ),
                    Bound::from_borrowed_ptr(py, *args.add(nargs + i)),
                )
            };
            // compare pointers before text: the interned "context", or the last string that
            // matched (asyncio's C Task passes the same non-interned one on every step)
            let kptr = kname.as_ptr();
            if !kname.is(interned) && kptr != KNOWN_CONTEXT_NAME.load(Ordering::Relaxed) {
                if kname.cast::<PyString>()?.to_str()? != "context" {
                    return Err(PyTypeError::new_err(format!(
                        "{name}() got an unexpected keyword argument '{kname}'"
                    )));
                }
                // the cache owns a reference, so the address cannot be reused by another
                // string while it is cached
                // SAFETY: kptr is live (borrowed from the caller); we take a new reference
                // for the cache and release the one of the object it replaces (under the GIL).
                unsafe {
                    ffi::Py_INCREF(kptr);
                    let old = KNOWN_CONTEXT_NAME.swap(kptr, Ordering::Relaxed);
                    if !old.is_null() {
                        ffi::Py_DECREF(old);
                    }
                }
            }
            context = Some(value);
        }
    }
    if nargs < required.len() {
        let missing = &required[nargs..];
        let list = missing
            .iter()
            .map(|m| format!("'{m}'"))
            .collect::<Vec<_>>()
            .join(" and ");
        return Err(PyTypeError::new_err(format!(
            "{name}() missing {} required positional argument{}: {list}",
            missing.len(),
            if missing.len() == 1 { "" } else { "s" }
        )));
    }
    // SAFETY: `args` holds `nargs` borrowed positional references, valid for the call.
    let raw = unsafe { std::slice::from_raw_parts(args, nargs) };
    f(slf, Args(raw), context)
}

type Body = unsafe fn(
    Python<'_>,
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    ffi::Py_ssize_t,
    *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject>;

/// Entry for the methods called on the loop's own thread (`call_soon`, `call_later`,
/// `call_at`): while the loop runs, PyO3 already counts this thread as attached (the loop's
/// run is a PyO3 method), so `Python::attach` is a counter increment; dropping a `Py`
/// inside decrefs at once instead of deferring to PyO3's pool.
///
/// # Safety
/// Called by CPython with the GIL held and the vectorcall arguments of `body`.
unsafe fn enter_loop_thread(
    body: Body,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    Python::attach(|py| {
        // SAFETY: the caller's arguments, passed on unchanged.
        let result = catch_unwind(AssertUnwindSafe(|| unsafe {
            body(py, slf, args, nargsf, kwnames)
        }));
        let err = match result {
            Ok(Ok(obj)) => return obj,
            Ok(Err(e)) => e,
            Err(payload) => PanicException::new_err(panic_message(&*payload)),
        };
        err.restore(py);
        std::ptr::null_mut()
    })
}

/// Entry for `call_soon_threadsafe`, called from other threads: PyO3's own entry
/// trampoline records the attachment in its thread state without asking CPython
/// (`Python::attach` called `PyGILState_Ensure`/`Release` on every call from a thread PyO3
/// had not seen attached: about 80 instructions per call); it turns a panic into
/// `PanicException` and an error into the raised exception. On the loop's thread it costs
/// more than `enter_loop_thread` (it checks PyO3's deferred-decref pool under a mutex).
///
/// # Safety
/// As `enter_loop_thread`.
unsafe fn enter_any_thread(
    body: Body,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls builtin functions attached to the interpreter (GIL held).
    unsafe { pyo3::impl_::trampoline::fastcall_with_keywords(slf, args, nargsf, kwnames, body) }
}

/// Define a `METH_FASTCALL | METH_KEYWORDS` entry point and its leaked `PyMethodDef`.
macro_rules! fast_method {
    ($fname:ident, $defname:ident, $pyname:literal, $doc:literal, [$($req:literal),*], $enter:ident, $body:expr) => {
        unsafe extern "C" fn $fname(
            slf: *mut ffi::PyObject,
            args: *const *mut ffi::PyObject,
            nargsf: ffi::Py_ssize_t,
            kwnames: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject {
            unsafe fn body(
                py: Python<'_>,
                slf: *mut ffi::PyObject,
                args: *const *mut ffi::PyObject,
                nargsf: ffi::Py_ssize_t,
                kwnames: *mut ffi::PyObject,
            ) -> PyResult<*mut ffi::PyObject> {
                dispatch(py, $pyname, &[$($req),*], $body, slf, args, nargsf, kwnames).map(Py::into_ptr)
            }
            // SAFETY: CPython's vectorcall arguments, passed on unchanged.
            unsafe { $enter(body, slf, args, nargsf, kwnames) }
        }

        fn $defname() -> *mut ffi::PyMethodDef {
            static DEF: OnceLock<Def> = OnceLock::new();
            DEF.get_or_init(|| {
                Def(Box::into_raw(Box::new(ffi::PyMethodDef {
                    ml_name: concat!($pyname, "\0").as_ptr().cast(),
                    ml_meth: ffi::PyMethodDefPointer { PyCFunctionFastWithKeywords: $fname },
                    ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
                    ml_doc: concat!($doc, "\0").as_ptr().cast(),
                })))
            })
            .0
        }
    };
}

fast_method!(
    call_soon_fast,
    call_soon_def,
    "call_soon",
    "Arrange for a callback to be called as soon as possible.",
    ["callback"],
    enter_loop_thread,
    |slf, pos, ctx| {
        let py = slf.py();
        EventLoop::call_soon(slf, pos.get(py, 0), pos.rest(py, 1)?, ctx).map(Py::into_any)
    }
);

fast_method!(
    call_soon_threadsafe_fast,
    call_soon_threadsafe_def,
    "call_soon_threadsafe",
    "Like call_soon(), but thread-safe.",
    ["callback"],
    enter_any_thread,
    |slf, pos, ctx| {
        let py = slf.py();
        EventLoop::call_soon_threadsafe(slf, pos.get(py, 0), pos.rest(py, 1)?, ctx)
            .map(Py::into_any)
    }
);

fast_method!(
    call_later_fast,
    call_later_def,
    "call_later",
    "Arrange for a callback to be called at a given time.",
    ["delay", "callback"],
    enter_loop_thread,
    |slf, pos, ctx| {
        let py = slf.py();
        EventLoop::call_later(
            slf,
            Some(&pos.get(py, 0)),
            pos.get(py, 1),
            pos.rest(py, 2)?,
            ctx,
        )
        .map(Py::into_any)
    }
);

fast_method!(
    call_at_fast,
    call_at_def,
    "call_at",
    "Like call_later(), but uses an absolute time.",
    ["when", "callback"],
    enter_loop_thread,
    |slf, pos, ctx| {
        let py = slf.py();
        EventLoop::call_at(
            slf,
            Some(&pos.get(py, 0)),
            pos.get(py, 1),
            pos.rest(py, 2)?,
            ctx,
        )
        .map(Py::into_any)
    }
);

/// The scheduling methods bound to `slf` as builtin function objects, by name.
pub fn bind_fast_methods<'py>(
    slf: &Bound<'py, EventLoop>,
) -> PyResult<Vec<(&'static str, Bound<'py, PyAny>)>> {
    let py = slf.py();
    let defs: [(&'static str, *mut ffi::PyMethodDef); 4] = [
        ("call_soon", call_soon_def()),
        ("call_soon_threadsafe", call_soon_threadsafe_def()),
        ("call_later", call_later_def()),
        ("call_at", call_at_def()),
    ];
    defs.into_iter()
        .map(|(name, def)| {
            // SAFETY: def is 'static; slf is live and the function takes a reference to it;
            // NULL module is allowed. Returns a new reference or NULL with an exception.
            let f = unsafe {
                Bound::from_owned_ptr_or_err(
                    py,
                    ffi::PyCFunction_NewEx(def, slf.as_ptr(), std::ptr::null_mut()),
                )
            }?;
            Ok((name, f))
        })
        .collect()
}
