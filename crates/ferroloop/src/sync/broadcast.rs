//! [`broadcast`](channel): every receiver gets every value sent after it subscribed.
//!
//! Owns: the last `capacity` values with their sequence numbers, the counts of senders and
//! receivers, and the wakers of the receivers waiting for the next value.
//!
//! Semantics, as tokio's `broadcast`:
//! - Each receiver reads the values in the order sent, from the first one sent after it
//!   subscribed ([`Sender::subscribe`]; a clone starts where its origin is).
//! - The channel keeps the last `capacity` values. A receiver that falls further behind gets
//!   [`RecvError::Lagged`] with the number it missed, then goes on from the oldest value
//!   kept: a slow receiver never slows the senders.
//! - [`RecvError::Closed`] once every sender is gone and the receiver has read the rest.
//! - Sending fails (the value handed back) when no receiver remains.
//! - Dropping a `recv` future loses nothing: a receiver's position moves only when a value
//!   is returned.
//!
//! Decision: one `Mutex` around the ring and the wakers (wakers called after it is
//! released); a value is cloned once per receiver that reads it.
//!
//! Threading: the halves are `Send` and `Sync` when `T` is `Send`.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use super::wakers::{lock, WakerSet};

struct State<T> {
    /// The last `capacity` values; the front one has sequence number `next_seq - len`.
    ring: VecDeque<T>,
    capacity: usize,
    next_seq: u64,
    senders: usize,
    receivers: usize,
    waiters: WakerSet,
}

impl<T> State<T> {
    fn oldest(&self) -> u64 {
        self.next_seq - self.ring.len() as u64
    }
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        lock(&self.state)
    }

    /// A new receiver that gets the values sent from now on.
    fn subscribe(self: &Arc<Self>) -> Receiver<T> {
        let next = {
            let mut st = self.lock();
            st.receivers += 1;
            st.next_seq
        };
        Receiver {
            shared: Arc::clone(self),
            next,
        }
    }
}

/// A broadcast channel keeping the last `capacity` values (at least 1).
///
/// # Panics
/// If `capacity` is 0.
pub fn channel<T: Clone>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(
        capacity > 0,
        "broadcast channel capacity must be at least 1"
    );
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            ring: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
            next_seq: 0,
            senders: 1,
            receivers: 1,
            waiters: WakerSet::default(),
        }),
    });
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared, next: 0 },
    )
}

pub use super::SendError;

/// Why [`Receiver::recv`] gave no value.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum RecvError {
    /// Every sender is gone and this receiver has read everything.
    Closed,
    /// This receiver fell behind by this many values, which are lost to it; the next `recv`
    /// gives the oldest value still kept.
    Lagged(u64),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Closed => f.write_str("channel closed"),
            RecvError::Lagged(n) => write!(f, "channel lagged by {n}"),
        }
    }
}

impl std::error::Error for RecvError {}

/// Why [`Receiver::try_recv`] gave no value.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum TryRecvError {
    /// No new value now; senders remain.
    Empty,
    /// Every sender is gone and this receiver has read everything.
    Closed,
    /// As [`RecvError::Lagged`].
    Lagged(u64),
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("channel empty"),
            TryRecvError::Closed => f.write_str("channel closed"),
            TryRecvError::Lagged(n) => write!(f, "channel lagged by {n}"),
        }
    }
}

impl std::error::Error for TryRecvError {}

