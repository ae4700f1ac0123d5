//! `SSLProtocolCore`: the native half of ferroloop's TLS protocol, which owns the state
//! machine's state and every per-record path.
//!
//! `python/ferroloop/_sslproto.py` defines `SSLProtocol(SSLProtocolCore, BufferedProtocol)`,
//! ferroloop's own class with asyncio's behaviour (adapted from CPython's
//! `asyncio/sslproto.py`; NOTICE). What is read or written on every record is a field of
//! this struct, exposed to the Python half under asyncio's attribute names:
//!
//! * the state (`_state`, one of `SSLProtocolState`, changed only through `_set_state`,
//!   which enforces asyncio's allowed transitions), the `SSLObject` and its two `MemoryBIO`s,
//!   the write backlog and its size, the raw transport, the app protocol and transport, the
//!   four pause flags and the four watermarks, the receive buffer, `max_size`;
//! * the per-record methods, native: `get_buffer`, `buffer_updated` (WRAPPED here; the other
//!   states call the Python half's `_do_handshake`, `_do_flush`, `_do_shutdown`), `_do_read`
//!   (decrypt everything available, one `data_received` per batch; `BufferedProtocol` apps
//!   go to the Python `_do_read__buffered`), `_do_write`, `_process_outgoing`,
//!   `_write_appdata`, the app transport's `write` (`_app_write`), the flow-control
//!   methods `_control_app_writing`/`_control_ssl_reading` and the buffer sizes.
//!
//! What happens once per connection (handshake, shutdown, timeouts, the app protocol's
//! state, error reports, extra info) is the Python half's, and this object calls it by
//! name (`_fatal_error`, `_call_eof_received`, `_start_shutdown`, `_closed_write`), so
//! a subclass or a test's mock sees every call asyncio's code makes.
//!
//! Write batching: while ferroloop's loop runs callbacks, an application write on an
//! established connection with nothing else queued stays in the backlog, and the loop
//! encrypts the backlog once when the run phase ends (`flush_batch`, an early step of the
//! loop's end-of-phase flush, before the stream transports'): a response's headers and body
//! become one TLS record instead of two, one `SSLObject.write` and one raw
//! `transport.write` less. At most `BATCH_MAX` bytes wait (one record's plaintext); past
//! that, or outside a run phase, or on another loop, writes are encrypted at once as in
//! asyncio. Every path that encrypts the backlog (a read, closing, `eof_received`) takes
//! the waiting bytes with it; `_abort` flushes them first, so `write()` then `abort()`
//! still sends, and the write buffer size leaves them out, as asyncio's would after
//! encrypting them.
//!
//! Threading: loop thread, under the GIL. A borrow of this object is never held across a
//! call into Python (the app's `data_received` may write, close or abort re-entrantly).

use pyo3::exceptions::{
    PyException, PyKeyboardInterrupt, PyRuntimeError, PySystemExit, PyTypeError, PyValueError,
};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyMemoryView, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::event_loop::EventLoop;
use crate::private_api;

/// asyncio's `sslproto.SSLProtocolState`, in the order of `_sslproto.SSLProtocolState`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum State {
    Unwrapped = 0,
    DoHandshake = 1,
    Wrapped = 2,
    Flushing = 3,
    Shutdown = 4,
}

const STATES: [State; 5] = [
    State::Unwrapped,
    State::DoHandshake,
    State::Wrapped,
    State::Flushing,
    State::Shutdown,
];

/// The objects looked up once.
struct Names {
    /// `_sslproto.SSLProtocolState` members, indexed by `State as usize`.
    states: [Py<PyAny>; 5],
    want_read: Py<PyAny>,
    syscall_error: Py<PyAny>,
    ssl_object: Py<PyAny>,
}

