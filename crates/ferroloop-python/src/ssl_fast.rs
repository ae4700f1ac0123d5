//! `SslFast`: the per-record paths of asyncio's TLS protocol, native.
//!
//! The TLS state machine is asyncio's own `sslproto.SSLProtocol` (handshake, shutdown,
//! timeouts, errors: once per connection). Its per-record methods are replaced, per
//! instance, by this object's bound methods (`python/ferroloop/_sslproto.py` installs them):
//!
//! * `buffer_updated` (the raw transport delivered ciphertext): when the connection is
//!   established, into the incoming `MemoryBIO` and the read path below; in the other states
//!   asyncio's own method.
//! * `_do_read`: decrypt everything available with `SSLObject.read`, one `data_received`
//!   per batch (asyncio joins the chunks the same way), send what the TLS engine wants to
//!   send, and the read-side flow control. `BufferedProtocol` apps take asyncio's path.
//! * `_write_appdata` and the app transport's `write`: with nothing queued, encrypt straight
//!   away (`SSLObject.write`) and hand the records to the transport; otherwise asyncio's
//!   backlog logic, native too. Writes in a closing state go to asyncio's method (it warns).
//!
//! Write batching: while the loop runs callbacks, an application write on an established
//! connection with nothing else queued stays in asyncio's `_write_backlog`, and the loop
//! encrypts the backlog once when the run phase ends (`flush_batch`, before the stream
//! transports flush): a response's headers and body become one TLS record instead of two,
//! one `SSLObject.write` and one raw `transport.write` less. At most `BATCH_MAX` bytes wait
//! (one record's plaintext); past that, or outside a run phase, writes are encrypted at
//! once as in asyncio. Every asyncio path that encrypts the backlog (a read, closing,
//! `eof_received`) takes the waiting bytes with it; `_abort` flushes them first
//! (`python/ferroloop/_sslproto.py`), so `write()` then `abort()` still sends, and the
//! write buffer size leaves them out, as asyncio's would after encrypting them.
//!
//! The flow-control checks compute the buffer sizes here and call asyncio's
//! `_control_app_writing` / `_control_ssl_reading` only when a threshold is crossed, so
//! pausing and resuming (and their error reports) are asyncio's.
//!
//! Threading: loop thread, under the GIL.

use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyByteArray, PyBytes, PyList, PyMemoryView, PyTuple, PyWeakrefMethods, PyWeakrefReference,
};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::event_loop::EventLoop;

/// asyncio objects looked up once.
struct Names {
    wrapped: Py<PyAny>,
    flushing: Py<PyAny>,
    do_handshake: Py<PyAny>,
    want_read: Py<PyAny>,
    syscall_error: Py<PyAny>,
    write_appdata: Py<PyAny>,
    do_read_buffered: Py<PyAny>,
    get_buffer: Py<PyAny>,
    buffer_updated: Py<PyAny>,
    ssl_object: Py<PyAny>,
}

fn names(py: Python<'_>) -> PyResult<&Names> {
    static NAMES: PyOnceLock<Names> = PyOnceLock::new();
    NAMES.get_or_try_init(py, || {
        let compat = py.import("ferroloop._compat")?;
        let state = compat.getattr("SSLProtocolState")?;
        let proto = compat.getattr("SSLProtocol")?;
        let ssl = py.import("ssl")?;
        Ok::<_, PyErr>(Names {
            wrapped: state.getattr("WRAPPED")?.unbind(),
            flushing: state.getattr("FLUSHING")?.unbind(),
            do_handshake: state.getattr("DO_HANDSHAKE")?.unbind(),
            want_read: ssl.getattr("SSLWantReadError")?.unbind(),
            syscall_error: ssl.getattr("SSLSyscallError")?.unbind(),
            write_appdata: proto.getattr("_write_appdata")?.unbind(),
            do_read_buffered: proto.getattr("_do_read__buffered")?.unbind(),
            get_buffer: proto.getattr("get_buffer")?.unbind(),
            buffer_updated: proto.getattr("buffer_updated")?.unbind(),
            ssl_object: ssl.getattr("SSLObject")?.unbind(),
        })
    })
}

