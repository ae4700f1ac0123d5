//! The attributes `BaseEventLoop` reads and writes (`_closed`, `_stopping`, `_debug`,
//! `_thread_id`, `_clock_resolution`, `_timer_cancelled_count`, `_ready`, `_scheduled`) as
//! native properties, so both halves of the loop see one state; and what the Python
//! `__init__`/`__setattr__` tell the native half (the clock, the future type).
//!
//! Threading: loop thread, under the GIL.

use super::*;

#[pymethods]
impl EventLoop {
    /// The loop's class overrides `time()`: read the clock through it (`python_clock`).
    fn _set_class_time(&self, overridden: bool) {
        self.class_time.store(overridden, Ordering::Relaxed);
    }

    /// A `time` was set on (true) or deleted from (false) the instance: the Python class's
    /// `__setattr__`/`__delattr__` tell, so that it becomes the loop's clock
    /// (`python_clock`), as asyncio reads `self.time()`. A flag kept this way instead of an
    /// instance-dict lookup per `call_later` (about 160 instructions, 5% of a timer scheduled
    /// and fired).
    fn _set_instance_time(&self, patched: bool) {
        self.instance_time.store(patched, Ordering::Relaxed);
    }

    /// Set (or clear, with None) the future type native code may make directly.
    fn _set_future_type(&self, py: Python<'_>, t: Option<Py<PyAny>>) -> PyResult<()> {
        let old = std::mem::replace(&mut *self.future_type.borrow_mut(py)?, t);
        drop(old);
        Ok(())
    }

    #[getter]
    fn _closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
    #[setter(_closed)]
    fn set_closed(&self, v: bool) {
        self.closed.store(v, Ordering::Relaxed)
    }

    #[getter]
    fn _stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
    #[setter(_stopping)]
    fn set_stopping(&self, v: bool) {
        self.stopping.store(v, Ordering::Relaxed)
    }

    #[getter]
    fn _debug(&self) -> bool {
        self.is_debug()
    }
    #[setter(_debug)]
    fn set_debug(&self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        self.debug.store(v.is_truthy()?, Ordering::Relaxed);
        Ok(())
    }

    #[getter]
    fn _thread_id(&self) -> Option<u64> {
        match self.thread_id.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }
    #[setter(_thread_id)]
    fn set_thread_id(&self, v: Option<u64>) {
        self.thread_id.store(v.unwrap_or(0), Ordering::Relaxed)
    }

    #[getter]
    fn _clock_resolution(&self) -> f64 {
        self.clock_resolution()
    }
    #[setter(_clock_resolution)]
    fn set_clock_resolution(&self, v: f64) {
        self.clock_resolution_bits
            .store(v.to_bits(), Ordering::Relaxed)
    }

    #[getter]
    fn _timer_cancelled_count(&self, py: Python<'_>) -> PyResult<usize> {
        self.sched(py).timer_cancelled_count().map_err(sched_err)
    }
    #[setter(_timer_cancelled_count)]
    fn set_timer_cancelled_count(&self, _v: usize) {
        // asyncio's __init__ sets 0; the heap keeps the real count.
    }

    /// asyncio's `loop._ready`: a snapshot list of the ready handles (tests poll it with
    /// `while loop._ready:`), with what other threads scheduled and the turn has not yet
    /// moved to the queue, unless a pusher holds the inbox's lock at this instant (the
    /// snapshot is taken without waiting). Assignments (`BaseEventLoop.__init__`) are ignored.
    #[getter]
    fn _ready(&self, py: Python<'_>) -> PyResult<Vec<Py<Handle>>> {
        snapshot(py, |f| self.sched(py).visit_ready(f))
    }
    #[setter(_ready)]
    fn set_ready(&self, _v: &Bound<'_, PyAny>) {}

    /// asyncio's `loop._scheduled`: a snapshot list of the scheduled timer handles.
    #[getter]
    fn _scheduled(&self, py: Python<'_>) -> PyResult<Vec<Py<Handle>>> {
        snapshot(py, |f| self.sched(py).visit_timers(f))
    }
    #[setter(_scheduled)]
    fn set_scheduled(&self, _v: &Bound<'_, PyAny>) {}
}

/// A list of the handles `visit` hands out (`Scheduler::visit_ready`/`visit_timers`).
fn snapshot(
    py: Python<'_>,
    visit: impl FnOnce(
        &mut dyn FnMut(&PyEntry) -> Result<(), std::convert::Infallible>,
    ) -> Option<Result<(), std::convert::Infallible>>,
) -> PyResult<Vec<Py<Handle>>> {
    let mut out = Vec::new();
    let visited = visit(&mut |h| {
        out.push(h.0.clone_ref(py));
        Ok(())
    });
    match visited {
        Some(_) => Ok(out),
        None => Err(sched_err(SchedError::Reentrant)),
    }
}
