//! The loop's core: the task slab and ready queue, the timer heap of wakers, the I/O
//! waiters, and one turn of the loop over them.
//!
//! Decision: the Rust runtime has its own epoll ([`Reactor`]) with descriptors registered
//! edge-triggered once (`EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET`): an I/O future tries
//! its syscall first and parks its waker only on `EWOULDBLOCK`, so no registration changes
//! per wait. Embedded in the Python loop, this epoll is one more readable descriptor in the
//! Python loop's own epoll, plus a deadline and a "ready now" flag (see [`Core::embedded_timeout`]).
//!
//! A turn (asyncio's `_run_once` order): poll with a timeout (zero if work is ready), wake
//! the I/O waiters, drain the cross-thread inbox, wake the due timers, then poll exactly the
//! tasks that were ready when the run phase began; tasks woken meanwhile run next turn.
//!
//! Threading: `Core` is loop-thread only (`Rc`); [`Shared`] is its `Send + Sync` half (inbox
//! and eventfd waker). The thread-local `CURRENT` points at the core whose loop is being
//! run on this thread, for [`crate::spawn`], timers and I/O registration.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::os::unix::io::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;

use super::task::{Header, Runnable, Task, TaskCell, TaskKey, MAIN_KEY};
use crate::engine::timers::{Cancellable, TimerHeap};
use crate::engine::{clock, Event, Inbox, Reactor};

/// What other threads send to the loop.
pub(crate) enum Remote {
    /// A task woken from another thread.
    Wake(TaskKey),
    /// A closure to run on the loop thread ([`crate::LoopHandle::call`], remote spawns).
    Call(Box<dyn FnOnce() + Send>),
}

/// The part of the loop other threads reach.
pub(crate) struct Shared {
    pub(crate) inbox: Inbox<Remote>,
}

thread_local! {
    static CURRENT: Cell<*const Core> = const { Cell::new(std::ptr::null()) };
}

/// Queue `key` on the current core's local queue if `shared` is that core's; false otherwise.
pub(crate) fn push_local_if_current(shared: &Arc<Shared>, key: TaskKey) -> bool {
    CURRENT.with(|c| {
        let p = c.get();
        if p.is_null() {
            return false;
        }
        // SAFETY: CURRENT is non-null only while an `Enter` guard on this thread keeps the
        // core alive (it holds an `Rc<Core>`), and it is reset when the guard drops.
        let core = unsafe { &*p };
        if !Arc::ptr_eq(&core.shared, shared) {
            return false;
        }
        core.wake_local(key);
        true
    })
}

/// Run `f` with the core of the loop running on this thread.
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&Rc<Core>>) -> R) -> R {
    CURRENT.with(|c| {
        let p = c.get();
        if p.is_null() {
            return f(None);
        }
        // SAFETY: as in `push_local_if_current`; the guard owns an `Rc<Core>` whose inner
        // pointer is `p`, so we can borrow that `Rc` for the call.
        let rc = unsafe { Rc::from_raw(p) };
        let rc = std::mem::ManuallyDrop::new(rc);
        f(Some(&rc))
    })
}

/// The core of the loop running on this thread; panics outside a loop (as tokio does).
pub(crate) fn current() -> Rc<Core> {
    with_current(|c| match c {
        Some(c) => c.clone(),
        None => panic!(
            "no ferroloop loop is running on this thread (use ferroloop::run or Loop::block_on)"
        ),
    })
}

/// Makes a core current on this thread for its lifetime; restores the previous one on drop.
pub(crate) struct Enter {
    prev: *const Core,
    core: Rc<Core>,
}

impl Enter {
    pub(crate) fn new(core: &Rc<Core>) -> Enter {
        let prev = CURRENT.with(|c| c.replace(Rc::as_ptr(core)));
        Enter {
            prev,
            core: core.clone(),
        }
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.prev));
        let _keep_alive_until_here = &self.core;
    }
}

/// A scheduled wake-up of a [`crate::sleep`] (shared between the heap and the future).
pub(crate) struct TimerSlot {
    pub(crate) waker: RefCell<Option<Waker>>,
    pub(crate) fired: Cell<bool>,
    pub(crate) cancelled: Cell<bool>,
}

impl Cancellable for Rc<TimerSlot> {
    fn is_cancelled(&self) -> bool {
        self.cancelled.get()
    }
}

