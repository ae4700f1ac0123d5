//! Multi-producer, single-consumer channels: [`channel`] (bounded) and
//! [`unbounded_channel`].
//!
//! Owns: a FIFO of values between any number of senders and one receiver, the receiver's
//! waker, and (bounded) the senders waiting for room, in the order they began to wait.
//!
//! Semantics, as a Rust user knows them from tokio's `mpsc`:
//! - [`Receiver::recv`] gives the values in the order they were sent, and `None` once every
//!   sender is gone (or the receiver was [closed](Receiver::close)) and nothing is left.
//! - A bounded [`Sender::send`] waits while `capacity` values are queued. Room goes to the
//!   waiting senders first come, first served: a new sender does not barge past one that
//!   waits. A waiting send whose future is dropped (cancelled) after it was granted room
//!   passes the room on to the next waiter, so no wakeup is lost.
//! - Dropping a [`Receiver::recv`] future loses nothing: a value is taken from the queue only
//!   by the poll that returns it.
//! - When the receiver is dropped or closed, sends fail with the value handed back
//!   ([`SendError`]); values already queued are still received after `close`.
//!
//! Decision: one `Mutex` around the state, as in `oneshot`: one lock per send and per receive
//! (tens of nanoseconds uncontended), and the channel works between tasks of one loop, between
//! loops on different threads, and from plain threads ([`Sender::blocking_send`],
//! [`Receiver::blocking_recv`]). Wakers are called after the lock is released.
//!
//! Threading: the halves are `Send` and `Sync` when `T` is `Send`; either may live on any
//! thread or loop.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::wakers::{lock, WakeList};

/// A sender waiting for room in a bounded channel.
struct Waiting {
    key: u64,
    /// Room was set aside for this sender (counted in `State::reserved`).
    granted: bool,
    waker: Option<Waker>,
}

struct State<T> {
    queue: VecDeque<T>,
    /// `None`: unbounded.
    capacity: Option<usize>,
    senders: usize,
    /// The receiver was dropped or closed: no more values are accepted.
    closed: bool,
    recv_waker: Option<Waker>,
    waiting: VecDeque<Waiting>,
    next_key: u64,
    /// Room set aside for granted waiting senders that have not sent yet.
    reserved: usize,
    /// Threads blocked in `blocking_send`/`blocking_recv` (the condition variable is
    /// signalled only when there are some: a signal is a system call).
    blocked: usize,
}

impl<T> State<T> {
    fn has_room(&self) -> bool {
        match self.capacity {
            None => true,
            Some(cap) => self.queue.len() + self.reserved < cap,
        }
    }

    /// Grant the room there is to the waiting senders, oldest first; their wakers go to
    /// `wake` (called after the lock is released).
    fn grant(&mut self, wake: &mut WakeList) {
        while self.has_room() {
            let Some(w) = self.waiting.iter_mut().find(|w| !w.granted) else {
                return;
            };
            w.granted = true;
            self.reserved += 1;
            wake.extend(w.waker.take());
        }
    }

    /// Close: every waiting sender is woken to find its value refused.
    fn close(&mut self, wake: &mut WakeList) {
        self.closed = true;
        for w in &mut self.waiting {
            wake.extend(w.waker.take());
        }
    }

    fn push(&mut self, value: T, wake: &mut WakeList) {
        self.queue.push_back(value);
        wake.extend(self.recv_waker.take());
    }
}

struct Chan<T> {
    state: Mutex<State<T>>,
    /// Signalled with every change a blocking sender or receiver may wait for.
    cond: Condvar,
}

impl<T> Chan<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        lock(&self.state)
    }

    /// Run `f` under the lock, then wake whom it asked to wake and the blocking waiters.
    fn with<R>(&self, f: impl FnOnce(&mut State<T>, &mut WakeList) -> R) -> R {
        let mut wake = WakeList::default();
        let (r, blocked) = {
            let mut st = self.lock();
            let r = f(&mut st, &mut wake);
            (r, st.blocked > 0)
        };
        if blocked {
            self.cond.notify_all();
        }
        wake.wake_all();
        r
    }

    /// Block the calling thread until the state changes (`blocking_send`/`blocking_recv`).
    fn wait<'a>(&'a self, mut st: MutexGuard<'a, State<T>>) -> MutexGuard<'a, State<T>> {
        st.blocked += 1;
        let mut st = match self.cond.wait(st) {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        st.blocked -= 1;
        st
    }
}

