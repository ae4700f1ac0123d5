//! `DatagramFast`: the per-datagram paths of ferroloop's datagram transport, native.
//!
//! The transport (`python/ferroloop/_datagram.py`, an `asyncio.DatagramTransport` of
//! ferroloop's own) keeps its state as asyncio's (`_conn_lost`, `_buffer`, `_protocol`...)
//! and runs everything that happens once per endpoint or on an unusual path (buffering
//! when the socket is full, errors, close). For IPv4, IPv6 and Unix datagram sockets it
//! hands this object the two per-datagram paths:
//!
//! * `_read_ready`, a native watcher (`_watch`: the loop's turn calls it directly): one
//!   `recvmmsg` of up to 16 datagrams per readiness event (asyncio reads one per event;
//!   each more would cost a loop turn and a poll: measured 13.9 -> 7.0 µs of server CPU
//!   per echoed datagram), each an exactly sized `bytes` with the address as the socket
//!   module makes it (`(host, port)` for IPv4, `(host, port, flowinfo, scope_id)` for
//!   IPv6, a `str` path, abstract `bytes` or `None` for Unix), remembered for the last 64
//!   peers; then `protocol.datagram_received(data, addr)` for each, until the transport
//!   closes.
//! * `sendto`, bound on the instance: while the transport's buffer is empty, to the
//!   connected peer or to an address this transport handed out (no address parsing).
//!   During the loop's run phase the datagrams are queued and leave with one `sendmmsg`
//!   when the phase ends (or when 16 are queued), as stream writes do; outside it, at
//!   once. Any other case (a full socket, a new address, a closed connection) first sends
//!   what is queued, then calls the transport's own `sendto`, so ordering, buffering, flow
//!   control and errors are the transport's. A send error of a queued datagram reaches
//!   `protocol.error_received` (through `call_soon`, so an exception it raises is reported
//!   as a callback's).
//!
//! Threading: loop thread, under the GIL. The cache and the queue sit in `GilCell`s, never
//! borrowed across a call into Python.

use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use ferroloop::engine::datagram::{peer_addr, send_batch, Outgoing, PeerAddr, BATCH};
use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use pyo3::{ffi, intern, PyTraverseError, PyVisit};

use crate::cell::GilCell;
use crate::event_loop::EventLoop;
use crate::py_helpers;

extern "C" {
    /// POSIX `inet_ntop` (not in the `libc` crate): the text form the socket module uses.
    fn inet_ntop(
        af: libc::c_int,
        src: *const libc::c_void,
        dst: *mut libc::c_char,
        size: libc::socklen_t,
    ) -> *const libc::c_char;
}

/// A peer address: its raw `sockaddr` and the object made from it.
struct Peer {
    raw: Vec<u8>,
    tuple: Py<PyAny>,
}

/// Peers remembered at most (then the oldest is replaced): a server answering a few dozen
/// clients in turn finds each one's tuple here instead of formatting it per datagram (with
/// only the last peer remembered, the 10-client UDP echo formatted nearly every address:
/// server CPU per datagram 0.92x rloop's before, 1.21x after, `bench_echo.py udp_100`).
const PEER_CACHE: usize = 64;

/// The remembered peers, replaced round-robin.
#[derive(Default)]
struct Peers {
    list: Vec<Peer>,
    next: usize,
}

impl Peers {
    fn by_raw<'py>(&self, py: Python<'py>, raw: &[u8]) -> Option<Bound<'py, PyAny>> {
        self.list
            .iter()
            .find(|p| p.raw == raw)
            .map(|p| p.tuple.bind(py).clone())
    }

    fn raw_of(&self, py: Python<'_>, tuple: &Bound<'_, PyAny>) -> Option<Box<[u8]>> {
        self.list
            .iter()
            .find(|p| p.tuple.bind(py).is(tuple))
            .map(|p| p.raw.clone().into_boxed_slice())
    }

    /// Remember `peer`; returns the one it replaced (to drop outside the borrow).
    fn insert(&mut self, peer: Peer) -> Option<Peer> {
        if self.list.len() < PEER_CACHE {
            self.list.push(peer);
            return None;
        }
        let i = self.next % PEER_CACHE;
        self.next = i + 1;
        Some(std::mem::replace(&mut self.list[i], peer))
    }
}

