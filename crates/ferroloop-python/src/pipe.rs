//! `PipeFast`: the per-chunk paths of ferroloop's pipe transports, native.
//!
//! The pipe transports (`python/ferroloop/_pipes.py`, ferroloop's own `ReadTransport` and
//! `WriteTransport`) keep their state as asyncio's (`_buffer`, `_closing`, `_conn_lost`,
//! `_protocol`...) and run everything that happens once per pipe or on an unusual path;
//! their per-chunk paths are this object's:
//!
//! * `_read_ready` (read pipes), a native watcher (`_watch`: the loop's turn calls it
//!   directly): `read` into the loop's spare buffer, an exactly sized `bytes` for
//!   `protocol.data_received`. End of file, and errors, go to the transport's own
//!   `_read_ready`, which reads again and sees the same end or error (both are sticky on a
//!   pipe), so closing and error reporting are the transport's.
//! * `write` (write pipes), bound on the instance: while nothing is buffered, one `write`
//!   of a `bytes`; a partial write or a full pipe goes to the transport's own `write` (with
//!   what is left), which buffers it and watches for writability; while something is
//!   buffered, an append to the buffer (`pause_writing` past the high-water mark, through
//!   the transport's method). Errors, closed pipes and other argument types are the
//!   transport's.
//! * `_write_ready` (write pipes), a native watcher: one `write` of the buffer when the
//!   pipe is writable; a partial write keeps the rest, the last ends the wait as asyncio
//!   does (writer removed, `resume_writing`, connection lost if closing); an error goes to
//!   the transport's own method.
//!
//! Threading: loop thread, under the GIL.

use std::os::unix::io::RawFd;

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};
use pyo3::{ffi, intern, PyTraverseError, PyVisit};

use crate::cell::GilCell;
use crate::event_loop::{EventLoop, NativeStep};
use crate::py_helpers;
use crate::transport::MAX_READ;

#[pyclass(module = "ferroloop._native", frozen)]
pub struct PipeFast {
    fd: RawFd,
    transport: GilCell<Option<Py<PyAny>>>,
    loop_: Py<EventLoop>,
}

/// `buffer += data` for a bytearray.
fn append(buffer: &Bound<'_, PyByteArray>, data: &[u8]) -> PyResult<()> {
    let old = buffer.len();
    buffer.resize(old + data.len())?;
    // SAFETY: the bytearray now has old + data.len() bytes; the tail is ours to fill and no
    // Python code runs meanwhile.
    unsafe {
        std::ptr::copy_nonoverlapping(
            data.as_ptr(),
            (ffi::PyByteArray_AsString(buffer.as_ptr()) as *mut u8).add(old),
            data.len(),
        );
    }
    Ok(())
}

impl PipeFast {
    /// asyncio's `_maybe_pause_protocol`, called only once the buffer passes the high-water
    /// mark (below it, asyncio's method does nothing).
    fn maybe_pause(&self, py: Python<'_>, tr: &Bound<'_, PyAny>, size: usize) -> PyResult<()> {
        let high: usize = tr.getattr(intern!(py, "_high_water"))?.extract()?;
        if size > high {
            tr.call_method0(intern!(py, "_maybe_pause_protocol"))?;
        }
        Ok(())
    }

    /// The transport's own `_write_ready`: an error, or a state the native path does not
    /// handle.
    fn slow_write_ready(&self, py: Python<'_>, tr: &Bound<'_, PyAny>) -> PyResult<()> {
        tr.call_method0(intern!(py, "_write_ready"))?;
        Ok(())
    }

    fn transport<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(self
            .transport
            .borrow_mut(py)?
            .as_ref()
            .map(|t| t.bind(py).clone()))
    }
}

