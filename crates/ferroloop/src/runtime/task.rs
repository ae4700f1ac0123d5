//! Tasks: a spawned future, its waker and the [`Task`] handle that awaits or cancels it.
//!
//! Decision: a task is two allocations. The future, its output and the join state live in
//! one `Rc` (`TaskCell`, loop-thread only, reached through the loop's slab); the waker is an
//! `Arc<Header>` holding only what another thread may touch: the "notified" flag, the task's
//! key and the loop's shared half. A wake on the loop thread pushes the key to the local ready
//! queue; from another thread it goes through the loop's inbox and wakes the reactor.
//!
//! Exactly once: a task is queued only when its flag goes from clear to set, and the flag is
//! cleared just before the poll, so any number of wakes before a poll cause one poll, and a
//! wake during the poll causes one more. The future is dropped exactly once, on the loop
//! thread: when it completes, when it is cancelled, or when the loop is dropped.
//!
//! Threading: `TaskCell` and [`Task`] are `!Send` (loop thread); `Header` is `Send + Sync`.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use super::core::{Remote, Shared};

/// A task's slot in the loop's slab and the slot's generation, packed (`gen << 32 | slot`).
pub(crate) type TaskKey = u64;

/// The key of the future given to `block_on`: polled in place, never in the slab.
pub(crate) const MAIN_KEY: TaskKey = u64::MAX;

/// The part of a task other threads may see: what a [`Waker`] holds.
pub(crate) struct Header {
    pub(crate) notified: AtomicBool,
    pub(crate) key: TaskKey,
    pub(crate) shared: Arc<Shared>,
}

impl Header {
    pub(crate) fn new(key: TaskKey, shared: Arc<Shared>) -> Arc<Header> {
        Arc::new(Header {
            notified: AtomicBool::new(false),
            key,
            shared,
        })
    }

    fn schedule(&self) {
        if self.notified.swap(true, Ordering::AcqRel) {
            return; // already queued
        }
        if !super::core::push_local_if_current(&self.shared, self.key) {
            if let Err(refused) = self.shared.inbox.push(Remote::Wake(self.key)) {
                // the loop is gone: there is nothing left to wake
                drop(refused);
            }
        }
    }
}

impl Wake for Header {
    fn wake(self: Arc<Self>) {
        self.schedule();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.schedule();
    }
}

/// Why a [`Task`] produced no value.
pub enum JoinError {
    /// The task was cancelled ([`Task::cancel`], or its loop was dropped) and its future dropped.
    Cancelled,
    /// The task's future panicked; the payload is kept for [`JoinError::into_panic`].
    Panic(Box<dyn Any + Send + 'static>),
}

impl JoinError {
    /// Whether the task was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JoinError::Cancelled)
    }

    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panic(_))
    }

    /// The panic payload (resume it with `std::panic::resume_unwind`); panics if the task
    /// was cancelled instead.
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        match self {
            JoinError::Panic(p) => p,
            JoinError::Cancelled => panic!("the task was cancelled, it did not panic"),
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => f.write_str("JoinError::Cancelled"),
            JoinError::Panic(p) => write!(f, "JoinError::Panic({:?})", panic_message(p.as_ref())),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => f.write_str("task was cancelled"),
            JoinError::Panic(p) => write!(f, "task panicked: {}", panic_message(p.as_ref())),
        }
    }
}

impl std::error::Error for JoinError {}

pub(crate) fn panic_message(p: &(dyn Any + Send)) -> &str {
    if let Some(s) = p.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = p.downcast_ref::<String>() {
        s
    } else {
        "<non-string panic payload>"
    }
}

const RUNNING: u8 = 1;
const CANCEL_REQUESTED: u8 = 2;
const DONE: u8 = 4;
const DETACHED: u8 = 8;
/// The future is being dropped (`drop_future`).
const DROPPING: u8 = 16;

/// What the loop's slab holds: something it can poll and drop.
pub(crate) trait Runnable {
    /// Poll the future once (if it is still there). Returns true when the task is finished
    /// and its slot can be freed.
    fn run(&self) -> bool;
    /// Drop the future without completing it (the loop is going away).
    fn abandon(&self);
}

/// A spawned future with its output and its awaiting handle's waker.
pub(crate) struct TaskCell<F: Future> {
    /// Pinned in place: the `Rc` allocation never moves and the future is only ever dropped
    /// in place (set to `None`).
    future: RefCell<Option<F>>,
    output: RefCell<Option<Result<F::Output, JoinError>>>,
    join_waker: RefCell<Option<Waker>>,
    header: Arc<Header>,
    waker: Waker,
    state: Cell<u8>,
}

