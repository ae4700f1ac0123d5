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
//! so it never counts as pending.
//!
//! A callback whose snapshot is shared runs in the snapshot itself, and when it returns the
//! snapshot's variables are put back as they were (`RunContext`'s drop): what one callback
//! sets is seen by no other, exactly as with asyncio's one copy per handle, without a
//! context allocated and freed per run (measured with callgrind: about 150 instructions of
//! 2,300 per `call_soon_threadsafe` round trip). A snapshot that is entered at that moment
//! (a callback running a handle of its own snapshot by hand) gets a private copy instead,
//! and an entered snapshot is never shared with a new handle: a `call_soon` made by a
//! callback after it set a variable keeps that variable, as in asyncio.
//!
//! Comparing and restoring variables reads and writes `ctx_vars` of CPython's `PyContext`
//! (a private layout, the same from 3.7 to 3.13). `init` checks it once at import on real
//! contexts (variables shared by copies, changed by a set, `ctx_entered` set while
//! entered); if the check fails, sharing is off and every handle gets its own copy.
//!
//! When the snapshot can be shared, no copy is made at all: the current context is read
//! from the thread state's `context` field (at this version's offset in
//! `Include/cpython/pystate.h`: 3.11, 3.12 and 3.13, `private_api.rs`) and its variables
//! compared with the snapshot's; a copy is made only for a new snapshot. `init` checks that
//! field too (it holds a context while that context is entered, and no longer after);
//! otherwise every `call_soon` copies as before (measured: 84 instructions per `call_soon`
//! saved). `FERROLOOP_PRIVATE_FAST_PATHS=0` turns both off (`private_api.rs`).
//!
//! Threading: under the GIL.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;

use crate::cell::GilCell;
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

/// `PyThreadState.context`'s offset on this interpreter, once `init` checked it; 0 = not
/// readable (`private_api::thread_state_context_offset`).
static CONTEXT_OFFSET: AtomicUsize = AtomicUsize::new(0);

/// The calling thread's current context (borrowed), NULL when none was entered yet.
fn current_context() -> *mut ffi::PyObject {
    let offset = CONTEXT_OFFSET.load(Ordering::Relaxed);
    debug_assert!(offset != 0);
    // SAFETY: only called once `init` verified, on this interpreter, that the pointer at
    // this offset of the thread state is the current context; the caller holds the GIL, so
    // the thread state is live and its `context` field stable.
    unsafe { *((ffi::PyThreadState_Get() as *const u8).add(offset) as *const *mut ffi::PyObject) }
}

/// Whether `init` enabled context sharing (`private_api`).
pub fn sharing() -> bool {
    SHARING.load(Ordering::Relaxed)
}

/// Whether `init` enabled reading the current context from the thread state.
pub fn current_readable() -> bool {
    CONTEXT_OFFSET.load(Ordering::Relaxed) != 0
}

/// Check `PyThreadState.context` at this version's offset: the field holds a fresh context
/// exactly while it is entered. Sets `CONTEXT_OFFSET` when it does.
fn check_current_readable(py: Python<'_>) -> PyResult<()> {
    let Some(offset) = crate::private_api::thread_state_context_offset(py) else {
        return Ok(());
    };
    // SAFETY: PyContext_New returns a new reference or NULL with an exception set.
    let probe = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_New())? };
    let read = || {
        // SAFETY: the offset is inside this version's `PyThreadState` (its header puts the
        // `context` pointer there, with more fields after it), so the read stays in the
        // live thread state's allocation; the GIL is held.
        unsafe {
            *((ffi::PyThreadState_Get() as *const u8).add(offset) as *const *mut ffi::PyObject)
        }
    };
    // SAFETY: probe is a Context no one else has entered; Enter/Exit are balanced.
    let ok = unsafe {
        if ffi::PyContext_Enter(probe.as_ptr()) != 0 {
            return Err(PyErr::fetch(py));
        }
        let inside = read() == probe.as_ptr();
        if ffi::PyContext_Exit(probe.as_ptr()) != 0 {
            return Err(PyErr::fetch(py));
        }
        inside && read() != probe.as_ptr()
    };
    if ok {
        CONTEXT_OFFSET.store(offset, Ordering::Relaxed);
    }
    Ok(())
}