fn read_once<'py>(
    lp: &EventLoop,
    py: Python<'py>,
    fd: RawFd,
) -> PyResult<std::io::Result<Bound<'py, PyBytes>>> {
    let spare = match lp.take_read_spare(py)? {
        Some(s) => s.into_bound(py),
        None => {
            // SAFETY: a NULL source makes an uninitialised bytes of MAX_READ bytes: a new
            // reference, or NULL with an exception set.
            let p = unsafe {
                ffi::PyBytes_FromStringAndSize(std::ptr::null(), MAX_READ as ffi::Py_ssize_t)
            };
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
        PipeFast {
            fd,
            transport: GilCell::new(Some(transport.unbind())),
            loop_: loop_.unbind(),
        }
    }

    /// A read pipe's `_read_ready`, data path native.
    fn _read_ready(&self, py: Python<'_>) -> PyResult<()> {
        let Some(tr) = self.transport(py)? else {
            return Ok(());
        };
        match read_once(self.loop_.get(), py, self.fd)? {
            Ok(data) if !data.as_bytes().is_empty() => {
                tr.getattr(intern!(py, "_protocol"))?
                    .call_method1(intern!(py, "data_received"), (data,))?;
                Ok(())
            }
            Err(e) if ferroloop::engine::sock::would_block(&e) => Ok(()),
            // end of file or an error: the transport's own method reads again and handles it
            _ => {
                tr.call_method0(intern!(py, "_read_ready"))?;
                Ok(())
            }
        }
    }

    /// A write pipe's `write`: an immediate write while nothing is buffered, an append to
    /// the buffer (flow control checked) while something is; every other case is the
    /// transport's own `write`.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let Some(tr) = self.transport(py)? else {
            return Ok(());
        };
        let slow =
            |d: &Bound<'_, PyAny>| py_helpers::call_class_method(&tr, intern!(py, "write"), &[d]);
        // SAFETY: a type check on a live object.
        if unsafe { ffi::PyBytes_Check(data.as_ptr()) } == 0 {
            return slow(data);
        }
        let bytes = data.cast::<PyBytes>()?.as_bytes();
        if bytes.is_empty()
            || tr.getattr(intern!(py, "_conn_lost"))?.is_truthy()?
            || tr.getattr(intern!(py, "_closing"))?.is_truthy()?
        {
            return slow(data);
        }
        let buffer = tr.getattr(intern!(py, "_buffer"))?;
        let Ok(buffer) = buffer.cast_exact::<PyByteArray>() else {
            return slow(data);
        };
        if !buffer.is_empty() {
            // the pipe is full: queue behind what waits, as asyncio's `_buffer += data`
            append(buffer, bytes)?;
            return self.maybe_pause(py, &tr, buffer.len());
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

    /// A write pipe's `_write_ready`: the pipe became writable while data waits. A partial write keeps the rest; the last one ends the wait (writer
    /// removed, `resume_writing` if paused, connection lost if closing); an error is
    /// asyncio's method's (the write fails again there, the same way).
    fn _write_ready(&self, py: Python<'_>) -> PyResult<()> {
        let Some(tr) = self.transport(py)? else {
            return Ok(());
        };
        let buffer = tr.getattr(intern!(py, "_buffer"))?;
        let Ok(buffer) = buffer.cast_exact::<PyByteArray>() else {
            return self.slow_write_ready(py, &tr);
        };
        let len = buffer.len();
        if len == 0 {
            return self.slow_write_ready(py, &tr);
        }
        let n = loop {
            // SAFETY: the bytearray's storage is readable for len bytes, and no Python code
            // runs (nothing can resize it) during the call.
            let n = unsafe {
                libc::write(
                    self.fd,
                    ffi::PyByteArray_AsString(buffer.as_ptr()).cast(),
                    len,
                )
            };
            if n >= 0 {
                break Ok(n as usize);
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                break Err(e);
            }
        };
        match n {
            Ok(n) if n == len => {
                buffer.resize(0)?;
                let lp = self.loop_.bind(py);
                EventLoop::unwatch_fd(lp, self.fd, true)?;
                tr.call_method0(intern!(py, "_maybe_resume_protocol"))?; // may append to the buffer
                if tr.getattr(intern!(py, "_closing"))?.is_truthy()? {
                    EventLoop::unwatch_fd(lp, self.fd, false)?;
                    tr.call_method1(intern!(py, "_call_connection_lost"), (py.None(),))?;
                }
                Ok(())
            }
            Ok(n) => {
                if n > 0 {
                    // SAFETY: a live bytearray; deleting its first n <= len bytes.
                    if unsafe { ffi::PySequence_DelSlice(buffer.as_ptr(), 0, n as ffi::Py_ssize_t) }
                        < 0
                    {
                        return Err(PyErr::fetch(py));
                    }
                }
                Ok(())
            }
            Err(e) if ferroloop::engine::sock::would_block(&e) => Ok(()),
            Err(_) => self.slow_write_ready(py, &tr),
        }
    }

    /// Watch the pipe for reading (a read pipe) or writing (a write pipe with data
    /// waiting): the loop's turn calls `_read_ready` or `_write_ready` directly.
    fn _watch(slf: &Bound<'_, Self>, write: bool) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let (name, step): (_, NativeStep) = if write {
            (intern!(py, "_write_ready"), |fast| {
                fast.cast::<PipeFast>()?.get()._write_ready(fast.py())
            })
        } else {
            (intern!(py, "_read_ready"), |fast| {
                fast.cast::<PipeFast>()?.get()._read_ready(fast.py())
            })
        };
        let callback = slf.getattr(name)?;
        EventLoop::watch_native(me.loop_.bind(py), me.fd, callback, write, step)
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
            let t = self
                .transport
                .borrow_mut(py)
                .ok()
                .and_then(|mut t| t.take());
            drop(t);
        })
    }
}
