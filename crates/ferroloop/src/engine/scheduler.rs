//! [`Scheduler`]: the loop. One ready queue, the timers, the readiness registrations, the
//! reactor, the cross-thread inboxes, and asyncio's `_run_once` over them, for Rust tasks
//! and for whatever its host queues beside them.
//!
//! A scheduler is generic over `H`, the host's ready entry ([`HostEntry`]): a [`crate::Loop`]
//! has none ([`NoHost`]); the Python loop's entries are asyncio handles and native transport
//! steps. Rust tasks and host entries share the ready queue, in the order they became ready,
//! and one turn runs both: one poll, no loop nested in another.
//!
//! A turn ([`Scheduler::turn`], asyncio's `_run_once`):
//! 1. purge cancelled timers; the timeout is 0 when anything is ready (or the host is
//!    stopping, or another thread queued work), else until the earliest timer, else none;
//! 2. poll the reactor (skipped while work is ready and no descriptor is watched, or, for a
//!    host that asks for it, on all but every `poll_interval`-th busy turn); the host may
//!    give up a global lock around a poll that may block ([`Host::blocking`]);
//! 3. what other threads queued joins the ready queue, then the host's watchers of the
//!    descriptors reported ready; Rust tasks waiting on them are woken;
//! 4. due timers: the host's (by its own clock, `when <= now + resolution`, in deadline
//!    order), then the Rust tasks' sleeps;
//! 5. run exactly the entries that were ready when this phase began;
//! 6. [`Host::phase_end`]: the host's end-of-phase work (the write flush).
//!
//! Decision: the host's timers and the Rust tasks' sleeps are two heaps, because a host may
//! read another clock (asyncio reads `loop.time()`, which a test may patch); each is read
//! against its own clock.
//!
//! Re-entrancy: the host runs its entries with no borrow of the scheduler held, so it may
//! queue, watch and schedule from inside `run` (asyncio callbacks do). The scheduler drops
//! host entries only with no borrow held (a Python finalizer may call back in). A method
//! that finds its state borrowed returns [`Error::Reentrant`] instead of panicking.
//!
//! Threading: loop-thread only (`Rc`, `RefCell`). Other threads reach it through the host
//! inbox ([`Scheduler::host_inbox`]) and the Rust tasks' wakers ([`crate::LoopHandle`]).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::os::unix::io::RawFd;
use std::rc::Rc;
use std::sync::Arc;

use crate::engine::clock::{self, monotonic_ns};
use crate::engine::ready_queue::ReadyQueue;
use crate::engine::timers::{Cancellable, TimerHeap};
use crate::engine::{Event, FdMap, Inbox, Interest, LoopStats, Reactor, Waker};
use crate::runtime::core::{
    is_current, spawn_on, Core, Enter, IoState, Remote, Shared, Slab, TimerSlot,
};
use crate::runtime::task::{Runnable, TaskKey, MAIN_KEY};
use crate::runtime::LoopGuard;
use crate::Task;

/// What a host queues in the scheduler.
pub trait HostEntry {
    /// Whether entries of this type can exist at all: false for [`NoHost`], whose turn then
    /// skips the host's inbox, timers and watchers at compile time.
    const EXISTS: bool = true;
    /// A cancelled entry is skipped when its turn comes, and dropped from the timers lazily.
    fn is_cancelled(&self) -> bool;
    /// Another reference to the same entry: a watcher is queued each time its descriptor is
    /// ready. Called only inside [`Scheduler::turn`], never from [`Host::blocking`]'s poll
    /// (a host behind a global lock holds it here).
    fn share(&self) -> Self;
    /// The entry left the timer heap (due or purged): asyncio's `_scheduled = False`.
    fn unscheduled(&self) {}
}

/// The host of a scheduler that runs only Rust tasks.
pub enum NoHost {}

impl HostEntry for NoHost {
    const EXISTS: bool = false;
    fn is_cancelled(&self) -> bool {
        match *self {}
    }
    fn share(&self) -> Self {
        match *self {}
    }
}

