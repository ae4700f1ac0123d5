//! `EventLoop`: the native half of `ferroloop.EventLoop`, everything that runs per callback.
//!
//! Owns the ready queue, the timer heap, the reader/writer tables, the reactor and the
//! cross-thread inbox, and runs asyncio's `_run_once` over them: purge cancelled timers,
//! compute the timeout, poll (GIL released only when the poll may block), turn I/O events,
//! inbox items and due timers into ready handles, then run exactly the handles that were
//! ready when the run phase began. Like asyncio's, the turn and `call_later` read the clock
//! through `self.time()` when it was replaced (a subclass's `time`, or one set on the
//! instance, e.g. by `mock.patch.object`); otherwise natively (`python_clock`).
//!
//! Decision: when handles are ready and no descriptor is watched, the poll syscall is
//! skipped (the inbox is checked through an atomic flag instead); with descriptors watched
//! the loop polls every turn, as asyncio does. This is what makes `await asyncio.sleep(0)`
//! cost little more than the task step itself.
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
//! which wakes the loop only while it is parked in a poll that may block. All state sits in `GilCell`s; the reactor is polled with the GIL
//! released and touched by nothing else meanwhile (its cell stays borrowed).

use std::collections::VecDeque;
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use ferroloop::engine::clock::monotonic_ns;
use ferroloop::engine::timers::Cancellable;
use ferroloop::engine::{clock, Event, FdMap, Inbox, LoopStats, Reactor, TimerHeap, Waker};
use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyFloat, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::cell::GilCell;
use crate::datagram::DatagramFast;
use crate::handles::{Handle, TimerHandle};
use crate::py_helpers;
use crate::rust_tasks::EmbeddedLoop;
use crate::ssl_fast::SslFast;
use crate::transport::SocketTransportCore;

/// A timer in the heap: the handle whose `cancelled` flag the heap reads.
struct TimerEntry(Py<Handle>);

impl Cancellable for TimerEntry {
    fn is_cancelled(&self) -> bool {
        self.0.get().is_cancelled()
    }
}

/// A transport waiting for the end-of-phase flush.
enum Flush {
    /// TLS writes waiting for the phase's end (ssl_fast.rs): flushed before the streams,
    /// whose transports they write to.
    Ssl(Py<SslFast>),
    Stream(Py<SocketTransportCore>),
    Datagram(Py<DatagramFast>),
}

/// Emptied handles a loop keeps for reuse: enough for a burst of callbacks per turn.
const SPARE_HANDLES: usize = 1024;

#[derive(Default)]
struct State {
    ready: VecDeque<Py<Handle>>,
    timers: TimerHeap<TimerEntry>,
    readers: FdMap<Py<Handle>>,
    writers: FdMap<Py<Handle>>,
    /// Transports that queued writes during this turn's run phase: flushed together when
    /// the phase ends (transport.rs, "Write batching").
    flush: Vec<Flush>,
    /// Descriptors of this loop's transports, counted (a superset of the keys of the Python
    /// `_transports` map): `sock_*` ask Python's `_ensure_fd_no_transport` only for these.
    transport_fds: FdMap<usize>,
}

