//! Descriptor watchers: asyncio's `_add_reader`/`_add_writer`/`_remove_*` over the
//! scheduler's registrations (level-triggered, one handle per descriptor and direction,
//! the replaced one cancelled as asyncio's selector loop does).
//!
//! Threading: loop thread, under the GIL.

use super::*;

impl EventLoop {
    pub(super) fn watch(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        write: bool,
    ) -> PyResult<Py<Handle>> {
        slf.get().check_closed()?;
        let fd = fileobj_to_fd(fd)?;
        slf.get()
            .check_callback(&callback, if write { "add_writer" } else { "add_reader" })?;
        Self::watch_fd(slf, fd, callback, args, write, false)
    }

    /// Watch a descriptor for a native caller (a transport): no argument checks. `once`:
    /// the caller stops watching after the first call that does not block (a `sock_*`
    /// wait), so the reactor may keep the registration parked for the next wait
    /// (reactor.rs, "One-shot waits").
    pub(crate) fn watch_fd(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        write: bool,
        once: bool,
    ) -> PyResult<Py<Handle>> {
        slf.get().check_closed()?;
        let handle = Self::make_handle(slf, callback, args, None, None, false)?;
        Self::register_watcher(slf, fd, &handle, write, once)?;
        Ok(handle)
    }

    /// Register `handle` as the watcher of `fd` (reading, or writing with `write`); the
    /// watcher it replaces is cancelled, as asyncio's `_add_reader` cancels the old handle.
    pub(super) fn register_watcher(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        handle: &Py<Handle>,
        write: bool,
        once: bool,
    ) -> PyResult<()> {
        let py = slf.py();
        let old = slf
            .get()
            .sched(py)
            .watch(fd, write, PyEntry(handle.clone_ref(py)), once)
            .map_err(sched_err)?;
        if let Some(PyEntry(old)) = old {
            Handle::do_cancel(old.bind(py))?;
        }
        Ok(())
    }

    pub(super) fn unwatch(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        write: bool,
    ) -> PyResult<bool> {
        if slf.get().closed.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match lookup_fd(fd)? {
            Some(fd) => Self::unwatch_fd(slf, fd, write),
            None => Ok(false),
        }
    }

    /// Stop watching a descriptor for a native caller; true if it was watched.
    pub(crate) fn unwatch_fd(slf: &Bound<'_, Self>, fd: RawFd, write: bool) -> PyResult<bool> {
        let py = slf.py();
        let me = slf.get();
        if me.closed.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let old = me.sched(py).unwatch(fd, write).map_err(sched_err)?;
        match old {
            Some(PyEntry(h)) => {
                Handle::do_cancel(h.bind(py))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[pymethods]
impl EventLoop {
    /// asyncio's `_add_reader`: watch `fd` for reading; returns the new handle.
    /// Whether `fd` is watched for reading (or writing): a transport's `repr`.
    fn _is_watched(&self, py: Python<'_>, fd: RawFd, write: bool) -> bool {
        !self.closed.load(Ordering::Relaxed) && self.sched(py).is_watched(fd, write)
    }

    #[pyo3(signature = (fd, callback, *args))]
    fn _add_reader(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        Self::watch(slf, fd, callback, args, false)
    }

    /// asyncio's `_add_writer`.
    #[pyo3(signature = (fd, callback, *args))]
    fn _add_writer(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        Self::watch(slf, fd, callback, args, true)
    }

    fn _remove_reader(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::unwatch(slf, fd, false)
    }

    fn _remove_writer(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::unwatch(slf, fd, true)
    }
}