/// What a turn asks of its host.
pub trait Host<H> {
    /// The host's error; a scheduler [`Error`] converts into it.
    type Error: From<Error>;
    /// The clock of the host's timers (asyncio: `loop.time()`).
    fn now(&mut self) -> Result<f64, Self::Error>;
    /// A timer is due when `when <= now + clock_resolution()`.
    fn clock_resolution(&self) -> f64 {
        clock::resolution()
    }
    /// `stop()` was called: this turn must not block.
    fn stopping(&self) -> bool {
        false
    }
    /// Run a poll that may block (a host behind a global lock releases it here).
    fn blocking<R: Send, F: FnOnce() -> R + Send>(&mut self, poll: F) -> R {
        poll()
    }
    /// After a poll that may have blocked (the Python host runs signal handlers here).
    fn woke(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    /// The run phase begins.
    fn phase_begin(&mut self) {}
    /// Run one ready entry (never a cancelled one). An error ends the phase; the entries not
    /// yet run stay queued.
    fn run(&mut self, entry: H) -> Result<(), Self::Error>;
    /// The run phase ended, even if `run` failed: the end-of-phase flush.
    fn phase_end(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Why the scheduler refused a call.
#[derive(Debug)]
pub enum Error {
    /// The scheduler was closed.
    Closed,
    /// Its state is borrowed by a caller up the stack (or by a poll on the loop thread while
    /// another thread calls in).
    Reentrant,
    /// The OS refused (a watch of a bad descriptor, a failed poll).
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Closed => f.write_str("the loop is closed"),
            Error::Reentrant => f.write_str("re-entrant access to loop state"),
            Error::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(e) => e,
            other => io::Error::other(other.to_string()),
        }
    }
}

/// One entry of the ready queue.
enum Ready<H> {
    Host(H),
    Task(TaskKey),
}

/// A host timer in the heap.
struct HostTimer<H>(H);

impl<H: HostEntry> Cancellable for HostTimer<H> {
    fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// What [`Scheduler::close`] took out of the scheduler: the host's entries, for the host to
/// drop when it sees fit.
pub struct Closed<H> {
    /// The entries that were ready.
    pub ready: Vec<H>,
    /// The scheduled timers (already marked unscheduled).
    pub timers: Vec<H>,
    /// The descriptor watchers.
    pub watchers: Vec<H>,
    /// What other threads had queued.
    pub inbox: Vec<H>,
}

/// The loop: see the module documentation.
pub struct Scheduler<H> {
    shared: Arc<Shared>,
    host_inbox: Arc<Inbox<H>>,
    reactor: RefCell<Option<Reactor>>,
    events: RefCell<Vec<Event>>,
    ready: RefCell<ReadyQueue<Ready<H>>>,
    host_timers: RefCell<TimerHeap<HostTimer<H>>>,
    readers: RefCell<FdMap<H>>,
    writers: RefCell<FdMap<H>>,
    timers: RefCell<TimerHeap<Rc<TimerSlot>>>,
    io: RefCell<FdMap<Rc<IoState>>>,
    tasks: RefCell<Slab>,
    remote: RefCell<Vec<Remote>>,
    main_woken: Cell<bool>,
    closed: Cell<bool>,
    /// Consecutive busy turns (see `poll_interval`).
    busy_turns: Cell<u32>,
    /// While work is ready, look at I/O once per this many turns (1: every turn, as asyncio).
    poll_interval: u32,
    stats: Arc<LoopStats>,
}

/// While tasks are ready, a Rust loop looks at the reactor once per this many turns (tokio's
/// current-thread scheduler uses a similar interval, 61 polls). Measured with
/// `benches/vs_tokio.rs`: `yield_now` 202 ns per step when looking every turn, 33 ns with 32.
pub const RUST_POLL_INTERVAL: u32 = 32;

impl<H: HostEntry> Scheduler<H> {
    /// A new scheduler (an epoll instance and an eventfd). While work is ready it polls for
    /// I/O once per `poll_interval` turns (1 for asyncio's every turn; a poll is skipped
    /// anyway while no descriptor is watched).
    pub fn new(poll_interval: u32) -> io::Result<Rc<Self>> {
        let waker = Arc::new(Waker::new()?);
        let mut reactor = Reactor::new()?;
        reactor.register_waker(&waker)?;
        Ok(Rc::new(Scheduler {
            shared: Arc::new(Shared {
                inbox: Inbox::new(waker.clone()),
            }),
            host_inbox: Arc::new(Inbox::parking(waker)),
            reactor: RefCell::new(Some(reactor)),
            events: RefCell::new(Vec::with_capacity(64)),
            ready: RefCell::new(ReadyQueue::new()),
            host_timers: RefCell::new(TimerHeap::new()),
            readers: RefCell::new(FdMap::new()),
            writers: RefCell::new(FdMap::new()),
            timers: RefCell::new(TimerHeap::new()),
            io: RefCell::new(FdMap::new()),
            tasks: RefCell::new(Slab::default()),
            remote: RefCell::new(Vec::new()),
            main_woken: Cell::new(false),
            closed: Cell::new(false),
            busy_turns: Cell::new(0),
            poll_interval: poll_interval.max(1),
            stats: Arc::new(LoopStats::new()),
        }))
    }

