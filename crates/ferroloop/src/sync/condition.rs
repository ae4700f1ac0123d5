//! [`Condition`]: asyncio's `Condition`, a condition variable over a [`Lock`].
//!
//! Owns: the FIFO of tasks blocked in [`ConditionGuard::wait`]; the lock is an `Rc<Lock>`,
//! private to the condition ([`Condition::new`]) or shared by several conditions
//! ([`Condition::with_lock`], asyncio's `Condition(lock)`).
//!
//! Decision: `wait` and `notify` are methods of the [`ConditionGuard`] returned by
//! [`Condition::lock`], so asyncio's two `RuntimeError`s ("cannot wait on un-acquired lock",
//! "cannot notify on un-acquired lock") cannot be written: the guard exists only while the lock
//! is held, and it belongs to one condition. The one runtime check left is moving a guard to
//! another condition sharing the same lock ([`ConditionGuard::rebind`]), which returns the
//! guard back as an error if the locks differ.
//!
//! Semantics follow CPython 3.11 `asyncio.Condition`:
//! - `wait` releases the lock, waits for a notification, then re-acquires the lock (FIFO,
//!   behind other lock waiters) before returning the guard.
//! - `notify(n)` wakes the first `n` waiters not already notified; it does not release the
//!   lock, so woken tasks return from `wait` only after the notifier drops its guard.
//! - cancellation (dropping the `wait` future) cannot re-acquire the lock as asyncio does in
//!   its `finally` (a destructor cannot wait); the guard was moved into `wait`, so the task
//!   simply no longer holds it. A notification received by a cancelled waiter is passed to the
//!   next waiter, following the fix of CPython 3.13 (gh-112202), so no wakeup is lost; this may
//!   cause a spurious wakeup, which condition-variable users must tolerate anyway
//!   ([`ConditionGuard::wait_for`] loops on its predicate).
//!
//! Threading: single thread (`!Send`, `!Sync`), like asyncio's.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::lock::{Acquire, Lock, LockGuard};
use super::waiters::{WaiterKey, WaiterList};

/// An asynchronous condition variable (asyncio's `Condition`).
///
/// ```
/// use ferroloop::sync::Condition;
/// use std::cell::Cell;
/// futures::executor::block_on(async {
///     let cond = Condition::new();
///     let ready = Cell::new(true);
///     let guard = cond.lock().await;
///     let guard = guard.wait_for(|| ready.get()).await; // true already: no wait
///     guard.notify_all();
/// });
/// ```
pub struct Condition {
    lock: Rc<Lock>,
    waiters: WaiterList,
}

impl Condition {
    /// A condition with its own new lock.
    pub fn new() -> Self {
        Condition::with_lock(Rc::new(Lock::new()))
    }

    /// A condition over an existing lock, which other conditions may share.
    pub fn with_lock(lock: Rc<Lock>) -> Self {
        Condition {
            lock,
            waiters: WaiterList::new(),
        }
    }

    /// The underlying lock.
    pub fn shared_lock(&self) -> &Rc<Lock> {
        &self.lock
    }

    /// True if the underlying lock is held.
    pub fn locked(&self) -> bool {
        self.lock.locked()
    }

    /// Number of tasks blocked in `wait` (including notified ones that have not run).
    pub fn waiters(&self) -> usize {
        self.waiters.len()
    }

    /// Acquires the underlying lock (asyncio's `acquire()` / `async with cond`).
    pub fn lock(&self) -> ConditionLock<'_> {
        ConditionLock {
            cond: self,
            acquire: self.lock.acquire(),
        }
    }

    /// Acquires the underlying lock if that is possible without waiting.
    pub fn try_lock(&self) -> Option<ConditionGuard<'_>> {
        self.lock
            .try_acquire()
            .map(|guard| ConditionGuard { cond: self, guard })
    }
}

impl Default for Condition {
    fn default() -> Self {
        Condition::new()
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("locked", &self.lock.locked())
            .field("waiters", &self.waiters.len())
            .finish()
    }
}

/// The held lock of a [`Condition`]; the only way to wait and notify. Dropping it releases the
/// lock.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    guard: LockGuard<'a>,
}