fn new_chan<T>(capacity: Option<usize>) -> Arc<Chan<T>> {
    Arc::new(Chan {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            capacity,
            senders: 1,
            closed: false,
            recv_waker: None,
            waiting: VecDeque::new(),
            next_key: 0,
            reserved: 0,
            blocked: 0,
        }),
        cond: Condvar::new(),
    })
}

/// A bounded channel holding at most `capacity` values (at least 1).
///
/// # Panics
/// If `capacity` is 0 (a rendezvous channel is not offered; use a `oneshot` per value).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(capacity > 0, "mpsc channel capacity must be at least 1");
    let chan = new_chan(Some(capacity));
    (
        Sender {
            chan: Arc::clone(&chan),
        },
        Receiver { chan },
    )
}

/// A channel without a bound: sending never waits.
pub fn unbounded_channel<T>() -> (UnboundedSender<T>, Receiver<T>) {
    let chan = new_chan(None);
    (
        UnboundedSender {
            sender: Sender {
                chan: Arc::clone(&chan),
            },
        },
        Receiver { chan },
    )
}

pub use super::SendError;

/// Why [`Sender::try_send`] did not send. The value is handed back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TrySendError<T> {
    /// The channel is full (or senders are waiting for room before this one).
    Full(T),
    /// The receiver is gone or closed.
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(v) | TrySendError::Closed(v) => v,
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("no available capacity"),
            TrySendError::Closed(_) => f.write_str("channel closed"),
        }
    }
}

impl<T> std::error::Error for TrySendError<T> {}

/// Why [`Receiver::try_recv`] gave no value.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum TryRecvError {
    /// Nothing queued now; senders remain.
    Empty,
    /// Nothing queued, and no sender remains (or the receiver was closed).
    Disconnected,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("receiving on an empty channel"),
            TryRecvError::Disconnected => f.write_str("receiving on a closed channel"),
        }
    }
}

impl std::error::Error for TryRecvError {}

/// The sending half of a bounded channel; clone it for more producers. The channel ends
/// for the receiver when the last sender is dropped.
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.lock().senders += 1;
        Sender {
            chan: Arc::clone(&self.chan),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.chan.with(|st, wake| {
            st.senders -= 1;
            if st.senders == 0 {
                wake.extend(st.recv_waker.take());
            }
        });
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> Sender<T> {
    /// Send `value`, waiting for room if the channel is full. `Err` hands the value back if
    /// the receiver is gone or closed. Dropping the future before it completes sends nothing.
    pub fn send(&self, value: T) -> Send<'_, T> {
        Send {
            chan: &self.chan,
            value: Some(value),
            key: None,
        }
    }

    /// Send `value` now if there is room and no sender waits before this one.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.chan.with(|st, wake| {
            if st.closed {
                Err(TrySendError::Closed(value))
            } else if !st.waiting.is_empty() || !st.has_room() {
                Err(TrySendError::Full(value))
            } else {
                st.push(value, wake);
                Ok(())
            }
        })
    }

    /// Send from a thread that is not running a loop, blocking it while the channel is
    /// full. Never call it on a loop's thread: the loop would stop.
    pub fn blocking_send(&self, value: T) -> Result<(), SendError<T>> {
        let mut st = self.chan.lock();
        loop {
            if st.closed {
                return Err(SendError(value));
            }
            if st.waiting.is_empty() && st.has_room() {
                st.queue.push_back(value);
                let waker = st.recv_waker.take();
                let blocked = st.blocked > 0;
                drop(st);
                if blocked {
                    self.chan.cond.notify_all();
                }
                if let Some(w) = waker {
                    w.wake();
                }
                return Ok(());
            }
            st = self.chan.wait(st);
        }
    }

    /// True once the receiver is gone or closed.
    pub fn is_closed(&self) -> bool {
        self.chan.lock().closed
    }

    /// Room left now: the bound less the queued values and the room set aside for waiting
    /// senders.
    pub fn capacity(&self) -> usize {
        let st = self.chan.lock();
        let cap = st.capacity.unwrap_or(usize::MAX);
        cap.saturating_sub(st.queue.len() + st.reserved)
    }

    /// The bound the channel was made with.
    pub fn max_capacity(&self) -> usize {
        self.chan.lock().capacity.unwrap_or(usize::MAX)
    }

    /// Whether `other` sends to the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

/// The future of [`Sender::send`].
#[must_use = "futures do nothing unless polled"]
pub struct Send<'a, T> {
    chan: &'a Arc<Chan<T>>,
    value: Option<T>,
    /// Registered among the waiting senders.
    key: Option<u64>,
}