/// The sending half; clone it for more senders.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waiters = {
            let mut st = self.shared.lock();
            st.senders -= 1;
            if st.senders == 0 {
                st.waiters.take_all()
            } else {
                Vec::new()
            }
        };
        for w in waiters {
            w.wake();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> Sender<T> {
    /// Send `value` to every receiver; returns how many there are. `Err` hands the value
    /// back when there are none.
    pub fn send(&self, value: T) -> Result<usize, SendError<T>> {
        let (receivers, waiters, dropped) = {
            let mut st = self.shared.lock();
            if st.receivers == 0 {
                return Err(SendError(value));
            }
            st.ring.push_back(value);
            st.next_seq += 1;
            let dropped = if st.ring.len() > st.capacity {
                st.ring.pop_front()
            } else {
                None
            };
            (st.receivers, st.waiters.take_all(), dropped)
        };
        drop(dropped);
        for w in waiters {
            w.wake();
        }
        Ok(receivers)
    }

    /// A new receiver, which gets the values sent from now on.
    pub fn subscribe(&self) -> Receiver<T> {
        self.shared.subscribe()
    }

    /// Receivers alive now.
    pub fn receiver_count(&self) -> usize {
        self.shared.lock().receivers
    }

    /// Values kept now (at most the capacity).
    pub fn len(&self) -> usize {
        self.shared.lock().ring.len()
    }

    /// True if no value is kept now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A receiving half. `T: Clone`: every receiver gets its own copy.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// The sequence number of the next value this receiver reads.
    next: u64,
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.shared.lock().receivers += 1;
        Receiver {
            shared: Arc::clone(&self.shared),
            next: self.next,
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.lock().receivers -= 1;
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl<T: Clone> Receiver<T> {
    /// Read under the lock: a value, an error, or `None` (wait).
    fn read(&mut self, st: &State<T>) -> Option<Result<T, RecvError>> {
        let oldest = st.oldest();
        if self.next < oldest {
            let missed = oldest - self.next;
            self.next = oldest;
            return Some(Err(RecvError::Lagged(missed)));
        }
        if self.next < st.next_seq {
            let value = st.ring[(self.next - oldest) as usize].clone();
            self.next += 1;
            return Some(Ok(value));
        }
        if st.senders == 0 {
            return Some(Err(RecvError::Closed));
        }
        None
    }

    /// The next value; see the module docs for `Lagged` and `Closed`.
    pub fn recv(&mut self) -> Recv<'_, T> {
        Recv {
            receiver: self,
            key: None,
        }
    }

    /// The next value if there is one now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let shared = Arc::clone(&self.shared);
        let st = shared.lock();
        match self.read(&st) {
            Some(Ok(v)) => Ok(v),
            Some(Err(RecvError::Closed)) => Err(TryRecvError::Closed),
            Some(Err(RecvError::Lagged(n))) => Err(TryRecvError::Lagged(n)),
            None => Err(TryRecvError::Empty),
        }
    }

    /// A new receiver of the same channel that gets the values sent from now on.
    pub fn resubscribe(&self) -> Receiver<T> {
        self.shared.subscribe()
    }

    /// Values sent that this receiver has not read yet (lagged ones included).
    pub fn len(&self) -> usize {
        (self.shared.lock().next_seq - self.next) as usize
    }

    /// True if this receiver has read every value sent.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The future of [`Receiver::recv`].
#[must_use = "futures do nothing unless polled"]
pub struct Recv<'a, T> {
    receiver: &'a mut Receiver<T>,
    key: Option<u64>,
}

impl<T: Clone> Future for Recv<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let shared = Arc::clone(&this.receiver.shared);
        let mut st = shared.lock();
        match this.receiver.read(&st) {
            Some(r) => {
                if let Some(key) = this.key.take() {
                    st.waiters.remove(key);
                }
                Poll::Ready(r)
            }
            None => {
                this.key = Some(st.waiters.register(this.key, cx.waker()));
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for Recv<'_, T> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.receiver.shared.lock().waiters.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::testing::poll;

    #[test]
    fn every_receiver_gets_every_value_after_it_subscribed() {
        let (tx, mut a) = channel(8);
        tx.send(1).unwrap();
        let mut b = tx.subscribe();
        assert_eq!(tx.send(2), Ok(2));
        assert_eq!(a.try_recv(), Ok(1));
        assert_eq!(a.try_recv(), Ok(2));
        assert_eq!(b.try_recv(), Ok(2));
        assert_eq!(b.try_recv(), Err(TryRecvError::Empty));
        drop(tx);
        assert_eq!(poll(&mut a.recv()), Poll::Ready(Err(RecvError::Closed)));
    }

    #[test]
    fn a_slow_receiver_lags_and_goes_on_from_the_oldest_kept() {
        let (tx, mut rx) = channel(2);
        for v in 0..5 {
            tx.send(v).unwrap();
        }
        assert_eq!(rx.len(), 5);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Lagged(3)));
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Ok(4));
        assert!(rx.is_empty());
    }

    #[test]
    fn sending_without_receivers_hands_the_value_back() {
        let (tx, rx) = channel::<String>(1);
        drop(rx);
        assert_eq!(tx.send("x".into()), Err(SendError("x".to_string())));
        let _late = tx.subscribe();
        assert_eq!(tx.send("y".into()), Ok(1));
    }

    #[test]
    fn a_dropped_recv_future_moves_nothing() {
        let (tx, mut rx) = channel(4);
        {
            let mut r = rx.recv();
            assert!(poll(&mut r).is_pending());
        }
        tx.send(9).unwrap();
        assert_eq!(poll(&mut rx.recv()), Poll::Ready(Ok(9)));
        let mut clone = rx.clone();
        tx.send(10).unwrap();
        assert_eq!(clone.try_recv(), Ok(10));
        assert_eq!(rx.try_recv(), Ok(10));
    }
}