fn names(py: Python<'_>) -> PyResult<&Names> {
    static NAMES: PyOnceLock<Names> = PyOnceLock::new();
    NAMES.get_or_try_init(py, || {
        let enum_ = py
            .import("ferroloop._sslproto")?
            .getattr("SSLProtocolState")?;
        let member = |name: &str| enum_.getattr(name).map(Bound::unbind);
        let ssl = py.import("ssl")?;
        Ok::<_, PyErr>(Names {
            states: [
                member("UNWRAPPED")?,
                member("DO_HANDSHAKE")?,
                member("WRAPPED")?,
                member("FLUSHING")?,
                member("SHUTDOWN")?,
            ],
            want_read: ssl.getattr("SSLWantReadError")?.unbind(),
            syscall_error: ssl.getattr("SSLSyscallError")?.unbind(),
            ssl_object: ssl.getattr("SSLObject")?.unbind(),
        })
    })
}

/// asyncio's `SSLAgainErrors`: the TLS engine needs more input (or the peer went away
/// in the middle of a record; asyncio treats both as "nothing more now").
fn is_again(py: Python<'_>, e: &PyErr) -> PyResult<bool> {
    let n = names(py)?;
    Ok(e.is_instance(py, n.want_read.bind(py)) || e.is_instance(py, n.syscall_error.bind(py)))
}

/// The most plaintext a run phase's writes keep waiting for its end: one TLS record.
const BATCH_MAX: usize = 16 * 1024;

/// asyncio's `sslproto.SSLProtocol.max_size`: the buffer size passed to `read()`.
const MAX_SIZE: usize = 256 * 1024;

#[pyclass(module = "ferroloop._native", subclass, name = "SSLProtocolCore")]
pub struct SslProtocolCore {
    state: State,
    /// The `SSLObject` (`_sslobj`) ...
    sslobj: Option<Py<PyAny>>,
    /// ... and what `read`/`write`/`pending` are called on: the C `_ssl._SSLSocket` inside
    /// an exact `ssl.SSLObject`, whose methods only forward to it (one Python frame less per
    /// call; private_api.rs), else the `SSLObject` itself (a subclass or a mock).
    tls: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_incoming")]
    incoming: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_outgoing")]
    outgoing: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_write_backlog")]
    write_backlog: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_write_buffer_size")]
    write_buffer_size: usize,
    #[pyo3(get, set, name = "_transport")]
    transport: Option<Py<PyAny>>,
    app_protocol: Option<Py<PyAny>>,
    /// The app protocol's `data_received`, looked up once per protocol.
    data_received: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_app_protocol_is_buffer")]
    app_protocol_is_buffer: bool,
    #[pyo3(get, set, name = "_app_transport")]
    app_transport: Option<Py<PyAny>>,
    loop_: Option<Py<PyAny>>,
    /// `loop_` when it is ferroloop's (write batching needs its run phase).
    native_loop: Option<Py<EventLoop>>,
    #[pyo3(get, set, name = "_app_reading_paused")]
    app_reading_paused: bool,
    #[pyo3(get, set, name = "_ssl_reading_paused")]
    ssl_reading_paused: bool,
    #[pyo3(get, set, name = "_app_writing_paused")]
    app_writing_paused: bool,
    #[pyo3(get, set, name = "_ssl_writing_paused")]
    ssl_writing_paused: bool,
    #[pyo3(get, set, name = "_incoming_high_water")]
    incoming_high_water: usize,
    #[pyo3(get, set, name = "_incoming_low_water")]
    incoming_low_water: usize,
    #[pyo3(get, set, name = "_outgoing_high_water")]
    outgoing_high_water: usize,
    #[pyo3(get, set, name = "_outgoing_low_water")]
    outgoing_low_water: usize,
    #[pyo3(get, set, name = "_ssl_buffer")]
    ssl_buffer: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_ssl_buffer_view")]
    ssl_buffer_view: Option<Py<PyAny>>,
    #[pyo3(get, set)]
    max_size: usize,
    #[pyo3(get, set, name = "_conn_lost")]
    conn_lost: usize,
    /// Bytes of the backlog waiting for the end of the run phase (see "Write batching").
    waiting: usize,
    /// Listed in the loop's end-of-phase flush.
    listed: bool,
}

/// `Some(obj)` as a bound object, `None` as Python's `None`.
fn bound<'py>(py: Python<'py>, o: &Option<Py<PyAny>>) -> Bound<'py, PyAny> {
    match o {
        Some(o) => o.bind(py).clone(),
        None => py.None().into_bound(py),
    }
}

