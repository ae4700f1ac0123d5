//! Per-loop statistics: what a loop can tell about itself cheaply enough to leave on.
//!
//! Two tiers. The counters are always kept and cost no clock read in a turn that does not
//! block: turns, callbacks run, I/O events, timers fired, how late the last due timers
//! fired (read from the clock the turn already read for them), and the time spent in polls
//! that could block (the loop idle; two clock reads around a poll that releases the GIL and
//! makes a syscall anyway). Running time is measured once per `run_forever`, so time spent
//! running callbacks is that minus the idle time.
//!
//! Callback timing is the second tier, off unless asked for: one monotonic clock read per
//! callback (the end of one callback is the start of the next), which gives the longest
//! callback and the slow-callback report outside debug mode. It is the one per-callback
//! cost (a `clock_gettime` through the vDSO, ~30 ns here), so it is a switch.
//!
//! Decision: plain loads and stores on relaxed atomics, not read-modify-write: only the
//! loop's thread writes, so a locked `fetch_add` (~20 cycles on x86) would buy nothing;
//! any thread may read a field at any time. A snapshot across fields is not atomic.
//!
//! Threading: written by the thread running the loop; read from any thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::engine::clock::monotonic_ns;

/// One loop's counters; see the module documentation for what each costs.
#[derive(Debug, Default)]
pub struct LoopStats {
    turns: AtomicU64,
    callbacks: AtomicU64,
    io_events: AtomicU64,
    timers_fired: AtomicU64,
    /// Nanoseconds in polls that could block.
    poll_ns: AtomicU64,
    /// Nanoseconds inside `run_forever`, finished runs only.
    running_ns: AtomicU64,
    /// `monotonic_ns()` when the current `run_forever` began; 0 when not running.
    running_since: AtomicU64,
    /// How late the due timers of the last turn that fired any were, in nanoseconds of the
    /// loop's clock (the earliest of them), and the most seen.
    timer_lag_ns: AtomicU64,
    max_timer_lag_ns: AtomicU64,
    /// The callback timing switch, and what it measured.
    timing: AtomicBool,
    longest_ns: AtomicU64,
    slow_callbacks: AtomicU64,
    /// The sequence number (`callbacks` when it began, plus one) and start of the callback
    /// running now, 0 between callbacks: what a watchdog thread reads to see a callback that
    /// has blocked the loop for too long. Kept only while callback timing is on.
    current_seq: AtomicU64,
    current_start: AtomicU64,
}

/// A copy of a loop's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StatsSnapshot {
    /// Turns of the loop (`_run_once` calls).
    pub turns: u64,
    /// Callbacks (handles) run.
    pub callbacks: u64,
    /// Readiness events turned into callbacks.
    pub io_events: u64,
    /// Timer handles that came due.
    pub timers_fired: u64,
    /// Seconds spent in polls that could block: the loop idle.
    pub poll_time: f64,
    /// Seconds inside `run_forever` not spent idle: running callbacks and the turn itself.
    pub run_time: f64,
    /// How late (seconds) the due timers of the last turn that fired any ran.
    pub timer_lag: f64,
    /// The most `timer_lag` was.
    pub max_timer_lag: f64,
    /// Whether callback timing is on now.
    pub callback_timing: bool,
    /// The longest callback measured while callback timing was on (seconds; 0 if none).
    pub longest_callback: f64,
    /// Callbacks that took `slow_callback_duration` or more (timed or in debug mode).
    pub slow_callbacks: u64,
}

#[inline]
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

fn secs(ns: u64) -> f64 {
    ns as f64 * 1e-9
}

impl LoopStats {
    /// New counters, all zero, callback timing off.
    pub fn new() -> Self {
        Self::default()
    }

    /// `run_forever` begins.
    pub fn run_begin(&self) {
        self.running_since.store(monotonic_ns(), Ordering::Relaxed);
    }

