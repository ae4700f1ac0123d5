//! The loop's turn with Python as the scheduler's host (`PyHost`): the clock, the GIL
//! released around a poll that may block, signal handlers after it, how each handle runs
//! (native watchers, debug mode, callback timing, recycling) and the end-of-phase flush;
//! `run_forever`'s native body and closing.
//!
//! Threading: loop thread, under the GIL (released only for the poll).

use super::*;

/// The clock of one turn: asyncio's `_run_once` reads `self.time()`, so a `time` patched on
/// the loop is the clock that decides which timers are due. Looked up at the turn's first
/// reading (only a turn with timers reads the clock), then kept for the turn.
pub(super) struct TurnClock<'py>(Option<Option<Bound<'py, PyAny>>>);

impl<'py> TurnClock<'py> {
    fn now(&mut self, slf: &Bound<'py, EventLoop>) -> PyResult<f64> {
        if self.0.is_none() {
            self.0 = Some(EventLoop::python_clock(slf)?);
        }
        match &self.0 {
            Some(Some(time)) => time.call0()?.extract(),
            _ => Ok(clock::monotonic()),
        }
    }
}

/// The loop as its scheduler's host, for one turn (`run_once`).
pub(super) struct PyHost<'a, 'py> {
    slf: &'a Bound<'py, EventLoop>,
    clock: TurnClock<'py>,
    /// This phase runs handles in debug mode / timed (set when the phase begins).
    debug: bool,
    timing: bool,
    /// Timed handles run so far in this phase (their sequence numbers).
    ran: u64,
    /// With timing on: when the previous callback ended (or the phase began).
    t: u64,
}

impl Host<PyEntry> for PyHost<'_, '_> {
    type Error = TurnError;

    fn now(&mut self) -> Result<f64, TurnError> {
        Ok(self.clock.now(self.slf)?)
    }

    fn clock_resolution(&self) -> f64 {
        self.slf.get().clock_resolution()
    }

    fn stopping(&self) -> bool {
        self.slf.get().stopping.load(Ordering::Relaxed)
    }

    fn blocking<R: Send, F: FnOnce() -> R + Send>(&mut self, poll: F) -> R {
        self.slf.py().detach(poll)
    }

    fn woke(&mut self) -> Result<(), TurnError> {
        // a signal may have interrupted the wait: run Python's handlers now
        Ok(self.slf.py().check_signals()?)
    }

    fn phase_begin(&mut self) {
        let me = self.slf.get();
        self.debug = me.is_debug();
        self.timing = me.stats.timing();
        self.ran = 0;
        if self.timing {
            self.t = monotonic_ns();
        }
        me.batching.store(true, Ordering::Relaxed);
    }

    fn run(&mut self, entry: PyEntry) -> Result<(), TurnError> {
        let slf = self.slf;
        let py = slf.py();
        let me = slf.get();
        let h = entry.0.into_bound(py);
        if !(self.debug || self.timing) {
            // the path every handle takes by default; a stream transport's watcher steps
            // the transport directly (timed or in debug mode it runs as any handle)
            let step = h.get().native_step();
            if step != 0 {
                return Ok(me.run_native(&h, step)?);
            }
            Handle::run_from_loop(&h)?;
            me.recycle(h)?;
            return Ok(());
        }
        // debug mode or callback timing on (ferroloop::engine::stats): each callback timed,
        // the longest remembered, a slow one reported
        self.ran += 1;
        let seq = me.stats.callbacks() + self.ran;
        if self.timing {
            me.stats.callback_begin(seq, self.t);
        }
        // `run`, not `run_from_loop`: the handle keeps its callback until after the timing,
        // so the longest callback's text can be taken from it
        let result = if self.debug {
            EventLoop::run_debug(slf, &h)
        } else {
            Handle::run(&h)
        };
        if self.timing {
            let end = monotonic_ns();
            let ns = end.saturating_sub(self.t);
            self.t = end;
            // debug mode logged its own warning (run_debug) and counted it
            let slow = !self.debug && ns >= me.slow_ns.load(Ordering::Relaxed);
            if me.stats.callback_end(ns, slow) {
                let text = py_helpers::describe_handle(h.as_any())?;
                *me.longest_repr.borrow_mut(py)? = Some(text.unbind());
            }
            if slow {
                let stack = match me.blocked_stack.borrow_mut(py)?.take() {
                    Some((at, stack)) if at == seq => Some(stack),
                    _ => None,
                };
                py_helpers::report_slow_callback(slf.as_any(), h.as_any(), ns, stack)?;
            }
        }
        h.get().release_after_run(py)?;
        result?;
        if !self.debug {
            me.recycle(h)?;
        }
        Ok(())
    }

