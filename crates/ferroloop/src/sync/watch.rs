//! [`watch`](channel): one value that a sender replaces and any number of receivers watch.
//!
//! Owns: the current value, its version (incremented by every send), the receivers' wakers
//! and the counts of live senders and receivers.
//!
//! Semantics, as tokio's `watch`:
//! - A receiver sees the latest value only: [`Receiver::changed`] completes when the version
//!   moved since the receiver last marked a value seen, however many sends happened.
//! - [`Receiver::borrow`] reads the current value without marking it seen;
//!   [`Receiver::borrow_and_update`] reads and marks it. A new receiver
//!   ([`Sender::subscribe`]) starts with the current value seen; a clone keeps its origin's
//!   mark.
//! - [`Sender::send`] fails (handing the value back) when no receiver remains;
//!   [`Sender::send_replace`] and [`Sender::send_modify`] always store.
//! - [`Receiver::changed`] fails ([`RecvError`]) once the sender is gone and nothing new is
//!   left to see. Dropping a `changed` future loses nothing: the mark moves only when it
//!   completes.
//!
//! Decision: an `RwLock` around the value (readers borrow it in place) and a `Mutex` around
//! the version and the wakers, so the channel crosses loops and threads. Wakers are called
//! after the locks are released.
//!
//! Threading: the halves are `Send` and `Sync` when `T` is `Send + Sync`.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::task::{Context, Poll, Waker};

use super::wakers::{lock, WakerSet};

struct Meta {
    version: u64,
    sender_alive: bool,
    receivers: usize,
    waiters: WakerSet,
    /// Wakers of [`Sender::closed`] futures.
    closed_waiters: Vec<Waker>,
}

struct Shared<T> {
    value: RwLock<T>,
    meta: Mutex<Meta>,
}

impl<T> Shared<T> {
    fn meta(&self) -> MutexGuard<'_, Meta> {
        lock(&self.meta)
    }

    fn read(&self) -> RwLockReadGuard<'_, T> {
        // (the value's own lock: poison is ignored as for the mutexes)
        match self.value.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Change the value with `f`; then a new version, and every waiting receiver woken.
    fn store(&self, f: impl FnOnce(&mut T)) {
        {
            let mut v = match self.value.write() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            f(&mut v);
        }
        let waiters = {
            let mut m = self.meta();
            m.version += 1;
            m.waiters.take_all()
        };
        for w in waiters {
            w.wake();
        }
    }
}

/// A watch channel holding `init`.
pub fn channel<T>(init: T) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        value: RwLock::new(init),
        meta: Mutex::new(Meta {
            version: 0,
            sender_alive: true,
            receivers: 1,
            waiters: WakerSet::default(),
            closed_waiters: Vec::new(),
        }),
    });
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared, seen: 0 },
    )
}

pub use super::SendError;

/// The sender is gone: no new value will come.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct RecvError;

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("channel closed")
    }
}

impl std::error::Error for RecvError {}

/// A read of the current value (holds the value's read lock: keep it short, and never
/// across an `.await`).
pub struct Ref<'a, T> {
    guard: RwLockReadGuard<'a, T>,
    changed: bool,
}

impl<T> Ref<'_, T> {
    /// Whether this value was new to the receiver that borrowed it.
    pub fn has_changed(&self) -> bool {
        self.changed
    }
}

impl<T> Deref for Ref<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: fmt::Debug> fmt::Debug for Ref<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

/// The sending half (one per channel; it is not `Clone`).
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waiters = {
            let mut m = self.shared.meta();
            m.sender_alive = false;
            m.waiters.take_all()
        };
        for w in waiters {
            w.wake();
        }
    }
}