#[pyclass(module = "ferroloop._native", name = "EventLoop", subclass, frozen)]
pub struct EventLoop {
    state: GilCell<State>,
    reactor: GilCell<Option<Reactor>>,
    events: GilCell<Vec<Event>>,
    /// The last `copy_context()` snapshot, shared by handles while nothing changes
    /// (context.rs).
    snapshot: GilCell<Option<Py<PyAny>>>,
    /// Emptied one-shot handles, for the next `call_soon`s (handles.rs, "Recycling").
    spare_handles: GilCell<Vec<Py<Handle>>>,
    /// The read buffer of this loop's stream transports: a `bytes` of `MAX_READ` bytes that a
    /// read fills and copies from (transport.rs); never seen by Python code.
    read_spare: GilCell<Option<Py<pyo3::types::PyBytes>>>,
    /// Buffers for `recvmmsg` of datagram transports, taken while one is in use.
    recv_batch: GilCell<Option<Box<ferroloop::engine::datagram::RecvBatch>>>,
    /// `asyncio.Future` when the loop's class keeps `BaseEventLoop.create_future` (set by
    /// the Python `__init__`): native code then makes futures without a Python frame.
    future_type: GilCell<Option<Py<PyAny>>>,
    /// The engine's loop for Rust futures, created on first use (rust_tasks.rs); its epoll
    /// descriptor is watched by `reactor`, and one of its turns runs in each of ours.
    rust: GilCell<Option<EmbeddedLoop>>,
    /// `call_soon_threadsafe` from other threads: handles queued here join the ready queue
    /// at the start of the next turn's event phase. Its waker (asyncio's self-pipe) is
    /// written only while the loop is parked in a poll that may block (engine::inbox).
    inbox: Inbox<Py<Handle>>,
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
    stats: LoopStats,
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
            self.state.borrow_mut(py)?.timers.note_cancelled();
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
        me.state
            .borrow_mut(slf.py())?
            .timers
            .push(key, TimerEntry(h.clone_ref(slf.py())));
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
        let py = slf.py();
        let me = slf.get();
        me.check_closed()?;
        let handle = Self::make_handle(slf, callback, args, None, None, false)?;
        let old = {
            let mut reactor = me.reactor.borrow_mut(py)?;
            let reactor = reactor
                .as_mut()
                .ok_or_else(|| PyRuntimeError::new_err("Event loop is closed"))?;
            let mut interest = reactor.interest(fd);
            if write {
                interest.write = true;
            } else {
                interest.read = true;
            }
            if once {
                reactor.set_interest_oneshot(fd, interest)
            } else {
                reactor.set_interest(fd, interest)
            }
            .map_err(py_helpers::os_error)?;
            let mut st = me.state.borrow_mut(py)?;
            if write {
                st.writers.insert(fd, handle.clone_ref(py))
            } else {
                st.readers.insert(fd, handle.clone_ref(py))
            }
        };
        if let Some(old) = old {
            Handle::do_cancel(old.bind(py))?;
        }
        Ok(handle)
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
        let old = {
            let mut reactor = me.reactor.borrow_mut(py)?;
            let Some(reactor) = reactor.as_mut() else {
                return Ok(false);
            };
            let mut st = me.state.borrow_mut(py)?;
            let old = if write {
                st.writers.remove(&fd)
            } else {
                st.readers.remove(&fd)
            };
            if old.is_some() {
                let mut interest = reactor.interest(fd);
                if write {
                    interest.write = false;
                } else {
                    interest.read = false;
                }
                reactor
                    .set_interest(fd, interest)
                    .map_err(py_helpers::os_error)?;
            }
            old
        };
        match old {
            Some(h) => {
                Handle::do_cancel(h.bind(py))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// One turn of the loop (asyncio's `_run_once`).
    fn run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        me.stats.turn();
        let mut dropped: Vec<TimerEntry> = Vec::new();
        let mut now = TurnClock(None);

        // 1. purge cancelled timers, compute the timeout
        let next_deadline = {
            let mut st = me.state.borrow_mut(py)?;
            if st.timers.cancelled_count() > 0 {
                st.timers.purge_cancelled(&mut dropped);
            }
            if !st.ready.is_empty() || me.stopping.load(Ordering::Relaxed) || me.inbox.has_pending()
            {
                Err(())
            } else {
                Ok(st.timers.next_deadline())
            }
        };
        if !dropped.is_empty() {
            for e in &dropped {
                e.0.get().scheduled.store(false, Ordering::Relaxed);
            }
            drop(dropped);
        }
        // (the clock is read with the state released: a Python `time` may call the loop)
        let timeout = match next_deadline {
            Err(()) => Some(0.0),
            Ok(None) => None,
            Ok(Some(when)) => Some((when - now.now(slf)?).max(0.0)),
        };
        let rust = me.rust.borrow_mut(py)?.as_ref().map(|r| r.0.clone());
        let timeout = match rust.as_ref().and_then(|r| r.timeout_hint()) {
            Some(hint) => Some(timeout.map_or(hint, |t: f64| t.min(hint))),
            None => timeout,
        };
        let mut rust_due = false;

        // 2. poll, 3. events to ready
        {
            let mut reactor_cell = me.reactor.borrow_mut(py)?;
            let reactor = reactor_cell
                .as_mut()
                .ok_or_else(|| PyRuntimeError::new_err("Event loop is closed"))?;
            let busy = timeout == Some(0.0);
            if !(busy && reactor.registered() == 0) {
                let mut events = me.events.borrow_mut(py)?;
                events.clear();
                let result = if busy {
                    reactor
                        .poll(Some(0.0))
                        .map(|ev| events.extend_from_slice(ev))
                } else {
                    let ev_out: &mut Vec<Event> = &mut events;
                    let r: &mut Reactor = reactor;
                    // parked: from now on a call_soon_threadsafe from another thread writes
                    // the waker; one that came first means this poll must not block
                    let timeout = if me.inbox.park() { timeout } else { Some(0.0) };
                    // the loop idle: two clock reads beside a syscall and a GIL hand-over
                    let t0 = monotonic_ns();
                    let res =
                        py.detach(move || r.poll(timeout).map(|ev| ev_out.extend_from_slice(ev)));
                    me.stats.idle(monotonic_ns().saturating_sub(t0));
                    me.inbox.unpark();
                    res
                };
                result.map_err(py_helpers::os_error)?;
                if reactor.take_woken() {
                    me.inbox.waker().reset();
                }
                // what other threads scheduled before this point joins the queue first,
                // as it would have in asyncio's _ready (appended at call time)
                Self::drain_inbox(me, py)?;
                if !busy {
                    // a signal may have interrupted the wait: run Python's handlers now
                    py.check_signals()?;
                }
                if let Some(r) = rust.as_ref() {
                    let fd = r.as_raw_fd();
                    rust_due = events.iter().any(|ev| ev.fd == fd);
                }
                if !events.is_empty() {
                    let mut st = me.state.borrow_mut(py)?;
                    let st = &mut *st;
                    let before = st.ready.len();
                    for ev in events.iter() {
                        if ev.readable {
                            if let Some(h) = st.readers.get(&ev.fd) {
                                if !h.get().is_cancelled() {
                                    st.ready.push_back(h.clone_ref(py));
                                }
                            }
                        }
                        if ev.writable {
                            if let Some(h) = st.writers.get(&ev.fd) {
                                if !h.get().is_cancelled() {
                                    st.ready.push_back(h.clone_ref(py));
                                }
                            }
                        }
                    }
                    me.stats.io_events(st.ready.len() - before);
                }
            } else {
                Self::drain_inbox(me, py)?;
            }
        }

        // 4. due timers
        let turn_now = if me.state.borrow_mut(py)?.timers.is_empty() {
            None
        } else {
            Some(now.now(slf)?)
        };
        let ntodo = {
            let mut st = me.state.borrow_mut(py)?;
            let st = &mut *st;
            if let Some(turn_now) = turn_now {
                let end_time = turn_now + me.clock_resolution();
                let first = st.timers.next_deadline();
                let mut due = Vec::new();
                st.timers.pop_due(end_time, &mut due);
                if let Some(first) = first.filter(|_| !due.is_empty()) {
                    me.stats.timers_due(due.len(), turn_now - first);
                }
                for e in due {
                    e.0.get().scheduled.store(false, Ordering::Relaxed);
                    st.ready.push_back(e.0);
                }
            }
            st.ready.len()
        };

        // 5. run what was ready when this phase began
        let debug = me.is_debug();
        me.batching.store(true, Ordering::Relaxed);
        let mut ran = Self::run_ready(slf, ntodo, debug);
        // then one turn of the Rust loop, if it has anything to do
        if let Some(r) = rust {
            if rust_due || r.timeout_hint() == Some(0.0) {
                let turned = r.run_once().map_err(py_helpers::os_error);
                ran = ran.and(turned);
            }
        }
        me.batching.store(false, Ordering::Relaxed);
        // 6. the writes queued meanwhile leave, one vectored send per transport
        let flushed = Self::flush_writes(slf);
        ran.and(flushed)
    }

    /// Move the handles other threads scheduled (`call_soon_threadsafe`) to the ready queue.
    #[inline]
    fn drain_inbox(me: &Self, py: Python<'_>) -> PyResult<()> {
        if me.inbox.has_pending() {
            Self::drain_inbox_now(me, py)
        } else {
            Ok(())
        }
    }

    fn drain_inbox_now(me: &Self, py: Python<'_>) -> PyResult<()> {
        let mut st = me.state.borrow_mut(py)?;
        // (moved, not dropped: no Python code runs under the inbox's lock)
        me.inbox
            .drain_with(|queued| st.ready.extend(queued.drain(..)));
        Ok(())
    }

    fn run_ready(slf: &Bound<'_, Self>, ntodo: usize, debug: bool) -> PyResult<()> {
        let me = slf.get();
        let mut ran = 0u64;
        let result = if debug || me.stats.timing() {
            Self::run_ready_timed(slf, ntodo, debug, &mut ran)
        } else {
            Self::run_ready_fast(slf, ntodo, &mut ran)
        };
        me.stats.callbacks_ran(ran);
        result
    }

    /// The run phase without callback timing: the path every turn takes by default.
    fn run_ready_fast(slf: &Bound<'_, Self>, ntodo: usize, ran: &mut u64) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        for _ in 0..ntodo {
            let Some(h) = me.state.borrow_mut(py)?.ready.pop_front() else {
                break;
            };
            if h.get().is_cancelled() {
                continue;
            }
            let h = h.into_bound(py);
            *ran += 1;
            Handle::run_from_loop(&h)?;
            if me.spare_handles.borrow_mut(py)?.len() < SPARE_HANDLES {
                if let Some(h) = Handle::recycle(h) {
                    me.spare_handles.borrow_mut(py)?.push(h);
                }
            }
        }
        Ok(())
    }

