//! `SocketTransportCore`: the native engine of a TCP or Unix stream transport.
//!
//! asyncio's `_SelectorSocketTransport`, per event: reading (`recv` into the loop's spare
//! `bytes`, handed over or copied out exactly sized for `data_received`; or straight into the
//! buffer of a `BufferedProtocol`), writing (`WriteQueue`: try to send at once, otherwise
//! queue and wait for writability), flow control with asyncio's watermarks, end of stream,
//! `close`/`abort` and the `connection_lost` call. The Python class
//! `ferroloop._transports.SocketTransport` (a real `asyncio.Transport`) wraps one core and
//! binds the hot methods (`write`, ...) of the core into its instance dict, so a protocol's
//! `transport.write(data)` is one native call.
//!
//! Write batching: a write made while the loop runs callbacks (the run phase of a turn) is
//! queued, and the loop flushes every such transport once when the phase ends: several
//! writes of one turn leave in one vectored `sendmsg` (for example a response's headers and
//! body). Batched bytes count as sent (`get_write_buffer_size` is 0 for them, as it would be
//! in asyncio after an immediate send); a batch stops growing at `BATCH_LIMIT` bytes and is
//! sent at once then, so a writer that never yields cannot queue without bound. `close()`,
//! `write_eof()` and sendfile's empty waiter turn a pending batch into ordinary buffered data
//! (sent when writable, then the close or `shutdown` follows, as asyncio does with a
//! buffer).
//!
//! Errors follow asyncio: an exception of a protocol callback goes to the transport's
//! `_fatal_error` (the loop's exception handler, then a forced close), `SystemExit` and
//! `KeyboardInterrupt` propagate; socket errors are `OSError` subclasses from errno.
//!
//! Threading: loop thread only, under the GIL. All mutable state is in one `GilCell` (never
//! borrowed across a call into Python) or in atomics used as plain flags.

use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use ferroloop::engine::{sock, WriteQueue};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyTuple, PyType};
use pyo3::{ffi, intern, PyTraverseError, PyVisit};

use crate::cell::GilCell;
use crate::event_loop::{EventLoop, NativeStep};
use crate::py_helpers;

/// asyncio's `max_size`: the most one read asks for.
pub(crate) const MAX_READ: usize = 256 * 1024;
/// A run-phase batch is sent at once when it would grow past this.
const BATCH_LIMIT: usize = 64 * 1024;
/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

/// One `recv` of at most `max` (<= `MAX_READ`) bytes; an empty `bytes` at end of stream.
///
/// Decision: the read lands in the loop's long-lived spare buffer of `MAX_READ` bytes and is
/// copied into an exactly sized `bytes`. Measured alternative: handing the spare itself over,
/// shrunk in place (no copy), made every read allocate a fresh 256 KiB object, which glibc
/// serves by `mmap`: page faults and `munmap` took 24% of a 100 KiB echo server's time,
/// against 10% for the copy. Large reads in a row skip the copy another way
/// (`recv_into_new`, `BIG_READ`).
pub(crate) fn recv_bytes<'py>(
    lp: &EventLoop,
    py: Python<'py>,
    fd: RawFd,
    max: usize,
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
    // SAFETY: spare is a live bytes object of MAX_READ bytes that only the loop references
    // and no Python code sees, so its buffer is ours to fill until we give it back.
    let buf = unsafe { ffi::PyBytes_AsString(spare.as_ptr()) } as *mut u8;
    // SAFETY: buf is valid for MAX_READ >= max writable bytes (above).
    let got = unsafe { sock::recv_raw(fd, buf, max.min(MAX_READ)) };
    // SAFETY: the first n bytes of buf were written by recv.
    let out = got.map(|n| PyBytes::new(py, unsafe { std::slice::from_raw_parts(buf, n) }));
    lp.put_read_spare(py, spare.unbind())?;
    Ok(out)
}

/// A read of at least this many bytes makes a transport's next read a direct one
/// (`recv_into_new`): a stream of large data is not copied a second time; a small read
/// goes back to the spare buffer (a 1 KiB message costs less copied than allocated at
/// `DIRECT_READ_MAX` and shrunk: callgrind, 8,960 vs 9,215 instructions per read).
const BIG_READ: usize = 32 * 1024;

/// Direct reads per readiness event at most, while each fills its buffer.
const DIRECT_READS_PER_EVENT: usize = 3;

/// Reads of at most this many bytes go straight into a new `bytes` (`recv_into_new`):
/// clearly below glibc's initial `mmap` threshold (128 KiB), so the allocation comes from
/// the heap, not from a fresh mapping per read.
pub(crate) const DIRECT_READ_MAX: usize = 96 * 1024;

