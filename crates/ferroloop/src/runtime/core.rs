//! What the runtime's futures need from the scheduler that runs them: the [`Core`] seam, the
//! thread-local current scheduler, and the per-task, per-timer and per-descriptor state the
//! scheduler keeps for Rust futures ([`TimerSlot`], [`IoState`], the task [`Slab`]).
//!
//! Decision: the turn itself lives in the engine ([`crate::engine::Scheduler`]), generic over
//! what its host queues beside Rust tasks (nothing for a [`crate::Loop`]; asyncio handles for
//! the Python loop). The runtime reaches it through `dyn Core`, so tasks, timers and sockets
//! need not know the host: one virtual call per spawn, timer or registration, none per poll.
//!
//! Threading: `Core` is loop-thread only (`Rc`); [`Shared`] is its `Send + Sync` half (inbox
//! and eventfd waker). The thread-local `CURRENT` points at the scheduler being run on this
//! thread, for [`crate::spawn`], timers and I/O registration.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::unix::io::RawFd;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;

use super::task::{Header, Runnable, Task, TaskCell, TaskKey};
use crate::engine::timers::Cancellable;
use crate::engine::Inbox;

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

/// The scheduler operations the runtime uses, whatever the scheduler's host.
pub(crate) trait Core {
    /// The part other threads reach.
    fn shared(&self) -> &Arc<Shared>;
    /// Queue task `key` (woken on the loop thread).
    fn wake_local(&self, key: TaskKey);
    /// The key the next spawned task gets.
    fn vacant_key(&self) -> TaskKey;
    /// Add a new task under `key` (from [`vacant_key`](Self::vacant_key)) and queue it.
    fn insert_ready(&self, key: TaskKey, task: Rc<dyn Runnable>);
    /// Schedule a wake-up at `when` (seconds on [`crate::engine::clock::monotonic`]).
    fn add_timer(&self, when: f64, waker: Waker) -> Rc<TimerSlot>;
    /// A pending timer's future was dropped.
    fn cancel_timer(&self, slot: &TimerSlot);
    /// Watch `fd` (edge-triggered, both directions) until [`deregister`](Self::deregister).
    fn register(&self, fd: RawFd) -> io::Result<Rc<IoState>>;
    fn deregister(&self, fd: RawFd);
}

/// Spawn `future` as a task of `core` (may be called outside a running loop on the loop's
/// thread: the task runs when the loop next runs). The new task is ready at once, as
/// asyncio's `create_task` schedules the first step with `call_soon`.
pub(crate) fn spawn_on<F: Future + 'static>(core: &dyn Core, future: F) -> Task<F::Output> {
    let key = core.vacant_key();
    let header = Header::new(key, core.shared().clone());
    header
        .notified
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let cell = TaskCell::new(future, header);
    core.insert_ready(key, cell.clone());
    Task::new(cell)
}

thread_local! {
    static CURRENT: Cell<Option<NonNull<dyn Core>>> = const { Cell::new(None) };
}

/// Queue `key` on the current core's local queue if `shared` is that core's; false otherwise.
pub(crate) fn push_local_if_current(shared: &Arc<Shared>, key: TaskKey) -> bool {
    CURRENT.with(|c| {
        let Some(p) = c.get() else {
            return false;
        };
        // SAFETY: CURRENT is set only while an `Enter` guard on this thread keeps the core
        // alive (it holds an `Rc<dyn Core>`), and it is restored when the guard drops.
        let core = unsafe { p.as_ref() };
        if !Arc::ptr_eq(core.shared(), shared) {
            return false;
        }
        core.wake_local(key);
        true
    })
}

/// Whether the scheduler at `core` (its address) is the current one on this thread.
pub(crate) fn is_current(core: *const ()) -> bool {
    CURRENT.with(|c| c.get().is_some_and(|p| p.as_ptr() as *const () == core))
}

/// Run `f` with the core of the loop running on this thread.
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&Rc<dyn Core>>) -> R) -> R {
    CURRENT.with(|c| {
        let Some(p) = c.get() else {
            return f(None);
        };
        // SAFETY: as in `push_local_if_current`; the guard owns an `Rc<dyn Core>` whose inner
        // pointer is `p` (made by `Rc::as_ptr`), so we can borrow that `Rc` for the call
        // without touching its count (ManuallyDrop).
        let rc = unsafe { Rc::from_raw(p.as_ptr()) };
        let rc = std::mem::ManuallyDrop::new(rc);
        f(Some(&rc))
    })
}

/// The core of the loop running on this thread; panics outside a loop (as tokio does).
pub(crate) fn current() -> Rc<dyn Core> {
    with_current(|c| match c {
        Some(c) => c.clone(),
        None => panic!(
            "no ferroloop loop is running on this thread (use ferroloop::run or Loop::block_on)"
        ),
    })
}

/// Makes a core current on this thread for its lifetime; restores the previous one on drop.
pub(crate) struct Enter {
    prev: Option<NonNull<dyn Core>>,
    core: Rc<dyn Core>,
}

impl Enter {
    pub(crate) fn new(core: Rc<dyn Core>) -> Enter {
        let ptr = NonNull::new(Rc::as_ptr(&core).cast_mut());
        let prev = CURRENT.with(|c| c.replace(ptr));
        Enter { prev, core }
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

pub(crate) struct Slot {
    gen: u32,
    task: Option<Rc<dyn Runnable>>,
}

/// The tasks of a loop, by key; a freed slot's generation changes so that a stale key (a
/// late wake of a finished task) finds nothing.
#[derive(Default)]
pub(crate) struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
    pub(crate) live: usize,
}

fn key_of(slot: u32, gen: u32) -> TaskKey {
    (u64::from(gen) << 32) | u64::from(slot)
}

impl Slab {
    pub(crate) fn vacant_key(&mut self) -> TaskKey {
        match self.free.last() {
            Some(&i) => key_of(i, self.slots[i as usize].gen),
            None => key_of(self.slots.len() as u32, 0),
        }
    }

    pub(crate) fn insert(&mut self, key: TaskKey, task: Rc<dyn Runnable>) {
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

    pub(crate) fn get(&self, key: TaskKey) -> Option<Rc<dyn Runnable>> {
        let s = self.slots.get(key as u32 as usize)?;
        if s.gen != (key >> 32) as u32 {
            return None;
        }
        s.task.clone()
    }

    pub(crate) fn remove(&mut self, key: TaskKey) -> Option<Rc<dyn Runnable>> {
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

    /// Take every task out (the loop is going away).
    pub(crate) fn take_all(&mut self) -> Vec<Rc<dyn Runnable>> {
        let keys: Vec<TaskKey> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.task.is_some())
            .map(|(i, s)| key_of(i as u32, s.gen))
            .collect();
        keys.into_iter().filter_map(|k| self.remove(k)).collect()
    }
}
