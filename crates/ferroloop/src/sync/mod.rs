//! asyncio's synchronisation primitives for Rust futures: [`Lock`], [`Event`], [`Condition`],
//! [`Semaphore`], [`BoundedSemaphore`], [`Queue`], [`LifoQueue`] and [`PriorityQueue`]; and
//! what Rust programs expect beside them: channels ([`mpsc`], [`watch`], [`broadcast`]),
//! [`Notify`], [`Barrier`] and [`RwLock`].
//!
//! | asyncio                       | here                                                  | file             |
//! |-------------------------------|-------------------------------------------------------|------------------|
//! | `Lock`                        | [`Lock`], [`LockGuard`] released on drop              | `lock.rs`        |
//! | `Event`                       | [`Event`]                                             | `event.rs`       |
//! | `Condition`                   | [`Condition`], wait/notify on [`ConditionGuard`]      | `condition.rs`   |
//! | `Semaphore`, `BoundedSemaphore` | [`Semaphore`], [`BoundedSemaphore`], [`SemaphorePermit`], [`OwnedSemaphorePermit`] | `semaphore.rs` |
//! | `Queue`, `LifoQueue`, `PriorityQueue` | [`GenericQueue`] over a [`QueueStorage`]      | `queue.rs`       |
//! | the `_waiters` deques         | `WaiterList` (crate-private)                          | `waiters.rs`     |
//! | (Rust's channels)             | [`mpsc`]: bounded and unbounded, `Send`, a `Stream`    | `mpsc.rs`        |
//! |                               | [`watch`]: the latest value, many watchers             | `watch.rs`       |
//! |                               | [`broadcast`]: every value to every receiver           | `broadcast.rs`   |
//! | (Rust's wake-ups)             | [`Notify`]: `notify_one`, `notify_waiters`             | `notify.rs`      |
//! | `Barrier` (3.11+, no `abort`) | [`Barrier`]: `n` tasks meet, one leads                 | `barrier.rs`     |
//! | (Rust's reader-writer lock)   | [`RwLock`]: fair, read and write guards                | `rwlock.rs`      |
//!
//! The asyncio primitives' semantics are CPython 3.11.7's (FIFO fairness, no barging past queued waiters, the
//! 3.11.x semaphore fairness fix); each file documents the details and the few places where
//! Rust differs. asyncio's exceptions become `Result`s whose errors print asyncio's messages
//! ([`TaskDoneError`], [`BoundedSemaphoreError`], [`TryPutError`], [`TryGetError`],
//! [`QueueShutDown`]), or become
//! impossible by construction (releasing an unheld lock, notifying without the lock). The
//! channels, `Notify`, `Barrier` and `RwLock` behave as tokio's of the same names (their files
//! say how).
//!
//! Cancellation is dropping a pending future. Every future here removes itself from its
//! waiter list on drop and, if it had already been granted a wakeup (a lock hand-over, a
//! semaphore unit, a queue item or slot, a notification), passes it on to the next waiter, as
//! asyncio does in its `except CancelledError` branches. No wakeup is lost.
//!
//! Threading: the channels ([`mpsc`], [`watch`], [`broadcast`]), [`Notify`], [`Barrier`] and
//! [`RwLock`] are `Send` and `Sync` and work between loops and threads.
//! Everything else here is single-thread (`!Send`, `!Sync`; `Cell`/`RefCell` inside),
//! like asyncio's primitives, which are not thread-safe: share them between tasks of one loop
//! with `Rc`. The futures are plain `Waker`-based futures with no dependency on
//! [`crate::runtime`](crate): any single-threaded executor can poll them.
//!
//! ```
//! use ferroloop::sync::{Lock, Queue};
//! futures::executor::block_on(async {
//!     let q = Queue::new(0);
//!     let lock = Lock::new();
//!     q.put(1).await.unwrap();
//!     let _guard = lock.acquire().await;
//!     assert_eq!(q.get().await, Ok(1));
//! });
//! ```

pub mod barrier;
pub mod broadcast;
pub mod condition;
pub mod event;
pub mod lock;
pub mod mpsc;
pub mod notify;
pub mod queue;
pub mod rwlock;
pub mod semaphore;
mod waiters;
mod wakers;
pub mod watch;

pub use barrier::{Barrier, BarrierWait, BarrierWaitResult};
pub use condition::{Condition, ConditionGuard, ConditionLock, ConditionWait};
pub use event::{Event, EventWait};
pub use lock::{Acquire, Lock, LockGuard};
pub use notify::{Notified, Notify};
pub use queue::{
    Fifo, GenericQueue, Get, Join, Lifo, LifoQueue, Priority, PriorityQueue, Put, Queue,
    QueueShutDown, QueueStorage, TaskDoneError, TryGetError, TryPutError,
};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::{
    BoundedSemaphore, BoundedSemaphoreError, OwnedSemaphorePermit, Semaphore, SemaphoreAcquire,
    SemaphorePermit,
};

/// A value could not be sent on a channel ([`mpsc`], [`watch`], [`broadcast`]): its receivers
/// are gone (or closed). The value is handed back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct SendError<T>(pub T);

impl<T> std::fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> std::fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("channel closed")
    }
}

impl<T> std::error::Error for SendError<T> {}

/// Helpers shared by the unit tests of this module.
#[cfg(test)]
pub(crate) mod testing {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Polls `f` once with a no-op waker.
    pub(crate) fn poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        Pin::new(f).poll(&mut Context::from_waker(futures::task::noop_waker_ref()))
    }
}