/// Python's `None` stored as Rust's.
fn stored(o: &Bound<'_, PyAny>) -> Option<Py<PyAny>> {
    (!o.is_none()).then(|| o.clone().unbind())
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

fn pending(bio: &Bound<'_, PyAny>) -> PyResult<usize> {
    bio.getattr(intern!(bio.py(), "pending"))?.extract()
}

type Core<'py> = Bound<'py, SslProtocolCore>;

/// Run `f`; an `Exception` (not a `BaseException` like `KeyboardInterrupt`) becomes
/// `_fatal_error(ex, 'Fatal error on SSL protocol')`, as in asyncio's `try`/`except`.
fn guarded(slf: &Core<'_>, f: impl FnOnce() -> PyResult<()>) -> PyResult<()> {
    let py = slf.py();
    match f() {
        Err(e) if e.is_instance_of::<PyException>(py) => {
            slf.call_method1(
                intern!(py, "_fatal_error"),
                (e.into_value(py), "Fatal error on SSL protocol"),
            )?;
            Ok(())
        }
        r => r,
    }
}

/// `_do_read` for a protocol in a state that reads (WRAPPED or FLUSHING).
fn do_read(slf: &Core<'_>) -> PyResult<()> {
    let py = slf.py();
    guarded(slf, || {
        let (paused, is_buffer, backlog) = {
            let me = slf.borrow();
            (
                me.app_reading_paused,
                me.app_protocol_is_buffer,
                bound(py, &me.write_backlog),
            )
        };
        if !paused {
            if is_buffer {
                slf.call_method0(intern!(py, "_do_read__buffered"))?;
            } else {
                read_copied(slf)?;
            }
            if backlog.is_truthy()? {
                do_write(slf)?;
            } else {
                process_outgoing(slf)?;
            }
        }
        control_ssl_reading(slf)
    })
}

/// asyncio's `_do_read__copied`: every available plaintext chunk, one `data_received`.
fn read_copied(slf: &Core<'_>) -> PyResult<()> {
    let py = slf.py();
    let (tls, incoming, max_size) = {
        let me = slf.borrow();
        (bound(py, &me.tls), bound(py, &me.incoming), me.max_size)
    };
    let read = intern!(py, "read");
    let mut first: Option<Bound<'_, PyAny>> = None;
    let mut more: Vec<Bound<'_, PyAny>> = Vec::new();
    let mut eof = false;
    loop {
        match tls.call_method1(read, (max_size,)) {
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
                if pending(&incoming)? == 0
                    && tls
                        .call_method0(intern!(py, "pending"))?
                        .extract::<usize>()?
                        == 0
                {
                    break;
                }
            }
            Err(e) if is_again(py, &e)? => break,
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
        data_received(slf)?.call1((data,))?;
    }
    if eof {
        // close_notify
        slf.call_method0(intern!(py, "_call_eof_received"))?;
        slf.call_method0(intern!(py, "_start_shutdown"))?;
    }
    Ok(())
}

/// The app protocol's `data_received`, looked up on its first use.
fn data_received<'py>(slf: &Core<'py>) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let (cached, app) = {
        let me = slf.borrow();
        (
            me.data_received.as_ref().map(|m| m.bind(py).clone()),
            bound(py, &me.app_protocol),
        )
    };
    if let Some(method) = cached {
        return Ok(method);
    }
    let method = app.getattr(intern!(py, "data_received"))?;
    let mut me = slf.borrow_mut();
    // the lookup ran Python code: keep it only for the protocol it was made for
    if me.app_protocol.as_ref().is_some_and(|a| a.is(&app)) {
        me.data_received = Some(method.clone().unbind());
    }
    Ok(method)
}

