//! What native transports ask of their loop: native watchers (`watch_native`, run by the
//! turn with no Python call between Rust and Rust), the end-of-phase flush of batched
//! writes (`defer`), the descriptors transports own, and the read and receive buffers
//! they borrow. Each transport module supplies its own steps (`NativeStep`), so the loop
//! names no transport type: transports sit above the loop, never beside it.
//!
//! Threading: loop thread, under the GIL.

use super::*;

/// A native transport's step that the loop calls directly, with no Python call between
/// Rust and Rust: a watcher's readiness step, or an end-of-phase flush. Its argument is the
/// transport's native object (a watcher's: its callback's `__self__`); each transport
/// module supplies its own, so this loop names no transport type.
pub(crate) type NativeStep = for<'py> fn(&Bound<'py, PyAny>) -> PyResult<()>;

/// The native steps of this loop's watchers (`Handle::native` is a step's number: its
/// index plus one). Each transport kind adds its few steps once.
#[derive(Default)]
pub(super) struct NativeSteps(Vec<NativeStep>);

impl NativeSteps {
    /// The number of `step`, added on its first use; `None` past the 255 a byte holds.
    fn number(&mut self, step: NativeStep) -> Option<u8> {
        let i = match self.0.iter().position(|s| std::ptr::fn_addr_eq(*s, step)) {
            Some(i) => i,
            None => {
                self.0.push(step);
                self.0.len() - 1
            }
        };
        u8::try_from(i + 1).ok()
    }

    #[inline]
    fn get(&self, number: u8) -> Option<NativeStep> {
        self.0.get(usize::from(number).checked_sub(1)?).copied()
    }
}

/// A transport waiting for the end-of-phase flush: its native object and flush step.
pub(super) struct Flush {
    pub(super) owner: Py<PyAny>,
    step: NativeStep,
    /// Flushed before the others, in a pass of its own, with the run phase marked once
    /// more: a TLS protocol's writes, whose records join their raw transport's batch.
    early: bool,
}

