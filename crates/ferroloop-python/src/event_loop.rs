//! `EventLoop`: the native half of `ferroloop.EventLoop`, everything that runs per callback.
//!
//! The loop itself is the engine's [`Scheduler`] (ready queue, timers, reader/writer
//! registrations, reactor, inbox, and asyncio's `_run_once` over them); this file is its
//! host: the asyncio handles it queues ([`PyEntry`]), the clock (`self.time()` when it was
//! replaced: a subclass's `time`, or one set on the instance, e.g. by `mock.patch.object`;
//! otherwise native, see `python_clock`), the GIL released around a poll that may block,
//! signal handlers after it, how a handle runs (debug mode, callback timing, recycling), and
//! the end-of-phase write flush. Rust tasks spawned on this loop (rust_tasks.rs) are entries
//! of the same scheduler.
//!
//! Decision: when handles are ready and no descriptor is watched, the poll syscall is
//! skipped (the inbox is checked through an atomic flag instead); with descriptors watched
//! the loop polls every turn, as asyncio does (`poll_interval` 1). This is what makes
//! `await asyncio.sleep(0)` cost little more than the task step itself.
//!
//! The Python subclass (`python/ferroloop/_loop.py`) inherits asyncio's `BaseEventLoop` for
//! the once-per-loop API; the attributes that `BaseEventLoop` reads and writes
//! (`_closed`, `_stopping`, `_thread_id`, `_debug`, `_clock_resolution`,
//! `_timer_cancelled_count`) are native properties here, so both halves see one state.
//!
//! Threading: loop-thread methods assert nothing themselves (asyncio's debug mode check is
//! `_check_thread`); `call_soon_threadsafe` and `_write_to_self` may be called from any
//! thread. From another thread than the one running the loop, `call_soon_threadsafe` goes
//! through the engine's parking inbox (a mutex and flags, no GIL reliance for the queue),
//! which wakes the loop only while it is parked in a poll that may block. All state sits in
//! `GilCell`s or in the scheduler, reached with the GIL held (`LoopCore`); the reactor is
//! polled with the GIL released and touched by nothing else meanwhile (its cell stays
//! borrowed).

use std::os::unix::io::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use ferroloop::engine::clock::monotonic_ns;
use ferroloop::engine::scheduler::Error as SchedError;
use ferroloop::engine::{clock, FdMap, Host, HostEntry, Inbox, LoopStats, Scheduler};
use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyFloat, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::cell::GilCell;
use crate::handles::{Handle, TimerHandle};
use crate::py_helpers;

/// A ready entry of this loop's scheduler: an asyncio handle (a callback, a timer, a
/// descriptor's watcher). A stream transport's watcher carries its native step
/// (`Handle::native`), which the turn calls directly.
pub(crate) struct PyEntry(Py<Handle>);

impl HostEntry for PyEntry {
    #[inline]
    fn is_cancelled(&self) -> bool {
        self.0.get().is_cancelled()
    }
    fn share(&self) -> Self {
        // SAFETY: the scheduler shares entries only inside its turn and never during the
        // poll (`HostEntry::share`); this loop's turn runs with the GIL held outside the poll.
        let py = unsafe { Python::assume_attached() };
        PyEntry(self.0.clone_ref(py))
    }
    fn unscheduled(&self) {
        self.0.get().scheduled.store(false, Ordering::Relaxed);
    }
}

/// The engine's scheduler of this loop, reached only with the GIL held.
struct LoopCore(Rc<Scheduler<PyEntry>>);

// SAFETY: the scheduler (`Rc`, `RefCell`s inside) is only reached through `LoopCore::get`,
// which demands a GIL token, and by the Rust tasks it runs during a turn, which holds the
// GIL; the GIL orders those accesses across threads, so its non-atomic counts and borrow
// flags are never touched by two threads at once. The one part used with the GIL released
// is the reactor during a blocking poll, which stays borrowed (and so refused to anyone
// else) until the GIL is back. Other threads reach the loop through its `Send + Sync` parts
// only (the inbox, the stats, Rust wakers).
unsafe impl Send for LoopCore {}
// SAFETY: as above.
unsafe impl Sync for LoopCore {}

impl LoopCore {
    #[inline]
    fn get(&self, _py: Python<'_>) -> &Rc<Scheduler<PyEntry>> {
        &self.0
    }
}

impl Drop for LoopCore {
    fn drop(&mut self) {
        // the Rust tasks hold the scheduler (their sleeps and sockets): closing breaks that
        // cycle, and drops their futures on this thread
        drop(self.0.close());
    }
}

/// A scheduler error as Python sees it.
pub(crate) fn sched_err(e: SchedError) -> PyErr {
    match e {
        SchedError::Closed => PyRuntimeError::new_err("Event loop is closed"),
        SchedError::Reentrant => {
            PyRuntimeError::new_err("ferroloop: re-entrant access to loop state")
        }
        SchedError::Io(e) => py_helpers::os_error(e),
    }
}

/// The error of a turn: a Python exception (a scheduler error converted).
struct TurnError(PyErr);

impl From<SchedError> for TurnError {
    fn from(e: SchedError) -> Self {
        TurnError(sched_err(e))
    }
}

impl From<PyErr> for TurnError {
    fn from(e: PyErr) -> Self {
        TurnError(e)
    }
}

/// A native transport's step that the loop calls directly, with no Python call between
/// Rust and Rust: a watcher's readiness step, or an end-of-phase flush. Its argument is the
/// transport's native object (a watcher's: its callback's `__self__`); each transport
/// module supplies its own, so this loop names no transport type.
pub(crate) type NativeStep = for<'py> fn(&Bound<'py, PyAny>) -> PyResult<()>;

/// The native steps of this loop's watchers (`Handle::native` is a step's number: its
/// index plus one). Each transport kind adds its few steps once.
#[derive(Default)]
struct NativeSteps(Vec<NativeStep>);

impl NativeSteps {
    /// The number of `step`, added on its first use; `None` past the 255 a byte holds.
    fn number(&mut self, step: NativeStep) -> Option<u8> {
        let i = match self.0.iter().position(|s| std::ptr::fn_addr_eq(*s, step)) {
            Some(i) => i,
            None => {
                self.0.push(step);
                self.0.len() - 1
            }
        };
        u8::try_from(i + 1).ok()
    }

    #[inline]
    fn get(&self, number: u8) -> Option<NativeStep> {
        self.0.get(usize::from(number).checked_sub(1)?).copied()
    }
}

/// A transport waiting for the end-of-phase flush: its native object and flush step.
struct Flush {
    owner: Py<PyAny>,
    step: NativeStep,
    /// Flushed before the others, in a pass of its own, with the run phase marked once
    /// more: a TLS protocol's writes, whose records join their raw transport's batch.
    early: bool,
}

/// Emptied handles a loop keeps for reuse: enough for a burst of callbacks per turn.
const SPARE_HANDLES: usize = 1024;