/// One registered descriptor: its parked wakers and what the reactor last said of it.
///
/// Readiness is remembered per direction (set by an event, cleared by `EWOULDBLOCK` or by a
/// short read or write, which means the kernel buffer was drained or filled): an I/O future
/// whose direction is known not ready parks without trying the syscall. Measured on the
/// 1 KiB echo: one failing `recvfrom` per message and side without it (tokio does the same).
pub(crate) struct IoState {
    /// The tasks waiting for each direction; readiness wakes them all.
    pub(crate) read: RefCell<Vec<Waker>>,
    pub(crate) write: RefCell<Vec<Waker>>,
    pub(crate) readable: Cell<bool>,
    pub(crate) writable: Cell<bool>,
    /// The peer hung up (or an error is pending): reads never block again, so readiness is
    /// no longer cleared by a short read (no further edge would come to set it).
    pub(crate) hangup: Cell<bool>,
}

struct Slot {
    gen: u32,
    task: Option<Rc<dyn Runnable>>,
}

#[derive(Default)]
struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

fn key_of(slot: u32, gen: u32) -> TaskKey {
    (u64::from(gen) << 32) | u64::from(slot)
}

impl Slab {
    fn vacant_key(&mut self) -> TaskKey {
        match self.free.last() {
            Some(&i) => key_of(i, self.slots[i as usize].gen),
            None => key_of(self.slots.len() as u32, 0),
        }
    }

    fn insert(&mut self, key: TaskKey, task: Rc<dyn Runnable>) {
        let i = key as u32;
        if self.free.last() == Some(&i) {
            self.free.pop();
            self.slots[i as usize].task = Some(task);
        } else {
            debug_assert_eq!(i as usize, self.slots.len());
            self.slots.push(Slot {
                gen: 0,
                task: Some(task),
            });
        }
        self.live += 1;
    }

    fn get(&self, key: TaskKey) -> Option<Rc<dyn Runnable>> {
        let s = self.slots.get(key as u32 as usize)?;
        if s.gen != (key >> 32) as u32 {
            return None;
        }
        s.task.clone()
    }

    fn remove(&mut self, key: TaskKey) -> Option<Rc<dyn Runnable>> {
        let i = key as u32;
        let s = self.slots.get_mut(i as usize)?;
        if s.gen != (key >> 32) as u32 || s.task.is_none() {
            return None;
        }
        s.gen = s.gen.wrapping_add(1);
        self.free.push(i);
        self.live -= 1;
        s.task.take()
    }
}

/// The loop-thread state of one loop.
pub(crate) struct Core {
    pub(crate) shared: Arc<Shared>,
    reactor: RefCell<Reactor>,
    events: RefCell<Vec<Event>>,
    io: RefCell<HashMap<RawFd, Rc<IoState>>>,
    timers: RefCell<TimerHeap<Rc<TimerSlot>>>,
    tasks: RefCell<Slab>,
    ready: RefCell<VecDeque<TaskKey>>,
    remote: RefCell<Vec<Remote>>,
    main_woken: Cell<bool>,
    closed: Cell<bool>,
    /// Consecutive turns that found tasks ready (see [`Core::turn`]).
    busy_turns: Cell<u32>,
}

/// While tasks are ready, the reactor is looked at once per this many turns (tokio's
/// current-thread scheduler uses a similar interval, 61 polls). Measured with
/// `benches/vs_tokio.rs`: `yield_now` 202 ns per step when looking every turn, 33 ns with 32.
const BUSY_POLL_INTERVAL: u32 = 32;

impl Core {
    pub(crate) fn new() -> io::Result<Rc<Core>> {
        let waker = Arc::new(crate::engine::Waker::new()?);
        let mut reactor = Reactor::new()?;
        reactor.register_waker(&waker)?;
        Ok(Rc::new(Core {
            shared: Arc::new(Shared {
                inbox: Inbox::new(waker),
            }),
            reactor: RefCell::new(reactor),
            events: RefCell::new(Vec::new()),
            io: RefCell::new(HashMap::new()),
            timers: RefCell::new(TimerHeap::new()),
            tasks: RefCell::new(Slab::default()),
            ready: RefCell::new(VecDeque::new()),
            remote: RefCell::new(Vec::new()),
            main_woken: Cell::new(true),
            closed: Cell::new(false),
            busy_turns: Cell::new(0),
        }))
    }