    /// The run phase in debug mode or with callback timing on (ferroloop::engine::stats): each
    /// callback timed, the longest remembered, a slow one reported.
    fn run_ready_timed(
        slf: &Bound<'_, Self>,
        ntodo: usize,
        debug: bool,
        ran: &mut u64,
    ) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let timing = me.stats.timing();
        let mut t = if timing { monotonic_ns() } else { 0 };
        for _ in 0..ntodo {
            let Some(h) = me.state.borrow_mut(py)?.ready.pop_front() else {
                break;
            };
            if h.get().is_cancelled() {
                continue;
            }
            let h = h.into_bound(py);
            let seq = me.stats.callbacks() + *ran + 1;
            *ran += 1;
            if timing {
                me.stats.callback_begin(seq, t);
            }
            // `run`, not `run_from_loop`: the handle keeps its callback until after the
            // timing, so the longest callback's text can be taken from it
            let result = if debug {
                Self::run_debug(slf, &h)
            } else {
                Handle::run(&h)
            };
            if timing {
                let end = monotonic_ns();
                let ns = end.saturating_sub(t);
                t = end;
                // debug mode logged its own warning (run_debug) and counted it
                let slow = !debug && ns >= me.slow_ns.load(Ordering::Relaxed);
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
            if !debug && me.spare_handles.borrow_mut(py)?.len() < SPARE_HANDLES {
                if let Some(h) = Handle::recycle(h) {
                    me.spare_handles.borrow_mut(py)?.push(h);
                }
            }
        }
        Ok(())
    }

