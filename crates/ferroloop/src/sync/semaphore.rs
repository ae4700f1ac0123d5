//! [`Semaphore`] and [`BoundedSemaphore`]: asyncio's counting semaphores.
//!
//! Owns: the counter, the optional bound, and the FIFO of tasks blocked in `acquire`. A
//! successful acquire returns a [`SemaphorePermit`] that gives its unit back when dropped
//! (asyncio's `async with sem:`); [`SemaphorePermit::forget`] keeps the unit taken, and
//! `release()` adds a unit by hand (asyncio's `release()`).
//!
//! Semantics follow CPython 3.11.7, including the fairness fix of 3.11.x (gh-90155):
//! - [`Semaphore::locked`] is true when the counter is zero **or any task is queued**, and
//!   `acquire` only takes a unit at once when not `locked()`. A newcomer cannot steal the unit
//!   meant for a queued task.
//! - release hands the unit to the first pending waiter at once (`_wake_up_next` decrements the
//!   counter as it wakes), so the woken task owns it even before it runs.
//! - a woken task, when it runs, wakes the next waiter if units are left over.
//! - a dropped (cancelled) acquire that had been woken gives its unit back and wakes the next
//!   waiter: no unit and no wakeup is lost.
//!
//! asyncio's `ValueError` for a negative initial value cannot happen (`usize`).
//! [`BoundedSemaphore::release`] returns [`BoundedSemaphoreError`] where asyncio raises
//! `ValueError('BoundedSemaphore released too many times')`. A [`SemaphorePermit`] of a bounded
//! semaphore dropped when the counter is already at its bound (possible only after a manual
//! `release()`) gives nothing back, since a destructor cannot report the error.
//!
//! Threading: single thread (`!Send`, `!Sync`), like asyncio's.

use std::cell::Cell;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::waiters::{WaiterKey, WaiterList};

/// A FIFO-fair counting semaphore (asyncio's `Semaphore`).
///
/// ```
/// use ferroloop::sync::Semaphore;
/// futures::executor::block_on(async {
///     let sem = Semaphore::new(2);
///     let a = sem.acquire().await;
///     let _b = sem.acquire().await;
///     assert!(sem.locked());
///     drop(a);
///     assert_eq!(sem.available(), 1);
/// });
/// ```
pub struct Semaphore {
    value: Cell<usize>,
    /// `Some(initial)` for a [`BoundedSemaphore`].
    bound: Option<usize>,
    waiters: WaiterList,
}

impl Semaphore {
    /// A semaphore with `value` units available.
    pub const fn new(value: usize) -> Self {
        Semaphore {
            value: Cell::new(value),
            bound: None,
            waiters: WaiterList::new(),
        }
    }

    /// True if [`Semaphore::acquire`] would wait: no unit is free, or tasks are queued ahead.
    pub fn locked(&self) -> bool {
        self.value.get() == 0 || !self.waiters.is_empty()
    }

    /// Number of free units (asyncio's `_value`). Units already handed to a woken task that has
    /// not run yet are not counted.
    pub fn available(&self) -> usize {
        self.value.get()
    }

    /// Number of tasks queued in [`Semaphore::acquire`] (including woken ones not yet run).
    pub fn waiters(&self) -> usize {
        self.waiters.len()
    }

    /// Takes a unit if that is possible without waiting (see [`Semaphore::locked`]).
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        if self.locked() {
            return None;
        }
        self.value.set(self.value.get() - 1);
        Some(SemaphorePermit { sem: self })
    }

    /// Waits for a unit and takes it; the permit gives it back when dropped.
    ///
    /// Dropping the future before it completes is asyncio's cancellation: the task leaves the
    /// queue, and a unit already handed to it goes to the next waiter.
    pub fn acquire(&self) -> SemaphoreAcquire<'_> {
        SemaphoreAcquire {
            sem: self,
            state: AcquireState::Start,
        }
    }

    /// [`acquire`](Semaphore::acquire) for a permit that owns a reference to the semaphore
    /// (`'static`: keep it in a struct or move it into a spawned task). Cancelling the
    /// future is as for `acquire`.
    pub async fn acquire_owned(self: Rc<Self>) -> OwnedSemaphorePermit {
        self.acquire().await.forget();
        OwnedSemaphorePermit { sem: Some(self) }
    }

    /// [`try_acquire`](Semaphore::try_acquire) for an owned permit.
    pub fn try_acquire_owned(self: Rc<Self>) -> Option<OwnedSemaphorePermit> {
        self.try_acquire()?.forget();
        Some(OwnedSemaphorePermit { sem: Some(self) })
    }

    /// Adds a unit and wakes the first waiter (asyncio's `release()`), without a permit.
    /// Saturates at `usize::MAX`.
    pub fn release(&self) {
        self.value.set(self.value.get().saturating_add(1));
        self.wake_up_next();
    }

    /// asyncio's `_wake_up_next`: hand one free unit to the first pending waiter.
    fn wake_up_next(&self) {
        if self.value.get() > 0 && self.waiters.wake_next() {
            self.value.set(self.value.get() - 1);
        }
    }

    /// Release with the bound check of [`BoundedSemaphore`].
    fn release_checked(&self) -> Result<(), BoundedSemaphoreError> {
        if let Some(bound) = self.bound {
            if self.value.get() >= bound {
                return Err(BoundedSemaphoreError);
            }
        }
        self.release();
        Ok(())
    }
}

