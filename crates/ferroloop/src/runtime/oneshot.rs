//! A one-value channel between tasks or threads: the Rust counterpart of an asyncio
//! `Future` that one side resolves and the other awaits.
//!
//! Decision: a `Mutex` around the value and the receiver's waker, plus a `Condvar` for
//! [`Receiver::blocking_recv`]. One lock per send and per poll: cheap next to what crosses a
//! thread, and simple to get right.
//!
//! Threading: [`Sender`] and [`Receiver`] are `Send` when `T` is; either side may live on
//! any thread or loop.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

struct State<T> {
    value: Option<T>,
    waker: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

struct Inner<T> {
    state: Mutex<State<T>>,
    cond: Condvar,
}

impl<T> Inner<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// The sending half: [`send`](Sender::send) resolves the channel once.
pub struct Sender<T> {
    inner: Arc<Inner<T>>,
}

/// The receiving half: a future of the sent value, or [`RecvError`] if the sender was
/// dropped without sending.
pub struct Receiver<T> {
    inner: Arc<Inner<T>>,
}

/// The sender was dropped without sending a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvError;

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the sender was dropped without sending a value")
    }
}

impl std::error::Error for RecvError {}

/// A new channel.
///
/// ```
/// let (tx, rx) = ferroloop::oneshot::channel();
/// let v = ferroloop::run(async move {
///     ferroloop::spawn(async move { tx.send(7).unwrap() });
///     rx.await.unwrap()
/// });
/// assert_eq!(v, 7);
/// ```
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Inner {
        state: Mutex::new(State {
            value: None,
            waker: None,
            sender_gone: false,
            receiver_gone: false,
        }),
        cond: Condvar::new(),
    });
    (
        Sender {
            inner: inner.clone(),
        },
        Receiver { inner },
    )
}

impl<T> Sender<T> {
    /// Resolve the channel with `value`; gives it back if the receiver is gone.
    pub fn send(self, value: T) -> Result<(), T> {
        let waker = {
            let mut st = self.inner.lock();
            if st.receiver_gone {
                return Err(value);
            }
            st.value = Some(value);
            st.waker.take()
        };
        self.inner.cond.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Whether the receiver was dropped (nobody wants the value any more).
    pub fn is_closed(&self) -> bool {
        self.inner.lock().receiver_gone
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut st = self.inner.lock();
            st.sender_gone = true;
            st.waker.take()
        };
        self.inner.cond.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The value if it was sent already.
    pub fn try_recv(&mut self) -> Option<T> {
        self.inner.lock().value.take()
    }

    /// Block this thread until the value arrives. Never call it on a loop's thread while
    /// the loop should run: the loop would stop with it.
    pub fn blocking_recv(self) -> Result<T, RecvError> {
        let mut st = self.inner.lock();
        loop {
            if let Some(v) = st.value.take() {
                return Ok(v);
            }
            if st.sender_gone {
                return Err(RecvError);
            }
            st = match self.inner.cond.wait(st) {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = self.inner.lock();
        if let Some(v) = st.value.take() {
            return Poll::Ready(Ok(v));
        }
        if st.sender_gone {
            return Poll::Ready(Err(RecvError));
        }
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let value = {
            let mut st = self.inner.lock();
            st.receiver_gone = true;
            st.waker = None;
            st.value.take()
        };
        drop(value);
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("oneshot::Sender")
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("oneshot::Receiver")
    }
}