/// asyncio's `SSLAgainErrors`: the TLS engine needs more input (or the peer went away
/// in the middle of a record; asyncio treats both as "nothing more now").
fn is_again(py: Python<'_>, n: &Names, e: &PyErr) -> bool {
    e.is_instance(py, n.want_read.bind(py)) || e.is_instance(py, n.syscall_error.bind(py))
}

/// The most plaintext a run phase's writes keep waiting for its end: one TLS record.
const BATCH_MAX: usize = 16 * 1024;

#[pyclass(module = "ferroloop._native", frozen)]
pub struct SslFast {
    /// The `SSLProtocol` this object serves, weakly: the protocol holds this object's bound
    /// methods, and asyncio's tests require that a closed connection leaves no cycle
    /// (its `SSLContext` must die without the garbage collector).
    proto: Py<PyWeakrefReference>,
    /// The protocol's loop when it is ferroloop's (write batching needs its run phase).
    loop_: Option<Py<EventLoop>>,
    /// Bytes of the backlog waiting for the end of the run phase (see "Write batching").
    waiting: AtomicUsize,
    /// Listed in the loop's end-of-phase flush.
    listed: AtomicBool,
}

impl SslFast {
    fn proto<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.proto.bind(py).upgrade().map(Ok).transpose()
    }
}

/// `slice(start, stop)`. Not `PySlice::new`: PyO3 0.27 passes it new integers that
/// `PySlice_New` does not steal, leaking every integer outside the small-int cache (seen as
/// about three blocks per TLS connection in `scripts/soak_connections.py --tls`).
fn slice(py: Python<'_>, start: usize, stop: usize) -> PyResult<Bound<'_, PyAny>> {
    let start = start.into_pyobject(py)?;
    let stop = stop.into_pyobject(py)?;
    // SAFETY: PySlice_New borrows its arguments (live for the call) and returns a new
    // reference, or NULL with an exception set.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::PySlice_New(start.as_ptr(), stop.as_ptr(), std::ptr::null_mut()),
        )
    }
}

fn attr_usize(obj: &Bound<'_, PyAny>, name: &Bound<'_, pyo3::types::PyString>) -> PyResult<usize> {
    obj.getattr(name)?.extract()
}

/// Run `f`; an `Exception` (not a `BaseException` like `KeyboardInterrupt`) becomes
/// asyncio's `_fatal_error(ex, 'Fatal error on SSL protocol')`.
fn guarded(proto: &Bound<'_, PyAny>, f: impl FnOnce() -> PyResult<()>) -> PyResult<()> {
    let py = proto.py();
    match f() {
        Err(e) if e.is_instance_of::<PyException>(py) => {
            proto.call_method1(
                intern!(py, "_fatal_error"),
                (e.into_value(py), "Fatal error on SSL protocol"),
            )?;
            Ok(())
        }
        r => r,
    }
}

/// `_do_read` for a protocol in a state that reads (WRAPPED or FLUSHING).
fn do_read(proto: &Bound<'_, PyAny>, n: &Names) -> PyResult<()> {
    let py = proto.py();
    guarded(proto, || {
        if !proto
            .getattr(intern!(py, "_app_reading_paused"))?
            .is_truthy()?
        {
            if proto
                .getattr(intern!(py, "_app_protocol_is_buffer"))?
                .is_truthy()?
            {
                n.do_read_buffered.bind(py).call1((proto,))?;
            } else {
                read_copied(proto, n)?;
            }
            let backlog = proto.getattr(intern!(py, "_write_backlog"))?;
            if backlog.is_truthy()? {
                do_write(proto, n)?;
            } else {
                process_outgoing(proto)?;
            }
        }
        control_ssl_reading(proto)
    })
}