/// One `recv` of at most `max` (1..=`DIRECT_READ_MAX`) bytes straight into a new `bytes`,
/// shrunk to what arrived, as the socket module's `recv` does: no copy, where
/// `recv_bytes` copies out of the spare buffer (measured: a 100 KiB `sock_recv` echo spent
/// about 7 us per message more than rloop's with the copy).
///
/// Shrinking uses CPython's private `_PyBytes_Resize` (`private_api.rs`); with the private
/// fast paths off, the read goes into a temporary buffer and is copied out.
pub(crate) fn recv_into_new<'py>(
    py: Python<'py>,
    fd: RawFd,
    max: usize,
) -> PyResult<std::io::Result<Bound<'py, PyBytes>>> {
    debug_assert!(max > 0 && max <= DIRECT_READ_MAX);
    if !crate::private_api::allowed() {
        let mut buf = vec![0u8; max];
        // SAFETY: buf is a live, writable allocation of `max` bytes.
        return Ok(unsafe { sock::recv_raw(fd, buf.as_mut_ptr(), max) }
            .map(|n| PyBytes::new(py, &buf[..n])));
    }
    // SAFETY: a NULL source makes an uninitialised bytes of `max` (> 0, so not the shared
    // empty object) bytes: a new reference, or NULL with an exception set.
    let mut p = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), max as ffi::Py_ssize_t) };
    if p.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: p is a new bytes of `max` bytes that no one else has seen yet.
    let got = unsafe { sock::recv_raw(fd, ffi::PyBytes_AsString(p) as *mut u8, max) };
    match got {
        Ok(n) => {
            if n != max {
                // SAFETY: p is our only reference to a new bytes; _PyBytes_Resize replaces it
                // (or frees it and sets NULL with an exception).
                if unsafe { ffi::_PyBytes_Resize(&mut p, n as ffi::Py_ssize_t) } != 0 {
                    return Err(PyErr::fetch(py));
                }
            }
            // SAFETY: p is a new reference to a bytes.
            Ok(Ok(unsafe {
                Bound::from_owned_ptr(py, p).cast_into_unchecked::<PyBytes>()
            }))
        }
        Err(e) => {
            // SAFETY: our only reference to the unused bytes.
            unsafe { ffi::Py_DECREF(p) };
            Ok(Err(e))
        }
    }
}

/// A `bytes` object queued for sending, read without a copy.
pub struct SharedBytes(Py<PyBytes>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        let p = self.0.as_ptr();
        // SAFETY: p is a live `bytes` (we hold a reference) and bytes are immutable, so its
        // buffer stays valid and unchanged while this reference exists. The queue is only
        // used under the GIL.
        unsafe {
            let data = ffi::PyBytes_AsString(p) as *const u8;
            std::slice::from_raw_parts(data, ffi::PyBytes_Size(p) as usize)
        }
    }
}

#[derive(Default)]
struct State {
    loop_: Option<Py<EventLoop>>,
    sock: Option<Py<PyAny>>,
    protocol: Option<Py<PyAny>>,
    /// `protocol.data_received`, bound once per protocol (at creation and `set_protocol`),
    /// as uvloop does: not looked up by name on every read. `None` when the protocol has no
    /// such attribute (the call then looks it up, and fails, as asyncio's would).
    data_received: Option<Py<PyAny>>,
    /// The Python `SocketTransport` wrapping this core (error contexts, reprs).
    transport: Option<Py<PyAny>>,
    server: Option<Py<PyAny>>,
    empty_waiter: Option<Py<PyAny>>,
    /// `self._read_ready` / `self._write_ready`, bound once: the loop's watcher callbacks.
    read_cb: Option<Py<PyAny>>,
    write_cb: Option<Py<PyAny>>,
    buffer: WriteQueue<SharedBytes>,
}

#[pyclass(module = "ferroloop._native", frozen)]
pub struct SocketTransportCore {
    fd: RawFd,
    state: GilCell<State>,
    buffered_protocol: AtomicBool,
    protocol_connected: AtomicBool,
    closing: AtomicBool,
    paused: AtomicBool,
    eof: AtomicBool,
    /// The writer is registered: the queue holds bytes the kernel refused.
    waiting: AtomicBool,
    /// In the loop's end-of-phase flush list.
    queued: AtomicBool,
    reading: AtomicBool,
    /// The last read was large (`BIG_READ` or more): read straight into a new `bytes`.
    big_reads: AtomicBool,
    protocol_paused: AtomicBool,
    conn_lost: AtomicU32,
    high_water: AtomicUsize,
    low_water: AtomicUsize,
}

/// `protocol.data_received` as a bound method, or `None` if the lookup fails (the failure
/// then surfaces where asyncio's would: at the call, as a fatal read error).
fn bound_data_received(protocol: &Bound<'_, PyAny>) -> Option<Py<PyAny>> {
    protocol
        .getattr(intern!(protocol.py(), "data_received"))
        .ok()
        .map(Bound::unbind)
}

fn buffered_protocol_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static T: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    T.import(py, "asyncio.protocols", "BufferedProtocol")
}

impl SocketTransportCore {
    fn loop_<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, EventLoop>>> {
        Ok(self
            .state
            .borrow_mut(py)?
            .loop_
            .as_ref()
            .map(|l| l.bind(py).clone()))
    }

