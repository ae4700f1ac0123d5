//! The loop's counters and callback timing as the Python side reads and sets them
//! (`ferroloop.EventLoop.stats()`, the slow-callback report, the watchdog).
//!
//! Threading: loop thread, under the GIL (the counters themselves are atomics).

use super::*;

#[pymethods]
impl EventLoop {
    /// The counters (ferroloop::engine::stats) as a dict, for `ferroloop._monitor.LoopStats`. Any
    /// thread holding the GIL.
    fn _stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let s = self.stats.snapshot();
        let d = pyo3::types::PyDict::new(py);
        d.set_item("turns", s.turns)?;
        d.set_item("callbacks", s.callbacks)?;
        d.set_item("io_events", s.io_events)?;
        d.set_item("timers_fired", s.timers_fired)?;
        d.set_item("poll_time", s.poll_time)?;
        d.set_item("run_time", s.run_time)?;
        d.set_item("timer_lag", s.timer_lag)?;
        d.set_item("max_timer_lag", s.max_timer_lag)?;
        d.set_item("callback_timing", s.callback_timing)?;
        let longest = self
            .longest_repr
            .borrow_mut(py)?
            .as_ref()
            .map(|r| r.clone_ref(py));
        match longest {
            Some(text) => {
                d.set_item("longest_callback", s.longest_callback)?;
                d.set_item("longest_callback_repr", text)?;
            }
            None => {
                d.set_item("longest_callback", py.None())?;
                d.set_item("longest_callback_repr", py.None())?;
            }
        }
        d.set_item("slow_callbacks", s.slow_callbacks)?;
        Ok(d)
    }

    /// `run_forever` (or an embedding's `_run_forever_setup`) begins (`true`) or ends.
    fn _stats_run(&self, running: bool) {
        if running {
            self.stats.run_begin();
        } else {
            self.stats.run_end();
        }
    }

    /// Callback timing on or off (`set_slow_callback_report`).
    fn _set_callback_timing(&self, on: bool) {
        self.stats.set_timing(on);
    }

    /// The slow-callback threshold, from `slow_callback_duration` (seconds) when it is set.
    fn _set_slow_callback_duration(&self, seconds: f64) {
        let ns = if seconds.is_nan() || seconds <= 0.0 {
            0
        } else if seconds >= (u64::MAX / 2) as f64 * 1e-9 {
            u64::MAX
        } else {
            (seconds * 1e9) as u64
        };
        self.slow_ns.store(ns, Ordering::Relaxed);
    }

    /// The timed callback running now, `(sequence number, start in time.monotonic_ns())`,
    /// or `None`: what the watchdog thread polls. Any thread holding the GIL.
    fn _current_callback(&self) -> Option<(u64, u64)> {
        self.stats.current_callback()
    }

    /// The watchdog's capture of the loop thread's stack while callback `seq` was running;
    /// the slow-callback report of that callback shows it.
    fn _set_blocked_stack(&self, py: Python<'_>, seq: u64, stack: Py<PyAny>) -> PyResult<()> {
        let old = self.blocked_stack.borrow_mut(py)?.replace((seq, stack));
        drop(old);
        Ok(())
    }

    /// Number of unfinished Rust tasks on this loop's Rust loop (0 before its first use).
    fn _rust_task_count(&self, py: Python<'_>) -> usize {
        self.sched(py).task_count()
    }
}