/// asyncio's `_do_write`: encrypt the backlog while the TLS engine takes it.
fn do_write(slf: &Core<'_>) -> PyResult<()> {
    let py = slf.py();
    let (backlog, tls, mut size) = {
        let me = slf.borrow();
        (
            bound(py, &me.write_backlog),
            bound(py, &me.tls),
            me.write_buffer_size,
        )
    };
    // the backlog, the TLS object and the size's arithmetic run no Python code of the
    // app's, so the size is written back once
    let result = (|| -> PyResult<()> {
        while backlog.len()? > 0 {
            let data = backlog.get_item(0)?;
            let count: usize = tls
                .call_method1(intern!(py, "write"), (&data,))?
                .extract()?;
            let data_len = data.len()?;
            if count < data_len {
                let rest = data.get_item(slice(py, count, data_len)?)?;
                backlog.set_item(0, rest)?;
                size = size.saturating_sub(count);
            } else {
                backlog.call_method0(intern!(py, "popleft"))?;
                size = size.saturating_sub(data_len);
            }
        }
        Ok(())
    })();
    slf.borrow_mut().write_buffer_size = size;
    match result {
        Err(e) if is_again(py, &e)? => {}
        r => r?,
    }
    process_outgoing(slf)
}

/// asyncio's `_process_outgoing`: the records the TLS engine produced, to the transport.
fn process_outgoing(slf: &Core<'_>) -> PyResult<()> {
    let py = slf.py();
    let (paused, outgoing, transport) = {
        let me = slf.borrow();
        (
            me.ssl_writing_paused,
            bound(py, &me.outgoing),
            bound(py, &me.transport),
        )
    };
    if !paused {
        let data = outgoing.call_method0(intern!(py, "read"))?;
        if data.len()? > 0 {
            transport.call_method1(intern!(py, "write"), (data,))?;
        }
    }
    control_app_writing(slf)
}

/// asyncio's `_get_write_buffer_size`, less the writes waiting for the end of the run
/// phase (they count as sent, as after asyncio's immediate encryption and send).
fn write_buffer_size(slf: &Core<'_>) -> PyResult<usize> {
    let py = slf.py();
    let (outgoing, size, waiting) = {
        let me = slf.borrow();
        (bound(py, &me.outgoing), me.write_buffer_size, me.waiting)
    };
    Ok(pending(&outgoing)? + size - waiting.min(size))
}

/// Call the app protocol's `pause_writing` or `resume_writing`; an error goes to the loop's
/// exception handler, as asyncio reports it.
fn call_app_flow(slf: &Core<'_>, method: &str) -> PyResult<()> {
    let py = slf.py();
    let (app, loop_, app_transport) = {
        let me = slf.borrow();
        (
            bound(py, &me.app_protocol),
            bound(py, &me.loop_),
            bound(py, &me.app_transport),
        )
    };
    match app.call_method0(method) {
        Ok(_) => Ok(()),
        Err(e)
            if e.is_instance_of::<PyKeyboardInterrupt>(py)
                || e.is_instance_of::<PySystemExit>(py) =>
        {
            Err(e)
        }
        Err(e) => {
            let context = PyDict::new(py);
            context.set_item("message", format!("protocol.{method}() failed"))?;
            context.set_item("exception", e.into_value(py))?;
            context.set_item("transport", app_transport)?;
            context.set_item("protocol", slf)?;
            loop_.call_method1(intern!(py, "call_exception_handler"), (context,))?;
            Ok(())
        }
    }
}

/// asyncio's `_control_app_writing`.
fn control_app_writing(slf: &Core<'_>) -> PyResult<()> {
    let size = write_buffer_size(slf)?;
    let pause = {
        let mut me = slf.borrow_mut();
        if size >= me.outgoing_high_water && !me.app_writing_paused {
            me.app_writing_paused = true;
            Some(true)
        } else if size <= me.outgoing_low_water && me.app_writing_paused {
            me.app_writing_paused = false;
            Some(false)
        } else {
            None
        }
    };
    match pause {
        Some(true) => call_app_flow(slf, "pause_writing"),
        Some(false) => call_app_flow(slf, "resume_writing"),
        None => Ok(()),
    }
}