impl Default for Semaphore {
    /// asyncio's default: one unit.
    fn default() -> Self {
        Semaphore::new(1)
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value.get())
            .field("bound", &self.bound)
            .field("waiters", &self.waiters.len())
            .finish()
    }
}

/// A semaphore that refuses to be released above its initial value (asyncio's
/// `BoundedSemaphore`).
///
/// ```
/// use ferroloop::sync::BoundedSemaphore;
/// let sem = BoundedSemaphore::new(1);
/// let permit = sem.try_acquire().unwrap();
/// permit.forget();
/// assert!(sem.release().is_ok());
/// assert_eq!(sem.release().unwrap_err().to_string(), "BoundedSemaphore released too many times");
/// ```
#[derive(Debug)]
pub struct BoundedSemaphore {
    sem: Semaphore,
}

impl BoundedSemaphore {
    /// A semaphore with `value` units, which is also its bound.
    pub const fn new(value: usize) -> Self {
        BoundedSemaphore {
            sem: Semaphore {
                value: Cell::new(value),
                bound: Some(value),
                waiters: WaiterList::new(),
            },
        }
    }

    /// The initial value, above which [`BoundedSemaphore::release`] fails.
    pub fn bound(&self) -> usize {
        self.sem.bound.unwrap_or(usize::MAX)
    }

    /// See [`Semaphore::locked`].
    pub fn locked(&self) -> bool {
        self.sem.locked()
    }

    /// See [`Semaphore::available`].
    pub fn available(&self) -> usize {
        self.sem.available()
    }

    /// See [`Semaphore::waiters`].
    pub fn waiters(&self) -> usize {
        self.sem.waiters()
    }

    /// See [`Semaphore::try_acquire`].
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        self.sem.try_acquire()
    }

    /// See [`Semaphore::acquire`].
    pub fn acquire(&self) -> SemaphoreAcquire<'_> {
        self.sem.acquire()
    }

    /// Adds a unit by hand and wakes the first waiter (asyncio's `release()`).
    ///
    /// # Errors
    /// [`BoundedSemaphoreError`], changing nothing, if the counter is already at its bound.
    pub fn release(&self) -> Result<(), BoundedSemaphoreError> {
        self.sem.release_checked()
    }
}

impl Default for BoundedSemaphore {
    /// asyncio's default: one unit.
    fn default() -> Self {
        BoundedSemaphore::new(1)
    }
}

/// A [`BoundedSemaphore`] was released above its initial value (asyncio's `ValueError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundedSemaphoreError;

impl fmt::Display for BoundedSemaphoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoundedSemaphore released too many times")
    }
}

impl Error for BoundedSemaphoreError {}

/// One unit taken from a [`Semaphore`] or [`BoundedSemaphore`]; given back when dropped.
#[must_use = "the unit is given back as soon as the permit is dropped"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
}

impl SemaphorePermit<'_> {
    /// Keeps the unit taken: the permit is consumed without releasing (the counter stays
    /// decremented, as after a bare asyncio `acquire()` with no `release()`).
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        // Over-release of a bounded semaphore cannot be reported from a destructor; the unit
        // is dropped instead (see the module docs).
        if self.sem.release_checked().is_err() {
            // at the bound already (after a manual release): nothing to add
        }
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit").finish_non_exhaustive()
    }
}

/// A unit taken from a [`Semaphore`] by [`Semaphore::acquire_owned`]; given back when
/// dropped. It keeps the semaphore alive.
#[must_use = "the unit is given back as soon as the permit is dropped"]
pub struct OwnedSemaphorePermit {
    /// `None` once forgotten.
    sem: Option<Rc<Semaphore>>,
}