    /// The queue other threads put host entries in (asyncio's `call_soon_threadsafe`); they
    /// join the ready queue at the next turn, before the I/O callbacks.
    pub fn host_inbox(&self) -> &Arc<Inbox<H>> {
        &self.host_inbox
    }

    /// The eventfd that interrupts a poll (asyncio's self-pipe).
    pub fn waker(&self) -> &Arc<Waker> {
        self.host_inbox.waker()
    }

    /// The loop's counters.
    pub fn stats(&self) -> &Arc<LoopStats> {
        &self.stats
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    // -- the host's entries ---------------------------------------------------------------

    /// Queue `entry` to run in the next run phase (asyncio's `call_soon`).
    #[inline(always)]
    pub fn push(&self, entry: H) -> Result<(), Error> {
        if self.closed.get() {
            return Err(Error::Closed);
        }
        match self.ready.try_borrow_mut() {
            Ok(mut r) => {
                r.push_back(Ready::Host(entry));
                Ok(())
            }
            Err(_) => {
                drop(entry);
                Err(Error::Reentrant)
            }
        }
    }

    /// Number of entries in the ready queue (host entries and Rust tasks).
    pub fn ready_len(&self) -> usize {
        self.ready.try_borrow().map_or(0, |r| r.len())
    }

    /// Schedule `entry` at `when` on the host's clock (asyncio's `call_at`).
    pub fn push_timer(&self, when: f64, entry: H) -> Result<(), Error> {
        if self.closed.get() {
            return Err(Error::Closed);
        }
        let mut t = self
            .host_timers
            .try_borrow_mut()
            .map_err(|_| Error::Reentrant)?;
        t.push(when, HostTimer(entry));
        Ok(())
    }

    /// A scheduled host timer was cancelled: counted for the heap's compaction rule.
    pub fn note_timer_cancelled(&self) -> Result<(), Error> {
        self.host_timers
            .try_borrow_mut()
            .map_err(|_| Error::Reentrant)?
            .note_cancelled();
        Ok(())
    }

    /// Cancelled host timers still in the heap.
    pub fn timer_cancelled_count(&self) -> Result<usize, Error> {
        Ok(self
            .host_timers
            .try_borrow()
            .map_err(|_| Error::Reentrant)?
            .cancelled_count())
    }

    /// Queue `entry` each turn `fd` is ready for reading (or writing, with `write`), until
    /// [`unwatch`](Self::unwatch); level-triggered, as asyncio's selector. `once`: the caller
    /// stops watching after its first turn (a `sock_*` wait), so the registration may stay
    /// parked in the kernel for the next wait. Returns the entry it replaces.
    pub fn watch(&self, fd: RawFd, write: bool, entry: H, once: bool) -> Result<Option<H>, Error> {
        let mut reactor = self
            .reactor
            .try_borrow_mut()
            .map_err(|_| Error::Reentrant)?;
        let reactor = reactor.as_mut().ok_or(Error::Closed)?;
        let mut table = if write { &self.writers } else { &self.readers }
            .try_borrow_mut()
            .map_err(|_| Error::Reentrant)?;
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
        }?;
        Ok(table.insert(fd, entry))
    }