/// The emptied handles (handles.rs, "Recycling"): a stack whose push and pop stay inline
/// (a `Vec`'s push went out of line in the run phase: 16 instructions per callback).
#[derive(Default)]
struct SpareHandles {
    slots: Vec<Option<Py<Handle>>>,
    len: usize,
}

impl SpareHandles {
    #[inline(always)]
    fn pop(&mut self) -> Option<Py<Handle>> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        self.slots[self.len].take()
    }

    #[inline]
    fn is_full(&self) -> bool {
        self.len >= SPARE_HANDLES
    }

    #[inline(always)]
    fn push(&mut self, h: Py<Handle>) {
        if self.len == self.slots.len() {
            self.add_slot();
        }
        // the slot above the top is empty: nothing to drop
        let empty = self.slots[self.len].replace(h);
        debug_assert!(empty.is_none());
        std::mem::forget(empty);
        self.len += 1;
    }

    #[cold]
    #[inline(never)]
    fn add_slot(&mut self) {
        self.slots.push(None);
    }
}

#[derive(Default)]
struct State {
    /// Transports that queued writes during this turn's run phase: flushed together when
    /// the phase ends (transport.rs, "Write batching").
    flush: Vec<Flush>,
    /// The native steps of watchers (`NativeStep`).
    native_steps: NativeSteps,
    /// Descriptors of this loop's transports, counted (a superset of the keys of the Python
    /// `_transports` map): `sock_*` ask Python's `_ensure_fd_no_transport` only for these.
    transport_fds: FdMap<usize>,
}

#[pyclass(module = "ferroloop._native", name = "EventLoop", subclass, frozen)]
pub struct EventLoop {
    state: GilCell<State>,
    sched: LoopCore,
    /// The last `copy_context()` snapshot, shared by handles while nothing changes
    /// (context.rs).
    snapshot: GilCell<Option<Py<PyAny>>>,
    /// Emptied one-shot handles, for the next `call_soon`s (handles.rs, "Recycling").
    spare_handles: GilCell<SpareHandles>,
    /// The read buffer of this loop's stream transports: a `bytes` of `MAX_READ` bytes that a
    /// read fills and copies from (transport.rs); never seen by Python code.
    read_spare: GilCell<Option<Py<pyo3::types::PyBytes>>>,
    /// Buffers for `recvmmsg` of datagram transports, taken while one is in use.
    recv_batch: GilCell<Option<Box<ferroloop::engine::datagram::RecvBatch>>>,
    /// `asyncio.Future` when the loop's class keeps `BaseEventLoop.create_future` (set by
    /// the Python `__init__`): native code then makes futures without a Python frame.
    future_type: GilCell<Option<Py<PyAny>>>,
    /// `call_soon_threadsafe` from other threads: the scheduler's host inbox, whose handles
    /// join the ready queue at the start of the next turn's event phase. Its waker
    /// (asyncio's self-pipe) is written only while the loop is parked in a poll that may
    /// block (engine::inbox).
    inbox: Arc<Inbox<PyEntry>>,
    closed: AtomicBool,
    stopping: AtomicBool,
    debug: AtomicBool,
    running: AtomicBool,
    /// True while the run phase of a turn runs callbacks: transport writes made now may
    /// wait for the end of the phase and leave together.
    batching: AtomicBool,
    /// The loop's class defines its own `time()` (set by the Python `__init__`): the loop
    /// reads its clock through it (see `python_clock`).
    class_time: AtomicBool,
    /// A `time` was set on the instance and not deleted since (`_set_instance_time`).
    instance_time: AtomicBool,
    /// `threading.get_ident()` of the running thread; 0 when not running.
    thread_id: AtomicU64,
    clock_resolution_bits: AtomicU64,
    pid: u32,
    /// The counters `stats()` reads (ferroloop::engine::stats), and with callback timing on, the
    /// threshold of the slow-callback report (`slow_callback_duration`, in nanoseconds).
    stats: Arc<LoopStats>,
    slow_ns: AtomicU64,
    /// How the longest timed callback printed (asyncio's handle format), taken when it set
    /// the record.
    longest_repr: GilCell<Option<Py<PyAny>>>,
    /// A watchdog's capture of the loop thread's stack while callback `.0` blocked it.
    blocked_stack: GilCell<Option<(u64, Py<PyAny>)>>,
}

fn current_thread_ident() -> u64 {
    // SAFETY: pthread_self never fails. CPython's threading.get_ident() returns this value.
    unsafe { libc::pthread_self() as u64 }
}

/// asyncio's `_fileobj_to_fd` (selector_events): an int, or an object with `fileno()`.
pub fn fileobj_to_fd(obj: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    // asyncio's epoll selector refuses it when registering, as `epoll.register` does
    lookup_fd(obj)?
        .ok_or_else(|| PyOverflowError::new_err("Python int too large to convert to C int"))
}

/// `fileobj_to_fd` for a lookup: `None` for a number beyond a C int, which no watched
/// descriptor can be (asyncio's selector finds no key for it: `remove_reader` returns False).
fn lookup_fd(obj: &Bound<'_, PyAny>) -> PyResult<Option<RawFd>> {
    let fd: i64 = match obj.extract::<i64>() {
        Ok(fd) => fd,
        // an int beyond 64 bits: asyncio's `fd < 0` check, then the selector's
        Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => {
            if obj.lt(0)? {
                return Err(PyValueError::new_err(format!(
                    "Invalid file descriptor: {obj}"
                )));
            }
            return Ok(None);
        }
        Err(_) => match obj.call_method0("fileno").and_then(|f| f.extract::<i64>()) {
            Ok(fd) => fd,
            Err(_) => {
                return Err(PyValueError::new_err(format!(
                    "Invalid file object: {}",
                    obj.repr()?
                )))
            }
        },
    };
    if fd < 0 {
        return Err(PyValueError::new_err(format!(
            "Invalid file descriptor: {fd}"
        )));
    }
    Ok(RawFd::try_from(fd).ok())
}

/// The timer heap's key for a deadline object: its float value, except that a NaN is due at
/// once (asyncio's `_run_once` pops a NaN from the top of its heap, `nan >= end_time` being
/// false; as a float key a NaN would sort after every timer and never fire, or, with its sign
/// bit set, sort first and hold every other timer back) and a number beyond a float (asyncio
/// keeps an int like `10**400`) is an infinity of its sign: never due, or due at once.
fn deadline_key(when: &Bound<'_, PyAny>) -> PyResult<f64> {
    let value = match plain_number(when) {
        Ok(Some(w)) => Ok(w),
        Ok(None) => when.extract::<f64>(),
        Err(e) => Err(e),
    };
    match value {
        Ok(w) => Ok(float_deadline_key(w)),
        Err(e) if e.is_instance_of::<PyOverflowError>(when.py()) => Ok(if when.gt(0)? {
            f64::INFINITY
        } else {
            f64::NEG_INFINITY
        }),
        Err(e) => Err(e),
    }
}

/// `deadline_key` of a float deadline.
#[inline]
fn float_deadline_key(when: f64) -> f64 {
    if when.is_nan() {
        f64::NEG_INFINITY
    } else {
        when
    }
}