    fn protocol<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(self
            .state
            .borrow_mut(py)?
            .protocol
            .as_ref()
            .map(|p| p.bind(py).clone()))
    }

    fn transport<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(self
            .state
            .borrow_mut(py)?
            .transport
            .as_ref()
            .map(|p| p.bind(py).clone()))
    }

    fn is_reading_now(&self) -> bool {
        !self.closing.load(Ordering::Relaxed) && !self.paused.load(Ordering::Relaxed)
    }

    /// What asyncio's `get_write_buffer_size` reports: bytes the kernel refused so far.
    fn buffer_size(&self, py: Python<'_>) -> PyResult<usize> {
        if !self.waiting.load(Ordering::Relaxed) {
            return Ok(0);
        }
        Ok(self.state.borrow_mut(py)?.buffer.len())
    }

    fn buffer_is_empty(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.state.borrow_mut(py)?.buffer.is_empty())
    }

    fn watch(slf: &Bound<'_, Self>, write: bool) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let Some(lp) = me.loop_(py)? else {
            return Ok(());
        };
        let cb = {
            let mut st = me.state.borrow_mut(py)?;
            let slot = if write {
                &mut st.write_cb
            } else {
                &mut st.read_cb
            };
            slot.as_ref().map(|c| c.bind(py).clone())
        };
        let cb = match cb {
            Some(cb) => cb,
            None => {
                let cb = slf.getattr(if write {
                    intern!(py, "_write_ready")
                } else {
                    intern!(py, "_read_ready")
                })?;
                let mut st = me.state.borrow_mut(py)?;
                *(if write {
                    &mut st.write_cb
                } else {
                    &mut st.read_cb
                }) = Some(cb.clone().unbind());
                cb
            }
        };
        let step: NativeStep = if write {
            |core| Self::_write_ready(core.cast()?)
        } else {
            |core| Self::_read_ready(core.cast()?)
        };
        EventLoop::watch_native(&lp, me.fd, cb, write, step)?;
        if write {
            me.waiting.store(true, Ordering::Relaxed);
        } else {
            me.reading.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    fn unwatch(slf: &Bound<'_, Self>, write: bool) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        if write {
            me.waiting.store(false, Ordering::Relaxed);
        } else {
            me.reading.store(false, Ordering::Relaxed);
        }
        if let Some(lp) = me.loop_(py)? {
            EventLoop::unwatch_fd(&lp, me.fd, write)?;
        }
        Ok(())
    }

    fn call_soon(
        slf: &Bound<'_, Self>,
        method: &Bound<'_, pyo3::types::PyString>,
        arg: Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let Some(lp) = slf.get().loop_(py)? else {
            return Ok(());
        };
        let cb = slf.getattr(method)?;
        EventLoop::call_soon(&lp, cb, PyTuple::new(py, [arg])?, None)?;
        Ok(())
    }

    /// asyncio's `_fatal_error`: through the Python wrapper, which reports and force-closes.
    fn fatal_error(slf: &Bound<'_, Self>, err: PyErr, message: &str) -> PyResult<()> {
        let py = slf.py();
        if py_helpers::is_exit(py, &err) {
            return Err(err);
        }
        match slf.get().transport(py)? {
            Some(tr) => {
                tr.call_method1(intern!(py, "_fatal_error"), (err.into_value(py), message))?;
                Ok(())
            }
            None => Self::force_close(slf, Some(err.into_value(py).into_bound(py).into_any())),
        }
    }

    /// asyncio's `_force_close`.
    fn force_close(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        if me.conn_lost.load(Ordering::Relaxed) > 0 {
            return Ok(());
        }
        // writes batched during this turn were, in asyncio, sent by write() itself: send
        // them now (what the kernel takes leaves), then drop the rest as asyncio does
        if me.queued.load(Ordering::Relaxed) && !me.waiting.load(Ordering::Relaxed) {
            if let Err(e) = me.send_queue(py)? {
                drop(e); // the connection is being torn down anyway
            }
        }
        let had_buffer = !me.buffer_is_empty(py)?;
        if had_buffer {
            me.state.borrow_mut(py)?.buffer.clear();
            Self::unwatch(slf, true)?;
        }
        if !me.closing.swap(true, Ordering::Relaxed) {
            Self::unwatch(slf, false)?;
        }
        me.conn_lost.fetch_add(1, Ordering::Relaxed);
        let exc = exc.unwrap_or_else(|| py.None().into_bound(py));
        Self::call_soon(slf, intern!(py, "_call_connection_lost"), exc)
    }

    /// Send the queue until the kernel refuses or it is empty. `Err` is the socket error
    /// (the queue is left as it was for the caller to clear).
    fn send_queue(&self, py: Python<'_>) -> PyResult<Result<(), std::io::Error>> {
        let mut st = self.state.borrow_mut(py)?;
        loop {
            match st.buffer.flush(self.fd) {
                Ok(0) => return Ok(Ok(())),
                Ok(_) if st.buffer.is_empty() => return Ok(Ok(())),
                Ok(_) => continue,
                Err(e) => return Ok(Err(e)),
            }
        }
    }

    /// Send what is queued now; what the kernel refuses waits for writability.
    fn flush_now(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        if let Err(e) = me.send_queue(py)? {
            me.state.borrow_mut(py)?.buffer.clear();
            return Self::fatal_error(
                slf,
                py_helpers::os_error(e),
                "Fatal write error on socket transport",
            );
        }
        if !me.buffer_is_empty(py)? {
            Self::watch(slf, true)?;
            Self::maybe_pause_protocol(slf)?;
        }
        Ok(())
    }

    /// Called by the loop at the end of the run phase for each transport that batched.
    pub(crate) fn flush_batch(slf: &Bound<'_, Self>) -> PyResult<()> {
        let me = slf.get();
        me.queued.store(false, Ordering::Relaxed);
        if me.waiting.load(Ordering::Relaxed) || me.conn_lost.load(Ordering::Relaxed) > 0 {
            return Ok(());
        }
        if me.buffer_is_empty(slf.py())? {
            return Ok(());
        }
        Self::flush_now(slf)
    }

    /// A pending batch becomes ordinary buffered data, sent when the socket is writable.
    fn batch_to_buffer(slf: &Bound<'_, Self>) -> PyResult<()> {
        let me = slf.get();
        if !me.waiting.load(Ordering::Relaxed) && !me.buffer_is_empty(slf.py())? {
            Self::watch(slf, true)?;
        }
        Ok(())
    }

    fn maybe_pause_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        if me.buffer_size(py)? <= me.high_water.load(Ordering::Relaxed) {
            return Ok(());
        }
        if me.protocol_paused.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        Self::flow_call(
            slf,
            intern!(py, "pause_writing"),
            "protocol.pause_writing() failed",
        )
    }

    fn maybe_resume_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        if me.protocol_paused.load(Ordering::Relaxed)
            && me.buffer_size(py)? <= me.low_water.load(Ordering::Relaxed)
        {
            me.protocol_paused.store(false, Ordering::Relaxed);
            return Self::flow_call(
                slf,
                intern!(py, "resume_writing"),
                "protocol.resume_writing() failed",
            );
        }
        Ok(())
    }

    fn flow_call(
        slf: &Bound<'_, Self>,
        method: &Bound<'_, pyo3::types::PyString>,
        message: &str,
    ) -> PyResult<()> {
        let py = slf.py();
        let Some(protocol) = slf.get().protocol(py)? else {
            return Ok(());
        };
        match protocol.call_method0(method) {
            Ok(_) => Ok(()),
            Err(e) if py_helpers::is_exit(py, &e) => Err(e),
            Err(e) => {
                let tr = slf.get().transport(py)?;
                let lp = slf.get().loop_(py)?;
                if let Some(lp) = lp {
                    let ctx = pyo3::types::PyDict::new(py);
                    ctx.set_item("message", message)?;
                    ctx.set_item("exception", e.into_value(py))?;
                    ctx.set_item("transport", tr)?;
                    ctx.set_item("protocol", protocol)?;
                    lp.call_method1(intern!(py, "call_exception_handler"), (ctx,))?;
                }
                Ok(())
            }
        }
    }

    fn read_data(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let Some(lp) = me.loop_(py)? else {
            return Ok(());
        };
        for _ in 0..DIRECT_READS_PER_EVENT {
            // while large reads come in, read straight into a new bytes (no copy); small
            // ones are copied out of the loop's spare buffer (no large allocation per read)
            let direct = me.big_reads.load(Ordering::Relaxed);
            let got = if direct {
                recv_into_new(py, me.fd, DIRECT_READ_MAX)?
            } else {
                recv_bytes(lp.get(), py, me.fd, MAX_READ)?
            };
            let data = match got {
                Ok(data) if data.as_bytes().is_empty() => return Self::on_eof(slf),
                Ok(data) => data,
                Err(e) if sock::would_block(&e) => return Ok(()),
                Err(e) => {
                    return Self::fatal_error(
                        slf,
                        py_helpers::os_error(e),
                        "Fatal read error on socket transport",
                    )
                }
            };
            let n = data.as_bytes().len();
            me.big_reads.store(n >= BIG_READ, Ordering::Relaxed);
            let (protocol, method) = {
                let st = me.state.borrow_mut(py)?;
                let Some(protocol) = st.protocol.as_ref().map(|p| p.bind(py).clone()) else {
                    return Ok(());
                };
                (
                    protocol,
                    st.data_received.as_ref().map(|m| m.bind(py).clone()),
                )
            };
            let called = match method {
                Some(m) => m.call1((data,)),
                None => protocol.call_method1(intern!(py, "data_received"), (data,)),
            };
            if let Err(e) = called {
                return Self::fatal_error(
                    slf,
                    e,
                    "Fatal error: protocol.data_received() call failed.",
                );
            }
            // a direct read that filled its buffer was cut short by it (a spare-buffer read
            // takes up to 256 KiB): read on in this event, as long as the protocol wants
            // data, so a large message costs no extra loop turn
            let read_on = direct
                && n == DIRECT_READ_MAX
                && me.is_reading_now()
                && me.conn_lost.load(Ordering::Relaxed) == 0;
            if !read_on {
                break;
            }
        }
        Ok(())
    }

    fn read_buffered(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let Some(protocol) = me.protocol(py)? else {
            return Ok(());
        };
        let buf = match protocol.call_method1(intern!(py, "get_buffer"), (-1,)) {
            Ok(buf) => match buf.len() {
                Ok(0) => Err(PyRuntimeError::new_err(
                    "get_buffer() returned an empty buffer",
                )),
                Ok(_) => Ok(buf),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let buf = match buf {
            Ok(buf) => buf,
            Err(e) => {
                return Self::fatal_error(slf, e, "Fatal error: protocol.get_buffer() call failed.")
            }
        };
        let got = match recv_into(py, me.fd, &buf) {
            Ok(r) => r,
            Err(e) => return Self::fatal_error(slf, e, "Fatal read error on socket transport"),
        };
        let n = match got {
            Ok(0) => return Self::on_eof(slf),
            Ok(n) => n,
            Err(e) if sock::would_block(&e) => return Ok(()),
            Err(e) => {
                return Self::fatal_error(
                    slf,
                    py_helpers::os_error(e),
                    "Fatal read error on socket transport",
                )
            }
        };
        if let Err(e) = protocol.call_method1(intern!(py, "buffer_updated"), (n,)) {
            return Self::fatal_error(
                slf,
                e,
                "Fatal error: protocol.buffer_updated() call failed.",
            );
        }
        Ok(())
    }

    fn on_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        if let Some(lp) = me.loop_(py)? {
            if lp.get().is_debug() {
                if let Some(tr) = me.transport(py)? {
                    crate::py_helpers::transport_debug(&tr, "%r received EOF")?;
                }
            }
        }
        let Some(protocol) = me.protocol(py)? else {
            return Ok(());
        };
        let keep_open = match protocol.call_method0(intern!(py, "eof_received")) {
            Ok(v) => v.is_truthy(),
            Err(e) => {
                return Self::fatal_error(
                    slf,
                    e,
                    "Fatal error: protocol.eof_received() call failed.",
                )
            }
        };
        match keep_open {
            Ok(true) => Self::unwatch(slf, false),
            Ok(false) => Self::close(slf),
            Err(e) => {
                Self::fatal_error(slf, e, "Fatal error: protocol.eof_received() call failed.")
            }
        }
    }
}