impl<'a> ConditionGuard<'a> {
    /// The condition this guard belongs to.
    pub fn condition(&self) -> &'a Condition {
        self.cond
    }

    /// Releases the lock, waits until notified, re-acquires the lock and returns the guard.
    pub fn wait(self) -> ConditionWait<'a> {
        ConditionWait {
            cond: self.cond,
            state: WaitState::Start(self.guard),
        }
    }

    /// Waits (as [`ConditionGuard::wait`], repeatedly) until `predicate` returns true; the
    /// predicate is evaluated with the lock held, first before any wait.
    pub async fn wait_for<F: FnMut() -> bool>(self, mut predicate: F) -> ConditionGuard<'a> {
        let mut guard = self;
        while !predicate() {
            guard = guard.wait().await;
        }
        guard
    }

    /// Wakes up to `n` waiting tasks not yet notified, oldest first; returns how many. They
    /// return from `wait` once they re-acquire the lock, i.e. after this guard is dropped.
    pub fn notify(&self, n: usize) -> usize {
        self.cond.waiters.wake(n)
    }

    /// Wakes every waiting task; returns how many.
    pub fn notify_all(&self) -> usize {
        self.cond.waiters.wake_all()
    }

    /// Moves the held lock over to `other`, which must share it (see
    /// [`Condition::with_lock`]): e.g. to notify `not_empty` while holding the lock through
    /// `not_full`.
    ///
    /// # Errors
    /// Gives the guard back unchanged if `other` has a different lock.
    pub fn rebind(self, other: &'a Condition) -> Result<ConditionGuard<'a>, ConditionGuard<'a>> {
        if Rc::ptr_eq(&self.cond.lock, &other.lock) {
            Ok(ConditionGuard {
                cond: other,
                guard: self.guard,
            })
        } else {
            Err(self)
        }
    }
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard").finish_non_exhaustive()
    }
}

/// Future returned by [`Condition::lock`].
#[must_use = "futures do nothing unless polled"]
pub struct ConditionLock<'a> {
    cond: &'a Condition,
    acquire: Acquire<'a>,
}

impl<'a> Future for ConditionLock<'a> {
    type Output = ConditionGuard<'a>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ConditionGuard<'a>> {
        let cond = self.cond;
        Pin::new(&mut self.acquire)
            .poll(cx)
            .map(|guard| ConditionGuard { cond, guard })
    }
}

impl fmt::Debug for ConditionLock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionLock").finish_non_exhaustive()
    }
}

enum WaitState<'a> {
    /// Not polled yet: still holding the lock.
    Start(LockGuard<'a>),
    /// Lock released, queued for a notification.
    Waiting(WaiterKey),
    /// Notified, re-acquiring the lock.
    Reacquiring(Acquire<'a>),
    Done,
}

/// Future returned by [`ConditionGuard::wait`].
#[must_use = "futures do nothing unless polled"]
pub struct ConditionWait<'a> {
    cond: &'a Condition,
    state: WaitState<'a>,
}

impl<'a> Future for ConditionWait<'a> {
    type Output = ConditionGuard<'a>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ConditionGuard<'a>> {
        let cond = self.cond;
        loop {
            match std::mem::replace(&mut self.state, WaitState::Done) {
                WaitState::Start(guard) => {
                    drop(guard);
                    self.state = WaitState::Waiting(cond.waiters.push(cx.waker()));
                    return Poll::Pending;
                }
                WaitState::Waiting(key) => {
                    if !cond.waiters.take_if_woken(key, cx) {
                        self.state = WaitState::Waiting(key);
                        return Poll::Pending;
                    }
                    self.state = WaitState::Reacquiring(cond.lock.acquire());
                }
                WaitState::Reacquiring(mut acquire) => {
                    return match Pin::new(&mut acquire).poll(cx) {
                        Poll::Ready(guard) => Poll::Ready(ConditionGuard { cond, guard }),
                        Poll::Pending => {
                            self.state = WaitState::Reacquiring(acquire);
                            Poll::Pending
                        }
                    };
                }
                WaitState::Done => panic!("`ConditionWait` polled after completion"),
            }
        }
    }
}

impl Drop for ConditionWait<'_> {
    fn drop(&mut self) {
        let pass_on = match &self.state {
            WaitState::Waiting(key) => self.cond.waiters.remove(*key) == Some(true),
            // Notified, then cancelled while re-acquiring the lock (gh-112202).
            WaitState::Reacquiring(_) => true,
            WaitState::Start(_) | WaitState::Done => false,
        };
        if pass_on {
            self.cond.waiters.wake_next();
        }
    }
}