/// The value of an exact `float` or `int`, as `float.__add__` reads it (an int beyond a float
/// is its `OverflowError`); `None` for any other type. An int is read directly: through
/// `PyFloat_AsDouble` it became a float object first (about 170 instructions).
fn plain_number(obj: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
    let p = obj.as_ptr();
    // SAFETY: p is a live object; the checks read its type, the reads are the type's own.
    unsafe {
        if ffi::PyFloat_CheckExact(p) != 0 {
            return Ok(Some(ffi::PyFloat_AS_DOUBLE(p)));
        }
        if ffi::PyLong_CheckExact(p) != 0 {
            let v = ffi::PyLong_AsDouble(p);
            if v == -1.0 && !ffi::PyErr_Occurred().is_null() {
                return Err(PyErr::fetch(obj.py()));
            }
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// The clock of one turn: asyncio's `_run_once` reads `self.time()`, so a `time` patched on
/// the loop is the clock that decides which timers are due. Looked up at the turn's first
/// reading (only a turn with timers reads the clock), then kept for the turn.
struct TurnClock<'py>(Option<Option<Bound<'py, PyAny>>>);

impl<'py> TurnClock<'py> {
    fn now(&mut self, slf: &Bound<'py, EventLoop>) -> PyResult<f64> {
        if self.0.is_none() {
            self.0 = Some(EventLoop::python_clock(slf)?);
        }
        match &self.0 {
            Some(Some(time)) => time.call0()?.extract(),
            _ => Ok(clock::monotonic()),
        }
    }
}

impl EventLoop {
    #[inline]
    fn check_closed(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Relaxed) {
            Err(PyRuntimeError::new_err("Event loop is closed"))
        } else {
            Ok(())
        }
    }

    /// The scheduler (the GIL token proves it may be touched).
    #[inline]
    fn sched(&self, py: Python<'_>) -> &Rc<Scheduler<PyEntry>> {
        self.sched.get(py)
    }

    #[inline]
    pub(crate) fn is_debug(&self) -> bool {
        self.debug.load(Ordering::Relaxed)
    }

    fn clock_resolution(&self) -> f64 {
        f64::from_bits(self.clock_resolution_bits.load(Ordering::Relaxed))
    }

    /// A scheduled timer was cancelled: count it for the heap's compaction rule.
    pub(crate) fn timer_cancelled(&self, py: Python<'_>, handle: &Handle) -> PyResult<()> {
        if handle.scheduled.load(Ordering::Relaxed) {
            self.sched(py).note_timer_cancelled().map_err(sched_err)?;
        }
        Ok(())
    }

    /// asyncio's `_check_thread` (debug mode).
    fn check_thread(&self) -> PyResult<()> {
        let tid = self.thread_id.load(Ordering::Relaxed);
        if tid != 0 && tid != current_thread_ident() {
            return Err(PyRuntimeError::new_err(
                "Non-thread-safe operation invoked on an event loop other than the current one",
            ));
        }
        Ok(())
    }

    /// Refuse what can never be called; in debug mode also coroutine functions (asyncio's
    /// `_check_callback`). Non-callables are refused in every mode: see compatibility.md.
    #[inline]
    fn check_callback(&self, callback: &Bound<'_, PyAny>, method: &str) -> PyResult<()> {
        if !callback.is_callable() || self.is_debug() {
            py_helpers::check_callback(callback, method)?;
        }
        Ok(())
    }

    /// What asyncio's `self.time()` calls when it is not the native clock: a `time` set on the
    /// instance (`mock.patch.object(loop, "time", ...)`, `loop.time = ...`: see
    /// `_set_instance_time`) or defined by a subclass; `None` for the native clock, whose
    /// reading is `time()`'s. Two flag loads when neither applies.
    fn python_clock<'py>(slf: &Bound<'py, Self>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let me = slf.get();
        if me.class_time.load(Ordering::Relaxed) || me.instance_time.load(Ordering::Relaxed) {
            return slf.getattr(pyo3::intern!(slf.py(), "time")).map(Some);
        }
        Ok(None)
    }

    fn make_handle(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        when: Option<Bound<'_, PyAny>>,
        oneshot: bool,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let (context, snapshot_context) = match context {
            Some(c) if !c.is_none() => (c.unbind(), false),
            _ => {
                let (ctx, dropped) = {
                    let mut snap = slf.get().snapshot.borrow_mut(py)?;
                    crate::context::snapshot(py, &mut snap)?
                };
                // after the borrow (a context's weakref callbacks may run), as a `Bound`: a
                // plain decref, no TLS lookup
                drop(dropped.map(|o| o.into_bound(py)));
                (ctx, true)
            }
        };
        let tb = if slf.get().is_debug() {
            Some(py_helpers::source_traceback(py)?)
        } else {
            None
        };
        if when.is_none() && oneshot && tb.is_none() {
            let spare = slf.get().spare_handles.borrow_mut(py)?.pop();
            if let Some(h) = spare {
                h.get().refill(
                    py,
                    callback.unbind(),
                    args.unbind(),
                    context,
                    slf.clone().into_any().unbind(),
                    snapshot_context,
                )?;
                return Ok(h);
            }
        }
        let base = Handle::new_inner(
            callback.unbind(),
            args.unbind(),
            context,
            slf.clone().into_any().unbind(),
            tb,
            oneshot,
            snapshot_context,
        );
        let h = match when {
            None => Bound::new(py, base)?,
            Some(when) => {
                let init = PyClassInitializer::from(base).add_subclass(TimerHandle {
                    when: when.unbind(),
                });
                Bound::new(py, init)?.into_super()
            }
        };
        Ok(h.unbind())
    }

    /// Schedule a timer: `when` is kept by the handle, `key` (`deadline_key(when)`) orders it.
    fn schedule_at(
        slf: &Bound<'_, Self>,
        when: Bound<'_, PyAny>,
        key: f64,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        method: &str,
    ) -> PyResult<Py<Handle>> {
        let me = slf.get();
        me.check_closed()?;
        if me.is_debug() {
            me.check_thread()?;
        }
        me.check_callback(&callback, method)?;
        let h = Self::make_handle(slf, callback, args, context, Some(when), true)?;
        h.get().scheduled.store(true, Ordering::Relaxed);
        let py = slf.py();
        me.sched(py)
            .push_timer(key, PyEntry(h.clone_ref(py)))
            .map_err(sched_err)?;
        Ok(h)
    }

    fn watch(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        write: bool,
    ) -> PyResult<Py<Handle>> {
        slf.get().check_closed()?;
        let fd = fileobj_to_fd(fd)?;
        slf.get()
            .check_callback(&callback, if write { "add_writer" } else { "add_reader" })?;
        Self::watch_fd(slf, fd, callback, args, write, false)
    }

    /// Watch a descriptor for a native caller (a transport): no argument checks. `once`:
    /// the caller stops watching after the first call that does not block (a `sock_*`
    /// wait), so the reactor may keep the registration parked for the next wait
    /// (reactor.rs, "One-shot waits").
    pub(crate) fn watch_fd(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        write: bool,
        once: bool,
    ) -> PyResult<Py<Handle>> {
        slf.get().check_closed()?;
        let handle = Self::make_handle(slf, callback, args, None, None, false)?;
        Self::register_watcher(slf, fd, &handle, write, once)?;
        Ok(handle)
    }

    /// Register `handle` as the watcher of `fd` (reading, or writing with `write`); the
    /// watcher it replaces is cancelled, as asyncio's `_add_reader` cancels the old handle.
    fn register_watcher(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        handle: &Py<Handle>,
        write: bool,
        once: bool,
    ) -> PyResult<()> {
        let py = slf.py();
        let old = slf
            .get()
            .sched(py)
            .watch(fd, write, PyEntry(handle.clone_ref(py)), once)
            .map_err(sched_err)?;
        if let Some(PyEntry(old)) = old {
            Handle::do_cancel(old.bind(py))?;
        }
        Ok(())
    }

    /// Watch a native transport's descriptor: `callback` is a bound builtin method of its
    /// native object (what `add_reader` would be given, and what runs in debug mode); the
    /// turn calls `step` with that object directly instead (`run_native`).
    pub(crate) fn watch_native(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        callback: Bound<'_, PyAny>,
        write: bool,
        step: NativeStep,
    ) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        me.check_closed()?;
        // SAFETY: a type check on a live object.
        let builtin = unsafe { ffi::PyCFunction_Check(callback.as_ptr()) } != 0;
        let number = if builtin {
            me.state.borrow_mut(py)?.native_steps.number(step)
        } else {
            None
        };
        // the handle `add_reader(fd, callback)` would make, marked with the step
        let handle = Self::make_handle(slf, callback, PyTuple::empty(py), None, None, false)?;
        if let Some(n) = number {
            handle.get().native.store(n, Ordering::Relaxed);
        }
        Self::register_watcher(slf, fd, &handle, write, false)
    }

    fn unwatch(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>, write: bool) -> PyResult<bool> {
        if slf.get().closed.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match lookup_fd(fd)? {
            Some(fd) => Self::unwatch_fd(slf, fd, write),
            None => Ok(false),
        }
    }

    /// Stop watching a descriptor for a native caller; true if it was watched.
    pub(crate) fn unwatch_fd(slf: &Bound<'_, Self>, fd: RawFd, write: bool) -> PyResult<bool> {
        let py = slf.py();
        let me = slf.get();
        if me.closed.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let old = me.sched(py).unwatch(fd, write).map_err(sched_err)?;
        match old {
            Some(PyEntry(h)) => {
                Handle::do_cancel(h.bind(py))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// One turn of the loop (asyncio's `_run_once`): the scheduler's, with this loop as host.
    fn run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        let mut host = PyHost {
            slf,
            clock: TurnClock(None),
            debug: false,
            timing: false,
            ran: 0,
            t: 0,
        };
        slf.get()
            .sched(slf.py())
            .turn(&mut host, true)
            .map_err(|e| e.0)
    }

    /// Run a native watcher's step (`Handle::native`) with its callback's `__self__`,
    /// directly, in the handle's context.
    #[inline(never)]
    fn run_native(&self, h: &Bound<'_, Handle>, number: u8) -> PyResult<()> {
        let py = h.py();
        let Some(step) = self.state.borrow_mut(py)?.native_steps.get(number) else {
            return Handle::run_from_loop(h);
        };
        let owner = {
            let inner = h.get().inner.borrow_mut(py)?;
            match &inner.callback {
                // SAFETY: a native watcher's callback is a builtin method (`watch_native`
                // checked: a `PyCFunction`, whose self is a field read); the owner is
                // borrowed while the handle holds the method, and a new reference is taken
                // at once.
                Some(cb) => unsafe {
                    Bound::from_borrowed_ptr_or_opt(py, ffi::PyCFunction_GetSelf(cb.as_ptr()))
                },
                // emptied (cancelled meanwhile): nothing to run, as for any handle
                None => None,
            }
        };
        let Some(owner) = owner else {
            return Ok(());
        };
        Handle::run_native(h, &mut || step(&owner))
    }

    /// Keep a handle that ran for the next `call_soon` (handles.rs, "Recycling").
    #[inline(always)]
    fn recycle(&self, h: Bound<'_, Handle>) -> PyResult<()> {
        let py = h.py();
        if !self.spare_handles.borrow_mut(py)?.is_full() {
            if let Some(h) = Handle::recycle(h) {
                self.spare_handles.borrow_mut(py)?.push(h);
            }
        }
        Ok(())
    }

    fn flush_writes(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let mut pending = {
            let mut st = slf.get().state.borrow_mut(py)?;
            if st.flush.is_empty() {
                return Ok(());
            }
            std::mem::take(&mut st.flush)
        };
        let mut result = Ok(());
        let mut keep = |r: PyResult<()>| {
            if result.is_ok() {
                result = r;
            }
        };
        if pending.iter().any(|f| f.early) {
            // the early ones first, with the run phase marked once more: the records they
            // make join their raw transports' batches, listed now and flushed in this pass
            let (early, rest): (Vec<Flush>, Vec<Flush>) =
                pending.into_iter().partition(|f| f.early);
            let batching = slf.get().batching.swap(true, Ordering::Relaxed);
            for f in early {
                keep((f.step)(f.owner.bind(py)));
            }
            slf.get().batching.store(batching, Ordering::Relaxed);
            pending = rest;
            pending.append(&mut slf.get().state.borrow_mut(py)?.flush);
        }
        for f in pending {
            keep((f.step)(f.owner.bind(py)));
        }
        result
    }

    /// Run `f` with this loop's scheduler, entered (current on this thread) so that the Rust
    /// tasks, sleeps and sockets `f` creates belong to it.
    pub(crate) fn with_scheduler<R>(
        slf: &Bound<'_, Self>,
        f: impl FnOnce(&Rc<Scheduler<PyEntry>>) -> R,
    ) -> PyResult<R> {
        let me = slf.get();
        me.check_closed()?;
        let sched = me.sched(slf.py());
        let _enter = sched.enter();
        Ok(f(sched))
    }

    /// A transport now owns `fd` (until `transport_fd_released`).
    pub(crate) fn transport_fd_taken(&self, py: Python<'_>, fd: RawFd) -> PyResult<()> {
        let mut st = self.state.borrow_mut(py)?;
        match st.transport_fds.get_mut(&fd) {
            Some(n) => *n += 1,
            None => {
                st.transport_fds.insert(fd, 1);
            }
        }
        Ok(())
    }

    pub(crate) fn transport_fd_released(&self, py: Python<'_>, fd: RawFd) -> PyResult<()> {
        let mut st = self.state.borrow_mut(py)?;
        if let Some(n) = st.transport_fds.get_mut(&fd) {
            *n -= 1;
            if *n == 0 {
                st.transport_fds.remove(&fd);
            }
        }
        Ok(())
    }

    /// Whether a transport may own `fd` (then the Python `_transports` map decides).
    pub(crate) fn maybe_transport_fd(&self, py: Python<'_>, fd: RawFd) -> PyResult<bool> {
        Ok(self.state.borrow_mut(py)?.transport_fds.contains_key(&fd))
    }

    /// The future type `create_future` makes, when the loop's class does not override it.
    pub(crate) fn new_future<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let direct = slf
            .get()
            .future_type
            .borrow_mut(py)?
            .as_ref()
            .map(|t| t.clone_ref(py));
        match direct {
            Some(t) => {
                let kwargs = pyo3::types::PyDict::new(py);
                kwargs.set_item(pyo3::intern!(py, "loop"), slf)?;
                t.bind(py).call((), Some(&kwargs))
            }
            None => slf.call_method0(pyo3::intern!(py, "create_future")),
        }
    }

    /// Take the loop's spare read buffer (None if a transport holds it or none was made).
    pub(crate) fn take_read_spare(
        &self,
        py: Python<'_>,
    ) -> PyResult<Option<Py<pyo3::types::PyBytes>>> {
        Ok(self.read_spare.borrow_mut(py)?.take())
    }

    /// The datagram receive buffers (made on first use; a nested user gets new ones).
    pub(crate) fn take_recv_batch(
        &self,
        py: Python<'_>,
    ) -> PyResult<Box<ferroloop::engine::datagram::RecvBatch>> {
        Ok(self.recv_batch.borrow_mut(py)?.take().unwrap_or_default())
    }

    /// Give the datagram receive buffers back.
    pub(crate) fn put_recv_batch(
        &self,
        py: Python<'_>,
        batch: Box<ferroloop::engine::datagram::RecvBatch>,
    ) -> PyResult<()> {
        let old = self.recv_batch.borrow_mut(py)?.replace(batch);
        drop(old);
        Ok(())
    }

    /// Give the spare read buffer back for the next read.
    pub(crate) fn put_read_spare(
        &self,
        py: Python<'_>,
        spare: Py<pyo3::types::PyBytes>,
    ) -> PyResult<()> {
        let old = self.read_spare.borrow_mut(py)?.replace(spare);
        drop(old);
        Ok(())
    }

    /// A transport's first write of this run phase: `step` flushes it when the phase ends
    /// (`early`: before the others, see `Flush`). False when no phase is running (the
    /// transport then writes at once).
    pub(crate) fn defer(
        &self,
        py: Python<'_>,
        owner: &Bound<'_, PyAny>,
        step: NativeStep,
        early: bool,
    ) -> PyResult<bool> {
        if !self.batching.load(Ordering::Relaxed) {
            return Ok(false);
        }
        self.state.borrow_mut(py)?.flush.push(Flush {
            owner: owner.clone().unbind(),
            step,
            early,
        });
        Ok(true)
    }

    /// Run one handle in debug mode: `_current_handle` and the slow-callback warning.
    fn run_debug(slf: &Bound<'_, Self>, h: &Bound<'_, Handle>) -> PyResult<()> {
        slf.setattr("_current_handle", h)?;
        let mut now = TurnClock(None);
        let t0 = now.now(slf)?;
        let r = Handle::run(h);
        let dt = now.now(slf).map(|t| t - t0);
        slf.setattr("_current_handle", slf.py().None())?;
        r?;
        let dt = dt?;
        let limit: f64 = slf.getattr("slow_callback_duration")?.extract()?;
        if dt >= limit {
            slf.get().stats.slow_callback();
            py_helpers::log_slow_callback(h.as_any(), dt)?;
        }
        Ok(())
    }
}