    /// Stop watching `fd` for reading (or writing); returns the entry that watched it.
    pub fn unwatch(&self, fd: RawFd, write: bool) -> Result<Option<H>, Error> {
        let mut reactor = self
            .reactor
            .try_borrow_mut()
            .map_err(|_| Error::Reentrant)?;
        let Some(reactor) = reactor.as_mut() else {
            return Ok(None);
        };
        let mut table = if write { &self.writers } else { &self.readers }
            .try_borrow_mut()
            .map_err(|_| Error::Reentrant)?;
        let old = table.remove(&fd);
        if old.is_some() {
            let mut interest = reactor.interest(fd);
            if write {
                interest.write = false;
            } else {
                interest.read = false;
            }
            if let Err(e) = reactor.set_interest(fd, interest) {
                return Err(Error::Io(e));
            }
        }
        Ok(old)
    }

    /// Visit the host entries waiting to run: the ready queue, then what other threads
    /// queued. `None` if the state is borrowed right now (the visit is skipped).
    pub fn visit_ready<E>(&self, mut f: impl FnMut(&H) -> Result<(), E>) -> Option<Result<(), E>> {
        let ready = self.ready.try_borrow().ok()?;
        for r in ready.iter() {
            if let Ready::Host(h) = r {
                if let Err(e) = f(h) {
                    return Some(Err(e));
                }
            }
        }
        drop(ready);
        self.host_inbox.try_visit(f)
    }

    /// Visit the host's scheduled timers (asyncio's `_scheduled`, in no particular order).
    pub fn visit_timers<E>(&self, mut f: impl FnMut(&H) -> Result<(), E>) -> Option<Result<(), E>> {
        let t = self.host_timers.try_borrow().ok()?;
        let r = t.iter().try_for_each(|e| f(&e.0));
        Some(r)
    }

    /// Visit the host's descriptor watchers.
    pub fn visit_watchers<E>(
        &self,
        mut f: impl FnMut(&H) -> Result<(), E>,
    ) -> Option<Result<(), E>> {
        let r = self.readers.try_borrow().ok()?;
        let w = self.writers.try_borrow().ok()?;
        let res = r.values().chain(w.values()).try_for_each(&mut f);
        Some(res)
    }

    // -- Rust tasks -----------------------------------------------------------------------

    /// Spawn `future` as a Rust task of this loop; it runs in the next run phase.
    pub fn spawn<F: Future + 'static>(self: &Rc<Self>, future: F) -> Task<F::Output>
    where
        H: 'static,
    {
        spawn_on(&**self, future)
    }

    /// Make this scheduler the current loop of this thread while the guard lives, so that
    /// [`crate::spawn`], timers and sockets made meanwhile belong to it.
    pub fn enter(self: &Rc<Self>) -> LoopGuard
    where
        H: 'static,
    {
        LoopGuard::new(Enter::new(self.clone()))
    }

    /// Number of Rust tasks not yet finished.
    pub fn task_count(&self) -> usize {
        self.tasks.try_borrow().map_or(0, |t| t.live)
    }

    /// Whether `block_on`'s future was woken (and clear the flag).
    pub(crate) fn take_main_woken(&self) -> bool {
        self.main_woken.replace(false)
    }

    // -- the turn -------------------------------------------------------------------------

    /// Whether anything is ready to run without waiting.
    fn busy(&self) -> Result<bool, Error> {
        let ready = self.ready.try_borrow().map_err(|_| Error::Reentrant)?;
        Ok(!ready.is_empty()
            || self.main_woken.get()
            || (H::EXISTS && self.host_inbox.has_pending())
            || self.shared.inbox.has_pending())
    }

    /// One turn (see the module documentation). `block`: whether the poll may wait.
    pub fn turn<O: Host<H>>(self: &Rc<Self>, host: &mut O, block: bool) -> Result<(), O::Error>
    where
        H: 'static,
    {
        if self.closed.get() {
            return Err(Error::Closed.into());
        }
        // current on this thread while Rust tasks may run or be woken (a host with none
        // skips the thread-local swap, and so does a `Loop` run by `block_on`, which made
        // itself current already)
        if self.task_count() > 0 && !is_current(Rc::as_ptr(self) as *const ()) {
            let _enter = Enter::new(self.clone());
            self.turn_entered(host, block)
        } else {
            self.turn_entered(host, block)
        }
    }