impl fmt::Debug for ConditionWait<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionWait").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::testing::poll;
    use futures::executor::LocalPool;
    use futures::task::LocalSpawnExt;
    use std::cell::{Cell, RefCell};

    fn ready<T>(p: Poll<T>) -> T {
        match p {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("expected Ready"),
        }
    }

    /// Spawns `n` tasks that wait on `cond` once and record their index when they return.
    fn spawn_waiters(
        pool: &LocalPool,
        cond: &Rc<Condition>,
        log: &Rc<RefCell<Vec<usize>>>,
        n: usize,
    ) {
        for i in 0..n {
            let (cond, log) = (cond.clone(), log.clone());
            pool.spawner()
                .spawn_local(async move {
                    let g = cond.lock().await;
                    let g = g.wait().await;
                    assert!(cond.locked(), "wait returns with the lock held");
                    log.borrow_mut().push(i);
                    drop(g);
                })
                .unwrap();
        }
    }

    #[test]
    fn notify_one_wakes_exactly_one_in_fifo_order() {
        let mut pool = LocalPool::new();
        let cond = Rc::new(Condition::new());
        let log = Rc::new(RefCell::new(Vec::new()));
        spawn_waiters(&pool, &cond, &log, 3);
        pool.run_until_stalled();
        assert_eq!(cond.waiters(), 3);
        assert!(!cond.locked(), "waiters released the lock");

        let g = cond.try_lock().unwrap();
        assert_eq!(g.notify(1), 1);
        pool.run_until_stalled();
        assert!(log.borrow().is_empty(), "woken waiter needs the lock first");
        drop(g);
        pool.run_until_stalled();
        assert_eq!(*log.borrow(), vec![0]);
        assert_eq!(cond.waiters(), 2);

        let g = cond.try_lock().unwrap();
        assert_eq!(g.notify_all(), 2);
        drop(g);
        pool.run_until_stalled();
        assert_eq!(*log.borrow(), vec![0, 1, 2]);
    }

    #[test]
    fn notify_skips_already_notified_waiters() {
        let cond = Condition::new();
        let mut a = cond.try_lock().unwrap().wait();
        assert!(poll(&mut a).is_pending());
        let mut b = cond.try_lock().unwrap().wait();
        assert!(poll(&mut b).is_pending());
        let g = cond.try_lock().unwrap();
        assert_eq!(g.notify(1), 1);
        assert_eq!(g.notify(1), 1, "second notify goes to b, not a again");
        assert_eq!(g.notify(1), 0);
        drop(g);
        drop(ready(poll(&mut a)));
        drop(ready(poll(&mut b)));
    }

    #[test]
    fn cancelled_notified_waiter_passes_the_notification_on() {
        let cond = Condition::new();
        let mut a = cond.try_lock().unwrap().wait();
        assert!(poll(&mut a).is_pending());
        let mut b = cond.try_lock().unwrap().wait();
        assert!(poll(&mut b).is_pending());
        let g = cond.try_lock().unwrap();
        g.notify(1); // a
        drop(g);
        drop(a);
        let g = ready(poll(&mut b));
        assert!(cond.locked());
        drop(g);
        assert_eq!(cond.waiters(), 0);
    }

    #[test]
    fn cancelled_while_reacquiring_passes_the_notification_on() {
        let cond = Condition::new();
        let mut a = cond.try_lock().unwrap().wait();
        assert!(poll(&mut a).is_pending());
        let mut b = cond.try_lock().unwrap().wait();
        assert!(poll(&mut b).is_pending());
        let g = cond.try_lock().unwrap();
        g.notify(1); // a
        assert!(poll(&mut a).is_pending(), "notified, but the lock is held");
        assert!(poll(&mut b).is_pending());
        drop(a); // cancelled during re-acquisition
        drop(g);
        drop(ready(poll(&mut b)));
        assert!(!cond.locked());
    }

    #[test]
    fn cancelled_unnotified_waiter_just_leaves() {
        let cond = Condition::new();
        let mut a = cond.try_lock().unwrap().wait();
        assert!(poll(&mut a).is_pending());
        let mut b = cond.try_lock().unwrap().wait();
        assert!(poll(&mut b).is_pending());
        drop(a);
        assert_eq!(cond.waiters(), 1);
        assert!(!cond.locked());
        assert!(poll(&mut b).is_pending(), "no notification was sent");
    }

    #[test]
    fn wait_for_loops_until_predicate_holds() {
        let mut pool = LocalPool::new();
        let cond = Rc::new(Condition::new());
        let value = Rc::new(Cell::new(0));
        let done = Rc::new(Cell::new(false));
        {
            let (cond, value, done) = (cond.clone(), value.clone(), done.clone());
            pool.spawner()
                .spawn_local(async move {
                    let g = cond.lock().await;
                    let _g = g.wait_for(|| value.get() >= 3).await;
                    done.set(true);
                })
                .unwrap();
        }
        for n in 1..=3 {
            pool.run_until_stalled();
            assert!(!done.get());
            let g = cond.try_lock().unwrap();
            value.set(n);
            g.notify_all();
        }
        pool.run_until_stalled();
        assert!(done.get());
    }

    #[test]
    fn rebind_requires_a_shared_lock() {
        let lock = Rc::new(Lock::new());
        let not_empty = Condition::with_lock(lock.clone());
        let not_full = Condition::with_lock(lock.clone());
        let other = Condition::new();
        let g = not_full.try_lock().unwrap();
        assert!(not_empty.try_lock().is_none(), "one lock for both");
        let g = match g.rebind(&other) {
            Ok(_) => panic!("different lock"),
            Err(g) => g,
        };
        let g = match g.rebind(&not_empty) {
            Ok(g) => g,
            Err(_) => panic!("same lock"),
        };
        assert!(std::ptr::eq(g.condition(), &not_empty));
        drop(g);
        assert!(!lock.locked());
    }
}