impl OwnedSemaphorePermit {
    /// Keeps the unit taken (see [`SemaphorePermit::forget`]).
    pub fn forget(mut self) {
        self.sem = None;
    }

    /// The semaphore this permit came from.
    pub fn semaphore(&self) -> &Rc<Semaphore> {
        self.sem
            .as_ref()
            .expect("a permit is forgotten only by consuming it")
    }
}

impl Drop for OwnedSemaphorePermit {
    fn drop(&mut self) {
        if let Some(sem) = self.sem.take() {
            if sem.release_checked().is_err() {
                // at the bound already (after a manual release): nothing to add
            }
        }
    }
}

impl fmt::Debug for OwnedSemaphorePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedSemaphorePermit")
            .finish_non_exhaustive()
    }
}

enum AcquireState {
    Start,
    Waiting(WaiterKey),
    Done,
}

/// Future returned by [`Semaphore::acquire`] and [`BoundedSemaphore::acquire`].
#[must_use = "futures do nothing unless polled"]
pub struct SemaphoreAcquire<'a> {
    sem: &'a Semaphore,
    state: AcquireState,
}

impl<'a> Future for SemaphoreAcquire<'a> {
    type Output = SemaphorePermit<'a>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SemaphorePermit<'a>> {
        let sem = self.sem;
        match self.state {
            AcquireState::Start => {
                if let Some(permit) = sem.try_acquire() {
                    self.state = AcquireState::Done;
                    return Poll::Ready(permit);
                }
                self.state = AcquireState::Waiting(sem.waiters.push(cx.waker()));
                Poll::Pending
            }
            AcquireState::Waiting(key) => {
                if !sem.waiters.take_if_woken(key, cx) {
                    return Poll::Pending;
                }
                // The unit was taken from the counter when this waiter was woken.
                self.state = AcquireState::Done;
                sem.wake_up_next();
                Poll::Ready(SemaphorePermit { sem })
            }
            AcquireState::Done => panic!("`SemaphoreAcquire` polled after completion"),
        }
    }
}

impl Drop for SemaphoreAcquire<'_> {
    fn drop(&mut self) {
        if let AcquireState::Waiting(key) = self.state {
            if self.sem.waiters.remove(key) == Some(true) {
                // Woken then cancelled: give the unit handed to us to the next waiter.
                self.sem.release();
            }
        }
    }
}

