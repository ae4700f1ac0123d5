//! [`RwLock`]: many readers or one writer, granted in the order they asked.
//!
//! Owns: the protected value, how many readers hold it, whether a writer does, and the tasks
//! waiting for it, oldest first.
//!
//! Semantics, as tokio's `RwLock`: fair. Access is granted from the front of the queue: a run
//! of readers together, a writer alone. A reader that arrives while a writer waits queues
//! behind the writer (no writer starvation). A waiting future dropped after it was granted
//! access gives it back at once, and the queue moves on: no wakeup is lost.
//!
//! Decision: one `Mutex` around the counts and the queue (wakers called after it is
//! released) and an `UnsafeCell` around the value, reached only through the guards the
//! counts vouch for.
//!
//! Threading: `Send` and `Sync` when `T` is `Send + Sync` (a read guard hands out `&T` to
//! several threads), so the lock can be shared between loops and threads in an `Arc`.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::wakers::{lock, with_lock, WakeList};

struct Waiter {
    key: u64,
    write: bool,
    /// Access was granted (and counted) but the task has not taken it yet.
    granted: bool,
    waker: Option<Waker>,
}

#[derive(Default)]
struct State {
    readers: usize,
    writer: bool,
    waiters: VecDeque<Waiter>,
    next_key: u64,
}

impl State {
    fn can_read(&self) -> bool {
        !self.writer
    }

    fn can_write(&self) -> bool {
        !self.writer && self.readers == 0
    }

    /// Grant access from the front of the queue while it is compatible.
    fn grant(&mut self, wake: &mut WakeList) {
        let (mut readers, mut writer) = (self.readers, self.writer);
        for w in self.waiters.iter_mut().filter(|w| !w.granted) {
            if w.write {
                if writer || readers > 0 {
                    break;
                }
                writer = true;
            } else {
                if writer {
                    break;
                }
                readers += 1;
            }
            w.granted = true;
            wake.extend(w.waker.take());
            if w.write {
                break;
            }
        }
        self.readers = readers;
        self.writer = writer;
    }

    fn release(&mut self, write: bool, wake: &mut WakeList) {
        if write {
            self.writer = false;
        } else {
            self.readers -= 1;
        }
        self.grant(wake);
    }
}

/// A fair reader-writer lock: see the module docs.
pub struct RwLock<T: ?Sized> {
    state: Mutex<State>,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through guards: a write guard exists alone (the counts
// under the mutex guarantee it), so moving the lock to another thread moves a `T` (`Send`).
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}
// SAFETY: sharing the lock lets several threads hold read guards (`&T` on each: `T: Sync`)
// or one thread at a time hold the write guard (`&mut T` sent there: `T: Send`).
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

impl<T: ?Sized> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RwLock").finish_non_exhaustive()
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> Self {
        RwLock::new(T::default())
    }
}

impl<T> RwLock<T> {
    /// A lock around `value`.
    pub fn new(value: T) -> Self {
        RwLock {
            state: Mutex::new(State::default()),
            value: UnsafeCell::new(value),
        }
    }

    /// The value, taking the lock apart.
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn with<R>(&self, f: impl FnOnce(&mut State, &mut WakeList) -> R) -> R {
        with_lock(&self.state, f)
    }

    /// Shared access, when no writer holds the lock or waits before this reader.
    pub fn read(&self) -> Acquire<'_, T, RwLockReadGuard<'_, T>> {
        Acquire::new(self, false)
    }

    /// Exclusive access, when nobody holds the lock or waits before this writer.
    pub fn write(&self) -> Acquire<'_, T, RwLockWriteGuard<'_, T>> {
        Acquire::new(self, true)
    }

    /// Shared access now, or `None`.
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        let mut st = self.lock();
        (st.waiters.is_empty() && st.can_read()).then(|| {
            st.readers += 1;
            RwLockReadGuard { lock: self }
        })
    }

    /// Exclusive access now, or `None`.
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        let mut st = self.lock();
        (st.waiters.is_empty() && st.can_write()).then(|| {
            st.writer = true;
            RwLockWriteGuard { lock: self }
        })
    }

    /// The value, through exclusive ownership of the lock (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }
}

mod sealed {
    /// Only this module can make one, so only [`super::Acquire`] can make a guard.
    pub struct Token(pub(super) ());
}

/// A guard made once access is granted: [`RwLockReadGuard`] or [`RwLockWriteGuard`]
/// (sealed: its method needs a token only this module makes).
pub trait Guard<'a, T: ?Sized>: Sized {
    #[doc(hidden)]
    fn granted(lock: &'a RwLock<T>, token: sealed::Token) -> Self;
}

impl<'a, T: ?Sized> Guard<'a, T> for RwLockReadGuard<'a, T> {
    fn granted(lock: &'a RwLock<T>, _: sealed::Token) -> Self {
        RwLockReadGuard { lock }
    }
}

impl<'a, T: ?Sized> Guard<'a, T> for RwLockWriteGuard<'a, T> {
    fn granted(lock: &'a RwLock<T>, _: sealed::Token) -> Self {
        RwLockWriteGuard { lock }
    }
}

