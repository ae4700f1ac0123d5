//! `EventLoop`: the native half of `ferroloop.EventLoop`, everything that runs per callback.
//!
//! The loop itself is the engine's [`Scheduler`] (ready queue, timers, reader/writer
//! registrations, reactor, inbox, and asyncio's `_run_once` over them); this module is its
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
//! The files, one concern each (`#[pymethods]` blocks per asyncio area):
//! * `mod.rs`: the loop's state, its handles as the scheduler's entries, the checks every
//!   method makes;
//! * `turn.rs`: the turn with Python as host, `run_forever`'s body, closing;
//! * `scheduling.rs`: `call_soon`, `call_later`, `call_at`, `call_soon_threadsafe`, `time`,
//!   `create_future`, `create_task`; `deadline.rs`: timer deadlines as asyncio orders them;
//! * `watchers.rs`: `_add_reader`/`_add_writer`/`_remove_*`;
//! * `transports.rs`: what native transports ask of the loop (native watchers, the
//!   end-of-phase flush, buffers), through steps they supply: transports sit above the
//!   loop and the loop names none of them;
//! * `attributes.rs`: `BaseEventLoop`'s attributes as native properties; `stats.rs`: the
//!   counters and callback timing; `gc.rs`: the cycle collector's view.
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

mod attributes;
mod deadline;
mod fastcall;
mod gc;
mod scheduling;
mod stats;
mod transports;
mod turn;
mod watchers;

use deadline::{deadline_key, float_deadline_key, plain_number};
pub(crate) use transports::NativeStep;
use transports::{Flush, NativeSteps};

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
    /// (Reached from `TimerHandle.cancel` through `register_handle_hooks`.)
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
}

/// Hand the handles module what it asks of a native loop (`handles::LoopHooks`); called
/// once when the extension is imported.
pub(crate) fn register_handle_hooks() {
    fn is_debug(loop_: &Bound<'_, PyAny>) -> Option<bool> {
        Some(loop_.cast::<EventLoop>().ok()?.get().is_debug())
    }
    fn timer_cancelled(loop_: &Bound<'_, PyAny>, handle: &Handle) -> Option<PyResult<()>> {
        let native = loop_.cast::<EventLoop>().ok()?;
        Some(native.get().timer_cancelled(loop_.py(), handle))
    }
    crate::handles::set_loop_hooks(crate::handles::LoopHooks {
        is_debug,
        timer_cancelled,
    });
}
