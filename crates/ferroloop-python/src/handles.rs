//! `Handle` and `TimerHandle`: asyncio's callback handles, native.
//!
//! A handle is created once per `call_soon`/`call_later` and run once, so it is the object
//! on the hot path: a frozen pyclass whose callback, arguments and context live in a
//! `GilCell`, with the cancelled/scheduled flags as plain fields the timer heap reads without
//! the GIL. Running enters the handle's `contextvars.Context` with `PyContext_Enter` and
//! calls through vectorcall, so no bound method or tuple is built.
//!
//! `TimerHandle` adds its timer methods and the deadline object `call_at` was given (asyncio's
//! `_when`: an int stays an int, a NaN keeps its identity and hash); the loop's heap orders
//! by a float key of its own (event_loop.rs, `deadline_key`), so the loop keeps one
//! `Py<Handle>` type in its ready queue. Formatting (`repr`) and error reports call back into
//! `ferroloop._handles` (rare paths, written once in Python).
//!
//! Threading: created and run on the loop thread; `cancel` may come from any thread holding
//! the GIL (as in asyncio, that is the caller's responsibility).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::OnceLock;

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{ffi, PyTraverseError, PyVisit};

use crate::cell::GilCell;
use crate::context::in_context;
use crate::py_helpers;

/// What a handle asks of the loop that owns it, supplied by the loop when the extension is
/// imported (`event_loop::register_handle_hooks`): this module names no loop type, so the
/// loop imports its entries and not the reverse. Each returns `None` for a loop that is
/// not ferroloop's native one (the handle then does what asyncio's does).
pub(crate) struct LoopHooks {
    /// The loop's debug flag.
    pub is_debug: for<'py> fn(&Bound<'py, PyAny>) -> Option<bool>,
    /// A timer of the loop was cancelled: the loop counts it for its heap's compaction.
    pub timer_cancelled: for<'py> fn(&Bound<'py, PyAny>, &Handle) -> Option<PyResult<()>>,
}

static LOOP_HOOKS: OnceLock<LoopHooks> = OnceLock::new();

/// Install the loop's hooks (once; later calls are ignored).
pub(crate) fn set_loop_hooks(hooks: LoopHooks) {
    let _ = LOOP_HOOKS.set(hooks);
}

pub struct HandleInner {
    pub callback: Option<Py<PyAny>>,
    pub args: Option<Py<PyTuple>>,
    pub context: Option<Py<PyAny>>,
    pub loop_: Option<Py<PyAny>>,
    pub source_traceback: Option<Py<PyAny>>,
    pub repr: Option<Py<PyAny>>,
}

impl Drop for HandleInner {
    /// What a handle still holds when it is freed, released as `Bound`s: a plain decref
    /// each (a `Py`'s drop first asks PyO3's thread-local state whether the thread is
    /// attached: a TLS lookup per field).
    fn drop(&mut self) {
        // SAFETY: a handle's contents are dropped by its `tp_dealloc` (CPython holds the GIL
        // there) or, for a handle never made into an object, by the method that built it,
        // which runs under the GIL too.
        let py = unsafe { Python::assume_attached() };
        drop((
            self.callback.take().map(|o| o.into_bound(py)),
            self.args.take().map(|o| o.into_bound(py)),
            self.context.take().map(|o| o.into_bound(py)),
            self.loop_.take().map(|o| o.into_bound(py)),
            self.source_traceback.take().map(|o| o.into_bound(py)),
            self.repr.take().map(|o| o.into_bound(py)),
        ));
    }
}

