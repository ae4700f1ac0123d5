//! [`Lock`]: asyncio's `Lock`, a mutual-exclusion lock that is FIFO fair.
//!
//! Owns: the locked flag and the FIFO of tasks blocked in [`Lock::acquire`]. Releasing happens
//! when the [`LockGuard`] is dropped, so asyncio's `RuntimeError('Lock is not acquired.')`
//! (releasing an unlocked lock) cannot be written.
//!
//! Semantics follow CPython 3.11 `asyncio.Lock` line by line:
//! - `acquire` takes the lock at once only if it is unlocked **and no task is waiting**, so a
//!   newcomer never barges past the queue.
//! - release sets the lock unlocked and wakes the first waiter (`_wake_up_first`); that waiter
//!   takes the lock when its task next runs. Between the two, [`Lock::locked`] is false, as in
//!   asyncio, but [`Lock::try_acquire`] still fails because the woken waiter is queued.
//! - a pending `acquire` future that is dropped (cancelled) leaves the queue; if the lock is
//!   unlocked at that moment it wakes the next waiter, so a wakeup granted to it is passed on.
//!
//! Threading: single thread (`!Send`, `!Sync`), like asyncio's lock: share it between tasks of
//! one loop with `Rc` or a borrow.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::waiters::{WaiterKey, WaiterList};

/// A FIFO-fair asynchronous mutual-exclusion lock (asyncio's `Lock`).
///
/// ```
/// use ferroloop::sync::Lock;
/// futures::executor::block_on(async {
///     let lock = Lock::new();
///     let guard = lock.acquire().await;
///     assert!(lock.locked());
///     assert!(lock.try_acquire().is_none());
///     drop(guard);
///     assert!(!lock.locked());
/// });
/// ```
#[derive(Default)]
pub struct Lock {
    locked: Cell<bool>,
    waiters: WaiterList,
}

impl Lock {
    /// A new, unlocked lock.
    pub const fn new() -> Self {
        Lock {
            locked: Cell::new(false),
            waiters: WaiterList::new(),
        }
    }

    /// True if the lock is held (asyncio's `locked()`).
    pub fn locked(&self) -> bool {
        self.locked.get()
    }

    /// Number of tasks queued in [`Lock::acquire`], including a woken one that has not run yet.
    pub fn waiters(&self) -> usize {
        self.waiters.len()
    }

    /// Takes the lock if that is possible without waiting: it is unlocked and nobody is queued.
    pub fn try_acquire(&self) -> Option<LockGuard<'_>> {
        if self.locked.get() || !self.waiters.is_empty() {
            return None;
        }
        self.locked.set(true);
        Some(LockGuard { lock: self })
    }

    /// Waits for the lock and takes it; the returned guard releases it when dropped.
    ///
    /// Dropping the future before it completes is asyncio's cancellation: the task leaves
    /// the queue and never holds the lock.
    pub fn acquire(&self) -> Acquire<'_> {
        Acquire {
            lock: self,
            state: AcquireState::Start,
        }
    }

    /// asyncio's `release()`; only reachable through [`LockGuard`]'s drop.
    fn release(&self) {
        self.locked.set(false);
        self.waiters.wake_first();
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("locked", &self.locked.get())
            .field("waiters", &self.waiters.len())
            .finish()
    }
}

/// Proof that a [`Lock`] is held; dropping it releases the lock and wakes the first waiter.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl<'a> LockGuard<'a> {
    /// The lock this guard holds.
    pub fn lock(&self) -> &'a Lock {
        self.lock
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.release();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

enum AcquireState {
    Start,
    Waiting(WaiterKey),
    Done,
}

/// Future returned by [`Lock::acquire`].
#[must_use = "futures do nothing unless polled"]
pub struct Acquire<'a> {
    lock: &'a Lock,
    state: AcquireState,
}