impl<T> Unpin for Send<'_, T> {}

impl<T> Future for Send<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let chan = this.chan;
        chan.with(|st, wake| {
            if st.closed {
                if let Some(key) = this.key.take() {
                    remove_waiting(st, key, wake);
                }
                let value = this.value.take().expect("Send polled after completion");
                return Poll::Ready(Err(SendError(value)));
            }
            match this.key {
                None => {
                    if st.waiting.is_empty() && st.has_room() {
                        let value = this.value.take().expect("Send polled after completion");
                        st.push(value, wake);
                        return Poll::Ready(Ok(()));
                    }
                    let key = st.next_key;
                    st.next_key += 1;
                    st.waiting.push_back(Waiting {
                        key,
                        granted: false,
                        waker: Some(cx.waker().clone()),
                    });
                    this.key = Some(key);
                    // room may be free with only granted senders ahead: take it in turn
                    st.grant(wake);
                    Poll::Pending
                }
                Some(key) => {
                    let Some(pos) = st.waiting.iter().position(|w| w.key == key) else {
                        unreachable!("a waiting sender leaves the list only through its future");
                    };
                    if st.waiting[pos].granted {
                        st.waiting.remove(pos);
                        st.reserved -= 1;
                        this.key = None;
                        let value = this.value.take().expect("Send polled after completion");
                        st.push(value, wake);
                        Poll::Ready(Ok(()))
                    } else {
                        let w = &mut st.waiting[pos];
                        match &w.waker {
                            Some(old) if old.will_wake(cx.waker()) => {}
                            _ => w.waker = Some(cx.waker().clone()),
                        }
                        Poll::Pending
                    }
                }
            }
        })
    }
}

/// Take the waiting sender `key` out of the list; room it was granted goes to the next.
fn remove_waiting<T>(st: &mut State<T>, key: u64, wake: &mut WakeList) {
    if let Some(pos) = st.waiting.iter().position(|w| w.key == key) {
        if st.waiting.remove(pos).is_some_and(|w| w.granted) {
            st.reserved -= 1;
        }
        if !st.closed {
            st.grant(wake);
        }
    }
}

impl<T> Drop for Send<'_, T> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.chan.with(|st, wake| remove_waiting(st, key, wake));
        }
    }
}

/// The sending half of an unbounded channel: [`send`](UnboundedSender::send) never waits.
pub struct UnboundedSender<T> {
    sender: Sender<T>,
}

impl<T> Clone for UnboundedSender<T> {
    fn clone(&self) -> Self {
        UnboundedSender {
            sender: self.sender.clone(),
        }
    }
}

impl<T> fmt::Debug for UnboundedSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnboundedSender").finish_non_exhaustive()
    }
}

impl<T> UnboundedSender<T> {
    /// Queue `value`. `Err` hands it back if the receiver is gone or closed.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.sender
            .try_send(value)
            .map_err(|e| SendError(e.into_inner()))
    }

    /// True once the receiver is gone or closed.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Whether `other` sends to the same channel.
    pub fn same_channel(&self, other: &UnboundedSender<T>) -> bool {
        self.sender.same_channel(&other.sender)
    }
}

/// The receiving half. Also a [`futures_core::Stream`] of the values.
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // the values still queued are dropped after the lock is released
        let rest = self.chan.with(|st, wake| {
            st.close(wake);
            std::mem::take(&mut st.queue)
        });
        drop(rest);
    }
}