// No `freelist`: measured, PyO3's freelist costs more instructions per `sleep(0)` step
// (5,656 vs 5,618) than CPython's small-object allocator for a non-GC object.
#[pyclass(module = "ferroloop._native", subclass, frozen, weakref)]
pub struct Handle {
    pub inner: GilCell<HandleInner>,
    pub cancelled: AtomicBool,
    /// Timers only: still in the loop's heap.
    pub scheduled: AtomicBool,
    /// Run once by the loop (`call_soon`, timers), as opposed to a reader/writer handle that
    /// runs on every readiness event. The loop drops a one-shot handle's callback and
    /// arguments after running it (see "GC" below).
    pub oneshot: bool,
    /// The context is a loop-made snapshot that other handles may share (context.rs):
    /// run in a private copy of it. Atomic only to be reset when the loop recycles the
    /// handle (see "Recycling" below).
    pub snapshot_context: AtomicBool,
    /// A native transport's watcher: the loop calls a native step with the callback's
    /// `__self__` directly instead of calling the callback (a bound builtin method), in this
    /// handle's context (event_loop, `PyHost::run`). The step's number in its loop's table
    /// of native steps (`NativeSteps`), 0 for none: a byte beside `oneshot` (no bigger
    /// handle), set by the loop right after it made the handle.
    pub native: AtomicU8,
}

impl Handle {
    /// The native step this handle stands for (`native`): 0 for none.
    #[inline]
    pub fn native_step(&self) -> u8 {
        self.native.load(Ordering::Relaxed)
    }
}

// Recycling: a one-shot `Handle` (not a `TimerHandle`) that ran, is referenced by nothing
// but the loop (refcount 1, no weak reference) and kept no debug state is emptied and kept
// by its loop for its next `call_soon` (`EventLoop::make_handle`), instead of being freed
// and allocated again: one allocation and one PyO3 deallocation less per callback. Nothing
// can observe the reuse: no reference to the old handle exists anywhere. Measured with
// `benches/instructions.py` (docs/performance.md).

// GC: handles are not GC objects at all (no `__traverse__`: no GC header, no tracking, and
// they do not count toward the collector's allocation thresholds). One tracked object per
// `call_soon` made every burst of pending callbacks feed the collector: measured 553 -> 458
// ns per `call_soon` + run just by untracking, more by leaving the GC type (the allocation
// still counted). Cycles through a handle stay collectable because:
// - a pending handle is owned by its loop, and the loop's `__traverse__` visits the contents
//   of every handle it exclusively owns (refcount 1);
// - a handle that ran (one-shot) or was cancelled no longer holds its callback or arguments,
//   so `obj -> handle -> obj.method` is no longer a cycle.

impl Handle {
    pub fn new_inner(
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Py<PyAny>,
        loop_: Py<PyAny>,
        source_traceback: Option<Py<PyAny>>,
        oneshot: bool,
        snapshot_context: bool,
    ) -> Handle {
        Handle {
            inner: GilCell::new(HandleInner {
                callback: Some(callback),
                args: Some(args),
                context: Some(context),
                loop_: Some(loop_),
                source_traceback,
                repr: None,
            }),
            cancelled: AtomicBool::new(false),
            scheduled: AtomicBool::new(false),
            oneshot,
            snapshot_context: AtomicBool::new(snapshot_context),
            native: AtomicU8::new(0),
        }
    }