impl<F: Future> TaskCell<F> {
    pub(crate) fn new(future: F, header: Arc<Header>) -> Rc<Self> {
        let waker = Waker::from(header.clone());
        Rc::new(TaskCell {
            future: RefCell::new(Some(future)),
            output: RefCell::new(None),
            join_waker: RefCell::new(None),
            header,
            waker,
            state: Cell::new(0),
        })
    }

    fn has(&self, flag: u8) -> bool {
        self.state.get() & flag != 0
    }

    fn set(&self, flag: u8) {
        self.state.set(self.state.get() | flag);
    }

    fn finish(&self, result: Result<F::Output, JoinError>) {
        self.set(DONE);
        if !self.has(DETACHED) {
            *self.output.borrow_mut() = Some(result);
        } else {
            drop(result);
        }
        let waker = self.join_waker.borrow_mut().take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Drop the future now, where it lies: it is pinned (an `async` block may hold borrows of
    /// its own locals), so it must not be moved out first. A panic in that drop is caught and
    /// returned: it becomes the task's result, and never unwinds through the loop (or through
    /// `Loop::drop`).
    ///
    /// The slot stays borrowed during the drop, which may run arbitrary code: a re-entrant
    /// `run` finds it borrowed and leaves, a re-entrant `cancel` finds `DROPPING` and leaves.
    fn drop_future(&self) -> Result<(), Box<dyn Any + Send>> {
        if self.has(DROPPING) {
            return Ok(());
        }
        let Ok(mut slot) = self.future.try_borrow_mut() else {
            // being polled: the poll's end sees CANCEL_REQUESTED (`cancel`)
            return Ok(());
        };
        let Some(fut) = slot.as_mut() else {
            return Ok(());
        };
        let fut: *mut F = fut;
        self.set(DROPPING);
        // SAFETY: `fut` points into the `Rc` allocation, which never moves, and the slot is
        // borrowed for the whole drop, so nothing else reaches the future meanwhile. It is
        // dropped in place once; then the slot is overwritten with `None` by `ptr::write`,
        // which does not drop the old value again (also after a panic in the drop, when the
        // drop glue has already dropped the remaining fields).
        let dropped = catch_unwind(AssertUnwindSafe(|| unsafe { std::ptr::drop_in_place(fut) }));
        // SAFETY: as above: the old value counts as dropped, and `*slot` is a valid place.
        unsafe { std::ptr::write(&mut *slot, None) };
        drop(slot);
        self.state.set(self.state.get() & !DROPPING);
        dropped
    }

    /// Drop the future, then finish with `result`, or with the drop's panic if it panicked.
    fn drop_and_finish(&self, result: Result<F::Output, JoinError>) {
        match self.drop_future() {
            Ok(()) => self.finish(result),
            Err(payload) => match result {
                // the first panic is the task's; a second one (its future's drop) is dropped
                Err(JoinError::Panic(first)) => {
                    drop(payload);
                    self.finish(Err(JoinError::Panic(first)));
                }
                other => {
                    drop(other);
                    self.finish(Err(JoinError::Panic(payload)));
                }
            },
        }
    }
}

impl<F: Future> Runnable for TaskCell<F> {
    fn run(&self) -> bool {
        if self.has(DONE) {
            return true;
        }
        self.header.notified.store(false, Ordering::Release);
        let mut slot = match self.future.try_borrow_mut() {
            Ok(s) => s,
            Err(_) => return false, // polled re-entrantly: cannot happen, be safe anyway
        };
        let Some(fut) = slot.as_mut() else {
            return true;
        };
        self.set(RUNNING);
        // SAFETY: the future lives inside the task's `Rc` allocation, which never moves, and
        // it is only dropped in place (the `Option` set to `None`); it is never moved out.
        let pinned = unsafe { Pin::new_unchecked(fut) };
        let mut cx = Context::from_waker(&self.waker);
        let polled = catch_unwind(AssertUnwindSafe(|| pinned.poll(&mut cx)));
        drop(slot);
        self.state.set(self.state.get() & !RUNNING);
        match polled {
            Ok(Poll::Ready(v)) => {
                self.drop_and_finish(Ok(v));
                true
            }
            Ok(Poll::Pending) => {
                if self.has(CANCEL_REQUESTED) {
                    self.drop_and_finish(Err(JoinError::Cancelled));
                    true
                } else {
                    false
                }
            }
            Err(payload) => {
                self.drop_and_finish(Err(JoinError::Panic(payload)));
                true
            }
        }
    }

    fn abandon(&self) {
        if !self.has(DONE) {
            self.drop_and_finish(Err(JoinError::Cancelled));
        }
    }
}

/// The untyped side of a task, seen by an [`AbortHandle`].
trait Abort {
    fn cancel(&self) -> bool;
    fn is_finished(&self) -> bool;
}

/// The typed side of a task, seen by its [`Task`] handle.
trait JoinState<T> {
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<T, JoinError>>;
    fn cancel(&self) -> bool;
    fn is_finished(&self) -> bool;
    fn detach(&self);
    /// The same task, untyped (for an [`AbortHandle`]).
    fn as_abort(self: Rc<Self>) -> Rc<dyn Abort>;
}

impl<F: Future + 'static> Abort for TaskCell<F> {
    fn cancel(&self) -> bool {
        JoinState::cancel(self)
    }

    fn is_finished(&self) -> bool {
        JoinState::is_finished(self)
    }
}

impl<F: Future + 'static> JoinState<F::Output> for TaskCell<F> {
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<F::Output, JoinError>> {
        if let Some(out) = self.output.borrow_mut().take() {
            return Poll::Ready(out);
        }
        if self.has(DONE) {
            // the output was already taken: awaiting a finished task twice
            return Poll::Ready(Err(JoinError::Cancelled));
        }
        let mut w = self.join_waker.borrow_mut();
        match w.as_ref() {
            Some(old) if old.will_wake(cx.waker()) => {}
            _ => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    fn cancel(&self) -> bool {
        if self.has(DONE) || self.has(DROPPING) {
            // finished, or finishing: its future is being dropped right now
            return false;
        }
        if self.has(RUNNING) {
            // cancelled from inside its own poll: finished when the poll returns
            self.set(CANCEL_REQUESTED);
            return true;
        }
        // a panic in the future's drop becomes the result instead of unwinding into the
        // caller of `cancel`
        self.drop_and_finish(Err(JoinError::Cancelled));
        // let the loop free the slot on its next turn
        self.waker.wake_by_ref();
        true
    }

    fn is_finished(&self) -> bool {
        self.has(DONE)
    }

    fn detach(&self) {
        self.set(DETACHED);
        let out = self.output.borrow_mut().take();
        drop(out);
    }

    fn as_abort(self: Rc<Self>) -> Rc<dyn Abort> {
        self
    }
}

/// A handle to a task spawned on a loop: await it for the task's result, or cancel it.
///
/// Awaiting yields `Ok(value)`, or `Err(JoinError::Cancelled)` if the task was cancelled,
/// or `Err(JoinError::Panic(_))` if its future panicked (the loop goes on running).
/// Dropping the handle detaches the task: it keeps running, as an asyncio task does.
///
/// `Task` is `!Send`: it belongs to the loop thread, like the task itself.
pub struct Task<T> {
    state: Rc<dyn JoinState<T>>,
}

impl<T> Task<T> {
    pub(crate) fn new<F: Future<Output = T> + 'static>(cell: Rc<TaskCell<F>>) -> Task<T> {
        Task { state: cell }
    }

    /// Cancel the task: its future is dropped (at once, or when its current poll returns
    /// if it cancels itself) and awaiting the handle yields [`JoinError::Cancelled`].
    /// Returns false if the task had already finished.
    pub fn cancel(&self) -> bool {
        self.state.cancel()
    }

    /// Whether the task has finished (completed, panicked or been cancelled).
    pub fn is_finished(&self) -> bool {
        self.state.is_finished()
    }

    /// Let the task run on with nobody waiting for it (what dropping the handle does).
    pub fn detach(self) {}

    /// A handle that can cancel the task without awaiting it (and without its type).
    pub fn abort_handle(&self) -> AbortHandle {
        AbortHandle {
            state: Rc::clone(&self.state).as_abort(),
        }
    }
}

/// Cancels a task without owning its [`Task`] handle: from [`Task::abort_handle`] or
/// [`JoinSet::spawn`](crate::JoinSet::spawn). Dropping it does nothing to the task.
///
/// `!Send`, like the task: use it on the loop's thread.
#[derive(Clone)]
pub struct AbortHandle {
    state: Rc<dyn Abort>,
}

impl AbortHandle {
    /// Cancel the task, as [`Task::cancel`]. Returns false if it had already finished.
    pub fn abort(&self) -> bool {
        self.state.cancel()
    }

    /// Whether the task has finished (completed, panicked or been cancelled).
    pub fn is_finished(&self) -> bool {
        self.state.is_finished()
    }
}

impl fmt::Debug for AbortHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.state.poll_join(cx)
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.state.detach();
    }
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("finished", &self.is_finished())
            .finish()
    }
}