/// asyncio's `_control_ssl_reading`.
fn control_ssl_reading(slf: &Core<'_>) -> PyResult<()> {
    let py = slf.py();
    let (incoming, transport) = {
        let me = slf.borrow();
        (bound(py, &me.incoming), bound(py, &me.transport))
    };
    let size = pending(&incoming)?;
    let pause = {
        let mut me = slf.borrow_mut();
        if size >= me.incoming_high_water && !me.ssl_reading_paused {
            me.ssl_reading_paused = true;
            Some(true)
        } else if size <= me.incoming_low_water && me.ssl_reading_paused {
            me.ssl_reading_paused = false;
            Some(false)
        } else {
            None
        }
    };
    match pause {
        Some(true) => transport
            .call_method0(intern!(py, "pause_reading"))
            .map(drop),
        Some(false) => transport
            .call_method0(intern!(py, "resume_reading"))
            .map(drop),
        None => Ok(()),
    }
}

/// asyncio's `_write_appdata`, with the end of the run phase as the time to encrypt when
/// only batched writes are queued (see "Write batching").
fn write_appdata(slf: &Core<'_>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = slf.py();
    let (state, backlog, before, waiting) = {
        let me = slf.borrow();
        (
            me.state,
            bound(py, &me.write_backlog),
            me.write_buffer_size,
            me.waiting,
        )
    };
    if !matches!(state, State::Wrapped | State::DoHandshake) {
        // FLUSHING, SHUTDOWN, UNWRAPPED: counted, and logged past a threshold
        return slf.call_method0(intern!(py, "_closed_write")).map(drop);
    }
    let mut size = before;
    let result = (|| -> PyResult<()> {
        for data in list_of_data.try_iter()? {
            let data = data?;
            size += data.len()?;
            backlog.call_method1(intern!(py, "append"), (data,))?;
        }
        Ok(())
    })();
    slf.borrow_mut().write_buffer_size = size;
    result?;
    if state == State::Wrapped {
        // only batched writes in the backlog (none the TLS engine refused), and room left
        if before == waiting && size <= BATCH_MAX && batch(slf)? {
            slf.borrow_mut().waiting = size;
            return Ok(());
        }
        slf.borrow_mut().waiting = 0;
        guarded(slf, || do_write(slf))?;
    }
    Ok(())
}

/// Keep this run phase's writes for its end: true when listed (now or before) in the
/// loop's flush, false outside a run phase or on another loop.
fn batch(slf: &Core<'_>) -> PyResult<bool> {
    let py = slf.py();
    let lp = {
        let me = slf.borrow();
        if me.listed {
            return Ok(true);
        }
        match &me.native_loop {
            Some(lp) => lp.clone_ref(py),
            None => return Ok(false),
        }
    };
    if !lp.get().defer(py, slf.as_any(), flush_step, true)? {
        return Ok(false);
    }
    slf.borrow_mut().listed = true;
    Ok(true)
}

/// The loop's end-of-phase step for this protocol.
fn flush_step(owner: &Bound<'_, PyAny>) -> PyResult<()> {
    flush_batch(owner.cast()?)
}

/// The end of the run phase: encrypt and send what waited. An error is the protocol's
/// fatal error, as asyncio reports one from a write.
fn flush_batch(slf: &Core<'_>) -> PyResult<()> {
    let py = slf.py();
    let (waiting, state, backlog) = {
        let mut me = slf.borrow_mut();
        me.listed = false;
        let waiting = std::mem::take(&mut me.waiting);
        (waiting, me.state, bound(py, &me.write_backlog))
    };
    // another path (a read, closing) may have encrypted the backlog already, or the
    // connection moved on: then the state machine owns what is left
    if waiting == 0 || state != State::Wrapped || !backlog.is_truthy()? {
        return Ok(());
    }
    guarded(slf, || do_write(slf))
}