    /// Fill an emptied one-shot handle (one `recycle` returned) for a new callback.
    pub fn refill(
        &self,
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Py<PyAny>,
        loop_: Py<PyAny>,
        snapshot_context: bool,
    ) -> PyResult<()> {
        let mut inner = self.inner.borrow_mut(py)?;
        inner.callback = Some(callback);
        inner.args = Some(args);
        inner.context = Some(context);
        inner.loop_ = Some(loop_);
        drop(inner);
        self.snapshot_context
            .store(snapshot_context, Ordering::Relaxed);
        self.cancelled.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// After the loop ran `h` (popped from its queue, so `h` is the loop's reference): the
    /// handle, emptied, when nothing else can see it (see "Recycling" above); else `None`
    /// and `h` is released as usual.
    pub fn recycle(h: Bound<'_, Handle>) -> Option<Py<Handle>> {
        let py = h.py();
        let me = h.get();
        let ptr = h.as_ptr();
        // SAFETY: h is live; its type object outlives it. Only an exact `Handle` (whose
        // PyO3 type has a weak-reference list at `tp_weaklistoffset`) is examined further.
        let exact_and_unshared = unsafe {
            let tp = ffi::Py_TYPE(ptr);
            me.oneshot
                && ffi::Py_REFCNT(ptr) == 1
                && tp == <Handle as pyo3::PyTypeInfo>::type_object_raw(py)
                && (*tp).tp_weaklistoffset > 0
                && (*(ptr as *const u8)
                    .offset((*tp).tp_weaklistoffset as isize)
                    .cast::<*mut ffi::PyObject>())
                .is_null()
        };
        if !exact_and_unshared {
            return None;
        }
        let taken = {
            let mut inner = me.inner.borrow_mut(py).ok()?;
            if inner.source_traceback.is_some() || inner.repr.is_some() {
                return None;
            }
            (
                inner.callback.take(),
                inner.args.take(),
                inner.context.take(),
                inner.loop_.take(),
            )
        };
        // as `Bound`s (a plain decref); they may run arbitrary code (`__del__`), so after
        // the borrow, and the handle is re-checked afterwards
        drop((
            taken.0.map(|o| o.into_bound(py)),
            taken.1.map(|o| o.into_bound(py)),
            taken.2.map(|o| o.into_bound(py)),
            taken.3.map(|o| o.into_bound(py)),
        ));
        // SAFETY: as above; a `__del__` cannot have reached this handle (nothing referenced
        // it), but the check is cheap.
        if unsafe { ffi::Py_REFCNT(ptr) } != 1 {
            return None;
        }
        Some(h.unbind())
    }

    /// After the loop ran a one-shot handle: drop what it called (see "GC" above), and a
    /// shared snapshot context. A caller's context and the creation traceback stay.
    pub fn release_after_run(&self, py: Python<'_>) -> PyResult<()> {
        if !self.oneshot {
            return Ok(());
        }
        let taken = {
            let mut inner = self.inner.borrow_mut(py)?;
            let snapshot = if self.snapshot_context.load(Ordering::Relaxed) {
                inner.context.take()
            } else {
                None
            };
            (
                inner.callback.take(),
                inner.args.take(),
                inner.loop_.take(),
                snapshot,
            )
        };
        // as `Bound`s: dropped with a plain decref (a `Py`'s drop first asks PyO3's
        // thread-local state whether the thread is attached: 4 TLS lookups per callback)
        drop((
            taken.0.map(|o| o.into_bound(py)),
            taken.1.map(|o| o.into_bound(py)),
            taken.2.map(|o| o.into_bound(py)),
            taken.3.map(|o| o.into_bound(py)),
        ));
        Ok(())
    }

    /// Visit what this handle references, on behalf of the loop that owns it.
    pub fn traverse_contents(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(inner) = self.inner.try_borrow_for_gc() {
            for o in [
                &inner.callback,
                &inner.context,
                &inner.loop_,
                &inner.source_traceback,
                &inner.repr,
            ]
            .into_iter()
            .flatten()
            {
                visit.call(o)?;
            }
            if let Some(a) = &inner.args {
                visit.call(a)?;
            }
        }
        Ok(())
    }

    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Mark cancelled and drop the callback and arguments (after the borrow ends).
    pub fn do_cancel(slf: &Bound<'_, Handle>) -> PyResult<()> {
        let me = slf.get();
        if me.cancelled.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let py = slf.py();
        let debug = {
            let inner = me.inner.borrow_mut(py)?;
            match (&inner.loop_, LOOP_HOOKS.get()) {
                (Some(l), Some(hooks)) => (hooks.is_debug)(l.bind(py)).unwrap_or(false),
                _ => false,
            }
        };
        if debug {
            // asyncio keeps the repr of a cancelled handle in debug mode
            let r = py_helpers::handle_repr(slf.as_any())?;
            me.inner.borrow_mut(py)?.repr = Some(r.unbind());
        }
        let (cb, args) = {
            let mut inner = me.inner.borrow_mut(py)?;
            (inner.callback.take(), inner.args.take())
        };
        drop(cb);
        drop(args);
        Ok(())
    }

    /// The loop's way to run a handle it popped from its queue: a one-shot handle that
    /// nobody else references gives its callback and arguments up instead of lending them
    /// (no clones, nothing to release afterwards); any other handle runs as `run` and is
    /// released after.
    pub fn run_from_loop(slf: &Bound<'_, Handle>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        // SAFETY: slf is live; a refcount of 1 means our reference is the only one.
        let exclusive = me.oneshot && unsafe { ffi::Py_REFCNT(slf.as_ptr()) } == 1;
        if !exclusive {
            let r = Handle::run(slf);
            me.release_after_run(py)?;
            return r;
        }
        // a snapshot context is given up too (`release_after_run` would drop it); a caller's
        // context stays with the handle
        let snapshot = me.snapshot_context.load(Ordering::Relaxed);
        let (cb, args, ctx) = {
            let mut inner = me.inner.borrow_mut(py)?;
            let ctx = if snapshot {
                inner.context.take()
            } else {
                inner.context.as_ref().map(|c| c.clone_ref(py))
            };
            match (inner.callback.take(), inner.args.take(), ctx) {
                (Some(cb), Some(args), Some(ctx)) => {
                    (cb.into_bound(py), args.into_bound(py), ctx.into_bound(py))
                }
                (cb, args, ctx) => {
                    inner.callback = cb;
                    inner.args = args;
                    if snapshot {
                        inner.context = ctx;
                    }
                    return Ok(());
                }
            }
        };
        let mut ctx = ctx;
        let result = if snapshot {
            // a snapshot that other handles (or the loop's snapshot slot) still hold is
            // shared: what the callback sets is undone after the run (context.rs)
            // SAFETY: ctx is live (we own a reference).
            let shared = unsafe { ffi::Py_REFCNT(ctx.as_ptr()) } > 1;
            let run = crate::context::for_run(&ctx, shared)?;
            let r = call_in_context(py, &cb, &args, run.context());
            if r.is_err() {
                // the report sees the variables the callback set
                ctx = run.for_report()?;
            }
            drop(run); // a shared snapshot's variables are restored now
            r
        } else {
            call_in_context(py, &cb, &args, &ctx)
        };
        match result {
            Ok(()) => Ok(()),
            Err(err) => {
                // the report names the callback: give it back first
                {
                    let mut inner = me.inner.borrow_mut(py)?;
                    inner.callback = Some(cb.unbind());
                    inner.args = Some(args.unbind());
                    if snapshot {
                        inner.context = Some(ctx.unbind());
                    }
                }
                Handle::handle_error(slf, err)
            }
        }
    }

    /// asyncio's `Handle._run` error path: `SystemExit`/`KeyboardInterrupt` propagate,
    /// everything else goes to the loop's exception handler.
    fn handle_error(slf: &Bound<'_, Handle>, err: PyErr) -> PyResult<()> {
        let py = slf.py();
        if err.is_instance_of::<pyo3::exceptions::PySystemExit>(py)
            || err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py)
        {
            return Err(err);
        }
        py_helpers::report_callback_error(slf.as_any(), err)
    }