/// asyncio's `_do_read__copied`: every available plaintext chunk, one `data_received`.
fn read_copied(proto: &Bound<'_, PyAny>, n: &Names) -> PyResult<()> {
    let py = proto.py();
    let sslobj = tls_object(proto, n)?;
    let incoming = proto.getattr(intern!(py, "_incoming"))?;
    let max_size = proto.getattr(intern!(py, "max_size"))?;
    let read = intern!(py, "read");
    let mut first: Option<Bound<'_, PyAny>> = None;
    let mut more: Vec<Bound<'_, PyAny>> = Vec::new();
    let mut eof = false;
    loop {
        match sslobj.call_method1(read, (&max_size,)) {
            Ok(chunk) => {
                if chunk.len()? == 0 {
                    eof = true;
                    break;
                }
                if first.is_none() {
                    first = Some(chunk);
                } else {
                    more.push(chunk);
                }
                // nothing left to decrypt and no ciphertext waiting: the next read could
                // only raise SSLWantReadError (an exception object per record, measured
                // with benches/bench_tls_paths.py), so stop here
                if attr_usize(&incoming, intern!(py, "pending"))? == 0
                    && sslobj
                        .call_method0(intern!(py, "pending"))?
                        .extract::<usize>()?
                        == 0
                {
                    break;
                }
            }
            Err(e) if is_again(py, n, &e) => break,
            Err(e) => return Err(e),
        }
    }
    if let Some(first) = first {
        let data = if more.is_empty() {
            first
        } else {
            more.insert(0, first);
            PyBytes::new(py, b"").call_method1(intern!(py, "join"), (PyList::new(py, more)?,))?
        };
        let app = proto.getattr(intern!(py, "_app_protocol"))?;
        app.call_method1(intern!(py, "data_received"), (data,))?;
    }
    if eof {
        // close_notify
        proto.call_method0(intern!(py, "_call_eof_received"))?;
        proto.call_method0(intern!(py, "_start_shutdown"))?;
    }
    Ok(())
}

/// The object to call `read`/`write`/`pending` on: the C `_ssl._SSLSocket` inside an
/// exact `ssl.SSLObject` (whose methods only forward to it: one Python frame less per call),
/// else the protocol's own `SSLObject` (a subclass may override them).
fn tls_object<'py>(proto: &Bound<'py, PyAny>, n: &Names) -> PyResult<Bound<'py, PyAny>> {
    let py = proto.py();
    let sslobj = proto.getattr(intern!(py, "_sslobj"))?;
    if sslobj.get_type().is(n.ssl_object.bind(py)) {
        return sslobj.getattr(intern!(py, "_sslobj"));
    }
    Ok(sslobj)
}

/// asyncio's `_do_write`: encrypt the backlog while the TLS engine takes it.
fn do_write(proto: &Bound<'_, PyAny>, n: &Names) -> PyResult<()> {
    let py = proto.py();
    let backlog = proto.getattr(intern!(py, "_write_backlog"))?;
    let sslobj = tls_object(proto, n)?;
    let size_name = intern!(py, "_write_buffer_size");
    let mut size = attr_usize(proto, size_name)?;
    let result = (|| -> PyResult<()> {
        while backlog.len()? > 0 {
            let data = backlog.get_item(0)?;
            let count: usize = sslobj
                .call_method1(intern!(py, "write"), (&data,))?
                .extract()?;
            let data_len = data.len()?;
            if count < data_len {
                let rest = data.get_item(slice(py, count, data_len)?)?;
                backlog.set_item(0, rest)?;
                size -= count;
            } else {
                backlog.call_method0(intern!(py, "popleft"))?;
                size -= data_len;
            }
        }
        Ok(())
    })();
    proto.setattr(size_name, size)?;
    match result {
        Err(e) if is_again(py, n, &e) => {}
        r => r?,
    }
    process_outgoing(proto)
}

/// asyncio's `_process_outgoing`: the records the TLS engine produced, to the transport.
fn process_outgoing(proto: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = proto.py();
    if !proto
        .getattr(intern!(py, "_ssl_writing_paused"))?
        .is_truthy()?
    {
        let data = proto
            .getattr(intern!(py, "_outgoing"))?
            .call_method0(intern!(py, "read"))?;
        if data.len()? > 0 {
            proto
                .getattr(intern!(py, "_transport"))?
                .call_method1(intern!(py, "write"), (data,))?;
        }
    }
    control_app_writing(proto)
}

