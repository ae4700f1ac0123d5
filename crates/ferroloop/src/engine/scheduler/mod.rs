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
//!    descriptors reported ready; Rust tasks waiting on them are woken; then the host's
//!    [`Host::woke`] (after a poll that may have blocked);
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
//! Files: this one holds the types and the host's API; `turn.rs` the turn; `runtime.rs` the
//! Rust runtime's view (`dyn Core`) and closing.
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

use crate::engine::clock;
use crate::engine::ready_queue::ReadyQueue;
use crate::engine::timers::{Cancellable, TimerHeap};
use crate::engine::{Event, FdMap, Inbox, LoopStats, Reactor, Waker};
use crate::runtime::core::{spawn_on, Enter, IoState, Remote, Shared, Slab, TimerSlot};
use crate::runtime::task::TaskKey;
use crate::runtime::LoopGuard;
use crate::Task;

mod runtime;
mod turn;

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
        match self.watch_borrowed(fd, write, entry, once) {
            Ok(old) => Ok(old),
            Err((e, entry)) => {
                // refused: the entry is dropped with nothing borrowed
                drop(entry);
                Err(e)
            }
        }
    }

    fn watch_borrowed(
        &self,
        fd: RawFd,
        write: bool,
        entry: H,
        once: bool,
    ) -> Result<Option<H>, (Error, H)> {
        let Ok(mut reactor) = self.reactor.try_borrow_mut() else {
            return Err((Error::Reentrant, entry));
        };
        let Some(reactor) = reactor.as_mut() else {
            return Err((Error::Closed, entry));
        };
        let table = if write { &self.writers } else { &self.readers };
        let Ok(mut table) = table.try_borrow_mut() else {
            return Err((Error::Reentrant, entry));
        };
        let mut interest = reactor.interest(fd);
        if write {
            interest.write = true;
        } else {
            interest.read = true;
        }
        let set = if once {
            reactor.set_interest_oneshot(fd, interest)
        } else {
            reactor.set_interest(fd, interest)
        };
        match set {
            Ok(()) => Ok(table.insert(fd, entry)),
            Err(e) => Err((Error::Io(e), entry)),
        }
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

    /// Whether `fd` is watched for reading (or writing, with `write`); false while the
    /// registrations are borrowed (never during a host's entry).
    pub fn is_watched(&self, fd: RawFd, write: bool) -> bool {
        let table = if write { &self.writers } else { &self.readers };
        table.try_borrow().is_ok_and(|t| t.contains_key(&fd))
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