    /// Run the callback in its context. Errors other than `SystemExit`/`KeyboardInterrupt`
    /// go to the loop's exception handler; those two are returned to propagate.
    pub fn run(slf: &Bound<'_, Handle>) -> PyResult<()> {
        Handle::run_step(slf, None)
    }

    /// Run `step` instead of the callback, in the handle's context and with its error
    /// handling: a native transport's readiness step (`Handle::native`),
    /// called directly rather than through its bound builtin method. A panic in `step` is a
    /// `PanicException` of the callback, as it would be through the method. A cancelled
    /// handle (emptied) runs nothing, as `run`.
    pub fn run_native(
        slf: &Bound<'_, Handle>,
        step: &mut dyn FnMut() -> PyResult<()>,
    ) -> PyResult<()> {
        Handle::run_step(slf, Some(step))
    }

    fn run_step(
        slf: &Bound<'_, Handle>,
        step: Option<&mut dyn FnMut() -> PyResult<()>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let (cb, args, ctx) = {
            let inner = slf.get().inner.borrow_mut(py)?;
            match (&inner.callback, &inner.args, &inner.context) {
                // Bound clones: their drop is a plain decref (a `Py` drop checks a TLS)
                (Some(cb), Some(args), Some(ctx)) => {
                    // a snapshot held by anything besides this handle is shared: what the
                    // callback sets is undone after the run (context.rs)
                    // SAFETY: ctx is live (the handle holds it).
                    let shared = slf.get().snapshot_context.load(Ordering::Relaxed)
                        && unsafe { ffi::Py_REFCNT(ctx.as_ptr()) } > 1;
                    (
                        cb.bind(py).clone(),
                        args.bind(py).clone(),
                        crate::context::for_run(ctx.bind(py), shared)?,
                    )
                }
                _ => return Ok(()),
            }
        };
        let result = match step {
            None => call_in_context(py, &cb, &args, ctx.context()),
            Some(step) => in_context(py, ctx.context(), || {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut *step)) {
                    Ok(r) => r,
                    Err(payload) => Err(pyo3::panic::PanicException::new_err(
                        py_helpers::panic_message(&*payload),
                    )),
                }
            }),
        };
        let err = match result {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        let report_ctx = ctx.for_report()?;
        drop(ctx); // a shared snapshot's variables are restored now
        let own_ptr = slf
            .get()
            .inner
            .borrow_mut(py)?
            .context
            .as_ref()
            .map(|c| c.as_ptr());
        if own_ptr == Some(report_ctx.as_ptr()) {
            return Handle::handle_error(slf, err);
        }
        // the report sees the variables the callback set; the handle keeps its snapshot
        let own = slf
            .get()
            .inner
            .borrow_mut(py)?
            .context
            .replace(report_ctx.unbind());
        let reported = Handle::handle_error(slf, err);
        let copy = std::mem::replace(&mut slf.get().inner.borrow_mut(py)?.context, own);
        drop(copy);
        reported
    }
}