    fn flush_writes(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let pending = {
            let mut st = slf.get().state.borrow_mut(py)?;
            if st.flush.is_empty() {
                return Ok(());
            }
            std::mem::take(&mut st.flush)
        };
        let mut result = Ok(());
        let mut pending = pending;
        if pending.iter().any(|f| matches!(f, Flush::Ssl(_))) {
            // TLS first, with the run phase marked once more: the records they make join
            // their raw transports' batches, listed now and flushed in this same pass
            let (ssl, rest): (Vec<Flush>, Vec<Flush>) = pending
                .into_iter()
                .partition(|f| matches!(f, Flush::Ssl(_)));
            let batching = slf.get().batching.swap(true, Ordering::Relaxed);
            for f in ssl {
                if let Flush::Ssl(fast) = f {
                    let r = SslFast::flush_batch(fast.bind(py));
                    if result.is_ok() {
                        result = r;
                    }
                }
            }
            slf.get().batching.store(batching, Ordering::Relaxed);
            pending = rest;
            pending.append(&mut slf.get().state.borrow_mut(py)?.flush);
        }
        for f in pending {
            let r = match f {
                Flush::Ssl(fast) => SslFast::flush_batch(fast.bind(py)),
                Flush::Stream(core) => SocketTransportCore::flush_batch(core.bind(py)),
                Flush::Datagram(fast) => DatagramFast::flush_batch(fast.bind(py)),
            };
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// Run `f` with this loop's Rust loop (created and watched on first use), entered so
    /// that what `f` creates belongs to it.
    pub(crate) fn with_rust_loop<R>(
        slf: &Bound<'_, Self>,
        f: impl FnOnce(&ferroloop::Loop) -> R,
    ) -> PyResult<R> {
        let py = slf.py();
        let me = slf.get();
        me.check_closed()?;
        let existing = me.rust.borrow_mut(py)?.as_ref().map(|r| r.0.clone());
        let lp = match existing {
            Some(lp) => lp,
            None => {
                let lp = std::rc::Rc::new(ferroloop::Loop::new().map_err(py_helpers::os_error)?);
                let mut reactor = me.reactor.borrow_mut(py)?;
                let reactor = reactor
                    .as_mut()
                    .ok_or_else(|| PyRuntimeError::new_err("Event loop is closed"))?;
                reactor
                    .set_interest(
                        lp.as_raw_fd(),
                        ferroloop::engine::Interest {
                            read: true,
                            write: false,
                        },
                    )
                    .map_err(py_helpers::os_error)?;
                *me.rust.borrow_mut(py)? = Some(EmbeddedLoop(lp.clone()));
                lp
            }
        };
        let _enter = lp.enter();
        Ok(f(&lp))
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

    /// A transport's write during the run phase: queue it for the end-of-phase flush.
    /// False when no phase is running (the transport then sends at once).
    pub(crate) fn defer_flush(
        &self,
        py: Python<'_>,
        core: &Bound<'_, SocketTransportCore>,
    ) -> PyResult<bool> {
        if !self.batching.load(Ordering::Relaxed) {
            return Ok(false);
        }
        self.state
            .borrow_mut(py)?
            .flush
            .push(Flush::Stream(core.clone().unbind()));
        Ok(true)
    }

    /// A TLS protocol keeps this run phase's writes for its end (ssl_fast.rs). False when no
    /// phase is running (they are then encrypted at once).
    pub(crate) fn defer_ssl(&self, py: Python<'_>, fast: &Bound<'_, SslFast>) -> PyResult<bool> {
        if !self.batching.load(Ordering::Relaxed) {
            return Ok(false);
        }
        self.state
            .borrow_mut(py)?
            .flush
            .push(Flush::Ssl(fast.clone().unbind()));
        Ok(true)
    }

    /// A datagram transport queued its first datagram of this run phase: flush it when the
    /// phase ends. False when no phase is running (the datagram is then sent at once).
    pub(crate) fn defer_datagrams(
        &self,
        py: Python<'_>,
        fast: &Bound<'_, DatagramFast>,
    ) -> PyResult<bool> {
        if !self.batching.load(Ordering::Relaxed) {
            return Ok(false);
        }
        self.state
            .borrow_mut(py)?
            .flush
            .push(Flush::Datagram(fast.clone().unbind()));
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

#[pymethods]
impl EventLoop {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let waker = Arc::new(Waker::new().map_err(py_helpers::os_error)?);
        let mut reactor = Reactor::new().map_err(py_helpers::os_error)?;
        reactor
            .register_waker(&waker)
            .map_err(py_helpers::os_error)?;
        Ok(EventLoop {
            state: GilCell::new(State::default()),
            reactor: GilCell::new(Some(reactor)),
            events: GilCell::new(Vec::with_capacity(64)),
            snapshot: GilCell::new(None),
            read_spare: GilCell::new(None),
            spare_handles: GilCell::new(Vec::new()),
            recv_batch: GilCell::new(None),
            future_type: GilCell::new(None),
            rust: GilCell::new(None),
            inbox: Inbox::parking(waker),
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
            stats: LoopStats::new(),
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
        me.state
            .borrow_mut(slf.py())?
            .ready
            .push_back(h.clone_ref(slf.py()));
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
            me.state.borrow_mut(py)?.ready.push_back(h.clone_ref(py));
        } else if let Err(refused) = me.inbox.push(h.clone_ref(py)) {
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
        let (flush, ready, mut timers, readers, writers) = {
            let mut st = self.state.borrow_mut(py)?;
            let mut timers = Vec::new();
            st.timers.drain_into(&mut timers);
            (
                std::mem::take(&mut st.flush),
                std::mem::take(&mut st.ready),
                timers,
                std::mem::take(&mut st.readers),
                std::mem::take(&mut st.writers),
            )
        };
        for t in &timers {
            t.0.get().scheduled.store(false, Ordering::Relaxed);
        }
        let snapshot = self.snapshot.borrow_mut(py)?.take();
        drop(snapshot);
        let spare = self.read_spare.borrow_mut(py)?.take();
        drop(spare);
        let handles = std::mem::take(&mut *self.spare_handles.borrow_mut(py)?);
        drop(handles);
        let batch = self.recv_batch.borrow_mut(py)?.take();
        drop(batch);
        // the Rust tasks' futures are dropped now (a bridged asyncio future is cancelled)
        let rust = self.rust.borrow_mut(py)?.take();
        drop(rust);
        let reactor = self.reactor.borrow_mut(py)?.take();
        drop(reactor);
        // call_soon_threadsafe refuses work from now on; its queued handles go with the rest.
        // The eventfd is closed now (a closed loop releases its descriptors at once): every
        // thread that could still push holds the GIL, as this one does.
        let queued = self.inbox.close();
        self.inbox.waker().close();
        drop(queued);
        drop(ready);
        timers.clear();
        drop(readers);
        drop(writers);
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
    fn _rust_task_count(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self
            .rust
            .borrow_mut(py)?
            .as_ref()
            .map_or(0, |r| r.0.task_count()))
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
        Ok(self.state.borrow_mut(py)?.timers.cancelled_count())
    }
    #[setter(_timer_cancelled_count)]
    fn set_timer_cancelled_count(&self, _v: usize) {
        // asyncio's __init__ sets 0; the heap keeps the real count.
    }

    /// asyncio's `loop._ready`: a snapshot list of the ready handles (tests poll it with
    /// `while loop._ready:`). Assignments (`BaseEventLoop.__init__`) are ignored.
    #[getter]
    fn _ready(&self, py: Python<'_>) -> PyResult<Vec<Py<Handle>>> {
        let mut ready: Vec<Py<Handle>> = self
            .state
            .borrow_mut(py)?
            .ready
            .iter()
            .map(|h| h.clone_ref(py))
            .collect();
        // and what other threads scheduled, not yet moved to the queue (unless a pusher
        // holds the inbox's lock at this instant: the snapshot is taken without waiting)
        let visited = self.inbox.try_visit(|h| {
            ready.push(h.clone_ref(py));
            Ok::<(), std::convert::Infallible>(())
        });
        debug_assert!(!matches!(visited, Some(Err(_))));
        Ok(ready)
    }
    #[setter(_ready)]
    fn set_ready(&self, _v: &Bound<'_, PyAny>) {}

    /// asyncio's `loop._scheduled`: a snapshot list of the scheduled timer handles.
    #[getter]
    fn _scheduled(&self, py: Python<'_>) -> PyResult<Vec<Py<Handle>>> {
        Ok(self
            .state
            .borrow_mut(py)?
            .timers
            .iter()
            .map(|e| e.0.clone_ref(py))
            .collect())
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
            let all = st
                .ready
                .iter()
                .chain(st.readers.values())
                .chain(st.writers.values())
                .chain(st.timers.iter().map(|e| &e.0));
            for f in &st.flush {
                match f {
                    Flush::Ssl(fast) => visit.call(fast)?,
                    Flush::Stream(core) => visit.call(core)?,
                    Flush::Datagram(fast) => visit.call(fast)?,
                }
            }
            for h in all {
                // SAFETY: h is a live object (we hold a reference to it).
                if unsafe { pyo3::ffi::Py_REFCNT(h.as_ptr()) } == 1 {
                    h.get().traverse_contents(&visit)?;
                }
            }
        }
        // handles other threads scheduled (skipped if a pusher holds the lock right now)
        if let Some(r) = self.inbox.try_visit(|h| {
            // SAFETY: h is a live object (the inbox holds a reference to it).
            if unsafe { pyo3::ffi::Py_REFCNT(h.as_ptr()) } == 1 {
                h.get().traverse_contents(&visit)
            } else {
                Ok(())
            }
        }) {
            r?;
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
            // the loop is garbage: nothing can push any more
            let queued = self.inbox.close();
            drop(queued);
            let taken = match self.state.borrow_mut(py) {
                Ok(mut st) => {
                    let mut timers = Vec::new();
                    st.timers.drain_into(&mut timers);
                    Some((
                        std::mem::take(&mut st.flush),
                        std::mem::take(&mut st.ready),
                        timers,
                        std::mem::take(&mut st.readers),
                        std::mem::take(&mut st.writers),
                    ))
                }
                Err(_) => None,
            };
            drop(taken);
        })
    }
}