    fn turn_entered<O: Host<H>>(&self, host: &mut O, block: bool) -> Result<(), O::Error> {
        self.stats.turn();
        // (no Rust sleep pending is the common case of a Python loop, no host timer that of
        // a Rust `Loop`: each heap is looked at once when empty)
        let slots = !self.slot_timers_empty();
        let host_timers = H::EXISTS && !self.host_timers_empty();

        // 1. purge cancelled timers, compute the timeout
        let host_deadline = if host_timers {
            self.purge_host_timers()?
        } else {
            None
        };
        let slot_deadline = if slots {
            self.purge_slot_timers()?
        } else {
            None
        };
        let busy = !block || self.busy()? || host.stopping();
        let timeout = if busy {
            Some(0.0)
        } else {
            let mut t: Option<f64> = None;
            if let Some(when) = host_deadline {
                t = Some((when - host.now()?).max(0.0));
            }
            if let Some(when) = slot_deadline {
                let s = (when - clock::monotonic()).max(0.0);
                t = Some(t.map_or(s, |t| t.min(s)));
            }
            t
        };
        // a timer already due: this turn does not wait either
        let busy = busy || timeout == Some(0.0);

        // 2. poll, 3. events and queued work to ready
        self.poll(host, busy, timeout)?;

        // 4. due timers
        // (looked at again: a signal handler run after the poll may have scheduled one)
        if H::EXISTS {
            self.fire_host_timers(host)?;
        }
        if slots || !self.slot_timers_empty() {
            self.fire_slot_timers();
        }

        // 5. run what was ready when this phase began, 6. the end of the phase
        let ntodo = self.ready.try_borrow().map_err(|_| Error::Reentrant)?.len();
        host.phase_begin();
        let ran = if ntodo == 0 {
            Ok(())
        } else {
            self.run_ready(host, ntodo)
        };
        let ended = host.phase_end();
        ran.and(ended)
    }

    /// Drop cancelled host timers; the earliest live deadline.
    fn purge_host_timers(&self) -> Result<Option<f64>, Error> {
        let mut dropped = Vec::new();
        let next = {
            let mut t = self
                .host_timers
                .try_borrow_mut()
                .map_err(|_| Error::Reentrant)?;
            if t.cancelled_count() > 0 {
                t.purge_cancelled(&mut dropped);
            }
            t.next_deadline()
        };
        for e in &dropped {
            e.0.unscheduled();
        }
        drop(dropped);
        Ok(next)
    }

    fn purge_slot_timers(&self) -> Result<Option<f64>, Error> {
        let mut dropped = Vec::new();
        let next = {
            let mut t = self.timers.try_borrow_mut().map_err(|_| Error::Reentrant)?;
            if t.cancelled_count() > 0 {
                t.purge_cancelled(&mut dropped);
            }
            t.next_deadline()
        };
        drop(dropped);
        Ok(next)
    }

    fn poll<O: Host<H>>(
        &self,
        host: &mut O,
        busy: bool,
        timeout: Option<f64>,
    ) -> Result<(), O::Error> {
        let look = {
            let reactor = self.reactor.try_borrow().map_err(|_| Error::Reentrant)?;
            let reactor = reactor.as_ref().ok_or(Error::Closed)?;
            if !busy {
                self.busy_turns.set(0);
                true
            } else if reactor.registered() == 0 {
                false
            } else if self.poll_interval == 1 {
                true
            } else {
                let n = self.busy_turns.get().wrapping_add(1);
                self.busy_turns.set(n);
                n.is_multiple_of(self.poll_interval)
            }
        };
        if !look {
            self.drain_inboxes()?;
            return Ok(());
        }
        {
            let mut reactor_cell = self
                .reactor
                .try_borrow_mut()
                .map_err(|_| Error::Reentrant)?;
            let reactor = reactor_cell.as_mut().ok_or(Error::Closed)?;
            let mut events = self.events.try_borrow_mut().map_err(|_| Error::Reentrant)?;
            events.clear();
            let result = if busy {
                reactor
                    .poll(Some(0.0))
                    .map(|ev| events.extend_from_slice(ev))
            } else {
                // parked: from now on another thread's push writes the waker; one that came
                // first means this poll must not block
                let timeout = if self.host_inbox.park() {
                    timeout
                } else {
                    Some(0.0)
                };
                let r: &mut Reactor = reactor;
                let out: &mut Vec<Event> = &mut events;
                let t0 = monotonic_ns();
                let res =
                    host.blocking(move || r.poll(timeout).map(|ev| out.extend_from_slice(ev)));
                self.stats.idle(monotonic_ns().saturating_sub(t0));
                self.host_inbox.unpark();
                res
            };
            result.map_err(Error::Io)?;
            if reactor.take_woken() {
                self.host_inbox.waker().reset();
            }
        }
        // what other threads queued before this point joins the queue first, as it would
        // have in asyncio's _ready (appended at call time)
        self.drain_inboxes()?;
        if !busy {
            host.woke()?;
        }
        self.dispatch_events()?;
        Ok(())
    }

