//! Time: [`sleep`], [`sleep_until`], [`timeout`], [`interval`] and [`yield_now`].
//!
//! Deadlines are kept as seconds on the loop's monotonic clock (`clock.rs`), the same clock
//! the Python loop's `time()` reads; `Instant`s are converted once, at creation. A sleep
//! registers with the loop's timer heap on its first poll and is cancelled (lazily, as
//! asyncio's timer handles) when dropped before it fires.
//!
//! Threading: these futures are `!Send`; they belong to the loop they were first polled on.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::core::{current, Core, TimerSlot};
use crate::engine::clock;

/// `deadline` in seconds on the loop's clock. Both clocks are the OS's monotonic clock
/// (std's `Instant` and the OS seam's `clock`, `CLOCK_MONOTONIC` on Linux), so one pair of
/// readings taken once converts every `Instant` with a subtraction (no clock read per call:
/// hyper resets a timeout on every request).
fn to_clock(deadline: Instant) -> f64 {
    static BASE: OnceLock<(Instant, f64)> = OnceLock::new();
    let &(base_i, base_f) = BASE.get_or_init(|| (Instant::now(), clock::monotonic()));
    if deadline >= base_i {
        base_f + (deadline - base_i).as_secs_f64()
    } else {
        base_f - (base_i - deadline).as_secs_f64()
    }
}

/// The future of [`sleep`] and [`sleep_until`].
pub struct Sleep {
    /// The deadline (seconds on the loop's clock).
    when: f64,
    /// The armed timer: its loop, its slot, and the deadline it was armed for (at most
    /// `when`: a deadline moved later keeps the timer, see [`Sleep::reset`]).
    timer: Option<(Rc<dyn Core>, Rc<TimerSlot>, f64)>,
}

/// Wait for `duration` (asyncio's `asyncio.sleep`). A zero duration completes at once.
pub fn sleep(duration: Duration) -> Sleep {
    Sleep {
        when: clock::monotonic() + duration.as_secs_f64(),
        timer: None,
    }
}

/// Wait until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        when: to_clock(deadline),
        timer: None,
    }
}

impl Sleep {
    /// Whether the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        match &self.timer {
            Some((_, slot, armed)) if slot.fired.get() && *armed == self.when => true,
            _ => clock::monotonic() >= self.when,
        }
    }

    /// Move the deadline. Moved later, an armed timer is kept and re-armed only when it
    /// fires (a timeout pushed back on every request costs no timer-heap work); moved
    /// earlier, it is re-armed at the next poll.
    pub fn reset(&mut self, deadline: Instant) {
        let when = to_clock(deadline);
        match &self.timer {
            Some((_, slot, armed)) if !slot.fired.get() && when >= *armed => {}
            _ => self.disarm(),
        }
        self.when = when;
    }

    /// The cross-thread half of the loop this sleep is armed on (`None` before its first
    /// poll), through which another thread can hand it back to be dropped there.
    pub(crate) fn home(&self) -> Option<std::sync::Arc<super::core::Shared>> {
        self.timer
            .as_ref()
            .map(|(core, _, _)| core.shared().clone())
    }

    fn disarm(&mut self) {
        if let Some((core, slot, _)) = self.timer.take() {
            core.cancel_timer(&slot);
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &self.timer {
            None => {
                if clock::monotonic() >= self.when {
                    return Poll::Ready(());
                }
                let core = current();
                let slot = core.add_timer(self.when, cx.waker().clone());
                self.timer = Some((core, slot, self.when));
                Poll::Pending
            }
            Some((core, slot, armed)) => {
                if slot.fired.get() {
                    // fired for the deadline it was armed for; a deadline moved later since
                    // is armed now, on the same loop
                    if *armed == self.when || clock::monotonic() >= self.when {
                        return Poll::Ready(());
                    }
                    let core = core.clone();
                    let slot = core.add_timer(self.when, cx.waker().clone());
                    self.timer = Some((core, slot, self.when));
                    return Poll::Pending;
                }
                let mut w = slot.waker.borrow_mut();
                match w.as_ref() {
                    Some(old) if old.will_wake(cx.waker()) => {}
                    _ => *w = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.disarm();
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("elapsed", &self.is_elapsed())
            .finish()
    }
}

/// The error of [`timeout`]: the deadline passed first (asyncio's `TimeoutError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, Elapsed)
    }
}

/// The future of [`timeout`].
pub struct Timeout<F> {
    future: Pin<Box<F>>,
    sleep: Sleep,
}

/// Run `future` for at most `duration` (asyncio's `wait_for` / `asyncio.timeout`): its
/// output, or [`Elapsed`] after the future was dropped (cancelled).
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout {
        future: Box::pin(future),
        sleep: sleep(duration),
    }
}