/// The snapshots running a callback in place right now, as (context, its variables before
/// the run) addresses: the outermost in `OUTER_*` (two plain stores per run), any nested
/// one in `NESTED`. A handle of such a snapshot run by hand from inside the callback gets a
/// copy with the variables from before. Only touched under the GIL.
static OUTER_CTX: AtomicUsize = AtomicUsize::new(0);
static OUTER_VARS: AtomicUsize = AtomicUsize::new(0);
static NESTED: GilCell<Vec<(usize, usize)>> = GilCell::new(Vec::new());
/// `NESTED.len()`, readable without a borrow.
static NESTED_LEN: AtomicUsize = AtomicUsize::new(0);

fn in_place_push(py: Python<'_>, ctx: usize, vars: usize) -> PyResult<()> {
    if OUTER_CTX.load(Ordering::Relaxed) == 0 {
        OUTER_CTX.store(ctx, Ordering::Relaxed);
        OUTER_VARS.store(vars, Ordering::Relaxed);
        return Ok(());
    }
    let mut nested = NESTED.borrow_mut(py)?;
    nested.push((ctx, vars));
    NESTED_LEN.store(nested.len(), Ordering::Relaxed);
    Ok(())
}

fn in_place_pop(py: Python<'_>, ctx: usize) {
    if NESTED_LEN.load(Ordering::Relaxed) > 0 {
        if let Ok(mut nested) = NESTED.borrow_mut(py) {
            if let Some(i) = nested.iter().rposition(|&(c, _)| c == ctx) {
                nested.remove(i);
                NESTED_LEN.store(nested.len(), Ordering::Relaxed);
                return;
            }
        }
    }
    if OUTER_CTX.load(Ordering::Relaxed) == ctx {
        OUTER_CTX.store(0, Ordering::Relaxed);
    }
}

/// The variables a snapshot had before the in-place run now running it, if any.
fn in_place_vars(py: Python<'_>, ctx: usize) -> PyResult<Option<usize>> {
    if NESTED_LEN.load(Ordering::Relaxed) == 0 {
        return Ok(
            (OUTER_CTX.load(Ordering::Relaxed) == ctx).then(|| OUTER_VARS.load(Ordering::Relaxed))
        );
    }
    if let Some(&(_, v)) = NESTED
        .borrow_mut(py)?
        .iter()
        .rev()
        .find(|&&(c, _)| c == ctx)
    {
        return Ok(Some(v));
    }
    Ok((OUTER_CTX.load(Ordering::Relaxed) == ctx).then(|| OUTER_VARS.load(Ordering::Relaxed)))
}

/// The variables (HAMT) of a context; only compared, never dereferenced.
fn vars_of(ctx: &Bound<'_, PyAny>) -> usize {
    // SAFETY: callers pass exact `contextvars.Context` objects (made by PyContext_Copy*),
    // whose allocation covers PyContextLayout; reading a pointer-sized field is sound.
    unsafe { (*(ctx.as_ptr() as *const PyContextLayout)).ctx_vars as usize }
}

/// True while the context is entered (running something).
fn is_entered(ctx: &Bound<'_, PyAny>) -> bool {
    // SAFETY: as in vars_of: an exact Context, reading an int field.
    unsafe { (*(ctx.as_ptr() as *const PyContextLayout)).ctx_entered != 0 }
}