    /// `run_forever` ends.
    pub fn run_end(&self) {
        let since = self.running_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            bump(&self.running_ns, monotonic_ns().saturating_sub(since));
        }
    }

    /// A turn begins.
    #[inline]
    pub fn turn(&self) {
        bump(&self.turns, 1);
    }

    /// A poll that could block took `ns` nanoseconds.
    #[inline]
    pub fn idle(&self, ns: u64) {
        bump(&self.poll_ns, ns);
    }

    /// A poll reported `n` readiness events.
    #[inline]
    pub fn io_events(&self, n: usize) {
        if n != 0 {
            bump(&self.io_events, n as u64);
        }
    }

    /// `n` timers came due, the earliest `lag` seconds (loop clock) after its deadline.
    pub fn timers_due(&self, n: usize, lag: f64) {
        if n == 0 {
            return;
        }
        bump(&self.timers_fired, n as u64);
        let lag_ns = if lag > 0.0 { (lag * 1e9) as u64 } else { 0 };
        self.timer_lag_ns.store(lag_ns, Ordering::Relaxed);
        if lag_ns > self.max_timer_lag_ns.load(Ordering::Relaxed) {
            self.max_timer_lag_ns.store(lag_ns, Ordering::Relaxed);
        }
    }

    /// `n` callbacks ran in this turn's run phase.
    #[inline]
    pub fn callbacks_ran(&self, n: u64) {
        if n != 0 {
            bump(&self.callbacks, n);
        }
    }

    /// Whether callback timing is on.
    #[inline]
    pub fn timing(&self) -> bool {
        self.timing.load(Ordering::Relaxed)
    }

    /// Turn callback timing on or off.
    pub fn set_timing(&self, on: bool) {
        self.timing.store(on, Ordering::Relaxed);
    }

    /// Callbacks counted so far (those of the run phase under way are added at its end).
    #[inline]
    pub fn callbacks(&self) -> u64 {
        self.callbacks.load(Ordering::Relaxed)
    }

    /// A timed callback begins at `start` (`monotonic_ns()`). `seq` numbers it: the
    /// callbacks before it, plus one.
    #[inline]
    pub fn callback_begin(&self, seq: u64, start: u64) {
        self.current_start.store(start, Ordering::Relaxed);
        self.current_seq.store(seq, Ordering::Relaxed);
    }

    /// The timed callback that began last took `ns` nanoseconds; `slow` says whether that
    /// reached the loop's `slow_callback_duration`. True if it is the longest so far.
    #[inline]
    pub fn callback_end(&self, ns: u64, slow: bool) -> bool {
        self.current_seq.store(0, Ordering::Relaxed);
        self.current_start.store(0, Ordering::Relaxed);
        if slow {
            bump(&self.slow_callbacks, 1);
        }
        if ns > self.longest_ns.load(Ordering::Relaxed) {
            self.longest_ns.store(ns, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// A callback measured by other means (debug mode's own timing) was slow.
    pub fn slow_callback(&self) {
        bump(&self.slow_callbacks, 1);
    }

    /// The callback running now: `(sequence number, start in monotonic_ns)`, or `None`
    /// between callbacks or when callback timing is off. Any thread.
    pub fn current_callback(&self) -> Option<(u64, u64)> {
        let seq = self.current_seq.load(Ordering::Relaxed);
        let start = self.current_start.load(Ordering::Relaxed);
        // a reader racing callback_begin may see the new start with the old (zero) seq, or
        // the reverse: either way the pair is only reported when both are set
        (seq != 0 && start != 0).then_some((seq, start))
    }

    /// The counters now. Any thread.
    pub fn snapshot(&self) -> StatsSnapshot {
        let poll_ns = self.poll_ns.load(Ordering::Relaxed);
        let since = self.running_since.load(Ordering::Relaxed);
        let mut running_ns = self.running_ns.load(Ordering::Relaxed);
        if since != 0 {
            running_ns += monotonic_ns().saturating_sub(since);
        }
        StatsSnapshot {
            turns: self.turns.load(Ordering::Relaxed),
            callbacks: self.callbacks.load(Ordering::Relaxed),
            io_events: self.io_events.load(Ordering::Relaxed),
            timers_fired: self.timers_fired.load(Ordering::Relaxed),
            poll_time: secs(poll_ns),
            run_time: secs(running_ns.saturating_sub(poll_ns)),
            timer_lag: secs(self.timer_lag_ns.load(Ordering::Relaxed)),
            max_timer_lag: secs(self.max_timer_lag_ns.load(Ordering::Relaxed)),
            callback_timing: self.timing(),
            longest_callback: secs(self.longest_ns.load(Ordering::Relaxed)),
            slow_callbacks: self.slow_callbacks.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up() {
        let s = LoopStats::new();
        s.turn();
        s.turn();
        s.callbacks_ran(3);
        s.io_events(2);
        s.io_events(0);
        s.timers_due(4, 0.002);
        s.timers_due(1, -0.001);
        let snap = s.snapshot();
        assert_eq!((snap.turns, snap.callbacks, snap.io_events), (2, 3, 2));
        assert_eq!(snap.timers_fired, 5);
        assert_eq!(snap.timer_lag, 0.0);
        assert!((snap.max_timer_lag - 0.002).abs() < 1e-9);
    }

    #[test]
    fn run_time_excludes_idle_time() {
        let s = LoopStats::new();
        s.run_begin();
        std::thread::sleep(std::time::Duration::from_millis(20));
        s.idle(10_000_000);
        s.run_end();
        let snap = s.snapshot();
        assert!((snap.poll_time - 0.010).abs() < 1e-9);
        assert!(snap.run_time >= 0.009, "{snap:?}");
        // not running: the total stays put
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(s.snapshot().run_time, snap.run_time);
    }

    #[test]
    fn callback_timing_tracks_longest_and_current() {
        let s = LoopStats::new();
        assert!(s.current_callback().is_none());
        s.set_timing(true);
        s.callback_begin(1, 100);
        assert_eq!(s.current_callback(), Some((1, 100)));
        assert!(s.callback_end(5_000, false));
        assert!(s.current_callback().is_none());
        s.callbacks_ran(1);
        s.callback_begin(s.callbacks() + 1, 200);
        assert_eq!(s.current_callback(), Some((2, 200)));
        assert!(!s.callback_end(4_000, true));
        let snap = s.snapshot();
        assert!(snap.callback_timing);
        assert_eq!(snap.slow_callbacks, 1);
        assert!((snap.longest_callback - 5e-6).abs() < 1e-12);
    }
}
