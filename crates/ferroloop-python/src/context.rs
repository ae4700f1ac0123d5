//! Context snapshots: `copy_context()` per handle, without one live GC object per pending
//! handle.
//!
//! asyncio gives every handle scheduled without `context=` its own `copy_context()`. Each
//! copy is a GC-tracked object that lives until the handle runs, so a burst of pending
//! callbacks feeds the cycle collector: measured 731 ns vs 383 ns per
//! `call_soon_threadsafe` without and with an explicit context (docs/performance.md).
//!
//! Decision: consecutive copies whose variables are the same (the same immutable HAMT:
//! nothing was set in between) share one snapshot object; the fresh copy is freed at once,
//! so it never counts as pending. A shared snapshot is never entered itself: the handle runs
//! in a private copy of it (`PyContext_Copy`, freed right after), so what one callback sets
//! is seen by no other, exactly as with asyncio's one copy per handle.
//!
//! Comparing variables reads `ctx_vars` of CPython's `PyContext` (a private layout, the same
//! from 3.7 to 3.13). `layout_ok` checks it once at import on real contexts; if the check
//! fails, sharing is off and every handle gets its own copy.
//!
//! Threading: under the GIL.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;

use crate::py_helpers;

/// CPython's `struct _pycontextobject` (Include/internal/pycore_context.h).
#[repr(C)]
struct PyContextLayout {
    ob_base: ffi::PyObject,
    ctx_prev: *mut ffi::PyObject,
    ctx_vars: *mut ffi::PyObject,
    ctx_weakreflist: *mut ffi::PyObject,
    ctx_entered: libc::c_int,
}

static SHARING: AtomicBool = AtomicBool::new(false);

/// The variables (HAMT) of a context; only compared, never dereferenced.
fn vars_of(ctx: &Bound<'_, PyAny>) -> usize {
    // SAFETY: callers pass exact `contextvars.Context` objects (made by PyContext_Copy*),
    // whose allocation covers PyContextLayout; reading a pointer-sized field is sound.
    unsafe { (*(ctx.as_ptr() as *const PyContextLayout)).ctx_vars as usize }
}

/// Check the layout on live objects: two copies of one context share their variables, and
/// a copy in which a variable was set does not. Enables sharing when both hold.
pub fn init(py: Python<'_>) -> PyResult<()> {
    let contextvars = py.import("contextvars")?;
    let a = py_helpers::copy_context(py)?.into_bound(py);
    // SAFETY: a is a Context; PyContext_Copy returns a new reference or NULL with an error.
    let b = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_Copy(a.as_ptr()))? };
    let var = contextvars.getattr("ContextVar")?.call1(("ferroloop_layout_probe",))?;
    let c = py_helpers::copy_context(py)?.into_bound(py);
    c.call_method1("run", (var.getattr("set")?, 1))?;
    let ok = unsafe { ffi::PyContext_CheckExact(a.as_ptr()) } != 0
        && vars_of(&a) == vars_of(&b)
        && vars_of(&a) != vars_of(&c)
        && vars_of(&a) != 0;
    SHARING.store(ok, Ordering::Relaxed);
    Ok(())
}

/// `copy_context()` for a new handle, sharing `snapshot` when nothing changed since it was
/// taken. Returns the context for the handle; `snapshot` is updated. The caller drops any
/// replaced snapshot (returned second) after its own borrows end.
pub fn snapshot(
    py: Python<'_>,
    snapshot: &mut Option<Py<PyAny>>,
) -> PyResult<(Py<PyAny>, Option<Py<PyAny>>)> {
    let copy = py_helpers::copy_context(py)?;
    if !SHARING.load(Ordering::Relaxed) {
        return Ok((copy, None));
    }
    if let Some(s) = snapshot.as_ref() {
        if vars_of(s.bind(py)) == vars_of(copy.bind(py)) {
            // `copy` is freed by the caller's drop: it never counts as pending
            return Ok((s.clone_ref(py), Some(copy)));
        }
    }
    let old = snapshot.replace(copy.clone_ref(py));
    Ok((copy, old))
}

/// The context a shared snapshot runs in: a private copy (new reference). For a context
/// held by one handle only, the context itself.
pub fn for_run<'py>(ctx: &Bound<'py, PyAny>, shared: bool) -> PyResult<Bound<'py, PyAny>> {
    if !shared {
        return Ok(ctx.clone());
    }
    // SAFETY: ctx is a Context; returns a new reference or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(ctx.py(), ffi::PyContext_Copy(ctx.as_ptr())) }
}