/// The future of [`RwLock::read`] and [`RwLock::write`].
#[must_use = "futures do nothing unless polled"]
pub struct Acquire<'a, T: ?Sized, G> {
    lock: &'a RwLock<T>,
    write: bool,
    key: Option<u64>,
    _guard: std::marker::PhantomData<fn() -> G>,
}

impl<'a, T: ?Sized, G> Acquire<'a, T, G> {
    fn new(lock: &'a RwLock<T>, write: bool) -> Self {
        Acquire {
            lock,
            write,
            key: None,
            _guard: std::marker::PhantomData,
        }
    }
}

impl<'a, T: ?Sized, G: Guard<'a, T>> Future for Acquire<'a, T, G> {
    type Output = G;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<G> {
        let this = &mut *self;
        let lock = this.lock;
        let mut st = lock.lock();
        match this.key {
            None => {
                let free = if this.write {
                    st.can_write()
                } else {
                    st.can_read()
                };
                if st.waiters.is_empty() && free {
                    if this.write {
                        st.writer = true;
                    } else {
                        st.readers += 1;
                    }
                    return Poll::Ready(G::granted(lock, sealed::Token(())));
                }
                let key = st.next_key;
                st.next_key += 1;
                st.waiters.push_back(Waiter {
                    key,
                    write: this.write,
                    granted: false,
                    waker: Some(cx.waker().clone()),
                });
                this.key = Some(key);
                Poll::Pending
            }
            Some(key) => {
                let pos = st
                    .waiters
                    .iter()
                    .position(|w| w.key == key)
                    .expect("a waiter leaves the queue only through its future");
                if st.waiters[pos].granted {
                    st.waiters.remove(pos);
                    this.key = None;
                    Poll::Ready(G::granted(lock, sealed::Token(())))
                } else {
                    let w = &mut st.waiters[pos];
                    match &w.waker {
                        Some(old) if old.will_wake(cx.waker()) => {}
                        _ => w.waker = Some(cx.waker().clone()),
                    }
                    Poll::Pending
                }
            }
        }
    }
}

impl<T: ?Sized, G> Drop for Acquire<'_, T, G> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.lock.with(|st, wake| {
                if let Some(pos) = st.waiters.iter().position(|w| w.key == key) {
                    let w = st.waiters.remove(pos).expect("position is in range");
                    if w.granted {
                        // granted but never taken: give it back
                        st.release(w.write, wake);
                    } else {
                        // a writer leaving the front may let readers behind it in
                        st.grant(wake);
                    }
                }
            });
        }
    }
}

/// Shared access to the value; released on drop.
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard is counted among the readers, so no write guard exists until it
        // is dropped; readers only make shared references.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.with(|st, wake| st.release(false, wake));
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

/// Exclusive access to the value; released on drop.
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard is the lock's only writer and no reader is counted while it
        // lives; `&self` borrows it, so no `&mut` from it is alive.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and `&mut self` makes this the only reference made through the
        // guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.with(|st, wake| st.release(true, wake));
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::testing::poll;

    #[test]
    fn readers_share_and_a_writer_waits_for_them() {
        let lock = RwLock::new(1);
        let r1 = lock.try_read().unwrap();
        let r2 = lock.try_read().unwrap();
        assert_eq!(*r1 + *r2, 2);
        let mut w = lock.write();
        assert!(poll(&mut w).is_pending());
        drop(r1);
        assert!(poll(&mut w).is_pending());
        drop(r2);
        let Poll::Ready(mut g) = poll(&mut w) else {
            panic!("the writer runs once the readers are gone")
        };
        *g += 1;
        drop(g);
        assert_eq!(*lock.try_read().unwrap(), 2);
    }

    #[test]
    fn a_reader_queues_behind_a_waiting_writer() {
        let lock = RwLock::new(0);
        let r = lock.try_read().unwrap();
        let mut w = lock.write();
        assert!(poll(&mut w).is_pending());
        assert!(lock.try_read().is_none(), "no barging past the writer");
        let mut r2 = lock.read();
        assert!(poll(&mut r2).is_pending());
        drop(r);
        let Poll::Ready(g) = poll(&mut w) else {
            panic!("writer first")
        };
        assert!(poll(&mut r2).is_pending());
        drop(g);
        assert!(poll(&mut r2).is_ready());
    }

    #[test]
    fn a_granted_but_dropped_writer_gives_the_lock_back() {
        let lock = RwLock::new(0);
        let r = lock.try_read().unwrap();
        let mut w = lock.write();
        let mut r2 = lock.read();
        assert!(poll(&mut w).is_pending());
        assert!(poll(&mut r2).is_pending());
        drop(r); // granted to the writer
        drop(w); // which never ran: the reader behind it gets in
        assert!(poll(&mut r2).is_ready());
    }

    #[test]
    fn a_waiting_writer_that_leaves_lets_readers_in() {
        let lock = RwLock::new(0);
        let r = lock.try_read().unwrap();
        let mut w = lock.write();
        let mut r2 = lock.read();
        assert!(poll(&mut w).is_pending());
        assert!(poll(&mut r2).is_pending());
        drop(w);
        assert!(
            poll(&mut r2).is_ready(),
            "the writer left the front: readers share"
        );
        drop(r);
    }
}