    /// Move what other threads queued to the ready queue (host entries) or run it (Rust
    /// wakes and calls).
    fn drain_inboxes(&self) -> Result<(), Error> {
        if H::EXISTS && self.host_inbox.has_pending() {
            let mut ready = self.ready.try_borrow_mut().map_err(|_| Error::Reentrant)?;
            // moved, not dropped: nothing runs under the inbox's lock
            self.host_inbox
                .drain_with(|queued| ready.extend(queued.drain(..).map(Ready::Host)));
        }
        if self.shared.inbox.has_pending() {
            let mut items =
                std::mem::take(&mut *self.remote.try_borrow_mut().map_err(|_| Error::Reentrant)?);
            self.shared.inbox.drain_into(&mut items);
            for item in items.drain(..) {
                match item {
                    Remote::Wake(key) => self.wake_local(key),
                    Remote::Call(f) => f(),
                }
            }
            if let Ok(mut r) = self.remote.try_borrow_mut() {
                *r = items;
            }
        }
        Ok(())
    }

    /// Queue the watchers of the descriptors the poll reported; wake the Rust tasks waiting
    /// on them.
    fn dispatch_events(&self) -> Result<(), Error> {
        let events = self.events.try_borrow().map_err(|_| Error::Reentrant)?;
        if events.is_empty() {
            return Ok(());
        }
        if H::EXISTS {
            let mut ready = self.ready.try_borrow_mut().map_err(|_| Error::Reentrant)?;
            let readers = self.readers.try_borrow().map_err(|_| Error::Reentrant)?;
            let writers = self.writers.try_borrow().map_err(|_| Error::Reentrant)?;
            let before = ready.len();
            for ev in events.iter() {
                if ev.readable {
                    if let Some(h) = readers.get(&ev.fd) {
                        if !h.is_cancelled() {
                            ready.push_back(Ready::Host(h.share()));
                        }
                    }
                }
                if ev.writable {
                    if let Some(h) = writers.get(&ev.fd) {
                        if !h.is_cancelled() {
                            ready.push_back(Ready::Host(h.share()));
                        }
                    }
                }
            }
            self.stats.io_events(ready.len() - before);
        }
        let io = self.io.try_borrow().map_err(|_| Error::Reentrant)?;
        if io.is_empty() {
            return Ok(());
        }
        let mut wake = Vec::new();
        for ev in events.iter() {
            if let Some(st) = io.get(&ev.fd) {
                if ev.hangup {
                    st.hangup.set(true);
                }
                if ev.readable {
                    st.readable.set(true);
                    wake.append(&mut st.read.borrow_mut());
                }
                if ev.writable {
                    st.writable.set(true);
                    wake.append(&mut st.write.borrow_mut());
                }
            }
        }
        // (woken with nothing borrowed: a wake queues the task)
        drop(io);
        drop(events);
        for w in wake {
            w.wake();
        }
        Ok(())
    }

    /// The host's due timers to the ready queue, in deadline order.
    fn fire_host_timers<O: Host<H>>(&self, host: &mut O) -> Result<(), O::Error> {
        if self
            .host_timers
            .try_borrow()
            .map_err(|_| Error::Reentrant)?
            .is_empty()
        {
            return Ok(());
        }
        // (the clock is read with nothing borrowed: a host clock may call back in)
        let now = host.now()?;
        let end_time = now + host.clock_resolution();
        let mut due = Vec::new();
        let first = {
            let mut t = self
                .host_timers
                .try_borrow_mut()
                .map_err(|_| Error::Reentrant)?;
            let first = t.next_deadline();
            t.pop_due(end_time, &mut due);
            first
        };
        if due.is_empty() {
            return Ok(());
        }
        if let Some(first) = first {
            self.stats.timers_due(due.len(), now - first);
        }
        for e in &due {
            e.0.unscheduled();
        }
        let mut ready = self.ready.try_borrow_mut().map_err(|_| Error::Reentrant)?;
        for e in due {
            ready.push_back(Ready::Host(e.0));
        }
        Ok(())
    }