/// asyncio's `_control_app_writing`, called only when a watermark is crossed.
fn control_app_writing(proto: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = proto.py();
    let pending = attr_usize(
        &proto.getattr(intern!(py, "_outgoing"))?,
        intern!(py, "pending"),
    )?;
    let size = pending + attr_usize(proto, intern!(py, "_write_buffer_size"))?;
    let paused = proto
        .getattr(intern!(py, "_app_writing_paused"))?
        .is_truthy()?;
    let cross = if paused {
        size <= attr_usize(proto, intern!(py, "_outgoing_low_water"))?
    } else {
        size >= attr_usize(proto, intern!(py, "_outgoing_high_water"))?
    };
    if cross {
        proto.call_method0(intern!(py, "_control_app_writing"))?;
    }
    Ok(())
}

/// asyncio's `_control_ssl_reading`, called only when a watermark is crossed.
fn control_ssl_reading(proto: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = proto.py();
    let size = attr_usize(
        &proto.getattr(intern!(py, "_incoming"))?,
        intern!(py, "pending"),
    )?;
    let paused = proto
        .getattr(intern!(py, "_ssl_reading_paused"))?
        .is_truthy()?;
    let cross = if paused {
        size <= attr_usize(proto, intern!(py, "_incoming_low_water"))?
    } else {
        size >= attr_usize(proto, intern!(py, "_incoming_high_water"))?
    };
    if cross {
        proto.call_method0(intern!(py, "_control_ssl_reading"))?;
    }
    Ok(())
}

/// asyncio's `_write_appdata`, with a direct path when nothing is queued, and the end of
/// the run phase as the time to encrypt when only batched writes are (see "Write batching").
fn write_appdata(
    fast: &Bound<'_, SslFast>,
    proto: &Bound<'_, PyAny>,
    n: &Names,
    list_of_data: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = proto.py();
    let state = proto.getattr(intern!(py, "_state"))?;
    let wrapped = state.is(n.wrapped.bind(py));
    if !wrapped && !state.is(n.do_handshake.bind(py)) {
        // FLUSHING, SHUTDOWN, UNWRAPPED: asyncio counts and warns
        n.write_appdata.bind(py).call1((proto, list_of_data))?;
        return Ok(());
    }
    let backlog = proto.getattr(intern!(py, "_write_backlog"))?;
    let size_name = intern!(py, "_write_buffer_size");
    let before = attr_usize(proto, size_name)?;
    let mut size = before;
    for data in list_of_data.try_iter()? {
        let data = data?;
        size += data.len()?;
        backlog.call_method1(intern!(py, "append"), (data,))?;
    }
    proto.setattr(size_name, size)?;
    if wrapped {
        let me = fast.get();
        let waiting = me.waiting.load(Ordering::Relaxed);
        // only batched writes in the backlog (none the TLS engine refused), and room left
        if before == waiting && size <= BATCH_MAX && me.batch(fast)? {
            me.waiting.store(size, Ordering::Relaxed);
            return Ok(());
        }
        me.waiting.store(0, Ordering::Relaxed);
        guarded(proto, || do_write(proto, n))?;
    }
    Ok(())
}

impl SslFast {
    /// Keep this run phase's writes for its end: true when listed (now or before) in the
    /// loop's flush, false outside a run phase or on another loop.
    fn batch(&self, slf: &Bound<'_, SslFast>) -> PyResult<bool> {
        if self.listed.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let Some(lp) = &self.loop_ else {
            return Ok(false);
        };
        if !lp.get().defer(
            slf.py(),
            slf,
            |fast| SslFast::flush_batch(fast.cast()?),
            true,
        )? {
            return Ok(false);
        }
        self.listed.store(true, Ordering::Relaxed);
        Ok(true)
    }

    /// The end of the run phase: encrypt and send what waited. An error is the protocol's
    /// fatal error, as asyncio reports one from a write.
    pub(crate) fn flush_batch(slf: &Bound<'_, SslFast>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        me.listed.store(false, Ordering::Relaxed);
        if me.waiting.swap(0, Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let Some(proto) = me.proto(py)? else {
            return Ok(());
        };
        let n = names(py)?;
        // another path (a read, closing) may have encrypted the backlog already, or the
        // connection moved on: then asyncio's own code owns what is left
        if !proto.getattr(intern!(py, "_state"))?.is(n.wrapped.bind(py))
            || !proto.getattr(intern!(py, "_write_backlog"))?.is_truthy()?
        {
            return Ok(());
        }
        guarded(&proto, || do_write(&proto, n))
    }
}

#[pymethods]
impl SslFast {
    #[new]
    fn new(proto: &Bound<'_, PyAny>) -> PyResult<Self> {
        let py = proto.py();
        let loop_ = proto
            .getattr(intern!(py, "_loop"))?
            .cast_into::<EventLoop>()
            .ok()
            .map(Bound::unbind);
        Ok(SslFast {
            proto: PyWeakrefReference::new(proto)?.unbind(),
            loop_,
            waiting: AtomicUsize::new(0),
            listed: AtomicBool::new(false),
        })
    }