/// Check the layout on live objects: two copies of one context share their variables, and
/// a copy in which a variable was set does not. Enables sharing when both hold.
pub fn init(py: Python<'_>) -> PyResult<()> {
    if !crate::private_api::allowed() {
        return Ok(()); // FERROLOOP_PRIVATE_FAST_PATHS=0: the public-API paths only
    }
    let contextvars = py.import("contextvars")?;
    let a = py_helpers::copy_context(py)?.into_bound(py);
    // SAFETY: a is a Context; PyContext_Copy returns a new reference or NULL with an error.
    let b = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_Copy(a.as_ptr()))? };
    let var = contextvars
        .getattr("ContextVar")?
        .call1(("ferroloop_layout_probe",))?;
    let c = py_helpers::copy_context(py)?.into_bound(py);
    c.call_method1("run", (var.getattr("set")?, 1))?;
    // SAFETY: a type check on a live object.
    let mut ok = unsafe { ffi::PyContext_CheckExact(a.as_ptr()) } != 0
        && vars_of(&a) == vars_of(&b)
        && vars_of(&a) != vars_of(&c)
        && vars_of(&a) != 0
        && !is_entered(&b);
    if ok {
        // SAFETY: b is a Context no one else has entered; Enter/Exit are balanced here.
        unsafe {
            if ffi::PyContext_Enter(b.as_ptr()) != 0 {
                return Err(PyErr::fetch(py));
            }
            ok = is_entered(&b);
            if ffi::PyContext_Exit(b.as_ptr()) != 0 {
                return Err(PyErr::fetch(py));
            }
        }
        ok = ok && !is_entered(&b);
    }
    SHARING.store(ok, Ordering::Relaxed);
    if ok {
        check_current_readable(py)?;
    }
    Ok(())
}

/// `copy_context()` for a new handle, sharing `snapshot` when nothing changed since it was
/// taken. Returns the context for the handle; `snapshot` is updated. The caller drops any
/// replaced snapshot (returned second) after its own borrows end.
pub fn snapshot(
    py: Python<'_>,
    snapshot: &mut Option<Py<PyAny>>,
) -> PyResult<(Py<PyAny>, Option<Py<PyAny>>)> {
    if current_readable() {
        if let Some(s) = snapshot.as_ref() {
            let current = current_context();
            // SAFETY: a non-NULL current context is a live exact Context (the thread state
            // holds it), of the layout `init` checked.
            if !current.is_null()
                && unsafe { (*(current as *const PyContextLayout)).ctx_vars } as usize
                    == vars_of(s.bind(py))
                && !is_entered(s.bind(py))
            {
                return Ok((s.clone_ref(py), None));
            }
        }
    }
    let copy = py_helpers::copy_context(py)?;
    if !SHARING.load(Ordering::Relaxed) {
        return Ok((copy, None));
    }
    if let Some(s) = snapshot.as_ref() {
        // an entered snapshot may be running a callback that set variables, which its
        // restore will undo: not for a new handle
        if vars_of(s.bind(py)) == vars_of(copy.bind(py)) && !is_entered(s.bind(py)) {
            // `copy` is freed by the caller's drop: it never counts as pending
            return Ok((s.clone_ref(py), Some(copy)));
        }
    }
    let old = snapshot.replace(copy.clone_ref(py));
    Ok((copy, old))
}

/// The context one run of a handle enters; for a shared snapshot run in place, dropping
/// it puts the snapshot's variables back as they were before the run.
pub struct RunContext<'py> {
    ctx: Bound<'py, PyAny>,
    /// The snapshot's variables before the run (a strong reference), or NULL.
    saved_vars: *mut ffi::PyObject,
}

impl<'py> RunContext<'py> {
    /// The context to enter.
    pub fn context(&self) -> &Bound<'py, PyAny> {
        &self.ctx
    }

    /// For a run that failed, before this is dropped: a context holding the variables as
    /// the callback left them, for the error report (3.12's `call_exception_handler` runs the
    /// handler in `handle.get_context()`). A snapshot run in place gets a copy, since its own
    /// variables are put back when this is dropped; any other context is itself.
    pub fn for_report(&self) -> PyResult<Bound<'py, PyAny>> {
        if self.saved_vars.is_null() {
            return Ok(self.ctx.clone());
        }
        // SAFETY: ctx is a live Context; PyContext_Copy returns a new reference or NULL
        // with an exception set.
        unsafe {
            Bound::from_owned_ptr_or_err(self.ctx.py(), ffi::PyContext_Copy(self.ctx.as_ptr()))
        }
    }
}