impl EventLoop {
    /// Watch a native transport's descriptor: `callback` is a bound builtin method of its
    /// native object (what `add_reader` would be given, and what runs in debug mode); the
    /// turn calls `step` with that object directly instead (`run_native`).
    pub(crate) fn watch_native(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        callback: Bound<'_, PyAny>,
        write: bool,
        step: NativeStep,
    ) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        me.check_closed()?;
        // SAFETY: a type check on a live object.
        let builtin = unsafe { ffi::PyCFunction_Check(callback.as_ptr()) } != 0;
        let number = if builtin {
            me.state.borrow_mut(py)?.native_steps.number(step)
        } else {
            None
        };
        // the handle `add_reader(fd, callback)` would make, marked with the step
        let handle = Self::make_handle(slf, callback, PyTuple::empty(py), None, None, false)?;
        if let Some(n) = number {
            handle.get().native.store(n, Ordering::Relaxed);
        }
        Self::register_watcher(slf, fd, &handle, write, false)
    }

    /// Run a native watcher's step (`Handle::native`) with its callback's `__self__`,
    /// directly, in the handle's context.
    #[inline(never)]
    pub(super) fn run_native(&self, h: &Bound<'_, Handle>, number: u8) -> PyResult<()> {
        let py = h.py();
        let Some(step) = self.state.borrow_mut(py)?.native_steps.get(number) else {
            return Handle::run_from_loop(h);
        };
        let owner = {
            let inner = h.get().inner.borrow_mut(py)?;
            match &inner.callback {
                // SAFETY: a native watcher's callback is a builtin method (`watch_native`
                // checked: a `PyCFunction`, whose self is a field read); the owner is
                // borrowed while the handle holds the method, and a new reference is taken
                // at once.
                Some(cb) => unsafe {
                    Bound::from_borrowed_ptr_or_opt(py, ffi::PyCFunction_GetSelf(cb.as_ptr()))
                },
                // emptied (cancelled meanwhile): nothing to run, as for any handle
                None => None,
            }
        };
        let Some(owner) = owner else {
            return Ok(());
        };
        Handle::run_native(h, &mut || step(&owner))
    }

    pub(super) fn flush_writes(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let mut pending = {
            let mut st = slf.get().state.borrow_mut(py)?;
            if st.flush.is_empty() {
                return Ok(());
            }
            std::mem::take(&mut st.flush)
        };
        let mut result = Ok(());
        let mut keep = |r: PyResult<()>| {
            if result.is_ok() {
                result = r;
            }
        };
        if pending.iter().any(|f| f.early) {
            // the early ones first, with the run phase marked once more: the records they
            // make join their raw transports' batches, listed now and flushed in this pass
            let (early, rest): (Vec<Flush>, Vec<Flush>) =
                pending.into_iter().partition(|f| f.early);
            let batching = slf.get().batching.swap(true, Ordering::Relaxed);
            for f in early {
                keep((f.step)(f.owner.bind(py)));
            }
            slf.get().batching.store(batching, Ordering::Relaxed);
            pending = rest;
            pending.append(&mut slf.get().state.borrow_mut(py)?.flush);
        }
        for f in pending {
            keep((f.step)(f.owner.bind(py)));
        }
        result
    }

    /// A transport's first write of this run phase: `step` flushes it when the phase ends
    /// (`early`: before the others, see `Flush`). False when no phase is running (the
    /// transport then writes at once).
    pub(crate) fn defer(
        &self,
        py: Python<'_>,
        owner: &Bound<'_, PyAny>,
        step: NativeStep,
        early: bool,
    ) -> PyResult<bool> {
        if !self.batching.load(Ordering::Relaxed) {
            return Ok(false);
        }
        self.state.borrow_mut(py)?.flush.push(Flush {
            owner: owner.clone().unbind(),
            step,
            early,
        });
        Ok(true)
    }

    /// A transport now owns `fd` (until `transport_fd_released`).
    pub(crate) fn transport_fd_taken(&self, py: Python<'_>, fd: RawFd) -> PyResult<()> {
        let mut st = self.state.borrow_mut(py)?;
        match st.transport_fds.get_mut(&fd) {
            Some(n) => *n += 1,
            None => {
                st.transport_fds.insert(fd, 1);
            }
        }
        Ok(())
    }

    pub(crate) fn transport_fd_released(&self, py: Python<'_>, fd: RawFd) -> PyResult<()> {
        let mut st = self.state.borrow_mut(py)?;
        if let Some(n) = st.transport_fds.get_mut(&fd) {
            *n -= 1;
            if *n == 0 {
                st.transport_fds.remove(&fd);
            }
        }
        Ok(())
    }

    /// Whether a transport may own `fd` (then the Python `_transports` map decides).
    pub(crate) fn maybe_transport_fd(&self, py: Python<'_>, fd: RawFd) -> PyResult<bool> {
        Ok(self.state.borrow_mut(py)?.transport_fds.contains_key(&fd))
    }

    /// Take the loop's spare read buffer (None if a transport holds it or none was made).
    pub(crate) fn take_read_spare(
        &self,
        py: Python<'_>,
    ) -> PyResult<Option<Py<pyo3::types::PyBytes>>> {
        Ok(self.read_spare.borrow_mut(py)?.take())
    }

    /// The datagram receive buffers (made on first use; a nested user gets new ones).
    pub(crate) fn take_recv_batch(
        &self,
        py: Python<'_>,
    ) -> PyResult<Box<ferroloop::engine::datagram::RecvBatch>> {
        Ok(self.recv_batch.borrow_mut(py)?.take().unwrap_or_default())
    }

    /// Give the datagram receive buffers back.
    pub(crate) fn put_recv_batch(
        &self,
        py: Python<'_>,
        batch: Box<ferroloop::engine::datagram::RecvBatch>,
    ) -> PyResult<()> {
        let old = self.recv_batch.borrow_mut(py)?.replace(batch);
        drop(old);
        Ok(())
    }

    /// Give the spare read buffer back for the next read.
    pub(crate) fn put_read_spare(
        &self,
        py: Python<'_>,
        spare: Py<pyo3::types::PyBytes>,
    ) -> PyResult<()> {
        let old = self.read_spare.borrow_mut(py)?.replace(spare);
        drop(old);
        Ok(())
    }
}

#[pymethods]
impl EventLoop {
    /// A Python transport (datagram, pipe) owns `fd`: `sock_*` must ask `_transports`.
    fn _transport_fd_taken(&self, py: Python<'_>, fd: RawFd) -> PyResult<()> {
        self.transport_fd_taken(py, fd)
    }

    fn _transport_fd_released(&self, py: Python<'_>, fd: RawFd) -> PyResult<()> {
        self.transport_fd_released(py, fd)
    }
}