/// A received datagram and its sender's address object.
type Received<'py> = (Bound<'py, PyBytes>, Bound<'py, PyAny>);

/// A datagram queued for the end-of-phase `sendmmsg`.
struct Queued {
    data: Py<PyBytes>,
    /// The address as the caller passed it (`None` on a connected endpoint).
    addr: Py<PyAny>,
    /// Its raw `sockaddr` (empty on a connected endpoint).
    raw: Box<[u8]>,
}

#[pyclass(module = "ferroloop._native", frozen)]
pub struct DatagramFast {
    fd: RawFd,
    family: i32,
    /// The endpoint has a peer name (asyncio's `extra['peername']` is true): send with `send`.
    connected: bool,
    transport: GilCell<Option<Py<PyAny>>>,
    loop_: Py<EventLoop>,
    peers: GilCell<Peers>,
    queue: GilCell<Vec<Queued>>,
    /// In the loop's end-of-phase flush list.
    flush_listed: AtomicBool,
}

/// The transport's own `sendto` (`_datagram.py`, over which the instance binds this
/// object's): every path but the common one.
fn general_sendto(
    tr: &Bound<'_, PyAny>,
    data: &Bound<'_, PyAny>,
    addr: &Bound<'_, PyAny>,
) -> PyResult<()> {
    py_helpers::call_class_method(tr, intern!(tr.py(), "sendto"), &[data, addr])
}

/// The address object the socket module makes from a raw `sockaddr` of `family` (the
/// socket's: an unbound Unix peer has an empty address), or `None` for a family or length
/// this does not know.
fn addr_object<'py>(
    py: Python<'py>,
    family: i32,
    raw: &[u8],
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Some(peer) = peer_addr(family, raw) else {
        return Ok(None);
    };
    match peer {
        PeerAddr::V4(a) => {
            let t = PyTuple::new(
                py,
                [
                    a.ip().to_string().into_pyobject(py)?.into_any(),
                    a.port().into_pyobject(py)?.into_any(),
                ],
            )?;
            Ok(Some(t.into_any()))
        }
        PeerAddr::V6(a) => {
            let octets = a.ip().octets();
            let mut host = [0 as libc::c_char; 64];
            // SAFETY: inet_ntop writes at most host.len() bytes, NUL-terminated, from the
            // 16-byte address.
            let p = unsafe {
                inet_ntop(
                    libc::AF_INET6,
                    octets.as_ptr() as *const libc::c_void,
                    host.as_mut_ptr(),
                    host.len() as u32,
                )
            };
            if p.is_null() {
                return Ok(None);
            }
            // SAFETY: inet_ntop succeeded, so host is a NUL-terminated string.
            let text = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            let t = PyTuple::new(
                py,
                [
                    text.into_pyobject(py)?.into_any(),
                    a.port().into_pyobject(py)?.into_any(),
                    a.flowinfo().into_pyobject(py)?.into_any(),
                    a.scope_id().into_pyobject(py)?.into_any(),
                ],
            )?;
            Ok(Some(t.into_any()))
        }
        // as the socket module: no address is None, an abstract name (leading NUL) is
        // bytes, a path is str (file system encoding, up to its NUL)
        PeerAddr::Unnamed => Ok(Some(py.None().into_bound(py))),
        PeerAddr::Unix(path) => {
            if path.first() == Some(&0) {
                return Ok(Some(PyBytes::new(py, path).into_any()));
            }
            let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
            // SAFETY: path[..end] is readable; the call returns a new reference or NULL
            // with an exception set.
            let p = unsafe {
                ffi::PyUnicode_DecodeFSDefaultAndSize(path.as_ptr().cast(), end as ffi::Py_ssize_t)
            };
            // SAFETY: p is a new reference or NULL (error fetched).
            Ok(Some(unsafe { Bound::from_owned_ptr_or_err(py, p)? }))
        }
    }
}

