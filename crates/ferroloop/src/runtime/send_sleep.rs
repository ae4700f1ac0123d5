//! [`SendSleep`]: a sleep that is `Send + Sync`, for APIs that require it of a timer (hyper's
//! `rt::Timer`, a `Box<dyn Future + Send>`), while timing on the loop that polls it.
//!
//! Decision: a [`Sleep`] holds `Rc`s into the timer heap of the loop that first polled it,
//! so it cannot be touched from another thread. `SendSleep` remembers that thread and touches
//! its `Sleep` only there. Polled, reset or dropped on another thread, it does not touch the
//! old `Sleep`: it hands it back to its loop through the loop's inbox (a call that drops it
//! on the loop's thread at its next turn) and, when polled or reset, starts a new `Sleep` on
//! the thread it is now on. If that loop is already closed the old `Sleep` is leaked (with
//! the closed loop's memory, which it keeps alive): dropping it here could race its loop's
//! thread on the `Rc` counts. A future that moves between threads is rare on a
//! thread-per-loop runtime; the common path has no atomics and no lock.
//!
//! Threading: `Send + Sync` (see the SAFETY comments below); the timer belongs to the loop
//! of the thread that last polled it.

use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::core::{Remote, Shared};
use super::time::{sleep_until, Sleep};

thread_local! {
    static THREAD: u64 = {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

/// A number unique to this thread (never 0).
fn this_thread() -> u64 {
    THREAD.with(|t| *t)
}

/// A sleep that can be sent between threads (see the module docs of `send_sleep.rs` for what
/// moving one costs). Polled on a loop's thread, it is as cheap as [`crate::sleep`].
///
/// ```
/// use std::time::{Duration, Instant};
/// use ferroloop::SendSleep;
///
/// fn needs_send<F: std::future::Future + Send + Sync>(f: F) -> F { f }
///
/// ferroloop::run(async {
///     let start = Instant::now();
///     needs_send(SendSleep::new(Duration::from_millis(20))).await;
///     assert!(start.elapsed() >= Duration::from_millis(20));
/// });
/// ```
pub struct SendSleep {
    deadline: Instant,
    /// The thread whose loop `inner` is registered with (0: not registered anywhere yet,
    /// `inner` holds no `Rc`).
    owner: u64,
    inner: ManuallyDrop<Sleep>,
    /// The inbox of the loop `inner` is armed on, once it is.
    home: Option<Arc<Shared>>,
}

/// A `Sleep` on its way back to its own loop's thread, to be dropped there.
struct OwnerThreadOnly(#[allow(dead_code)] Sleep);

// SAFETY: an `OwnerThreadOnly` is only made by `SendSleep::abandon`. Holding an armed
// `Sleep`, it is moved into a call queued on the inbox of the loop the `Sleep` is armed on,
// and dropped by that call: which runs on the loop's own thread, or is dropped by the loop's
// `close` on that thread; when the inbox refuses the call (the loop is closed) it is
// forgotten. Holding a `Sleep` never armed (no `Rc` inside), it may be dropped anywhere.
unsafe impl Send for OwnerThreadOnly {}

// SAFETY: the only non-`Send` state is `inner`'s `Rc`s, which exist only once `inner` was
// polled, and then are only ever touched (polled, reset, dropped) on the thread recorded in
// `owner`: on any other thread `inner` is moved, untouched, into a call its own loop runs on
// that thread (or forgotten; moving its bytes is not an access). Before the first poll
// `inner` holds no `Rc`. `home` is an `Arc` of `Send + Sync` data.
unsafe impl Send for SendSleep {}
// SAFETY: no method taking `&self` reads `inner`; shared references give only `deadline`.
unsafe impl Sync for SendSleep {}

impl SendSleep {
    /// Sleep for `duration`.
    pub fn new(duration: Duration) -> SendSleep {
        SendSleep::until(Instant::now() + duration)
    }

    /// Sleep until `deadline`.
    pub fn until(deadline: Instant) -> SendSleep {
        SendSleep {
            deadline,
            owner: 0,
            inner: ManuallyDrop::new(sleep_until(deadline)),
            home: None,
        }
    }

    /// The deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// The `Sleep` of this thread: the same one when it was made here, else a new one (the
    /// old one goes back to its loop, see the module docs).
    fn local(&mut self) -> &mut Sleep {
        let me = this_thread();
        if self.owner != me {
            if self.owner != 0 {
                self.abandon();
                self.inner = ManuallyDrop::new(sleep_until(self.deadline));
            }
            self.owner = me;
        }
        &mut self.inner
    }

    /// On a thread other than `owner`: send `inner` back to its loop to be dropped there,
    /// without touching it; leave `inner` to be overwritten (it is moved out).
    fn abandon(&mut self) {
        // SAFETY: `inner` is moved out once; every caller overwrites it or is `drop`.
        let sleep = unsafe { ManuallyDrop::take(&mut self.inner) };
        let parcel = OwnerThreadOnly(sleep);
        match self.home.take() {
            Some(home) => {
                let call: Box<dyn FnOnce() + Send> = Box::new(move || drop(parcel));
                if let Err(refused) = home.inbox.push(Remote::Call(call)) {
                    // the loop is closed: leaked, never dropped off its thread
                    std::mem::forget(refused);
                }
            }
            // `home` is set by the poll that arms `inner`: unset, `inner` was never armed and
            // holds no `Rc`, so it may be dropped on any thread
            None => drop(parcel),
        }
    }

    /// Move the deadline.
    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.local().reset(deadline);
    }
}

impl Future for SendSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // `SendSleep` is `Unpin` (`Sleep` is), so it may be moved out of the pin
        let this = self.get_mut();
        let polled = Pin::new(this.local()).poll(cx);
        if this.home.is_none() {
            this.home = this.inner.home();
        }
        polled
    }
}

impl Drop for SendSleep {
    fn drop(&mut self) {
        if self.owner == 0 || self.owner == this_thread() {
            // SAFETY: dropped once, here, on its own thread (or holding no `Rc` yet)
            unsafe { ManuallyDrop::drop(&mut self.inner) };
        } else {
            self.abandon();
        }
    }
}

impl fmt::Debug for SendSleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendSleep")
            .field("deadline", &self.deadline)
            .finish()
    }
}