    /// Bytes of the backlog waiting for the end of the run phase.
    fn _batched(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Encrypt and send the writes waiting for the end of the run phase now (before an
    /// abort: asyncio would have sent them at `write()`).
    fn _flush_batch(slf: &Bound<'_, SslFast>) -> PyResult<()> {
        if slf.get().waiting.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        Self::flush_batch(slf)
    }

    /// `SSLProtocol.get_buffer`: the protocol's own buffer when it is large enough (it
    /// always is for the native transport's `get_buffer(-1)`), else asyncio's method.
    fn get_buffer<'py>(&self, py: Python<'py>, n: isize) -> PyResult<Bound<'py, PyAny>> {
        let Some(proto) = self.proto(py)? else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "SSL protocol is gone",
            ));
        };
        let max_size = attr_usize(&proto, intern!(py, "max_size"))?;
        let want = if n <= 0 || n as usize > max_size {
            max_size
        } else {
            n as usize
        };
        let view = proto.getattr(intern!(py, "_ssl_buffer_view"))?;
        if view.len()? >= want {
            return Ok(view);
        }
        names(py)?.get_buffer.bind(py).call1((proto, n))
    }

    /// `SSLProtocol.buffer_updated`: native when the connection is established, asyncio's
    /// method in the other states (handshake, flushing, shutdown: once per connection).
    fn buffer_updated(&self, py: Python<'_>, nbytes: usize) -> PyResult<()> {
        let Some(proto) = self.proto(py)? else {
            return Ok(());
        };
        let n = names(py)?;
        let state = proto.getattr(intern!(py, "_state"))?;
        if !state.is(n.wrapped.bind(py)) {
            return n.buffer_updated.bind(py).call1((proto, nbytes)).map(drop);
        }
        let view = proto.getattr(intern!(py, "_ssl_buffer_view"))?;
        let chunk = view.get_item(slice(py, 0, nbytes)?)?;
        proto
            .getattr(intern!(py, "_incoming"))?
            .call_method1(intern!(py, "write"), (chunk,))?;
        do_read(&proto, n)
    }

    /// `SSLProtocol._do_read`.
    fn _do_read(&self, py: Python<'_>) -> PyResult<()> {
        let Some(proto) = self.proto(py)? else {
            return Ok(());
        };
        let n = names(py)?;
        let state = proto.getattr(intern!(py, "_state"))?;
        if !state.is(n.wrapped.bind(py)) && !state.is(n.flushing.bind(py)) {
            return Ok(());
        }
        do_read(&proto, n)
    }

    /// `SSLProtocol._write_appdata`.
    fn _write_appdata(slf: &Bound<'_, SslFast>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let Some(proto) = slf.get().proto(py)? else {
            return Ok(());
        };
        write_appdata(slf, &proto, names(py)?, list_of_data)
    }

    /// `_SSLProtocolTransport.write`.
    fn write(slf: &Bound<'_, SslFast>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        if !(data.is_instance_of::<PyBytes>()
            || data.is_instance_of::<PyByteArray>()
            || data.is_instance_of::<PyMemoryView>())
        {
            let name = data.get_type().name()?;
            return Err(PyTypeError::new_err(format!(
                "data: expecting a bytes-like instance, got {name}"
            )));
        }
        if data.len()? == 0 {
            return Ok(());
        }
        let Some(proto) = slf.get().proto(py)? else {
            return Ok(());
        };
        write_appdata(
            slf,
            &proto,
            names(py)?,
            &PyTuple::new(py, [data])?.into_any(),
        )
    }
}