impl DatagramFast {
    fn transport<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(self
            .transport
            .borrow_mut(py)?
            .as_ref()
            .map(|t| t.bind(py).clone()))
    }

    /// The address object of a received datagram, from the cache or made and remembered.
    fn peer<'py>(&self, py: Python<'py>, raw: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        if let Some(t) = self.peers.borrow_mut(py)?.by_raw(py, raw) {
            return Ok(t);
        }
        let Some(t) = addr_object(py, self.family, raw)? else {
            return Err(PyOSError::new_err("recvfrom: unexpected address"));
        };
        if !raw.is_empty() {
            let old = self.peers.borrow_mut(py)?.insert(Peer {
                raw: raw.to_vec(),
                tuple: t.clone().unbind(),
            });
            drop(old);
        }
        Ok(t)
    }

    /// One `recvmmsg`: the datagrams as `bytes` with their addresses; empty when none was
    /// queued. The batch buffers are the loop's, given back before any Python code runs.
    fn recv<'py>(&self, py: Python<'py>) -> PyResult<Result<Vec<Received<'py>>, std::io::Error>> {
        let lp = self.loop_.get();
        let mut batch = lp.take_recv_batch(py)?;
        let got = batch.recv(self.fd, BATCH);
        let out = match got {
            Ok(n) => {
                let mut items = Vec::with_capacity(n);
                for i in 0..n {
                    let (data, raw) = batch.get(i);
                    match self.peer(py, raw) {
                        Ok(addr) => items.push((PyBytes::new(py, data), addr)),
                        Err(e) => {
                            lp.put_recv_batch(py, batch)?;
                            return Err(e);
                        }
                    }
                }
                Ok(items)
            }
            Err(e) if ferroloop::engine::sock::would_block(&e) => Ok(Vec::new()),
            Err(e) => Err(e),
        };
        lp.put_recv_batch(py, batch)?;
        Ok(out)
    }

    /// Send one datagram at once (no run phase to batch in).
    fn send_one(&self, data: &[u8], raw: &[u8]) -> std::io::Result<usize> {
        send_batch(self.fd, &[Outgoing { data, addr: raw }])
    }

    /// Report a send error as asyncio's `sendto` does, through a callback.
    fn error_received(
        &self,
        py: Python<'_>,
        tr: &Bound<'_, PyAny>,
        err: std::io::Error,
    ) -> PyResult<()> {
        let protocol = tr.getattr(intern!(py, "_protocol"))?;
        let cb = protocol.getattr(intern!(py, "error_received"))?;
        self.loop_.bind(py).call_method1(
            intern!(py, "call_soon"),
            (cb, py_helpers::os_error(err).into_value(py)),
        )?;
        Ok(())
    }

    /// Send the queue: `sendmmsg` until it is empty; a full socket hands the rest to
    /// asyncio's `sendto` (which buffers it and waits for writability), in order.
    fn send_queue(&self, py: Python<'_>) -> PyResult<()> {
        let queue = std::mem::take(&mut *self.queue.borrow_mut(py)?);
        if queue.is_empty() {
            return Ok(());
        }
        let Some(tr) = self.transport(py)? else {
            return Ok(());
        };
        let mut i = 0;
        while i < queue.len() {
            let out: Vec<Outgoing<'_>> = queue[i..(i + BATCH).min(queue.len())]
                .iter()
                .map(|q| Outgoing {
                    data: q.data.bind(py).as_bytes(),
                    addr: &q.raw,
                })
                .collect();
            match send_batch(self.fd, &out) {
                Ok(k) if k > 0 => i += k,
                Err(e) if !ferroloop::engine::sock::would_block(&e) => {
                    // the first datagram's error: reported, that datagram dropped, as asyncio
                    self.error_received(py, &tr, e)?;
                    i += 1;
                }
                _ => {
                    // a full socket: asyncio's sendto buffers the rest, in order
                    for q in &queue[i..] {
                        general_sendto(&tr, q.data.bind(py).as_any(), q.addr.bind(py))?;
                    }
                    break;
                }
            }
        }
        Ok(())
    }

    /// Called by the loop at the end of the run phase. An exception on the way (from
    /// asyncio's `sendto` taking over a full socket's rest, say) is the transport's fatal
    /// write error, as asyncio reports one, not the loop's.
    pub(crate) fn flush_batch(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        me.flush_listed.store(false, Ordering::Relaxed);
        match me.send_queue(py) {
            Ok(()) => Ok(()),
            Err(e) if py_helpers::is_exit(py, &e) => Err(e),
            Err(e) => match me.transport(py)? {
                Some(tr) => {
                    tr.call_method1(
                        intern!(py, "_fatal_error"),
                        (e.into_value(py), "Fatal write error on datagram transport"),
                    )?;
                    Ok(())
                }
                None => Err(e),
            },
        }
    }
}