impl Drop for RunContext<'_> {
    fn drop(&mut self) {
        if self.saved_vars.is_null() {
            return;
        }
        in_place_pop(self.ctx.py(), self.ctx.as_ptr() as usize);
        let layout = self.ctx.as_ptr() as *mut PyContextLayout;
        // SAFETY: ctx is a live exact Context (checked layout) that is no longer entered by
        // this run; saved_vars is our strong reference to the HAMT it held before. The field
        // takes that reference, and the one it held is released. CPython reads `ctx_vars`
        // afresh on every lookup, and entering or leaving a context invalidates the
        // variables' caches.
        unsafe {
            let current = (*layout).ctx_vars;
            if current == self.saved_vars {
                ffi::Py_DECREF(self.saved_vars);
            } else {
                (*layout).ctx_vars = self.saved_vars;
                ffi::Py_DECREF(current);
            }
        }
    }
}

/// The context a handle's run enters: its own context when no other handle holds it; a
/// shared snapshot in place, restored afterwards; or, when the snapshot is entered right
/// now, a private copy.
pub fn for_run<'py>(ctx: &Bound<'py, PyAny>, shared: bool) -> PyResult<RunContext<'py>> {
    if !shared {
        return Ok(RunContext {
            ctx: ctx.clone(),
            saved_vars: std::ptr::null_mut(),
        });
    }
    if SHARING.load(Ordering::Relaxed) && !is_entered(ctx) {
        // SAFETY: an exact Context (sharing is on only for snapshots of the checked layout);
        // we take a strong reference to its variables for the restore.
        let vars = unsafe { (*(ctx.as_ptr() as *const PyContextLayout)).ctx_vars };
        in_place_push(ctx.py(), ctx.as_ptr() as usize, vars as usize)?;
        // SAFETY: vars is the live HAMT the context holds.
        unsafe { ffi::Py_INCREF(vars) };
        return Ok(RunContext {
            ctx: ctx.clone(),
            saved_vars: vars,
        });
    }
    // SAFETY: ctx is a Context; returns a new reference or NULL with an exception set.
    let copy =
        unsafe { Bound::from_owned_ptr_or_err(ctx.py(), ffi::PyContext_Copy(ctx.as_ptr())) }?;
    let before = in_place_vars(ctx.py(), ctx.as_ptr() as usize)?;
    if let Some(vars) = before {
        // the snapshot is running a callback in place, which may have set variables: the
        // copy gets the variables from before that run
        let layout = copy.as_ptr() as *mut PyContextLayout;
        // SAFETY: copy is a new exact Context of the checked layout that no one else holds;
        // `vars` is kept alive by the running RunContext's reference. The field takes a new
        // reference to it and releases the one it held.
        unsafe {
            ffi::Py_INCREF(vars as *mut ffi::PyObject);
            let old = (*layout).ctx_vars;
            (*layout).ctx_vars = vars as *mut ffi::PyObject;
            ffi::Py_DECREF(old);
        }
    }
    Ok(RunContext {
        ctx: copy,
        saved_vars: std::ptr::null_mut(),
    })
}

/// `ctx.run(f)`: `f` runs with `ctx` entered, and `ctx` is exited whatever `f` returns.
pub fn in_context<T>(
    py: Python<'_>,
    ctx: &Bound<'_, PyAny>,
    f: impl FnOnce() -> PyResult<T>,
) -> PyResult<T> {
    // SAFETY: ctx is a live object (the caller holds a reference); PyContext_Enter
    // type-checks it and sets an exception on failure (not a Context, or already entered).
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