impl<'a> Future for Acquire<'a> {
    type Output = LockGuard<'a>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<LockGuard<'a>> {
        let lock = self.lock;
        match self.state {
            AcquireState::Start => {
                if let Some(guard) = lock.try_acquire() {
                    self.state = AcquireState::Done;
                    return Poll::Ready(guard);
                }
                self.state = AcquireState::Waiting(lock.waiters.push(cx.waker()));
                Poll::Pending
            }
            AcquireState::Waiting(key) => {
                if !lock.waiters.take_if_woken(key, cx) {
                    return Poll::Pending;
                }
                // Only the head is ever woken, and only while the lock is free; nobody can
                // take it in between because this waiter was still queued.
                self.state = AcquireState::Done;
                lock.locked.set(true);
                Poll::Ready(LockGuard { lock })
            }
            AcquireState::Done => panic!("`Acquire` polled after completion"),
        }
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        if let AcquireState::Waiting(key) = self.state {
            // asyncio: `except CancelledError: if not self._locked: self._wake_up_first()`.
            if self.lock.waiters.remove(key).is_some() && !self.lock.locked.get() {
                self.lock.waiters.wake_first();
            }
        }
    }
}

impl fmt::Debug for Acquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::testing::poll;
    use futures::executor::{block_on, LocalPool};
    use futures::task::LocalSpawnExt;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn waiters_get_the_lock_in_fifo_order() {
        let mut pool = LocalPool::new();
        let spawner = pool.spawner();
        let lock = Rc::new(Lock::new());
        let order = Rc::new(RefCell::new(Vec::new()));
        let first = lock.try_acquire().unwrap();
        for i in 0..5 {
            let (lock, order) = (lock.clone(), order.clone());
            spawner
                .spawn_local(async move {
                    let _g = lock.acquire().await;
                    order.borrow_mut().push(i);
                })
                .unwrap();
        }
        pool.run_until_stalled();
        assert_eq!(lock.waiters(), 5);
        drop(first);
        pool.run();
        assert_eq!(*order.borrow(), vec![0, 1, 2, 3, 4]);
        assert!(!lock.locked());
    }

    #[test]
    fn newcomer_cannot_barge_past_a_woken_waiter() {
        let lock = Lock::new();
        let g = lock.try_acquire().unwrap();
        let mut waiter = lock.acquire();
        assert!(poll(&mut waiter).is_pending());
        drop(g);
        // Released, the first waiter is woken but has not run yet.
        assert!(!lock.locked());
        assert!(lock.try_acquire().is_none());
        let mut newcomer = lock.acquire();
        assert!(poll(&mut newcomer).is_pending());
        let g = match poll(&mut waiter) {
            Poll::Ready(g) => g,
            Poll::Pending => panic!("woken waiter must get the lock"),
        };
        assert!(poll(&mut newcomer).is_pending());
        drop(g);
        assert!(poll(&mut newcomer).is_ready());
    }

    #[test]
    fn cancelled_woken_waiter_passes_the_lock_on() {
        let lock = Lock::new();
        let g = lock.try_acquire().unwrap();
        let mut a = lock.acquire();
        let mut b = lock.acquire();
        assert!(poll(&mut a).is_pending());
        assert!(poll(&mut b).is_pending());
        drop(g); // wakes a
        drop(a); // a is cancelled after its wakeup: b must be woken
        assert!(!lock.locked());
        assert!(poll(&mut b).is_ready());
        assert!(!lock.locked(), "guard dropped at once");
        assert_eq!(lock.waiters(), 0);
    }

    #[test]
    fn cancelled_pending_waiter_leaves_the_queue() {
        let lock = Lock::new();
        let g = lock.try_acquire().unwrap();
        let mut a = lock.acquire();
        let mut b = lock.acquire();
        assert!(poll(&mut a).is_pending());
        assert!(poll(&mut b).is_pending());
        drop(a);
        assert_eq!(lock.waiters(), 1);
        drop(g);
        let g = match poll(&mut b) {
            Poll::Ready(g) => g,
            Poll::Pending => panic!("b is the only waiter"),
        };
        assert!(lock.locked());
        drop(g);
        assert!(lock.try_acquire().is_some());
    }

    #[test]
    fn acquire_is_immediate_when_free() {
        block_on(async {
            let lock = Lock::new();
            {
                let _g = lock.acquire().await;
                assert!(lock.locked());
            }
            let _g = lock.acquire().await;
            assert!(lock.locked());
        });
    }
}