#[pymethods]
impl DatagramFast {
    #[new]
    fn py_new(
        transport: Bound<'_, PyAny>,
        loop_: Bound<'_, EventLoop>,
        fd: RawFd,
        connected: bool,
        family: i32,
    ) -> PyResult<Self> {
        if ![libc::AF_INET, libc::AF_INET6, libc::AF_UNIX].contains(&family) {
            return Err(PyTypeError::new_err(
                "DatagramFast serves AF_INET, AF_INET6 and AF_UNIX sockets",
            ));
        }
        Ok(DatagramFast {
            fd,
            family,
            connected,
            transport: GilCell::new(Some(transport.unbind())),
            loop_: loop_.unbind(),
            peers: GilCell::new(Peers::default()),
            queue: GilCell::new(Vec::new()),
            flush_listed: AtomicBool::new(false),
        })
    }

    /// asyncio's `_read_ready` for a datagram transport, for up to `BATCH` datagrams with
    /// one `recvmmsg` (asyncio reads one per readiness event; each further one would cost
    /// a loop turn and a poll). Delivery stops when the transport closes; an exception from
    /// `datagram_received` is raised after the batch's other datagrams are delivered (so
    /// none is lost), and any further one goes to the exception handler.
    fn _read_ready(&self, py: Python<'_>) -> PyResult<()> {
        let Some(tr) = self.transport(py)? else {
            return Ok(());
        };
        if tr.getattr(intern!(py, "_conn_lost"))?.is_truthy()? {
            return Ok(());
        }
        let items = match self.recv(py) {
            Ok(Ok(items)) => items,
            Ok(Err(e)) => {
                let protocol = tr.getattr(intern!(py, "_protocol"))?;
                protocol.call_method1(
                    intern!(py, "error_received"),
                    (py_helpers::os_error(e).into_value(py),),
                )?;
                return Ok(());
            }
            Err(e) if py_helpers::is_exit(py, &e) => return Err(e),
            Err(e) => {
                tr.call_method1(
                    intern!(py, "_fatal_error"),
                    (e.into_value(py), "Fatal read error on datagram transport"),
                )?;
                return Ok(());
            }
        };
        let mut first_err: Option<PyErr> = None;
        for (n, (data, addr)) in items.into_iter().enumerate() {
            if n > 0 && tr.getattr(intern!(py, "_conn_lost"))?.is_truthy()? {
                break;
            }
            let protocol = tr.getattr(intern!(py, "_protocol"))?;
            if let Err(e) = protocol.call_method1(intern!(py, "datagram_received"), (data, addr)) {
                if py_helpers::is_exit(py, &e) {
                    return Err(e);
                }
                if first_err.is_none() {
                    first_err = Some(e);
                } else {
                    report_datagram_error(py, self.loop_.bind(py), &protocol, e)?;
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// asyncio's `sendto`: to the connected peer or a known address while nothing is
    /// buffered, queued for the end of the run phase (or sent at once outside it).
    #[pyo3(signature = (data, addr=None))]
    fn sendto(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        addr: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let Some(tr) = me.transport(py)? else {
            return Ok(());
        };
        let none = py.None().into_bound(py);
        let addr = addr.unwrap_or(&none);
        let slow = || -> PyResult<()> {
            me.send_queue(py)?; // what is queued leaves first: order as asyncio
            general_sendto(&tr, data, addr)
        };
        // SAFETY: a type check on a live object.
        if unsafe { ffi::PyBytes_Check(data.as_ptr()) } == 0 {
            return slow();
        }
        let bytes = data.cast::<PyBytes>()?;
        if bytes.as_bytes().is_empty()
            || tr.getattr(intern!(py, "_conn_lost"))?.is_truthy()?
            || tr.getattr(intern!(py, "_buffer"))?.is_truthy()?
        {
            return slow();
        }
        let raw: Box<[u8]> = if me.connected {
            if !addr.is_none() {
                return slow(); // asyncio checks the address against the connected one
            }
            Box::new([])
        } else {
            match me.peers.borrow_mut(py)?.raw_of(py, addr) {
                Some(raw) => raw,
                None => return slow(),
            }
        };
        if !me.flush_listed.load(Ordering::Relaxed) {
            if !me
                .loop_
                .get()
                .defer(py, slf, |fast| Self::flush_batch(fast.cast()?), false)?
            {
                // no run phase: at once
                return match me.send_one(bytes.as_bytes(), &raw) {
                    Ok(_) => Ok(()),
                    Err(e) if ferroloop::engine::sock::would_block(&e) => {
                        general_sendto(&tr, data, addr)
                    }
                    Err(e) => me.error_received(py, &tr, e),
                };
            }
            me.flush_listed.store(true, Ordering::Relaxed);
        }
        let full = {
            let mut q = me.queue.borrow_mut(py)?;
            q.push(Queued {
                data: bytes.clone().unbind(),
                addr: addr.clone().unbind(),
                raw,
            });
            q.len() >= BATCH
        };
        if full {
            me.send_queue(py)?;
        }
        Ok(())
    }

    /// Watch the socket for reading: the loop's turn calls `_read_ready` directly.
    fn _watch(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let callback = slf.getattr(intern!(py, "_read_ready"))?;
        EventLoop::watch_native(me.loop_.bind(py), me.fd, callback, false, |fast| {
            fast.cast::<DatagramFast>()?.get()._read_ready(fast.py())
        })
    }

    /// Send what is queued now (before the transport's own `sendto`, or before the
    /// transport loses its socket).
    fn _flush(&self, py: Python<'_>) -> PyResult<()> {
        self.send_queue(py)
    }

    /// Let go of the transport (connection lost).
    fn _detach(&self, py: Python<'_>) -> PyResult<()> {
        let old = self.transport.borrow_mut(py)?.take();
        drop(old);
        let peers = std::mem::take(&mut *self.peers.borrow_mut(py)?);
        drop(peers);
        let queue = std::mem::take(&mut *self.queue.borrow_mut(py)?);
        drop(queue);
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        if let Some(t) = self.transport.try_borrow_for_gc() {
            if let Some(t) = t.as_ref() {
                visit.call(t)?;
            }
        }
        if let Some(peers) = self.peers.try_borrow_for_gc() {
            for p in &peers.list {
                visit.call(&p.tuple)?;
            }
        }
        if let Some(queue) = self.queue.try_borrow_for_gc() {
            for q in queue.iter() {
                visit.call(&q.addr)?;
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
            let p = self
                .peers
                .borrow_mut(py)
                .ok()
                .map(|mut p| std::mem::take(&mut *p));
            drop(p);
            let q = self
                .queue
                .borrow_mut(py)
                .ok()
                .map(|mut q| std::mem::take(&mut *q));
            drop(q);
        })
    }
}

/// A second exception from `datagram_received` in one batch: to the exception handler, as
/// asyncio reports an exception from a callback.
fn report_datagram_error(
    py: Python<'_>,
    lp: &Bound<'_, EventLoop>,
    protocol: &Bound<'_, PyAny>,
    err: PyErr,
) -> PyResult<()> {
    let ctx = pyo3::types::PyDict::new(py);
    let cb = protocol.getattr(intern!(py, "datagram_received"))?;
    ctx.set_item("message", format!("Exception in callback {}", cb.repr()?))?;
    ctx.set_item("exception", err.into_value(py))?;
    ctx.set_item("protocol", protocol)?;
    lp.call_method1(intern!(py, "call_exception_handler"), (ctx,))?;
    Ok(())
}