impl fmt::Debug for SemaphoreAcquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreAcquire").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_permits_give_their_unit_back_and_keep_the_semaphore() {
        let sem = Rc::new(Semaphore::new(1));
        let permit = Rc::clone(&sem).try_acquire_owned().expect("a free unit");
        assert!(Rc::clone(&sem).try_acquire_owned().is_none());
        assert!(Rc::ptr_eq(permit.semaphore(), &sem));
        drop(sem);
        let sem = Rc::clone(permit.semaphore());
        drop(permit);
        assert_eq!(sem.available(), 1);
        let mut fut = Box::pin(Rc::clone(&sem).acquire_owned());
        let Poll::Ready(p) = crate::sync::testing::poll(&mut fut) else {
            panic!("free unit: at once")
        };
        p.forget();
        assert_eq!(sem.available(), 0, "forgotten: the unit stays taken");
    }
    use crate::sync::testing::poll;
    use futures::executor::LocalPool;
    use futures::task::LocalSpawnExt;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn waiters_are_served_in_fifo_order() {
        let mut pool = LocalPool::new();
        let sem = Rc::new(Semaphore::new(0));
        let order = Rc::new(RefCell::new(Vec::new()));
        for i in 0..4 {
            let (sem, order) = (sem.clone(), order.clone());
            pool.spawner()
                .spawn_local(async move {
                    sem.acquire().await.forget();
                    order.borrow_mut().push(i);
                })
                .unwrap();
        }
        pool.run_until_stalled();
        assert_eq!(sem.waiters(), 4);
        sem.release();
        pool.run_until_stalled();
        assert_eq!(*order.borrow(), vec![0]);
        sem.release();
        sem.release();
        sem.release();
        pool.run_until_stalled();
        assert_eq!(*order.borrow(), vec![0, 1, 2, 3]);
        assert_eq!(sem.available(), 0);
    }

    #[test]
    fn newcomer_cannot_take_a_unit_meant_for_a_queued_task() {
        // The 3.11.x fairness fix: the released unit belongs to the woken waiter.
        let sem = Semaphore::new(1);
        let held = sem.try_acquire().unwrap();
        let mut waiter = sem.acquire();
        assert!(poll(&mut waiter).is_pending());
        drop(held);
        assert_eq!(sem.available(), 0, "unit handed to the woken waiter");
        assert!(sem.locked());
        assert!(sem.try_acquire().is_none());
        let mut newcomer = sem.acquire();
        assert!(poll(&mut newcomer).is_pending());
        let permit = match poll(&mut waiter) {
            Poll::Ready(p) => p,
            Poll::Pending => panic!("woken waiter must get its unit"),
        };
        assert!(poll(&mut newcomer).is_pending());
        drop(permit);
        assert!(poll(&mut newcomer).is_ready());
    }

    #[test]
    fn released_units_go_to_waiters_in_order_even_if_they_run_out_of_order() {
        let sem = Semaphore::new(0);
        let mut a = sem.acquire();
        let mut b = sem.acquire();
        let mut c = sem.acquire();
        for f in [&mut a, &mut b, &mut c] {
            assert!(poll(f).is_pending());
        }
        sem.release(); // unit to a
        sem.release(); // unit to b
        assert_eq!(sem.available(), 0);
        let pb = match poll(&mut b) {
            Poll::Ready(p) => p,
            Poll::Pending => panic!("b was handed a unit"),
        };
        assert!(poll(&mut c).is_pending());
        let pa = match poll(&mut a) {
            Poll::Ready(p) => p,
            Poll::Pending => panic!("a was handed a unit"),
        };
        assert!(poll(&mut c).is_pending());
        drop(pb);
        assert!(poll(&mut c).is_ready());
        drop(pa);
        assert_eq!(
            sem.available(),
            2,
            "permits returned, c's dropped with its future"
        );
    }

    #[test]
    fn cancelled_woken_waiter_passes_its_unit_on() {
        let sem = Semaphore::new(0);
        let mut a = sem.acquire();
        let mut b = sem.acquire();
        assert!(poll(&mut a).is_pending());
        assert!(poll(&mut b).is_pending());
        sem.release(); // to a
        drop(a); // cancelled after being woken
        assert_eq!(sem.available(), 0, "the unit went on to b");
        match poll(&mut b) {
            Poll::Ready(p) => p.forget(),
            Poll::Pending => panic!("b must inherit a's unit"),
        }
        assert_eq!(sem.waiters(), 0);
    }

    #[test]
    fn cancelled_pending_waiter_gives_nothing_back() {
        let sem = Semaphore::new(0);
        let mut a = sem.acquire();
        assert!(poll(&mut a).is_pending());
        drop(a);
        assert_eq!(sem.available(), 0);
        assert_eq!(sem.waiters(), 0);
        sem.release();
        assert!(!sem.locked(), "nobody queued any more");
    }

    #[test]
    fn permit_drop_and_forget() {
        let sem = Semaphore::new(2);
        let a = sem.try_acquire().unwrap();
        let b = sem.try_acquire().unwrap();
        assert!(sem.try_acquire().is_none());
        drop(a);
        assert_eq!(sem.available(), 1);
        b.forget();
        assert_eq!(sem.available(), 1);
        sem.release();
        sem.release();
        assert_eq!(
            sem.available(),
            3,
            "a plain semaphore may grow past its start"
        );
    }

    #[test]
    fn bounded_semaphore_rejects_over_release() {
        let sem = BoundedSemaphore::new(2);
        assert_eq!(sem.release(), Err(BoundedSemaphoreError));
        assert_eq!(sem.available(), 2);
        let p = sem.try_acquire().unwrap();
        p.forget();
        assert_eq!(sem.release(), Ok(()));
        assert_eq!(sem.release(), Err(BoundedSemaphoreError));
        // A permit dropped at the bound (after a manual release) does not exceed it.
        let p = sem.try_acquire().unwrap();
        assert_eq!(sem.release(), Ok(()));
        drop(p);
        assert_eq!(sem.available(), 2);
        assert_eq!(
            BoundedSemaphoreError.to_string(),
            "BoundedSemaphore released too many times"
        );
    }

    #[test]
    fn bounded_release_hands_unit_to_waiter() {
        let sem = BoundedSemaphore::new(1);
        sem.try_acquire().unwrap().forget();
        let mut w = sem.acquire();
        assert!(poll(&mut w).is_pending());
        assert_eq!(sem.release(), Ok(()));
        assert_eq!(sem.available(), 0);
        let p = match poll(&mut w) {
            Poll::Ready(p) => p,
            Poll::Pending => panic!("released unit goes to the waiter"),
        };
        drop(p);
        assert_eq!(sem.available(), 1);
    }
}