#[pymethods]
impl SslProtocolCore {
    /// Every field empty; the Python half's `__init__` fills them (it takes asyncio's
    /// arguments, which this ignores).
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        SslProtocolCore {
            state: State::Unwrapped,
            sslobj: None,
            tls: None,
            incoming: None,
            outgoing: None,
            write_backlog: None,
            write_buffer_size: 0,
            transport: None,
            app_protocol: None,
            data_received: None,
            app_protocol_is_buffer: false,
            app_transport: None,
            loop_: None,
            native_loop: None,
            app_reading_paused: false,
            ssl_reading_paused: false,
            app_writing_paused: false,
            ssl_writing_paused: false,
            incoming_high_water: 0,
            incoming_low_water: 0,
            outgoing_high_water: 0,
            outgoing_low_water: 0,
            ssl_buffer: None,
            ssl_buffer_view: None,
            max_size: MAX_SIZE,
            conn_lost: 0,
            waiting: 0,
            listed: false,
        }
    }

    #[getter(_state)]
    fn state(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(names(py)?.states[self.state as usize].clone_ref(py))
    }

    /// asyncio's `_set_state`: UNWRAPPED from anywhere, otherwise one step along
    /// UNWRAPPED -> DO_HANDSHAKE -> WRAPPED -> FLUSHING -> SHUTDOWN.
    fn _set_state(slf: &Core<'_>, new_state: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let n = names(py)?;
        let Some(new) = STATES
            .iter()
            .copied()
            .find(|s| n.states[*s as usize].bind(py).is(new_state))
        else {
            return Err(PyValueError::new_err(format!(
                "not an SSLProtocolState: {}",
                new_state.repr()?
            )));
        };
        let old = slf.borrow().state;
        let allowed = new == State::Unwrapped || new as u8 == old as u8 + 1;
        if !allowed {
            let old = n.states[old as usize].bind(py);
            return Err(PyRuntimeError::new_err(format!(
                "cannot switch state from {} to {}",
                old.str()?,
                new_state.str()?
            )));
        }
        slf.borrow_mut().state = new;
        Ok(())
    }

    #[getter(_sslobj)]
    fn sslobj(&self, py: Python<'_>) -> Py<PyAny> {
        bound(py, &self.sslobj).unbind()
    }

    #[setter(_sslobj)]
    fn set_sslobj(&mut self, sslobj: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = sslobj.py();
        let inner =
            if private_api::allowed() && sslobj.get_type().is(names(py)?.ssl_object.bind(py)) {
                sslobj.getattr(intern!(py, "_sslobj")).ok()
            } else {
                None
            };
        self.tls = stored(inner.as_ref().unwrap_or(sslobj));
        self.sslobj = stored(sslobj);
        Ok(())
    }

    #[getter(_app_protocol)]
    fn app_protocol(&self, py: Python<'_>) -> Py<PyAny> {
        bound(py, &self.app_protocol).unbind()
    }

    #[setter(_app_protocol)]
    fn set_app_protocol(&mut self, app_protocol: &Bound<'_, PyAny>) {
        self.app_protocol = stored(app_protocol);
        self.data_received = None;
    }

    #[getter(_loop)]
    fn loop_(&self, py: Python<'_>) -> Py<PyAny> {
        bound(py, &self.loop_).unbind()
    }

    #[setter(_loop)]
    fn set_loop(&mut self, loop_: &Bound<'_, PyAny>) {
        self.native_loop = loop_.cast::<EventLoop>().ok().map(|l| l.clone().unbind());
        self.loop_ = stored(loop_);
    }

    /// `SSLProtocol.get_buffer`: the receive buffer, grown to `n` if smaller.
    fn get_buffer<'py>(slf: &Core<'py>, n: isize) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let (view, max_size) = {
            let me = slf.borrow();
            (bound(py, &me.ssl_buffer_view), me.max_size)
        };
        let want = if n <= 0 || n as usize > max_size {
            max_size
        } else {
            n as usize
        };
        if !view.is_none() && view.len()? >= want {
            return Ok(view);
        }
        let buffer = PyByteArray::new_with(py, want, |_| Ok(()))?.into_any();
        let view = PyMemoryView::from(&buffer)?.into_any();
        let mut me = slf.borrow_mut();
        me.ssl_buffer = Some(buffer.unbind());
        me.ssl_buffer_view = Some(view.clone().unbind());
        Ok(view)
    }

    /// `SSLProtocol.buffer_updated`: the ciphertext into the incoming BIO, then the step of
    /// the state (WRAPPED here; the others are the Python half's, once per connection).
    fn buffer_updated(slf: &Core<'_>, nbytes: usize) -> PyResult<()> {
        let py = slf.py();
        let (view, incoming) = {
            let me = slf.borrow();
            (bound(py, &me.ssl_buffer_view), bound(py, &me.incoming))
        };
        let chunk = view.get_item(slice(py, 0, nbytes)?)?;
        incoming.call_method1(intern!(py, "write"), (chunk,))?;
        let state = slf.borrow().state;
        match state {
            State::Wrapped => do_read(slf),
            State::DoHandshake => slf.call_method0(intern!(py, "_do_handshake")).map(drop),
            State::Flushing => slf.call_method0(intern!(py, "_do_flush")).map(drop),
            State::Shutdown => slf.call_method0(intern!(py, "_do_shutdown")).map(drop),
            State::Unwrapped => Ok(()),
        }
    }

    /// `SSLProtocol._do_read`.
    fn _do_read(slf: &Core<'_>) -> PyResult<()> {
        let state = slf.borrow().state;
        if !matches!(state, State::Wrapped | State::Flushing) {
            return Ok(());
        }
        do_read(slf)
    }

    /// `SSLProtocol._do_read__copied`.
    #[pyo3(name = "_do_read__copied")]
    fn do_read_copied(slf: &Core<'_>) -> PyResult<()> {
        read_copied(slf)
    }

    /// `SSLProtocol._do_write`.
    fn _do_write(slf: &Core<'_>) -> PyResult<()> {
        do_write(slf)
    }

    /// `SSLProtocol._process_outgoing`.
    fn _process_outgoing(slf: &Core<'_>) -> PyResult<()> {
        process_outgoing(slf)
    }

    /// `SSLProtocol._write_appdata`.
    fn _write_appdata(slf: &Core<'_>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        write_appdata(slf, list_of_data)
    }

    /// `_SSLProtocolTransport.write`, bound on the app transport.
    fn _app_write(slf: &Core<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
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
        if !data.is_truthy()? {
            return Ok(());
        }
        write_appdata(slf, PyTuple::new(py, [data])?.as_any())
    }

    /// `SSLProtocol._control_app_writing`.
    fn _control_app_writing(slf: &Core<'_>) -> PyResult<()> {
        control_app_writing(slf)
    }

    /// `SSLProtocol._control_ssl_reading`.
    fn _control_ssl_reading(slf: &Core<'_>) -> PyResult<()> {
        control_ssl_reading(slf)
    }

    /// `SSLProtocol._get_write_buffer_size`.
    fn _get_write_buffer_size(slf: &Core<'_>) -> PyResult<usize> {
        write_buffer_size(slf)
    }

    /// `SSLProtocol._get_read_buffer_size`.
    fn _get_read_buffer_size(&self, py: Python<'_>) -> PyResult<usize> {
        pending(&bound(py, &self.incoming))
    }

    /// Encrypt and send the writes waiting for the end of the run phase now (before an
    /// abort: asyncio would have sent them at `write()`).
    fn _flush_batch(slf: &Core<'_>) -> PyResult<()> {
        if slf.borrow().waiting == 0 {
            return Ok(());
        }
        flush_batch(slf)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        for o in [
            &self.sslobj,
            &self.tls,
            &self.incoming,
            &self.outgoing,
            &self.write_backlog,
            &self.transport,
            &self.app_protocol,
            &self.data_received,
            &self.app_transport,
            &self.loop_,
            &self.ssl_buffer,
            &self.ssl_buffer_view,
        ]
        .into_iter()
        .flatten()
        {
            visit.call(o)?;
        }
        if let Some(lp) = &self.native_loop {
            visit.call(lp)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.sslobj = None;
        self.tls = None;
        self.incoming = None;
        self.outgoing = None;
        self.write_backlog = None;
        self.transport = None;
        self.app_protocol = None;
        self.data_received = None;
        self.app_transport = None;
        self.loop_ = None;
        self.native_loop = None;
        self.ssl_buffer = None;
        self.ssl_buffer_view = None;
    }
}