/// The loop as its scheduler's host, for one turn (`run_once`).
struct PyHost<'a, 'py> {
    slf: &'a Bound<'py, EventLoop>,
    clock: TurnClock<'py>,
    /// This phase runs handles in debug mode / timed (set when the phase begins).
    debug: bool,
    timing: bool,
    /// Timed handles run so far in this phase (their sequence numbers).
    ran: u64,
    /// With timing on: when the previous callback ended (or the phase began).
    t: u64,
}

impl Host<PyEntry> for PyHost<'_, '_> {
    type Error = TurnError;

    fn now(&mut self) -> Result<f64, TurnError> {
        Ok(self.clock.now(self.slf)?)
    }

    fn clock_resolution(&self) -> f64 {
        self.slf.get().clock_resolution()
    }

    fn stopping(&self) -> bool {
        self.slf.get().stopping.load(Ordering::Relaxed)
    }

    fn blocking<R: Send, F: FnOnce() -> R + Send>(&mut self, poll: F) -> R {
        self.slf.py().detach(poll)
    }

    fn woke(&mut self) -> Result<(), TurnError> {
        // a signal may have interrupted the wait: run Python's handlers now
        Ok(self.slf.py().check_signals()?)
    }

    fn phase_begin(&mut self) {
        let me = self.slf.get();
        self.debug = me.is_debug();
        self.timing = me.stats.timing();
        self.ran = 0;
        if self.timing {
            self.t = monotonic_ns();
        }
        me.batching.store(true, Ordering::Relaxed);
    }