/// The current exception as a `PyErr`. Unlike `PyErr::fetch`, a `PanicException` (a Rust
/// panic in some extension's callback) is not turned back into a panic here: it is an
/// exception of a callback like any other and goes to the loop's exception handler.
fn fetch_without_resuming_panics(py: Python<'_>) -> PyErr {
    let missing =
        || pyo3::exceptions::PySystemError::new_err("callback failed without an exception");
    #[cfg(Py_3_12)]
    {
        // SAFETY: PyErr_GetRaisedException moves the (normalized, traceback attached)
        // current exception out as a new reference, or returns NULL when none is set.
        match unsafe { Bound::from_owned_ptr_or_opt(py, ffi::PyErr_GetRaisedException()) } {
            Some(value) => PyErr::from_value(value),
            None => missing(),
        }
    }
    #[cfg(not(Py_3_12))]
    {
        let (mut t, mut v, mut tb) = (
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        // SAFETY: PyErr_Fetch moves the error indicator (three owned references or NULLs)
        // out; NormalizeException makes `v` an instance; the traceback is attached to the
        // value and our references are released. With no exception set, we report a
        // SystemError.
        unsafe {
            ffi::PyErr_Fetch(&mut t, &mut v, &mut tb);
            if t.is_null() {
                return missing();
            }
            ffi::PyErr_NormalizeException(&mut t, &mut v, &mut tb);
            if !tb.is_null() && !v.is_null() {
                ffi::PyException_SetTraceback(v, tb);
            }
            ffi::Py_XDECREF(t);
            ffi::Py_XDECREF(tb);
            match Bound::from_owned_ptr_or_opt(py, v) {
                Some(value) => PyErr::from_value(value),
                None => missing(),
            }
        }
    }
}

/// `context.run(callback, *args)` without building a bound method or an argument tuple.
fn call_in_context(
    py: Python<'_>,
    cb: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
    ctx: &Bound<'_, PyAny>,
) -> PyResult<()> {
    in_context(py, ctx, || {
        let n = args.len();
        {
            // Items of a tuple are contiguous `PyObject*`; `ob_item` is reachable through
            // PyTuple_GET_ITEM's address. An extra leading slot allows PY_VECTORCALL_ARGUMENTS_OFFSET.
            let mut stack: [*mut ffi::PyObject; 5] = [std::ptr::null_mut(); 5];
            let mut heap: Vec<*mut ffi::PyObject>;
            let argv: *mut *mut ffi::PyObject = if n < 4 {
                for i in 0..n {
                    // SAFETY: i < len; borrowed references kept alive by `args`.
                    stack[i + 1] =
                        unsafe { ffi::PyTuple_GET_ITEM(args.as_ptr(), i as ffi::Py_ssize_t) };
                }
                stack.as_mut_ptr()
            } else {
                heap = Vec::with_capacity(n + 1);
                heap.push(std::ptr::null_mut());
                for i in 0..n {
                    // SAFETY: as above.
                    heap.push(unsafe {
                        ffi::PyTuple_GET_ITEM(args.as_ptr(), i as ffi::Py_ssize_t)
                    });
                }
                heap.as_mut_ptr()
            };
            // SAFETY: argv[1..=n] are valid borrowed references; slot 0 is scratch space we own,
            // which the OFFSET flag allows the callee to overwrite temporarily.
            let r = unsafe {
                ffi::PyObject_Vectorcall(
                    cb.as_ptr(),
                    argv.add(1),
                    n | ffi::PY_VECTORCALL_ARGUMENTS_OFFSET,
                    std::ptr::null_mut(),
                )
            };
            if r.is_null() {
                Err(fetch_without_resuming_panics(py))
            } else {
                // SAFETY: r is a new reference we own.
                unsafe { ffi::Py_DECREF(r) };
                Ok(())
            }
        }
    })
}

#[pymethods]
impl Handle {
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        Handle::do_cancel(slf)
    }

    fn cancelled(&self) -> bool {
        self.is_cancelled()
    }

    fn get_context(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self
            .inner
            .borrow_mut(py)?
            .context
            .as_ref()
            .map(|c| c.clone_ref(py)))
    }

    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        Handle::run(slf)
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self
            .inner
            .borrow_mut(py)?
            .callback
            .as_ref()
            .map(|c| c.clone_ref(py)))
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> PyResult<Option<Py<PyTuple>>> {
        Ok(self
            .inner
            .borrow_mut(py)?
            .args
            .as_ref()
            .map(|c| c.clone_ref(py)))
    }

    #[getter]
    fn _context(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.get_context(py)
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self
            .inner
            .borrow_mut(py)?
            .loop_
            .as_ref()
            .map(|c| c.clone_ref(py)))
    }

    #[getter]
    fn _cancelled(&self) -> bool {
        self.is_cancelled()
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self
            .inner
            .borrow_mut(py)?
            .source_traceback
            .as_ref()
            .map(|c| c.clone_ref(py)))
    }

    #[getter]
    fn _repr(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self
            .inner
            .borrow_mut(py)?
            .repr
            .as_ref()
            .map(|c| c.clone_ref(py)))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let cached = slf
            .get()
            .inner
            .borrow_mut(slf.py())?
            .repr
            .as_ref()
            .map(|r| r.clone_ref(slf.py()));
        match cached {
            Some(r) => Ok(r),
            None => Ok(py_helpers::handle_repr(slf.as_any())?.unbind()),
        }
    }
}