    fn phase_end(&mut self) -> Result<(), TurnError> {
        self.slf.get().batching.store(false, Ordering::Relaxed);
        // the writes queued meanwhile leave, one vectored send per transport
        Ok(EventLoop::flush_writes(self.slf)?)
    }
}

impl EventLoop {
    /// One turn of the loop (asyncio's `_run_once`): the scheduler's, with this loop as host.
    pub(super) fn run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        let mut host = PyHost {
            slf,
            clock: TurnClock(None),
            debug: false,
            timing: false,
            ran: 0,
            t: 0,
        };
        slf.get()
            .sched(slf.py())
            .turn(&mut host, true)
            .map_err(|e| e.0)
    }

    /// Keep a handle that ran for the next `call_soon` (handles.rs, "Recycling").
    #[inline(always)]
    pub(super) fn recycle(&self, h: Bound<'_, Handle>) -> PyResult<()> {
        let py = h.py();
        if !self.spare_handles.borrow_mut(py)?.is_full() {
            if let Some(h) = Handle::recycle(h) {
                self.spare_handles.borrow_mut(py)?.push(h);
            }
        }
        Ok(())
    }

    /// Run one handle in debug mode: `_current_handle` and the slow-callback warning.
    pub(super) fn run_debug(slf: &Bound<'_, Self>, h: &Bound<'_, Handle>) -> PyResult<()> {
        slf.setattr("_current_handle", h)?;
        let mut now = TurnClock(None);
        let t0 = now.now(slf)?;
        let r = Handle::run(h);
        let dt = now.now(slf).map(|t| t - t0);
        slf.setattr("_current_handle", slf.py().None())?;
        r?;
        let dt = dt?;
        let limit: f64 = slf.getattr("slow_callback_duration")?.extract()?;
        if dt >= limit {
            slf.get().stats.slow_callback();
            py_helpers::log_slow_callback(h.as_any(), dt)?;
        }
        Ok(())
    }
}

#[pymethods]
impl EventLoop {
    fn _run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::run_once(slf)
    }

    /// The body of `run_forever`: turns until `stop()`. The Python side does the set-up.
    fn _run_forever_native(slf: &Bound<'_, Self>) -> PyResult<()> {
        let me = slf.get();
        // SAFETY: getpid never fails.
        if unsafe { libc::getpid() } as u32 != me.pid {
            return Err(PyRuntimeError::new_err(
                "this event loop was created in another process (before fork()); \
                 create a new event loop in the child",
            ));
        }
        me.running.store(true, Ordering::Relaxed);
        let result = loop {
            if let Err(e) = Self::run_once(slf) {
                break Err(e);
            }
            if me.stopping.load(Ordering::Relaxed) {
                break Ok(());
            }
        };
        me.running.store(false, Ordering::Relaxed);
        result
    }

    /// Release everything the loop holds: handles, timers, watchers, the epoll and eventfd
    /// descriptors. Called by `close()` after asyncio's checks.
    fn _close_native(&self, py: Python<'_>) -> PyResult<()> {
        // the Rust tasks' futures are dropped now (a bridged asyncio future stays pending, as
        // any asyncio future pending at close); the scheduler's handles come back to be
        // dropped here, with nothing borrowed (their finalizers may call the loop)
        let closed = self.sched(py).close();
        let flush = std::mem::take(&mut self.state.borrow_mut(py)?.flush);
        let snapshot = self.snapshot.borrow_mut(py)?.take();
        drop(snapshot);
        let spare = self.read_spare.borrow_mut(py)?.take();
        drop(spare);
        let handles = std::mem::take(&mut *self.spare_handles.borrow_mut(py)?);
        drop(handles);
        let batch = self.recv_batch.borrow_mut(py)?.take();
        drop(batch);
        // The eventfd is closed now (a closed loop releases its descriptors at once): every
        // thread that could still push holds the GIL, as this one does, and finds the inbox
        // closed.
        self.inbox.waker().close();
        drop(closed);
        drop(flush);
        Ok(())
    }
}