    fn run(&mut self, entry: PyEntry) -> Result<(), TurnError> {
        let slf = self.slf;
        let py = slf.py();
        let me = slf.get();
        let h = entry.0.into_bound(py);
        if !(self.debug || self.timing) {
            // the path every handle takes by default; a stream transport's watcher steps
            // the transport directly (timed or in debug mode it runs as any handle)
            let step = h.get().native_step();
            if step != 0 {
                return Ok(me.run_native(&h, step)?);
            }
            Handle::run_from_loop(&h)?;
            me.recycle(h)?;
            return Ok(());
        }
        // debug mode or callback timing on (ferroloop::engine::stats): each callback timed,
        // the longest remembered, a slow one reported
        self.ran += 1;
        let seq = me.stats.callbacks() + self.ran;
        if self.timing {
            me.stats.callback_begin(seq, self.t);
        }
        // `run`, not `run_from_loop`: the handle keeps its callback until after the timing,
        // so the longest callback's text can be taken from it
        let result = if self.debug {
            EventLoop::run_debug(slf, &h)
        } else {
            Handle::run(&h)
        };
        if self.timing {
            let end = monotonic_ns();
            let ns = end.saturating_sub(self.t);
            self.t = end;
            // debug mode logged its own warning (run_debug) and counted it
            let slow = !self.debug && ns >= me.slow_ns.load(Ordering::Relaxed);
            if me.stats.callback_end(ns, slow) {
                let text = py_helpers::describe_handle(h.as_any())?;
                *me.longest_repr.borrow_mut(py)? = Some(text.unbind());
            }
            if slow {
                let stack = match me.blocked_stack.borrow_mut(py)?.take() {
                    Some((at, stack)) if at == seq => Some(stack),
                    _ => None,
                };
                py_helpers::report_slow_callback(slf.as_any(), h.as_any(), ns, stack)?;
            }
        }
        h.get().release_after_run(py)?;
        result?;
        if !self.debug {
            me.recycle(h)?;
        }
        Ok(())
    }