/// asyncio's `TimerHandle`: a handle with a deadline, ordered by it.
#[pyclass(module = "ferroloop._native", extends = Handle, frozen, subclass)]
pub struct TimerHandle {
    /// The deadline as `call_at` was given it (`call_later`: `self.time() + delay`), as
    /// asyncio stores it. A number in practice, so never part of a cycle: handles are not
    /// GC objects (see "GC" above) and the loop's traversal does not visit it.
    pub when: Py<PyAny>,
}

#[pymethods]
impl TimerHandle {
    fn when(&self, py: Python<'_>) -> Py<PyAny> {
        self.when.clone_ref(py)
    }

    #[getter]
    fn _when(&self, py: Python<'_>) -> Py<PyAny> {
        self.when.clone_ref(py)
    }

    #[getter]
    fn _scheduled(slf: &Bound<'_, Self>) -> bool {
        slf.as_super().get().scheduled.load(Ordering::Relaxed)
    }

    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        let base = slf.as_super();
        if !base.get().is_cancelled() {
            let loop_ = base
                .get()
                .inner
                .borrow_mut(slf.py())?
                .loop_
                .as_ref()
                .map(|l| l.clone_ref(slf.py()));
            if let Some(l) = loop_ {
                let l = l.bind(slf.py());
                // our loop: counted natively, no Python method call
                match LOOP_HOOKS
                    .get()
                    .and_then(|hooks| (hooks.timer_cancelled)(l, base.get()))
                {
                    Some(counted) => counted?,
                    None => {
                        l.call_method1("_timer_handle_cancelled", (slf,))?;
                    }
                }
            }
        }
        Handle::do_cancel(base)
    }

    /// asyncio's `hash(self._when)`.
    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        self.when.bind(py).hash()
    }

    fn __richcmp__(
        slf: &Bound<'_, Self>,
        other: &Bound<'_, PyAny>,
        op: pyo3::basic::CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let Ok(other) = other.cast::<TimerHandle>() else {
            return Ok(py.NotImplemented());
        };
        // asyncio compares the `_when` objects themselves
        let (wa, wb) = (slf.get().when.bind(py), other.get().when.bind(py));
        let (a, b) = (slf.as_super().get(), other.as_super().get());
        use pyo3::basic::CompareOp::*;
        let r = match op {
            Lt => wa.lt(wb)?,
            Gt => wa.gt(wb)?,
            Le => wa.lt(wb)? || same_timer(py, (a, wa), (b, wb))?,
            Ge => wa.gt(wb)? || same_timer(py, (a, wa), (b, wb))?,
            Eq => same_timer(py, (a, wa), (b, wb))?,
            Ne => !same_timer(py, (a, wa), (b, wb))?,
        };
        Ok(pyo3::types::PyBool::new(py, r)
            .to_owned()
            .into_any()
            .unbind())
    }
}

