//! [`SendSleep`]: a sleep that is `Send + Sync`, for APIs that require it of a timer (hyper's
//! `rt::Timer`, a `Box<dyn Future + Send>`), while timing on the loop that polls it.
//!
//! Decision: a [`Sleep`] holds `Rc`s into the timer heap of the loop that first polled it,
//! so it cannot be touched from another thread. `SendSleep` remembers that thread and touches
//! its `Sleep` only there: polled or reset on another thread, it leaves the old `Sleep`
//! untouched (leaked: its timer fires once more, waking nobody, and keeps its loop's core
//! allocated) and starts a new one on the thread it is now on; dropped on another thread, it
//! leaks it too. A future that moves between threads is rare on a thread-per-loop runtime, so
//! this trades a rare leak for a sleep with no atomics and no lock on the common path.
//!
//! Threading: `Send + Sync` (see the SAFETY comment below); the timer belongs to the loop
//! of the thread that last polled it.

use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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
}

// SAFETY: the only non-`Send` state is `inner`'s `Rc`s, which exist only once `inner` was
// polled, and then are only ever touched (polled, reset, dropped) on the thread recorded in
// `owner`: on any other thread `inner` is abandoned without being touched (`ManuallyDrop`
// forgets it, moving its bytes is not an access). Before the first poll `inner` holds no `Rc`.
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
    /// old one is abandoned, see the module docs).
    fn local(&mut self) -> &mut Sleep {
        let me = this_thread();
        if self.owner != me {
            if self.owner != 0 {
                // armed on another thread: do not touch it (ManuallyDrop: forgotten)
                self.inner = ManuallyDrop::new(sleep_until(self.deadline));
            }
            self.owner = me;
        }
        &mut self.inner
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
        Pin::new(self.get_mut().local()).poll(cx)
    }
}

impl Drop for SendSleep {
    fn drop(&mut self) {
        if self.owner == 0 || self.owner == this_thread() {
            // SAFETY: dropped once, here, on its own thread (or holding no `Rc` yet)
            unsafe { ManuallyDrop::drop(&mut self.inner) };
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