    /// Wake the Rust tasks whose sleeps are due.
    /// No host timer is scheduled.
    #[inline]
    fn host_timers_empty(&self) -> bool {
        self.host_timers.try_borrow().map_or(true, |t| t.is_empty())
    }

    /// No Rust sleep is pending (the common case on a Python loop: checked first, cheaply).
    #[inline]
    fn slot_timers_empty(&self) -> bool {
        self.timers.try_borrow().map_or(true, |t| t.is_empty())
    }

    fn fire_slot_timers(&self) {
        let mut due = Vec::new();
        {
            let Ok(mut t) = self.timers.try_borrow_mut() else {
                return;
            };
            t.pop_due(clock::monotonic() + clock::resolution(), &mut due);
        }
        for slot in due {
            if slot.cancelled.get() {
                continue;
            }
            slot.fired.set(true);
            let w = slot.waker.borrow_mut().take();
            if let Some(w) = w {
                w.wake();
            }
        }
    }

    /// Run `ntodo` entries; those queued meanwhile wait for the next turn.
    fn run_ready<O: Host<H>>(&self, host: &mut O, ntodo: usize) -> Result<(), O::Error> {
        let mut ran = 0u64;
        let mut result = Ok(());
        for _ in 0..ntodo {
            let next = match self.ready.try_borrow_mut() {
                Ok(mut r) => r.pop_front(),
                Err(_) => {
                    result = Err(Error::Reentrant.into());
                    break;
                }
            };
            match next {
                None => break,
                Some(Ready::Host(h)) => {
                    if h.is_cancelled() {
                        continue;
                    }
                    ran += 1;
                    if let Err(e) = host.run(h) {
                        result = Err(e);
                        break;
                    }
                }
                Some(Ready::Task(key)) => {
                    let task = match self.tasks.try_borrow() {
                        Ok(t) => t.get(key),
                        Err(_) => None,
                    };
                    let Some(task) = task else { continue };
                    ran += 1;
                    if crate::runtime::coop::with_budget(|| task.run()) {
                        let removed = self
                            .tasks
                            .try_borrow_mut()
                            .ok()
                            .and_then(|mut t| t.remove(key));
                        drop(removed);
                    }
                }
            }
        }
        self.stats.callbacks_ran(ran);
        result
    }

    // -- closing --------------------------------------------------------------------------

    /// Close the loop: drop every Rust task's future (with this scheduler current, so wakes
    /// during the drops stay local), the Rust timers and waiters, the reactor (its epoll
    /// descriptor), and refuse what other threads send from now on. The host's entries are
    /// handed back. The eventfd stays open until the last reference to it is gone (other
    /// threads may be about to write it); a host that knows better closes it itself.
    pub fn close(self: &Rc<Self>) -> Closed<H>
    where
        H: 'static,
    {
        let mut out = Closed {
            ready: Vec::new(),
            timers: Vec::new(),
            watchers: Vec::new(),
            inbox: Vec::new(),
        };
        if self.closed.replace(true) {
            return out;
        }
        let _enter = Enter::new(self.clone());
        loop {
            let tasks = match self.tasks.try_borrow_mut() {
                Ok(mut slab) => slab.take_all(),
                Err(_) => Vec::new(),
            };
            if tasks.is_empty() {
                break;
            }
            for t in &tasks {
                t.abandon();
            }
            drop(tasks);
        }
        let mut slots = Vec::new();
        if let Ok(mut t) = self.timers.try_borrow_mut() {
            t.drain_into(&mut slots);
        }
        drop(slots);
        let waiters = self
            .io
            .try_borrow_mut()
            .map(|mut io| std::mem::take(&mut *io));
        drop(waiters);
        // Rust work sent from now on is refused (a remote task reports `Cancelled`)
        let items = self.shared.inbox.close();
        // a closure's captures may panic in their drop: the rest is dropped all the same
        for item in items {
            if let Err(payload) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(item)))
            {
                drop(payload);
            }
        }
        out.inbox = self.host_inbox.close();
        if let Ok(mut r) = self.ready.try_borrow_mut() {
            out.ready = r
                .take_all()
                .into_iter()
                .filter_map(|e| match e {
                    Ready::Host(h) => Some(h),
                    Ready::Task(_) => None,
                })
                .collect();
        }
        if let Ok(mut t) = self.host_timers.try_borrow_mut() {
            let mut timers = Vec::new();
            t.drain_into(&mut timers);
            out.timers = timers.into_iter().map(|e| e.0).collect();
        }
        for e in &out.timers {
            e.unscheduled();
        }
        for table in [&self.readers, &self.writers] {
            if let Ok(mut t) = table.try_borrow_mut() {
                out.watchers.extend(std::mem::take(&mut *t).into_values());
            }
        }
        let reactor = self
            .reactor
            .try_borrow_mut()
            .ok()
            .and_then(|mut r| r.take());
        drop(reactor);
        out
    }
}