impl<T> Receiver<T> {
    /// The next value, in the order sent; `None` when no sender remains (or the receiver was
    /// closed) and nothing is queued. Dropping the future loses no value.
    pub fn recv(&mut self) -> Recv<'_, T> {
        Recv { receiver: self }
    }

    /// Poll for the next value (what [`recv`](Receiver::recv) and the `Stream` do).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.chan.with(|st, wake| match st.queue.pop_front() {
            Some(v) => {
                st.grant(wake);
                Poll::Ready(Some(v))
            }
            None if st.senders == 0 || st.closed => Poll::Ready(None),
            None => {
                match &st.recv_waker {
                    Some(old) if old.will_wake(cx.waker()) => {}
                    _ => st.recv_waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        })
    }

    /// The next value if one is queued now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.chan.with(|st, wake| match st.queue.pop_front() {
            Some(v) => {
                st.grant(wake);
                Ok(v)
            }
            None if st.senders == 0 || st.closed => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        })
    }

    /// Receive on a thread that is not running a loop, blocking it until a value comes or
    /// the channel ends. Never call it on a loop's thread: the loop would stop.
    pub fn blocking_recv(&mut self) -> Option<T> {
        let mut st = self.chan.lock();
        loop {
            if let Some(v) = st.queue.pop_front() {
                let mut wake = WakeList::default();
                st.grant(&mut wake);
                let blocked = st.blocked > 0;
                drop(st);
                if blocked {
                    self.chan.cond.notify_all();
                }
                wake.wake_all();
                return Some(v);
            }
            if st.senders == 0 || st.closed {
                return None;
            }
            st = self.chan.wait(st);
        }
    }

    /// Refuse new values; the ones queued can still be received, then `recv` gives `None`.
    /// Waiting senders get their values back.
    pub fn close(&mut self) {
        self.chan.with(|st, wake| st.close(wake));
    }

    /// Values queued now.
    pub fn len(&self) -> usize {
        self.chan.lock().queue.len()
    }

    /// True if no value is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> futures_core::Stream for Receiver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.get_mut().poll_recv(cx)
    }
}

/// The future of [`Receiver::recv`].
#[must_use = "futures do nothing unless polled"]
pub struct Recv<'a, T> {
    receiver: &'a mut Receiver<T>,
}

impl<T> Future for Recv<'_, T> {
    type Output = Option<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.receiver.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::testing::poll;

    #[test]
    fn values_arrive_in_order_and_end_with_the_last_sender() {
        let (tx, mut rx) = channel(4);
        let tx2 = tx.clone();
        assert!(tx.try_send(1).is_ok());
        assert!(tx2.try_send(2).is_ok());
        drop(tx);
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop(tx2);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(poll(&mut rx.recv()), Poll::Ready(None));
    }

    #[test]
    fn a_full_channel_makes_senders_wait_in_order() {
        let (tx, mut rx) = channel(1);
        assert!(tx.try_send(0).is_ok());
        let mut a = tx.send(1);
        let mut b = tx.send(2);
        assert!(poll(&mut a).is_pending());
        assert!(poll(&mut b).is_pending());
        assert!(matches!(tx.try_send(9), Err(TrySendError::Full(9))));
        assert_eq!(rx.try_recv(), Ok(0));
        // the room went to `a`, the first to wait: `b` still waits
        assert!(poll(&mut b).is_pending());
        assert_eq!(poll(&mut a), Poll::Ready(Ok(())));
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(poll(&mut b), Poll::Ready(Ok(())));
        assert_eq!(rx.try_recv(), Ok(2));
    }

    #[test]
    fn a_cancelled_sender_passes_its_room_on() {
        let (tx, mut rx) = channel(1);
        assert!(tx.try_send(0).is_ok());
        let mut a = tx.send(1);
        let mut b = tx.send(2);
        assert!(poll(&mut a).is_pending());
        assert!(poll(&mut b).is_pending());
        assert_eq!(rx.try_recv(), Ok(0)); // room granted to `a`
        drop(a); // cancelled before it ran: `b` gets the room
        assert_eq!(poll(&mut b), Poll::Ready(Ok(())));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(tx.capacity(), 1);
    }

    #[test]
    fn closing_hands_values_back_and_keeps_the_queued_ones() {
        let (tx, mut rx) = channel(1);
        assert!(tx.try_send(1).is_ok());
        let mut waiting = tx.send(2);
        assert!(poll(&mut waiting).is_pending());
        rx.close();
        assert!(tx.is_closed());
        assert_eq!(poll(&mut waiting), Poll::Ready(Err(SendError(2))));
        assert!(matches!(tx.try_send(3), Err(TrySendError::Closed(3))));
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(poll(&mut rx.recv()), Poll::Ready(None));
    }

    #[test]
    fn a_dropped_recv_future_loses_nothing() {
        let (tx, mut rx) = unbounded_channel();
        {
            let mut r = rx.recv();
            assert!(poll(&mut r).is_pending());
        }
        tx.send(7).unwrap();
        assert_eq!(rx.try_recv(), Ok(7));
    }

    #[test]
    fn dropping_the_receiver_refuses_sends() {
        let (tx, rx) = unbounded_channel::<String>();
        drop(rx);
        assert_eq!(tx.send("x".into()), Err(SendError("x".to_string())));
        assert!(tx.is_closed());
    }

    #[test]
    #[should_panic(expected = "capacity must be at least 1")]
    fn capacity_zero_is_refused() {
        let _ = channel::<u8>(0);
    }
}