/// `recv` into the writable buffer `buf` exports. The outer `Err` is a buffer error (the
/// object is not a writable contiguous buffer), the inner one the socket's.
fn recv_into(
    py: Python<'_>,
    fd: RawFd,
    buf: &Bound<'_, PyAny>,
) -> PyResult<Result<usize, std::io::Error>> {
    let mut view = std::mem::MaybeUninit::<ffi::Py_buffer>::uninit();
    // SAFETY: buf is a live object; on success PyObject_GetBuffer fills `view`, which we
    // release below exactly once.
    let rc =
        unsafe { ffi::PyObject_GetBuffer(buf.as_ptr(), view.as_mut_ptr(), ffi::PyBUF_WRITABLE) };
    if rc != 0 {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: PyObject_GetBuffer succeeded, so view is initialised.
    let mut view = unsafe { view.assume_init() };
    // SAFETY: the exported buffer is writable and `len` bytes long until released; nothing
    // runs Python code (which could resize the exporter) during the recv.
    let r = unsafe { sock::recv_raw(fd, view.buf as *mut u8, view.len as usize) };
    // SAFETY: releasing the view obtained above.
    unsafe { ffi::PyBuffer_Release(&mut view) };
    Ok(r)
}

#[pymethods]
impl SocketTransportCore {
    #[new]
    fn py_new(
        py: Python<'_>,
        loop_: Bound<'_, EventLoop>,
        sock: Bound<'_, PyAny>,
        protocol: Bound<'_, PyAny>,
        transport: Bound<'_, PyAny>,
        server: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let fd: RawFd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
        let buffered = protocol.is_instance(buffered_protocol_type(py)?)?;
        loop_.get().transport_fd_taken(py, fd)?;
        Ok(SocketTransportCore {
            fd,
            state: GilCell::new(State {
                loop_: Some(loop_.unbind()),
                sock: Some(sock.unbind()),
                data_received: bound_data_received(&protocol),
                protocol: Some(protocol.unbind()),
                transport: Some(transport.unbind()),
                server: server.filter(|s| !s.is_none()).map(Bound::unbind),
                ..State::default()
            }),
            buffered_protocol: AtomicBool::new(buffered),
            protocol_connected: AtomicBool::new(true),
            closing: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            eof: AtomicBool::new(false),
            waiting: AtomicBool::new(false),
            queued: AtomicBool::new(false),
            reading: AtomicBool::new(false),
            big_reads: AtomicBool::new(false),
            protocol_paused: AtomicBool::new(false),
            conn_lost: AtomicU32::new(0),
            high_water: AtomicUsize::new(64 * 1024),
            low_water: AtomicUsize::new(16 * 1024),
        })
    }

    /// Queue `data` (bytes, bytearray or memoryview) for sending; asyncio's `write`.
    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let p = data.as_ptr();
        // SAFETY: p is a live object; the checks only read its type.
        let (is_bytes, is_other) = unsafe {
            (
                ffi::PyBytes_Check(p) != 0,
                ffi::PyByteArray_Check(p) != 0 || ffi::PyMemoryView_Check(p) != 0,
            )
        };
        if !is_bytes && !is_other {
            return Err(PyTypeError::new_err(
                format!(
                    "data argument must be a bytes-like object, not {:?}",
                    data.get_type().name()?.to_string()
                )
                .replace('"', "'"),
            ));
        }
        if me.eof.load(Ordering::Relaxed) {
            return Err(PyRuntimeError::new_err(
                "Cannot call write() after write_eof()",
            ));
        }
        if me.state.borrow_mut(py)?.empty_waiter.is_some() {
            return Err(PyRuntimeError::new_err(
                "unable to write; sendfile is in progress",
            ));
        }
        let len = data.len()?;
        if len == 0 {
            return Ok(());
        }
        let lost = me.conn_lost.load(Ordering::Relaxed);
        if lost > 0 {
            if lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES {
                py_helpers::send_after_lost_warning(py)?;
            }
            me.conn_lost.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let waiting = me.waiting.load(Ordering::Relaxed);
        if is_bytes {
            me.state
                .borrow_mut(py)?
                .buffer
                .push_shared(SharedBytes(data.cast::<PyBytes>()?.clone().unbind()));
        } else {
            let mut view = std::mem::MaybeUninit::<ffi::Py_buffer>::uninit();
            // SAFETY: p is live; on success the view is released below exactly once.
            if unsafe { ffi::PyObject_GetBuffer(p, view.as_mut_ptr(), ffi::PyBUF_SIMPLE) } != 0 {
                let err = PyErr::fetch(py);
                if waiting && py.version_info() < (3, 12) {
                    // 3.11 appends to its bytearray buffer, which refuses the memoryview
                    return Err(PyTypeError::new_err(
                        "can't set bytearray slice from memoryview",
                    ));
                }
                // asyncio's `sock.send(data)` asks for the same contiguous buffer: a
                // non-contiguous memoryview is its fatal write error (`BufferError`); 3.12+
                // meet it when the bytes before it have left, here it is at once
                return Self::fatal_error(slf, err, "Fatal write error on socket transport");
            }
            // SAFETY: PyObject_GetBuffer succeeded.
            let mut view = unsafe { view.assume_init() };
            let pushed = me.state.borrow_mut(py).map(|mut st| {
                // SAFETY: the view's buffer is `len` readable bytes until it is released.
                st.buffer.push_copy(unsafe {
                    std::slice::from_raw_parts(view.buf as *const u8, view.len as usize)
                })
            });
            // SAFETY: releasing the view obtained above.
            unsafe { ffi::PyBuffer_Release(&mut view) };
            pushed?;
        }
        if waiting {
            return Self::maybe_pause_protocol(slf);
        }
        let batch_len = me.state.borrow_mut(py)?.buffer.len();
        if batch_len <= BATCH_LIMIT {
            if me.queued.load(Ordering::Relaxed) {
                return Ok(());
            }
            if let Some(lp) = me.loop_(py)? {
                if lp
                    .get()
                    .defer(py, slf, |core| Self::flush_batch(core.cast()?), false)?
                {
                    me.queued.store(true, Ordering::Relaxed);
                    return Ok(());
                }
            }
        }
        Self::flush_now(slf)
    }

    /// asyncio's `writelines` (3.11): the items joined, then one `write`.
    fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let joined = PyBytes::new(py, b"").call_method1(intern!(py, "join"), (list_of_data,))?;
        Self::write(slf, &joined)
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    fn is_reading(&self) -> bool {
        self.is_reading_now()
    }

    fn pause_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let me = slf.get();
        if !me.is_reading_now() {
            return Ok(());
        }
        me.paused.store(true, Ordering::Relaxed);
        Self::unwatch(slf, false)?;
        Self::debug_log(slf, "%r pauses reading")
    }

    fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let me = slf.get();
        if me.closing.load(Ordering::Relaxed) || !me.paused.load(Ordering::Relaxed) {
            return Ok(());
        }
        me.paused.store(false, Ordering::Relaxed);
        Self::_start_reading(slf)?;
        Self::debug_log(slf, "%r resumes reading")
    }

    fn get_write_buffer_size(&self, py: Python<'_>) -> PyResult<usize> {
        self.buffer_size(py)
    }

    fn get_write_buffer_limits(&self) -> (usize, usize) {
        (
            self.low_water.load(Ordering::Relaxed),
            self.high_water.load(Ordering::Relaxed),
        )
    }

    /// Store validated limits (the wrapper computes defaults and checks them as asyncio).
    fn _set_limits(&self, high: usize, low: usize) {
        self.high_water.store(high, Ordering::Relaxed);
        self.low_water.store(low, Ordering::Relaxed);
    }

    fn _maybe_pause_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::maybe_pause_protocol(slf)
    }

    fn _maybe_resume_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::maybe_resume_protocol(slf)
    }

    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        if me.closing.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        Self::unwatch(slf, false)?;
        if me.buffer_is_empty(py)? {
            me.conn_lost.fetch_add(1, Ordering::Relaxed);
            Self::unwatch(slf, true)?;
            Self::call_soon(
                slf,
                intern!(py, "_call_connection_lost"),
                py.None().into_bound(py),
            )
        } else {
            Self::batch_to_buffer(slf)
        }
    }

    fn abort(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::force_close(slf, None)
    }

    fn write_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        if me.closing.load(Ordering::Relaxed) || me.eof.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        if me.buffer_is_empty(py)? {
            sock::shutdown_write(me.fd).map_err(py_helpers::os_error)
        } else {
            Self::batch_to_buffer(slf)
        }
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    fn set_protocol(&self, py: Python<'_>, protocol: Bound<'_, PyAny>) -> PyResult<()> {
        let buffered = protocol.is_instance(buffered_protocol_type(py)?)?;
        let data_received = bound_data_received(&protocol);
        let old = {
            let mut st = self.state.borrow_mut(py)?;
            let old_method = std::mem::replace(&mut st.data_received, data_received);
            (st.protocol.replace(protocol.unbind()), old_method)
        };
        drop(old);
        self.buffered_protocol.store(buffered, Ordering::Relaxed);
        self.protocol_connected.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn get_protocol(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.protocol(py)?.map(Bound::unbind))
    }

    /// asyncio's `_add_reader(fd, _read_ready)`: start watching unless paused or closing.
    fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        if !slf.get().is_reading_now() {
            return Ok(());
        }
        Self::watch(slf, false)
    }

    pub(crate) fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let me = slf.get();
        if me.conn_lost.load(Ordering::Relaxed) > 0 {
            return Ok(());
        }
        if me.buffered_protocol.load(Ordering::Relaxed) {
            Self::read_buffered(slf)
        } else {
            Self::read_data(slf)
        }
    }

    pub(crate) fn _write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        if me.conn_lost.load(Ordering::Relaxed) > 0 {
            return Ok(());
        }
        if let Err(e) = me.send_queue(py)? {
            Self::unwatch(slf, true)?;
            me.state.borrow_mut(py)?.buffer.clear();
            let exc = py_helpers::os_error(e).into_value(py);
            Self::fatal_error(
                slf,
                PyErr::from_value(exc.clone_ref(py).into_bound(py).into_any()),
                "Fatal write error on socket transport",
            )?;
            let waiter = me
                .state
                .borrow_mut(py)?
                .empty_waiter
                .as_ref()
                .map(|w| w.clone_ref(py));
            if let Some(w) = waiter {
                w.bind(py)
                    .call_method1(intern!(py, "set_exception"), (exc,))?;
            }
            return Ok(());
        }
        Self::maybe_resume_protocol(slf)?; // may write more
        if me.buffer_is_empty(py)? {
            Self::unwatch(slf, true)?;
            let waiter = me
                .state
                .borrow_mut(py)?
                .empty_waiter
                .as_ref()
                .map(|w| w.clone_ref(py));
            if let Some(w) = waiter {
                w.bind(py)
                    .call_method1(intern!(py, "set_result"), (py.None(),))?;
            }
            if me.closing.load(Ordering::Relaxed) {
                Self::_call_connection_lost(slf, py.None().into_bound(py))?;
            } else if me.eof.load(Ordering::Relaxed) {
                sock::shutdown_write(me.fd).map_err(py_helpers::os_error)?;
            }
        }
        Ok(())
    }

    fn _force_close(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let exc = if exc.is_none() { None } else { Some(exc) };
        Self::force_close(slf, exc)
    }

    /// asyncio's `_call_connection_lost`: tell the protocol, close the socket, let go.
    fn _call_connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let result = if me.protocol_connected.load(Ordering::Relaxed) {
            match me.protocol(py)? {
                Some(p) => p
                    .call_method1(intern!(py, "connection_lost"), (exc,))
                    .map(|_| ()),
                None => Ok(()),
            }
        } else {
            Ok(())
        };
        let (sock, protocol, lp, server, read_cb, write_cb, waiter, transport) = {
            let mut st = me.state.borrow_mut(py)?;
            (
                st.sock.take(),
                st.protocol.take().map(|p| (p, st.data_received.take())),
                st.loop_.take(),
                st.server.take(),
                st.read_cb.take(),
                st.write_cb.take(),
                st.empty_waiter.as_ref().map(|w| w.clone_ref(py)),
                st.transport.take(),
            )
        };
        if let Some(lp) = &lp {
            lp.get().transport_fd_released(py, me.fd)?;
        }
        let closed = match &sock {
            Some(s) => s.bind(py).call_method0(intern!(py, "close")).map(|_| ()),
            None => Ok(()),
        };
        drop((sock, protocol, lp, read_cb, write_cb));
        let detached = match server {
            Some(s) => {
                py_helpers::detach_from_server(s.bind(py), transport.as_ref().map(|t| t.bind(py)))
            }
            None => Ok(()),
        };
        if let Some(w) = waiter {
            let err = pyo3::exceptions::PyConnectionError::new_err("Connection is closed by peer");
            w.bind(py)
                .call_method1(intern!(py, "set_exception"), (err.into_value(py),))?;
        }
        drop(transport);
        result.and(closed).and(detached)
    }

    fn _make_empty_waiter(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let me = slf.get();
        if me.state.borrow_mut(py)?.empty_waiter.is_some() {
            return Err(PyRuntimeError::new_err("Empty waiter is already set"));
        }
        let Some(lp) = me.loop_(py)? else {
            return Err(PyRuntimeError::new_err("transport is closed"));
        };
        let fut = lp.call_method0(intern!(py, "create_future"))?;
        me.state.borrow_mut(py)?.empty_waiter = Some(fut.clone().unbind());
        if me.buffer_is_empty(py)? {
            fut.call_method1(intern!(py, "set_result"), (py.None(),))?;
        } else {
            Self::batch_to_buffer(slf)?;
        }
        Ok(fut.unbind())
    }

    fn _reset_empty_waiter(&self, py: Python<'_>) -> PyResult<()> {
        let old = self.state.borrow_mut(py)?.empty_waiter.take();
        drop(old);
        Ok(())
    }

    /// Called by the wrapper's `__del__` on an unclosed transport: forget the socket and
    /// the server (the wrapper detaches from it where the version does, once).
    fn _detach_sock(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let (sock, server) = {
            let mut st = self.state.borrow_mut(py)?;
            (st.sock.take(), st.server.take())
        };
        drop(server);
        Ok(sock)
    }

    #[getter]
    fn _sock(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self
            .state
            .borrow_mut(py)?
            .sock
            .as_ref()
            .map(|s| s.clone_ref(py)))
    }

    #[getter]
    fn _protocol(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.protocol(py)?.map(Bound::unbind))
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> PyResult<Option<Py<EventLoop>>> {
        Ok(self.loop_(py)?.map(Bound::unbind))
    }

    #[getter]
    fn _server(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self
            .state
            .borrow_mut(py)?
            .server
            .as_ref()
            .map(|s| s.clone_ref(py)))
    }

    #[getter]
    fn _empty_waiter(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self
            .state
            .borrow_mut(py)?
            .empty_waiter
            .as_ref()
            .map(|s| s.clone_ref(py)))
    }

    #[getter]
    fn _sock_fd(&self) -> RawFd {
        self.fd
    }

    #[getter]
    fn _closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    #[getter]
    fn _conn_lost(&self) -> u32 {
        self.conn_lost.load(Ordering::Relaxed)
    }

    #[getter]
    fn _eof(&self) -> bool {
        self.eof.load(Ordering::Relaxed)
    }

    #[getter]
    fn _paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    #[getter]
    fn _protocol_paused(&self) -> bool {
        self.protocol_paused.load(Ordering::Relaxed)
    }

    #[setter(_protocol_paused)]
    fn set_protocol_paused(&self, v: bool) {
        self.protocol_paused.store(v, Ordering::Relaxed)
    }

    #[getter]
    fn _protocol_connected(&self) -> bool {
        self.protocol_connected.load(Ordering::Relaxed)
    }

    /// Reader registered with the loop now (repr's `read=polling`).
    #[getter]
    fn _read_polling(&self) -> bool {
        self.reading.load(Ordering::Relaxed)
    }

    /// Writer registered with the loop now (repr's `write=<polling ...>`).
    #[getter]
    fn _write_polling(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(st) = self.state.try_borrow_for_gc() {
            for obj in [
                &st.sock,
                &st.protocol,
                &st.data_received,
                &st.transport,
                &st.server,
                &st.empty_waiter,
                &st.read_cb,
                &st.write_cb,
            ]
            .into_iter()
            .flatten()
            {
                visit.call(obj)?;
            }
            if let Some(lp) = &st.loop_ {
                visit.call(lp)?;
            }
            for b in st.buffer.shared() {
                visit.call(&b.0)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let taken = self
                .state
                .borrow_mut(py)
                .ok()
                .map(|mut st| std::mem::take(&mut *st));
            drop(taken);
        })
    }
}

impl SocketTransportCore {
    fn debug_log(slf: &Bound<'_, Self>, fmt: &str) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        if let Some(lp) = me.loop_(py)? {
            if lp.get().is_debug() {
                if let Some(tr) = me.transport(py)? {
                    py_helpers::transport_debug(&tr, fmt)?;
                }
            }
        }
        Ok(())
    }
}