impl<T> Sender<T> {
    /// Store `value` and notify the receivers; `Err` hands it back if none remains.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.shared.meta().receivers == 0 {
            return Err(SendError(value));
        }
        self.shared.store(|v| *v = value);
        Ok(())
    }

    /// Store `value` (with or without receivers) and return the value it replaced.
    pub fn send_replace(&self, value: T) -> T {
        let mut old = None;
        self.shared
            .store(|v| old = Some(std::mem::replace(v, value)));
        old.expect("store runs its closure")
    }

    /// Change the value in place (with or without receivers) and notify the receivers.
    pub fn send_modify(&self, modify: impl FnOnce(&mut T)) {
        self.shared.store(modify);
    }

    /// The current value.
    pub fn borrow(&self) -> Ref<'_, T> {
        Ref {
            guard: self.shared.read(),
            changed: false,
        }
    }

    /// A new receiver, which has seen the current value.
    pub fn subscribe(&self) -> Receiver<T> {
        let seen = {
            let mut m = self.shared.meta();
            m.receivers += 1;
            m.version
        };
        Receiver {
            shared: Arc::clone(&self.shared),
            seen,
        }
    }

    /// Receivers alive now.
    pub fn receiver_count(&self) -> usize {
        self.shared.meta().receivers
    }

    /// True when no receiver remains.
    pub fn is_closed(&self) -> bool {
        self.receiver_count() == 0
    }

    /// Completes when no receiver remains.
    pub async fn closed(&self) {
        std::future::poll_fn(|cx| {
            let mut m = self.shared.meta();
            if m.receivers == 0 {
                Poll::Ready(())
            } else {
                if !m.closed_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    m.closed_waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }
}

/// A receiving half; clone it for more watchers.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// The version this receiver has marked seen.
    seen: u64,
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.shared.meta().receivers += 1;
        Receiver {
            shared: Arc::clone(&self.shared),
            seen: self.seen,
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let closed = {
            let mut m = self.shared.meta();
            m.receivers -= 1;
            if m.receivers == 0 {
                std::mem::take(&mut m.closed_waiters)
            } else {
                Vec::new()
            }
        };
        for w in closed {
            w.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The current value, without marking it seen.
    pub fn borrow(&self) -> Ref<'_, T> {
        let guard = self.shared.read();
        let changed = self.shared.meta().version != self.seen;
        Ref { guard, changed }
    }

    /// The current value, marked seen.
    pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
        let guard = self.shared.read();
        let version = self.shared.meta().version;
        let changed = version != self.seen;
        self.seen = version;
        Ref { guard, changed }
    }

    /// Whether a value this receiver has not seen is there; `Err` when none is and the
    /// sender is gone.
    pub fn has_changed(&self) -> Result<bool, RecvError> {
        let m = self.shared.meta();
        if m.version != self.seen {
            Ok(true)
        } else if m.sender_alive {
            Ok(false)
        } else {
            Err(RecvError)
        }
    }

    /// Mark the current value seen.
    pub fn mark_unchanged(&mut self) {
        self.seen = self.shared.meta().version;
    }

    /// Mark the current value unseen (the next `changed` completes at once).
    pub fn mark_changed(&mut self) {
        self.seen = self.shared.meta().version.wrapping_sub(1);
    }

    /// Wait for a value this receiver has not seen, and mark it seen. `Err` when the sender
    /// is gone and nothing new is left.
    pub fn changed(&mut self) -> Changed<'_, T> {
        Changed {
            receiver: self,
            key: None,
        }
    }

    /// Whether `other` watches the same channel.
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

/// The future of [`Receiver::changed`].
#[must_use = "futures do nothing unless polled"]
pub struct Changed<'a, T> {
    receiver: &'a mut Receiver<T>,
    key: Option<u64>,
}

impl<T> Future for Changed<'_, T> {
    type Output = Result<(), RecvError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut m = this.receiver.shared.meta();
        let ready = if m.version != this.receiver.seen {
            this.receiver.seen = m.version;
            Ok(())
        } else if !m.sender_alive {
            Err(RecvError)
        } else {
            this.key = Some(m.waiters.register(this.key, cx.waker()));
            return Poll::Pending;
        };
        if let Some(key) = this.key.take() {
            m.waiters.remove(key);
        }
        Poll::Ready(ready)
    }
}

impl<T> Drop for Changed<'_, T> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.receiver.shared.meta().waiters.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::testing::poll;

    #[test]
    fn a_receiver_sees_the_latest_value_once() {
        let (tx, mut rx) = channel(0);
        assert!(poll(&mut rx.changed()).is_pending());
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert!(rx.has_changed().unwrap());
        assert_eq!(poll(&mut rx.changed()), Poll::Ready(Ok(())));
        assert_eq!(*rx.borrow(), 2);
        assert!(poll(&mut rx.changed()).is_pending());
    }

    #[test]
    fn the_end_of_the_sender_ends_changed_after_the_last_value() {
        let (tx, mut rx) = channel("a");
        tx.send("b").unwrap();
        drop(tx);
        assert_eq!(poll(&mut rx.changed()), Poll::Ready(Ok(())));
        assert_eq!(*rx.borrow_and_update(), "b");
        assert_eq!(poll(&mut rx.changed()), Poll::Ready(Err(RecvError)));
        assert_eq!(rx.has_changed(), Err(RecvError));
    }

    #[test]
    fn send_fails_without_receivers_but_send_replace_stores() {
        let (tx, rx) = channel(1);
        let rx2 = tx.subscribe();
        assert_eq!(tx.receiver_count(), 2);
        drop(rx);
        drop(rx2);
        assert!(tx.is_closed());
        assert_eq!(tx.send(5), Err(SendError(5)));
        assert_eq!(tx.send_replace(6), 1);
        tx.send_modify(|v| *v += 1);
        assert_eq!(*tx.borrow(), 7);
        let mut late = tx.subscribe();
        assert_eq!(*late.borrow(), 7);
        assert!(
            !late.borrow().has_changed(),
            "a new receiver has seen the value"
        );
        assert!(poll(&mut late.changed()).is_pending());
    }

    #[test]
    fn a_dropped_changed_future_moves_no_mark() {
        let (tx, mut rx) = channel(0);
        {
            let mut c = rx.changed();
            assert!(poll(&mut c).is_pending());
        }
        tx.send(1).unwrap();
        assert_eq!(poll(&mut rx.changed()), Poll::Ready(Ok(())));
        rx.mark_changed();
        assert_eq!(poll(&mut rx.changed()), Poll::Ready(Ok(())));
    }
}