/// asyncio's `TimerHandle.__eq__`: same deadline, callback, arguments and cancelled state.
/// Each side is the base handle and its `_when`.
fn same_timer(
    py: Python<'_>,
    (a, a_when): (&Handle, &Bound<'_, PyAny>),
    (b, b_when): (&Handle, &Bound<'_, PyAny>),
) -> PyResult<bool> {
    if std::ptr::eq(a, b) {
        return Ok(true);
    }
    if a.is_cancelled() != b.is_cancelled() || !a_when.eq(b_when)? {
        return Ok(false);
    }
    let (ca, aa) = {
        let i = a.inner.borrow_mut(py)?;
        (
            i.callback.as_ref().map(|c| c.clone_ref(py)),
            i.args.as_ref().map(|c| c.clone_ref(py)),
        )
    };
    let (cb, ab) = {
        let i = b.inner.borrow_mut(py)?;
        (
            i.callback.as_ref().map(|c| c.clone_ref(py)),
            i.args.as_ref().map(|c| c.clone_ref(py)),
        )
    };
    let cb_eq = match (ca, cb) {
        (Some(x), Some(y)) => x.bind(py).eq(y.bind(py))?,
        (None, None) => true,
        _ => false,
    };
    let args_eq = match (aa, ab) {
        (Some(x), Some(y)) => x.bind(py).eq(y.bind(py))?,
        (None, None) => true,
        _ => false,
    };
    Ok(cb_eq && args_eq)
}