impl<H: HostEntry> Core for Scheduler<H> {
    fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn wake_local(&self, key: TaskKey) {
        if key == MAIN_KEY {
            self.main_woken.set(true);
        } else if let Ok(mut r) = self.ready.try_borrow_mut() {
            r.push_back(Ready::Task(key));
        } else {
            // the queue is borrowed up the stack (a waker run from inside the scheduler's own
            // bookkeeping): the wake goes the long way, through the inbox
            let _ = self.shared.inbox.push(Remote::Wake(key));
        }
    }

    fn vacant_key(&self) -> TaskKey {
        self.tasks.borrow_mut().vacant_key()
    }

    fn insert_ready(&self, key: TaskKey, task: Rc<dyn Runnable>) {
        self.tasks.borrow_mut().insert(key, task);
        self.ready.borrow_mut().push_back(Ready::Task(key));
    }

    fn add_timer(&self, when: f64, waker: std::task::Waker) -> Rc<TimerSlot> {
        let slot = Rc::new(TimerSlot {
            waker: RefCell::new(Some(waker)),
            fired: Cell::new(false),
            cancelled: Cell::new(false),
        });
        self.timers.borrow_mut().push(when, slot.clone());
        slot
    }

    fn cancel_timer(&self, slot: &TimerSlot) {
        if !slot.fired.get() && !slot.cancelled.replace(true) {
            slot.waker.borrow_mut().take();
            if let Ok(mut t) = self.timers.try_borrow_mut() {
                t.note_cancelled();
            }
        }
    }

    fn register(&self, fd: RawFd) -> io::Result<Rc<IoState>> {
        let mut reactor = self
            .reactor
            .try_borrow_mut()
            .map_err(|_| io::Error::from(Error::Reentrant))?;
        reactor
            .as_mut()
            .ok_or_else(|| io::Error::from(Error::Closed))?
            .add_edge(fd)?;
        let st = Rc::new(IoState {
            read: RefCell::new(Vec::new()),
            write: RefCell::new(Vec::new()),
            // unknown until the first try: try
            readable: Cell::new(true),
            writable: Cell::new(true),
            hangup: Cell::new(false),
        });
        let old = self.io.borrow_mut().insert(fd, st.clone());
        drop(old);
        Ok(st)
    }

    fn deregister(&self, fd: RawFd) {
        let st = self
            .io
            .try_borrow_mut()
            .ok()
            .and_then(|mut io| io.remove(&fd));
        if let Ok(mut r) = self.reactor.try_borrow_mut() {
            if let Some(r) = r.as_mut() {
                // a descriptor closed already has left epoll: nothing to report
                if let Err(e) = r.set_interest(fd, Interest::default()) {
                    debug_assert!(false, "epoll_ctl DEL failed: {e}");
                }
            }
        }
        drop(st);
    }
}

/// The host of a [`crate::Loop`]: Rust tasks only, the native clock.
pub(crate) struct RustHost;

impl Host<NoHost> for RustHost {
    type Error = Error;
    fn now(&mut self) -> Result<f64, Error> {
        Ok(clock::monotonic())
    }
    fn run(&mut self, entry: NoHost) -> Result<(), Error> {
        match entry {}
    }
}