    fn phase_end(&mut self) -> Result<(), TurnError> {
        self.slf.get().batching.store(false, Ordering::Relaxed);
        // the writes queued meanwhile leave, one vectored send per transport
        Ok(EventLoop::flush_writes(self.slf)?)
    }
}

#[pymethods]
impl EventLoop {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        // every turn polls while descriptors are watched, as asyncio's does
        let sched = Scheduler::new(1).map_err(py_helpers::os_error)?;
        let inbox = sched.host_inbox().clone();
        let stats = sched.stats().clone();
        Ok(EventLoop {
            state: GilCell::new(State::default()),
            sched: LoopCore(sched),
            snapshot: GilCell::new(None),
            read_spare: GilCell::new(None),
            spare_handles: GilCell::new(SpareHandles::default()),
            recv_batch: GilCell::new(None),
            future_type: GilCell::new(None),
            inbox,
            closed: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            debug: AtomicBool::new(false),
            running: AtomicBool::new(false),
            batching: AtomicBool::new(false),
            class_time: AtomicBool::new(false),
            instance_time: AtomicBool::new(false),
            thread_id: AtomicU64::new(0),
            clock_resolution_bits: AtomicU64::new(clock::resolution().to_bits()),
            // SAFETY: getpid never fails.
            pid: unsafe { libc::getpid() } as u32,
            stats,
            slow_ns: AtomicU64::new(100_000_000),
            longest_repr: GilCell::new(None),
            blocked_stack: GilCell::new(None),
        })
    }

    /// asyncio's `get_debug` (a C `Future` asks for it on every creation: native, no
    /// Python frame).
    fn get_debug(&self) -> bool {
        self.is_debug()
    }

    /// asyncio's `create_future`: `asyncio.futures.Future(loop=self)`, the class looked up
    /// per call as asyncio does.
    fn create_future<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        static FUTURES: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
        let module =
            FUTURES.get_or_try_init(py, || py.import("asyncio.futures").map(Bound::unbind))?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item(pyo3::intern!(py, "loop"), slf)?;
        module
            .bind(py)
            .getattr(pyo3::intern!(py, "Future"))?
            .call((), Some(&kwargs))
    }

    /// asyncio's `create_task` without its Python frames per task when no task factory is
    /// set: `asyncio.tasks.Task` (looked up per call, as asyncio does), with `name`,
    /// `context` and any other keyword (3.12's `eager_start`) passed on. With a task factory,
    /// the running version's own `BaseEventLoop.create_task` (its factory call and naming
    /// differ between versions), or, when keywords other than `name` and `context` are
    /// given, `factory(loop, coro, **kwargs)` as 3.14 does.
    #[pyo3(signature = (coro, *, name=None, context=None, **kwargs))]
    fn create_task<'py>(
        slf: &Bound<'py, Self>,
        coro: Bound<'py, PyAny>,
        name: Option<Bound<'py, PyAny>>,
        context: Option<Bound<'py, PyAny>>,
        kwargs: Option<Bound<'py, pyo3::types::PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let me = slf.get();
        me.check_closed()?;
        let name = name.filter(|n| !n.is_none());
        let context = context.filter(|c| !c.is_none());
        let extra = kwargs.filter(|k| !k.is_empty());
        let factory = slf.getattr(pyo3::intern!(py, "_task_factory"))?;
        if !factory.is_none() && extra.is_none() {
            static BASE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            let base = BASE.get_or_try_init(py, || {
                let cls = py.import("asyncio.base_events")?.getattr("BaseEventLoop")?;
                Ok::<_, PyErr>(cls.getattr("create_task")?.unbind())
            })?;
            let kw = pyo3::types::PyDict::new(py);
            kw.set_item(pyo3::intern!(py, "name"), &name)?;
            kw.set_item(pyo3::intern!(py, "context"), &context)?;
            return base.bind(py).call((slf, coro), Some(&kw));
        }
        // `name` and `context` only when given: `None` is the Task's default for both,
        // and each dict entry cost about 200 instructions per task
        let kw = extra.unwrap_or_else(|| pyo3::types::PyDict::new(py));
        if let Some(name) = &name {
            kw.set_item(pyo3::intern!(py, "name"), name)?;
        }
        if let Some(context) = &context {
            kw.set_item(pyo3::intern!(py, "context"), context)?;
        }
        if !factory.is_none() {
            return factory.call((slf, coro), Some(&kw));
        }
        kw.set_item(pyo3::intern!(py, "loop"), slf)?;
        static TASKS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
        let tasks = TASKS
            .get_or_try_init(py, || py.import("asyncio.tasks").map(Bound::unbind))?
            .bind(py);
        // (asyncio then drops the last entry of a debug-mode `_source_traceback`: its own
        // `create_task` frame; here there is no such frame, the last entry is already the
        // caller's)
        tasks
            .getattr(pyo3::intern!(py, "Task"))?
            .call((coro,), Some(&kw))
    }

    fn time(&self) -> f64 {
        clock::monotonic()
    }

    #[pyo3(signature = (callback, *args, context=None))]
    pub(crate) fn call_soon(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let me = slf.get();
        me.check_closed()?;
        if me.is_debug() {
            me.check_thread()?;
        }
        me.check_callback(&callback, "call_soon")?;
        let h = Self::make_handle(slf, callback, args, context, None, true)?;
        let py = slf.py();
        me.sched(py)
            .push(PyEntry(h.clone_ref(py)))
            .map_err(sched_err)?;
        Ok(h)
    }

    #[pyo3(signature = (delay, callback, *args, context=None))]
    pub(crate) fn call_later(
        slf: &Bound<'_, Self>,
        delay: Option<&Bound<'_, PyAny>>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let delay = match delay {
            Some(d) if !d.is_none() => d,
            _ => return Err(PyTypeError::new_err("delay must not be None")),
        };
        // asyncio: `self.call_at(self.time() + delay, ...)`, with Python's `+` (its errors:
        // `10**400` overflows, a `str` is unsupported); a plain float or int is added here
        let (when, key) = match Self::python_clock(slf)? {
            Some(time) => {
                let when = time.call0()?.add(delay)?;
                let key = deadline_key(&when)?;
                (when, key)
            }
            None => match plain_number(delay)? {
                Some(delay) => {
                    let when = clock::monotonic() + delay;
                    (PyFloat::new(py, when).into_any(), float_deadline_key(when))
                }
                None => {
                    let when = PyFloat::new(py, clock::monotonic()).add(delay)?;
                    let key = deadline_key(&when)?;
                    (when, key)
                }
            },
        };
        // asyncio's call_later goes through call_at, and its messages name call_at
        Self::schedule_at(slf, when, key, callback, args, context, "call_at")
    }

    #[pyo3(signature = (when, callback, *args, context=None))]
    pub(crate) fn call_at(
        slf: &Bound<'_, Self>,
        when: Option<&Bound<'_, PyAny>>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let when = match when {
            Some(w) if !w.is_none() => w,
            _ => return Err(PyTypeError::new_err("when cannot be None")),
        };
        let key = deadline_key(when)?;
        Self::schedule_at(slf, when.clone(), key, callback, args, context, "call_at")
    }

    #[pyo3(signature = (callback, *args, context=None))]
    pub(crate) fn call_soon_threadsafe(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let me = slf.get();
        me.check_closed()?;
        me.check_callback(&callback, "call_soon_threadsafe")?;
        let h = Self::make_handle(slf, callback, args, context, None, true)?;
        let py = slf.py();
        let running_on = me.thread_id.load(Ordering::Relaxed);
        if running_on == 0 || running_on == current_thread_ident() {
            // from the loop's own thread, or while no thread runs it: the ready queue, in
            // call order with call_soon, as asyncio's _ready
            me.sched(py)
                .push(PyEntry(h.clone_ref(py)))
                .map_err(sched_err)?;
        } else if let Err(refused) = me.inbox.push(PyEntry(h.clone_ref(py))) {
            // closed meanwhile (check_closed above saw it open)
            drop(refused);
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        Ok(h)
    }

    /// The scheduling methods as builtin functions bound to this loop, `[(name, function)]`
    /// (see `fastcall.rs`).
    fn _fast_methods<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<Vec<(&'static str, Bound<'py, PyAny>)>> {
        crate::fastcall::bind_fast_methods(slf)
    }

    /// A Python transport (datagram, pipe) owns `fd`: `sock_*` must ask `_transports`.
    fn _transport_fd_taken(&self, py: Python<'_>, fd: RawFd) -> PyResult<()> {
        self.transport_fd_taken(py, fd)
    }

    fn _transport_fd_released(&self, py: Python<'_>, fd: RawFd) -> PyResult<()> {
        self.transport_fd_released(py, fd)
    }

    /// The loop's class overrides `time()`: read the clock through it (`python_clock`).
    fn _set_class_time(&self, overridden: bool) {
        self.class_time.store(overridden, Ordering::Relaxed);
    }

    /// A `time` was set on (true) or deleted from (false) the instance: the Python class's
    /// `__setattr__`/`__delattr__` tell, so that it becomes the loop's clock
    /// (`python_clock`), as asyncio reads `self.time()`. A flag kept this way instead of an
    /// instance-dict lookup per `call_later` (about 160 instructions, 5% of a timer scheduled
    /// and fired).
    fn _set_instance_time(&self, patched: bool) {
        self.instance_time.store(patched, Ordering::Relaxed);
    }

    /// Set (or clear, with None) the future type native code may make directly.
    fn _set_future_type(&self, py: Python<'_>, t: Option<Py<PyAny>>) -> PyResult<()> {
        let old = std::mem::replace(&mut *self.future_type.borrow_mut(py)?, t);
        drop(old);
        Ok(())
    }

    /// Wake the loop from any thread (asyncio's self-pipe write).
    fn _write_to_self(&self) {
        self.inbox.waker().wake();
    }

    fn _timer_handle_cancelled(&self, py: Python<'_>, handle: &Bound<'_, Handle>) -> PyResult<()> {
        self.timer_cancelled(py, handle.get())
    }

    fn _run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::run_once(slf)
    }

    /// The body of `run_forever`: turns until `stop()`. The Python side does the set-up.
    fn _run_forever_native(slf: &Bound<'_, Self>) -> PyResult<()> {
        let me = slf.get();
        // SAFETY: getpid never fails.
        if unsafe { libc::getpid() } as u32 != me.pid {
            return Err(PyRuntimeError::new_err(
                "this event loop was created in another process (before fork()); \
                 create a new event loop in the child",
            ));
        }
        me.running.store(true, Ordering::Relaxed);
        let result = loop {
            if let Err(e) = Self::run_once(slf) {
                break Err(e);
            }
            if me.stopping.load(Ordering::Relaxed) {
                break Ok(());
            }
        };
        me.running.store(false, Ordering::Relaxed);
        result
    }

    /// asyncio's `_add_reader`: watch `fd` for reading; returns the new handle.
    /// Whether `fd` is watched for reading (or writing): a transport's `repr`.
    fn _is_watched(&self, py: Python<'_>, fd: RawFd, write: bool) -> bool {
        !self.closed.load(Ordering::Relaxed) && self.sched(py).is_watched(fd, write)
    }

    #[pyo3(signature = (fd, callback, *args))]
    fn _add_reader(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        Self::watch(slf, fd, callback, args, false)
    }

    /// asyncio's `_add_writer`.
    #[pyo3(signature = (fd, callback, *args))]
    fn _add_writer(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        Self::watch(slf, fd, callback, args, true)
    }

    fn _remove_reader(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::unwatch(slf, fd, false)
    }

    fn _remove_writer(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::unwatch(slf, fd, true)
    }

    /// Release everything the loop holds: handles, timers, watchers, the epoll and eventfd
    /// descriptors. Called by `close()` after asyncio's checks.
    fn _close_native(&self, py: Python<'_>) -> PyResult<()> {
        // the Rust tasks' futures are dropped now (a bridged asyncio future stays pending, as
        // any asyncio future pending at close); the scheduler's handles come back to be
        // dropped here, with nothing borrowed (their finalizers may call the loop)
        let closed = self.sched(py).close();
        let flush = std::mem::take(&mut self.state.borrow_mut(py)?.flush);
        let snapshot = self.snapshot.borrow_mut(py)?.take();
        drop(snapshot);
        let spare = self.read_spare.borrow_mut(py)?.take();
        drop(spare);
        let handles = std::mem::take(&mut *self.spare_handles.borrow_mut(py)?);
        drop(handles);
        let batch = self.recv_batch.borrow_mut(py)?.take();
        drop(batch);
        // The eventfd is closed now (a closed loop releases its descriptors at once): every
        // thread that could still push holds the GIL, as this one does, and finds the inbox
        // closed.
        self.inbox.waker().close();
        drop(closed);
        drop(flush);
        Ok(())
    }

    /// The counters (ferroloop::engine::stats) as a dict, for `ferroloop._monitor.LoopStats`. Any
    /// thread holding the GIL.
    fn _stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let s = self.stats.snapshot();
        let d = pyo3::types::PyDict::new(py);
        d.set_item("turns", s.turns)?;
        d.set_item("callbacks", s.callbacks)?;
        d.set_item("io_events", s.io_events)?;
        d.set_item("timers_fired", s.timers_fired)?;
        d.set_item("poll_time", s.poll_time)?;
        d.set_item("run_time", s.run_time)?;
        d.set_item("timer_lag", s.timer_lag)?;
        d.set_item("max_timer_lag", s.max_timer_lag)?;
        d.set_item("callback_timing", s.callback_timing)?;
        let longest = self
            .longest_repr
            .borrow_mut(py)?
            .as_ref()
            .map(|r| r.clone_ref(py));
        match longest {
            Some(text) => {
                d.set_item("longest_callback", s.longest_callback)?;
                d.set_item("longest_callback_repr", text)?;
            }
            None => {
                d.set_item("longest_callback", py.None())?;
                d.set_item("longest_callback_repr", py.None())?;
            }
        }
        d.set_item("slow_callbacks", s.slow_callbacks)?;
        Ok(d)
    }

    /// `run_forever` (or an embedding's `_run_forever_setup`) begins (`true`) or ends.
    fn _stats_run(&self, running: bool) {
        if running {
            self.stats.run_begin();
        } else {
            self.stats.run_end();
        }
    }

    /// Callback timing on or off (`set_slow_callback_report`).
    fn _set_callback_timing(&self, on: bool) {
        self.stats.set_timing(on);
    }

    /// The slow-callback threshold, from `slow_callback_duration` (seconds) when it is set.
    fn _set_slow_callback_duration(&self, seconds: f64) {
        let ns = if seconds.is_nan() || seconds <= 0.0 {
            0
        } else if seconds >= (u64::MAX / 2) as f64 * 1e-9 {
            u64::MAX
        } else {
            (seconds * 1e9) as u64
        };
        self.slow_ns.store(ns, Ordering::Relaxed);
    }

    /// The timed callback running now, `(sequence number, start in time.monotonic_ns())`,
    /// or `None`: what the watchdog thread polls. Any thread holding the GIL.
    fn _current_callback(&self) -> Option<(u64, u64)> {
        self.stats.current_callback()
    }

    /// The watchdog's capture of the loop thread's stack while callback `seq` was running;
    /// the slow-callback report of that callback shows it.
    fn _set_blocked_stack(&self, py: Python<'_>, seq: u64, stack: Py<PyAny>) -> PyResult<()> {
        let old = self.blocked_stack.borrow_mut(py)?.replace((seq, stack));
        drop(old);
        Ok(())
    }

    /// Number of unfinished Rust tasks on this loop's Rust loop (0 before its first use).
    fn _rust_task_count(&self, py: Python<'_>) -> usize {
        self.sched(py).task_count()
    }

    #[getter]
    fn _closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
    #[setter(_closed)]
    fn set_closed(&self, v: bool) {
        self.closed.store(v, Ordering::Relaxed)
    }

    #[getter]
    fn _stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
    #[setter(_stopping)]
    fn set_stopping(&self, v: bool) {
        self.stopping.store(v, Ordering::Relaxed)
    }

    #[getter]
    fn _debug(&self) -> bool {
        self.is_debug()
    }
    #[setter(_debug)]
    fn set_debug(&self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        self.debug.store(v.is_truthy()?, Ordering::Relaxed);
        Ok(())
    }

    #[getter]
    fn _thread_id(&self) -> Option<u64> {
        match self.thread_id.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }
    #[setter(_thread_id)]
    fn set_thread_id(&self, v: Option<u64>) {
        self.thread_id.store(v.unwrap_or(0), Ordering::Relaxed)
    }

    #[getter]
    fn _clock_resolution(&self) -> f64 {
        self.clock_resolution()
    }
    #[setter(_clock_resolution)]
    fn set_clock_resolution(&self, v: f64) {
        self.clock_resolution_bits
            .store(v.to_bits(), Ordering::Relaxed)
    }

    #[getter]
    fn _timer_cancelled_count(&self, py: Python<'_>) -> PyResult<usize> {
        self.sched(py).timer_cancelled_count().map_err(sched_err)
    }
    #[setter(_timer_cancelled_count)]
    fn set_timer_cancelled_count(&self, _v: usize) {
        // asyncio's __init__ sets 0; the heap keeps the real count.
    }

    /// asyncio's `loop._ready`: a snapshot list of the ready handles (tests poll it with
    /// `while loop._ready:`). Assignments (`BaseEventLoop.__init__`) are ignored.
    #[getter]
    fn _ready(&self, py: Python<'_>) -> PyResult<Vec<Py<Handle>>> {
        let mut ready = Vec::new();
        // (and what other threads scheduled, not yet moved to the queue, unless a pusher
        // holds the inbox's lock at this instant: the snapshot is taken without waiting)
        let visited = self.sched(py).visit_ready(|h| {
            ready.push(h.0.clone_ref(py));
            Ok::<(), std::convert::Infallible>(())
        });
        if visited.is_none() {
            return Err(sched_err(SchedError::Reentrant));
        }
        Ok(ready)
    }
    #[setter(_ready)]
    fn set_ready(&self, _v: &Bound<'_, PyAny>) {}

    /// asyncio's `loop._scheduled`: a snapshot list of the scheduled timer handles.
    #[getter]
    fn _scheduled(&self, py: Python<'_>) -> PyResult<Vec<Py<Handle>>> {
        let mut timers = Vec::new();
        let visited = self.sched(py).visit_timers(|h| {
            timers.push(h.0.clone_ref(py));
            Ok::<(), std::convert::Infallible>(())
        });
        if visited.is_none() {
            return Err(sched_err(SchedError::Reentrant));
        }
        Ok(timers)
    }
    #[setter(_scheduled)]
    fn set_scheduled(&self, _v: &Bound<'_, PyAny>) {}

    /// Handles are not GC objects (handles.rs, "GC"): the loop visits the contents of each
    /// handle it owns exclusively, i.e. whose only reference is the one in this container
    /// slot (refcount 1). That attributes the handle's references to the loop, which is
    /// exact for such a handle. A handle held anywhere else, or twice by the loop (a reader
    /// also queued to run), is skipped: conservative (a cycle through it survives until it
    /// runs or the loop closes), never an over-count. O(1) per handle, no allocation.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(snap) = self.snapshot.try_borrow_for_gc() {
            if let Some(s) = snap.as_ref() {
                visit.call(s)?;
            }
        }
        if let Some(t) = self.future_type.try_borrow_for_gc() {
            if let Some(t) = t.as_ref() {
                visit.call(t)?;
            }
        }
        if let Some(st) = self.state.try_borrow_for_gc() {
            for f in &st.flush {
                visit.call(&f.owner)?;
            }
        }
        let visit_handle = |e: &PyEntry| {
            let h = &e.0;
            // SAFETY: h is a live object (the scheduler holds a reference to it).
            if unsafe { pyo3::ffi::Py_REFCNT(h.as_ptr()) } == 1 {
                h.get().traverse_contents(&visit)
            } else {
                Ok(())
            }
        };
        // the collector holds the GIL, so the scheduler may be read (each part is skipped
        // if borrowed right now)
        let sched = &self.sched.0;
        for visited in [
            sched.visit_ready(visit_handle),
            sched.visit_timers(visit_handle),
            sched.visit_watchers(visit_handle),
        ]
        .into_iter()
        .flatten()
        {
            visited?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let snap = self.snapshot.borrow_mut(py).ok().and_then(|mut s| s.take());
            drop(snap);
            let handles = self
                .spare_handles
                .borrow_mut(py)
                .ok()
                .map(|mut s| std::mem::take(&mut *s));
            drop(handles);
            // the loop is garbage: nothing can push any more; its Rust tasks and handles
            // are dropped
            let closed = self.sched.get(py).close();
            let flush = self
                .state
                .borrow_mut(py)
                .ok()
                .map(|mut st| std::mem::take(&mut st.flush));
            drop(closed);
            drop(flush);
        })
    }
}