    fn wake_local(&self, key: TaskKey) {
        if key == MAIN_KEY {
            self.main_woken.set(true);
        } else {
            self.ready.borrow_mut().push_back(key);
        }
    }

    /// Spawn `future` as a task of this loop (may be called from outside a running loop on
    /// the loop's thread: the task runs when the loop next runs).
    pub(crate) fn spawn<F: Future + 'static>(&self, future: F) -> Task<F::Output> {
        let mut tasks = self.tasks.borrow_mut();
        let key = tasks.vacant_key();
        let header = Header::new(key, self.shared.clone());
        // the new task is ready: queue it directly, as asyncio's create_task schedules the
        // first step with call_soon
        header
            .notified
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let cell = TaskCell::new(future, header);
        tasks.insert(key, cell.clone());
        drop(tasks);
        self.ready.borrow_mut().push_back(key);
        Task::new(cell)
    }

    /// Number of live tasks.
    pub(crate) fn task_count(&self) -> usize {
        self.tasks.borrow().live
    }

    /// Whether the main future was woken (and clear the flag).
    pub(crate) fn take_main_woken(&self) -> bool {
        self.main_woken.replace(false)
    }

    // -- timers -------------------------------------------------------------------------

    /// Schedule a wake-up at `when` (seconds on [`clock::monotonic`]).
    pub(crate) fn add_timer(&self, when: f64, waker: Waker) -> Rc<TimerSlot> {
        let slot = Rc::new(TimerSlot {
            waker: RefCell::new(Some(waker)),
            fired: Cell::new(false),
            cancelled: Cell::new(false),
        });
        self.timers.borrow_mut().push(when, slot.clone());
        slot
    }

    /// A pending timer's future was dropped.
    pub(crate) fn cancel_timer(&self, slot: &TimerSlot) {
        if !slot.fired.get() && !slot.cancelled.replace(true) {
            slot.waker.borrow_mut().take();
            if let Ok(mut t) = self.timers.try_borrow_mut() {
                t.note_cancelled();
            }
        }
    }

    // -- I/O ----------------------------------------------------------------------------

    /// Watch `fd` (edge-triggered, both directions) until [`deregister`](Self::deregister).
    pub(crate) fn register(&self, fd: RawFd) -> io::Result<Rc<IoState>> {
        self.reactor.borrow_mut().add_edge(fd)?;
        let st = Rc::new(IoState {
            read: RefCell::new(Vec::new()),
            write: RefCell::new(Vec::new()),
            // unknown until the first try: try
            readable: Cell::new(true),
            writable: Cell::new(true),
            hangup: Cell::new(false),
        });
        self.io.borrow_mut().insert(fd, st.clone());
        Ok(st)
    }

    pub(crate) fn deregister(&self, fd: RawFd) {
        let st = self.io.borrow_mut().remove(&fd);
        if let Ok(mut r) = self.reactor.try_borrow_mut() {
            // a descriptor closed already has left epoll: nothing to report
            if let Err(e) = r.set_interest(fd, crate::engine::Interest::default()) {
                debug_assert!(false, "epoll_ctl DEL failed: {e}");
            }
        }
        drop(st);
    }

    // -- one turn -----------------------------------------------------------------------

    /// Whether there is work to do without waiting.
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.borrow().is_empty() || self.main_woken.get()
    }

    /// The earliest timer deadline, cancelled ones purged first.
    pub(crate) fn next_deadline(&self) -> Option<f64> {
        let mut dropped = Vec::new();
        let mut t = self.timers.borrow_mut();
        if t.cancelled_count() > 0 {
            t.purge_cancelled(&mut dropped);
        }
        let d = t.next_deadline();
        drop(t);
        drop(dropped);
        d
    }

    /// How long the embedding loop may sleep for this core's sake (`Some(0.0)`: not at all).
    pub(crate) fn embedded_timeout(&self) -> Option<f64> {
        if self.has_ready() || self.shared.inbox.has_pending() {
            return Some(0.0);
        }
        self.next_deadline()
            .map(|when| (when - clock::monotonic()).max(0.0))
    }

    /// The epoll descriptor (readable when this core has I/O or a cross-thread wake).
    pub(crate) fn as_raw_fd(&self) -> RawFd {
        self.reactor.borrow().as_raw_fd()
    }

    /// One turn. `block`: whether the poll may wait (otherwise it only looks); a blocking
    /// turn with tasks ready looks at I/O only every [`BUSY_POLL_INTERVAL`] turns (the inbox
    /// is still drained every turn: its flag is an atomic, not a syscall). A host loop's turn
    /// (`block` false) always looks: the host calls it because the descriptor is readable.
    pub(crate) fn turn(&self, block: bool) -> io::Result<()> {
        if self.closed.get() {
            return Err(io::Error::other("the loop is closed"));
        }
        let busy = self.has_ready();
        let timeout = if !block || busy {
            Some(0.0)
        } else {
            self.next_deadline()
                .map(|when| (when - clock::monotonic()).max(0.0))
        };
        let look = if block && busy {
            let n = self.busy_turns.get().wrapping_add(1);
            self.busy_turns.set(n);
            n.is_multiple_of(BUSY_POLL_INTERVAL)
        } else {
            self.busy_turns.set(0);
            true
        };
        if look {
            self.poll_io(timeout)?;
        }
        self.drain_remote();
        self.fire_timers();
        self.run_ready();
        Ok(())
    }

    fn poll_io(&self, timeout: Option<f64>) -> io::Result<()> {
        let mut events = self.events.borrow_mut();
        events.clear();
        {
            let mut r = self.reactor.borrow_mut();
            let ev = r.poll(timeout)?;
            events.extend_from_slice(ev);
            if r.take_woken() {
                self.shared.inbox.waker().reset();
            }
        }
        let mut wake = Vec::new();
        {
            let io = self.io.borrow();
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
        }
        drop(events);
        for w in wake {
            w.wake();
        }
        Ok(())
    }

    fn drain_remote(&self) {
        if !self.shared.inbox.has_pending() {
            return;
        }
        let mut items = std::mem::take(&mut *self.remote.borrow_mut());
        self.shared.inbox.drain_into(&mut items);
        for item in items.drain(..) {
            match item {
                Remote::Wake(key) => self.wake_local(key),
                Remote::Call(f) => f(),
            }
        }
        *self.remote.borrow_mut() = items;
    }

    fn fire_timers(&self) {
        let mut due = Vec::new();
        {
            let mut t = self.timers.borrow_mut();
            if t.is_empty() {
                return;
            }
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

    /// Poll the tasks that are ready now; those woken meanwhile wait for the next turn.
    pub(crate) fn run_ready(&self) {
        let n = self.ready.borrow().len();
        for _ in 0..n {
            let Some(key) = self.ready.borrow_mut().pop_front() else {
                break;
            };
            let Some(task) = self.tasks.borrow().get(key) else {
                continue;
            };
            if super::coop::with_budget(|| task.run()) {
                let removed = self.tasks.borrow_mut().remove(key);
                drop(removed);
            }
        }
    }

    /// Drop every task's future, then the timers and waiters (the loop is going away).
    /// Runs with this core current, so wakes during the drops stay local.
    pub(crate) fn shutdown(&self) {
        if self.closed.replace(true) {
            return;
        }
        loop {
            let tasks: Vec<Rc<dyn Runnable>> = {
                let mut slab = self.tasks.borrow_mut();
                let keys: Vec<TaskKey> = slab
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.task.is_some())
                    .map(|(i, s)| key_of(i as u32, s.gen))
                    .collect();
                keys.into_iter().filter_map(|k| slab.remove(k)).collect()
            };
            if tasks.is_empty() {
                break;
            }
            for t in &tasks {
                t.abandon();
            }
            drop(tasks);
        }
        let mut dropped = Vec::new();
        self.timers.borrow_mut().drain_into(&mut dropped);
        drop(dropped);
        let waiters = std::mem::take(&mut *self.io.borrow_mut());
        drop(waiters);
        self.ready.borrow_mut().clear();
        // Remote work sent from now on is refused (a remote task reports `Cancelled`). The
        // eventfd is not closed here: other threads may be about to wake it, so it lives
        // until the last `LoopHandle` and task waker are gone (`Waker`'s drop).
        let items = self.shared.inbox.close();
        // a closure's captures may panic in their drop: the rest is dropped all the same
        for item in items {
            if let Err(payload) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(item)))
            {
                drop(payload);
            }
        }
    }
}
