//! [`Notify`]: wake one waiting task, or all of them, without data.
//!
//! Owns: the waiting [`Notified`] futures in arrival order, one stored permit, and a count of
//! [`Notify::notify_waiters`] calls.
//!
//! Semantics, as tokio's `Notify`:
//! - [`notify_one`](Notify::notify_one) wakes the longest-waiting task; with nobody waiting,
//!   it stores one permit (at most one) that the next [`notified`](Notify::notified) consumes
//!   at once.
//! - [`notify_waiters`](Notify::notify_waiters) wakes every `Notified` future created before
//!   the call (polled yet or not) and stores no permit.
//! - A `Notified` dropped after `notify_one` chose it passes the notification on to the next
//!   waiter (or back to the permit): no wakeup is lost.
//!
//! Decision: one `Mutex` around the state (like `mpsc`), so a `Notify` in an `Arc` works
//! across loops and threads; wakers are called after the lock is released.
//!
//! Threading: `Send` and `Sync`.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::wakers::{lock, with_lock, WakeList};

/// How a waiter was notified.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Got {
    No,
    /// By `notify_one`: passed on if the future is dropped unused.
    One,
    /// By `notify_waiters`.
    All,
}

struct Waiter {
    key: u64,
    got: Got,
    waker: Option<Waker>,
}

#[derive(Default)]
struct State {
    permit: bool,
    waiters: VecDeque<Waiter>,
    next_key: u64,
    /// `notify_waiters` calls so far.
    generation: u64,
}

impl State {
    /// `notify_one`'s work: the first waiter not yet notified, else the permit.
    fn notify_one(&mut self, wake: &mut WakeList) {
        match self.waiters.iter_mut().find(|w| w.got == Got::No) {
            Some(w) => {
                w.got = Got::One;
                wake.extend(w.waker.take());
            }
            None => self.permit = true,
        }
    }
}

/// Notifies tasks without data: see the module docs.
#[derive(Default)]
pub struct Notify {
    state: Mutex<State>,
}

impl fmt::Debug for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notify").finish_non_exhaustive()
    }
}

impl Notify {
    /// A `Notify` with no permit and no waiter.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn with<R>(&self, f: impl FnOnce(&mut State, &mut WakeList) -> R) -> R {
        with_lock(&self.state, f)
    }

    /// A future that completes when this task is notified.
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            generation: self.lock().generation,
            key: None,
            done: false,
        }
    }

    /// Wake the longest-waiting task, or store a permit for the next one.
    pub fn notify_one(&self) {
        self.with(|st, wake| st.notify_one(wake));
    }

    /// Wake every task waiting now (every `Notified` made before this call).
    pub fn notify_waiters(&self) {
        self.with(|st, wake| {
            st.generation += 1;
            for w in st.waiters.iter_mut().filter(|w| w.got == Got::No) {
                w.got = Got::All;
                wake.extend(w.waker.take());
            }
        });
    }
}

/// The future of [`Notify::notified`].
#[must_use = "futures do nothing unless polled"]
pub struct Notified<'a> {
    notify: &'a Notify,
    /// `notify_waiters` calls when this future was made.
    generation: u64,
    key: Option<u64>,
    done: bool,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(());
        }
        let mut st = this.notify.lock();
        let ready = match this.key {
            None => {
                if st.generation != this.generation {
                    true
                } else if st.permit {
                    st.permit = false;
                    true
                } else {
                    let key = st.next_key;
                    st.next_key += 1;
                    st.waiters.push_back(Waiter {
                        key,
                        got: Got::No,
                        waker: Some(cx.waker().clone()),
                    });
                    this.key = Some(key);
                    false
                }
            }
            Some(key) => {
                let pos = st
                    .waiters
                    .iter()
                    .position(|w| w.key == key)
                    .expect("a waiter leaves the list only through its future");
                if st.waiters[pos].got != Got::No {
                    st.waiters.remove(pos);
                    this.key = None;
                    true
                } else {
                    let w = &mut st.waiters[pos];
                    match &w.waker {
                        Some(old) if old.will_wake(cx.waker()) => {}
                        _ => w.waker = Some(cx.waker().clone()),
                    }
                    false
                }
            }
        };
        if ready {
            this.done = true;
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.notify.with(|st, wake| {
                if let Some(pos) = st.waiters.iter().position(|w| w.key == key) {
                    let w = st.waiters.remove(pos);
                    if w.is_some_and(|w| w.got == Got::One) {
                        // chosen by notify_one but never ran: the next waiter gets it
                        st.notify_one(wake);
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::testing::poll;

    #[test]
    fn notify_one_before_waiting_stores_one_permit() {
        let n = Notify::new();
        n.notify_one();
        n.notify_one();
        assert_eq!(poll(&mut Box::pin(n.notified())), Poll::Ready(()));
        assert!(
            poll(&mut Box::pin(n.notified())).is_pending(),
            "one permit, not two"
        );
    }

    #[test]
    fn notify_one_wakes_the_first_waiter() {
        let n = Notify::new();
        let mut a = Box::pin(n.notified());
        let mut b = Box::pin(n.notified());
        assert!(poll(&mut a).is_pending());
        assert!(poll(&mut b).is_pending());
        n.notify_one();
        assert!(poll(&mut b).is_pending());
        assert_eq!(poll(&mut a), Poll::Ready(()));
    }

    #[test]
    fn a_dropped_chosen_waiter_passes_the_notification_on() {
        let n = Notify::new();
        let mut a = Box::pin(n.notified());
        let mut b = Box::pin(n.notified());
        assert!(poll(&mut a).is_pending());
        assert!(poll(&mut b).is_pending());
        n.notify_one();
        drop(a);
        assert_eq!(poll(&mut b), Poll::Ready(()));
        // and with nobody left, back to the permit
        let mut c = Box::pin(n.notified());
        assert!(poll(&mut c).is_pending());
        n.notify_one();
        drop(c);
        assert_eq!(poll(&mut Box::pin(n.notified())), Poll::Ready(()));
    }

    #[test]
    fn notify_waiters_wakes_the_futures_made_before_it_only() {
        let n = Notify::new();
        let mut polled = Box::pin(n.notified());
        assert!(poll(&mut polled).is_pending());
        let mut unpolled = Box::pin(n.notified());
        n.notify_waiters();
        let mut later = Box::pin(n.notified());
        assert_eq!(poll(&mut polled), Poll::Ready(()));
        assert_eq!(poll(&mut unpolled), Poll::Ready(()));
        assert!(poll(&mut later).is_pending(), "no permit stored");
    }
}