/// As [`timeout`], with a deadline.
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout {
        future: Box::pin(future),
        sleep: sleep_until(deadline),
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(v) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// What an [`Interval`] does with the ticks it missed (the task was busy past them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissedTickBehavior {
    /// Give the missed ticks at once, one per `tick()`, until caught up with the schedule.
    Burst,
    /// Start the schedule again from now: the next tick is a period after the late one.
    Delay,
    /// Drop the missed ticks: the next tick is the first one of the schedule still to come
    /// (the default).
    #[default]
    Skip,
}

/// Ticks every `period`: see [`interval`].
#[derive(Debug)]
pub struct Interval {
    next: Instant,
    period: Duration,
    missed: MissedTickBehavior,
    sleep: Sleep,
}

/// A ticker: the first [`tick`](Interval::tick) completes at once, then one every `period`.
/// A tick that is late by more than a period skips the missed ones (no burst of catch-up
/// ticks; [`MissedTickBehavior`] offers the other choices): the next tick is the first one
/// of the schedule still in the future.
///
/// Panics if `period` is zero.
pub fn interval(period: Duration) -> Interval {
    interval_at(Instant::now(), period)
}

/// A ticker whose first tick is at `start`, then one every `period`.
///
/// Panics if `period` is zero.
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(!period.is_zero(), "interval: the period must be non-zero");
    Interval {
        next: start,
        period,
        missed: MissedTickBehavior::default(),
        sleep: sleep_until(start),
    }
}

impl Interval {
    /// Wait for the next tick; returns its scheduled time.
    pub async fn tick(&mut self) -> Instant {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Poll for the next tick (what [`tick`](Interval::tick) and the `Stream` do).
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        if Pin::new(&mut self.sleep).poll(cx).is_pending() {
            return Poll::Pending;
        }
        let at = self.next;
        let now = Instant::now();
        let mut next = at + self.period;
        if next <= now {
            next = match self.missed {
                MissedTickBehavior::Burst => next,
                MissedTickBehavior::Delay => now + self.period,
                MissedTickBehavior::Skip => {
                    let behind = (now - at).as_nanos() / self.period.as_nanos().max(1);
                    at + self.period * (u32::try_from(behind).unwrap_or(u32::MAX - 1) + 1)
                }
            };
        }
        self.reset_at(next);
        Poll::Ready(at)
    }

    /// The next tick a period from now.
    pub fn reset(&mut self) {
        self.reset_at(Instant::now() + self.period);
    }

    /// The next tick now.
    pub fn reset_immediately(&mut self) {
        self.reset_at(Instant::now());
    }

    /// The next tick at `deadline`, then one every period.
    pub fn reset_at(&mut self, deadline: Instant) {
        self.next = deadline;
        self.sleep = sleep_until(deadline);
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// What this interval does with missed ticks.
    pub fn missed_tick_behavior(&self) -> MissedTickBehavior {
        self.missed
    }

    /// Choose what this interval does with missed ticks.
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.missed = behavior;
    }
}

impl futures_core::Stream for Interval {
    type Item = Instant;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Instant>> {
        self.get_mut().poll_tick(cx).map(Some)
    }
}

/// Let the other ready tasks run before going on (asyncio's `await asyncio.sleep(0)`).
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future of [`yield_now`].
#[derive(Debug)]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
