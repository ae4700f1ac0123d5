//! The loop's part in Python's cycle collector: what it holds (handles queued, timers,
//! watchers, transports waiting for the flush) and how it lets go.
//!
//! Threading: the collector's thread, holding the GIL.

use super::*;

#[pymethods]
impl EventLoop {
    /// Handles are not GC objects (handles.rs, "GC"): the loop visits the contents of each
    /// handle it owns exclusively, i.e. whose only reference is the one in this container
    /// slot (refcount 1). That attributes the handle's references to the loop, which is
    /// exact for such a handle. A handle held anywhere else, or twice by the loop (a reader
    /// also queued to run), is skipped: conservative (a cycle through it survives until it
    /// runs or the loop closes), never an over-count. O(1) per handle, no allocation.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(snap) = self.snapshot.try_borrow_for_gc() {
            if let Some(s) = snap.as_ref() {
                visit.call(s)?;
            }
        }
        if let Some(t) = self.future_type.try_borrow_for_gc() {
            if let Some(t) = t.as_ref() {
                visit.call(t)?;
            }
        }
        if let Some(st) = self.state.try_borrow_for_gc() {
            for f in &st.flush {
                visit.call(&f.owner)?;
            }
        }
        let visit_handle = |e: &PyEntry| {
            let h = &e.0;
            // SAFETY: h is a live object (the scheduler holds a reference to it).
            if unsafe { pyo3::ffi::Py_REFCNT(h.as_ptr()) } == 1 {
                h.get().traverse_contents(&visit)
            } else {
                Ok(())
            }
        };
        // the collector holds the GIL, so the scheduler may be read (each part is skipped
        // if borrowed right now)
        let sched = &self.sched.0;
        for visited in [
            sched.visit_ready(visit_handle),
            sched.visit_timers(visit_handle),
            sched.visit_watchers(visit_handle),
        ]
        .into_iter()
        .flatten()
        {
            visited?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let snap = self.snapshot.borrow_mut(py).ok().and_then(|mut s| s.take());
            drop(snap);
            let handles = self
                .spare_handles
                .borrow_mut(py)
                .ok()
                .map(|mut s| std::mem::take(&mut *s));
            drop(handles);
            // the loop is garbage: nothing can push any more; its Rust tasks and handles
            // are dropped
            let closed = self.sched.get(py).close();
            let flush = self
                .state
                .borrow_mut(py)
                .ok()
                .map(|mut st| std::mem::take(&mut st.flush));
            drop(closed);
            drop(flush);
        })
    }
}
