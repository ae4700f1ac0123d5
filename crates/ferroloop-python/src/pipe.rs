//! `PipeFast`: the per-chunk paths of the pipe transports, native.
//!
//! The pipe transports (`python/ferroloop/_pipes.py`) are asyncio's own Unix pipe
//! transports for everything that happens once per pipe or on an unusual path; their
//! per-chunk methods are replaced, per instance, by this object's bound methods:
//!
//! * `_read_ready` (read pipes): `read` into the loop's spare buffer, an exactly sized
//!   `bytes` for `protocol.data_received`. End of file, and errors, go to asyncio's own
//!   `_read_ready`, which reads again and sees the same end or error (both are sticky on a
//!   pipe), so closing and error reporting are asyncio's.
//! * `write` (write pipes): while nothing is buffered, one `write` of a `bytes`; a partial
//!   write, a full pipe, an error or any other argument goes to asyncio's own `write` (with
//!   what is left), so buffering, flow control and errors are asyncio's.
//!
//! Threading: loop thread, under the GIL.

use std::os::unix::io::RawFd;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyBytes;
use pyo3::{ffi, intern, PyTraverseError, PyVisit};

use crate::cell::GilCell;
use crate::event_loop::EventLoop;
use crate::transport::MAX_READ;

#[pyclass(module = "ferroloop._native", frozen)]
pub struct PipeFast {
    fd: RawFd,
    transport: GilCell<Option<Py<PyAny>>>,
    loop_: Py<EventLoop>,
}

fn asyncio_method<'py>(py: Python<'py>, cell: &'static PyOnceLock<Py<PyAny>>, class: &str, name: &str) -> PyResult<&'py Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || {
        let cls = py.import("asyncio.unix_events")?.getattr(class)?;
        Ok::<_, PyErr>(cls.getattr(name)?.unbind())
    })
    .map(|f| f.bind(py))
}

impl PipeFast {
    fn transport<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(self.transport.borrow_mut(py)?.as_ref().map(|t| t.bind(py).clone()))
    }
}

fn read_once<'py>(lp: &EventLoop, py: Python<'py>, fd: RawFd) -> PyResult<std::io::Result<Bound<'py, PyBytes>>> {
    let spare = match lp.take_read_spare(py)? {
        Some(s) => s.into_bound(py),
        None => {
            // SAFETY: a NULL source makes an uninitialised bytes of MAX_READ bytes: a new
            // reference, or NULL with an exception set.
            let p = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), MAX_READ as ffi::Py_ssize_t) };
            // SAFETY: p is a new reference or NULL (error fetched).
            unsafe { Bound::from_owned_ptr_or_err(py, p)?.cast_into_unchecked::<PyBytes>() }
        }
    };
    // SAFETY: spare is a live bytes of MAX_READ bytes that no Python code sees.
    let buf = unsafe { ffi::PyBytes_AsString(spare.as_ptr()) } as *mut u8;
    let got = loop {
        // SAFETY: buf is valid for MAX_READ writable bytes.
        let n = unsafe { libc::read(fd, buf.cast(), MAX_READ) };
        if n >= 0 {
            break Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            break Err(e);
        }
    };
    // SAFETY: read wrote the first n bytes of buf.
    let out = got.map(|n| PyBytes::new(py, unsafe { std::slice::from_raw_parts(buf, n) }));
    lp.put_read_spare(py, spare.unbind())?;
    Ok(out)
}

#[pymethods]
impl PipeFast {
    #[new]
    fn py_new(transport: Bound<'_, PyAny>, loop_: Bound<'_, EventLoop>, fd: RawFd) -> Self {
        PipeFast { fd, transport: GilCell::new(Some(transport.unbind())), loop_: loop_.unbind() }
    }

    /// asyncio's `_UnixReadPipeTransport._read_ready`, data path native.
    fn _read_ready(&self, py: Python<'_>) -> PyResult<()> {
        static SLOW: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let Some(tr) = self.transport(py)? else { return Ok(()) };
        match read_once(self.loop_.get(), py, self.fd)? {
            Ok(data) if !data.as_bytes().is_empty() => {
                tr.getattr(intern!(py, "_protocol"))?.call_method1(intern!(py, "data_received"), (data,))?;
                Ok(())
            }
            Err(e) if ferroloop::sock::would_block(&e) => Ok(()),
            // end of file or an error: asyncio's own method reads again and handles it
            _ => {
                asyncio_method(py, &SLOW, "_UnixReadPipeTransport", "_read_ready")?.call1((tr,))?;
                Ok(())
            }
        }
    }

    /// asyncio's `_UnixWritePipeTransport.write`, immediate write native.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        static SLOW: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let Some(tr) = self.transport(py)? else { return Ok(()) };
        let slow = |d: &Bound<'_, PyAny>| asyncio_method(py, &SLOW, "_UnixWritePipeTransport", "write")?.call1((&tr, d)).map(|_| ());
        // SAFETY: a type check on a live object.
        if unsafe { ffi::PyBytes_Check(data.as_ptr()) } == 0 {
            return slow(data);
        }
        let bytes = data.cast::<PyBytes>()?.as_bytes();
        if bytes.is_empty()
            || tr.getattr(intern!(py, "_conn_lost"))?.is_truthy()?
            || tr.getattr(intern!(py, "_closing"))?.is_truthy()?
            || tr.getattr(intern!(py, "_buffer"))?.is_truthy()?
        {
            return slow(data);
        }
        // SAFETY: bytes is readable for its length during the call.
        let n = unsafe { libc::write(self.fd, bytes.as_ptr().cast(), bytes.len()) };
        if n >= 0 && n as usize == bytes.len() {
            return Ok(());
        }
        if n > 0 {
            let rest = PyBytes::new(py, &bytes[n as usize..]);
            return slow(rest.as_any());
        }
        slow(data) // a full pipe or an error: asyncio's write tries again and handles it
    }

    /// Let go of the transport (connection lost).
    fn _detach(&self, py: Python<'_>) -> PyResult<()> {
        let old = self.transport.borrow_mut(py)?.take();
        drop(old);
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        if let Some(t) = self.transport.try_borrow_for_gc() {
            if let Some(t) = t.as_ref() {
                visit.call(t)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let t = self.transport.borrow_mut(py).ok().and_then(|mut t| t.take());
            drop(t);
        })
    }
}
