//! `DatagramFast`: the per-datagram paths of a datagram transport, native.
//!
//! The datagram transport (`python/ferroloop/_datagram.py`) is asyncio's own
//! `_SelectorDatagramTransport` for everything that happens once per endpoint or on an
//! unusual path (buffering when the socket is full, errors, close). Its two per-datagram
//! methods are replaced, per instance, by the bound methods of this object:
//!
//! * `_read_ready`: up to 16 datagrams per readiness event (asyncio reads one; each more
//!   would cost a loop turn and a poll: measured 13.9 -> 7.0 µs of server CPU per echoed
//!   datagram), each `recvfrom` into the loop's spare buffer, an exactly sized `bytes`, the
//!   address as the socket module makes it (`(host, port)` for IPv4, `(host, port,
//!   flowinfo, scope_id)` for IPv6, remembered for the last 64 peers), then
//!   `protocol.datagram_received(data, addr)`. Other families (Unix datagram sockets) keep
//!   asyncio's methods.
//! * `sendto`: while nothing is buffered, sends at once (`send` on a connected endpoint,
//!   `sendto` to an address tuple this transport handed out: no address parsing). Any
//!   other case (a full socket, a new address, a closed connection) calls asyncio's own
//!   `sendto`, so buffering, flow control and errors are asyncio's.
//!
//! Threading: loop thread, under the GIL. The cache sits in a `GilCell`, never borrowed
//! across a call into Python.

use std::os::unix::io::RawFd;

use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyTuple};
use pyo3::{ffi, intern, PyTraverseError, PyVisit};

use crate::cell::GilCell;
use crate::event_loop::EventLoop;
use crate::py_helpers;
use crate::transport::MAX_READ;

extern "C" {
    /// POSIX `inet_ntop` (not in the `libc` crate): the text form the socket module uses.
    fn inet_ntop(af: libc::c_int, src: *const libc::c_void, dst: *mut libc::c_char, size: libc::socklen_t) -> *const libc::c_char;
}

/// Datagrams read per readiness event at most (then the loop turns, for fairness).
const READ_BATCH: usize = 16;

/// A peer address: its raw `sockaddr` and the tuple made from it.
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
        self.list.iter().find(|p| p.raw == raw).map(|p| p.tuple.bind(py).clone())
    }

    fn raw_of(&self, py: Python<'_>, tuple: &Bound<'_, PyAny>) -> Option<Vec<u8>> {
        self.list.iter().find(|p| p.tuple.bind(py).is(tuple)).map(|p| p.raw.clone())
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

#[pyclass(module = "ferroloop._native", frozen)]
pub struct DatagramFast {
    fd: RawFd,
    /// The endpoint is connected (`peername` set): send with `send`.
    connected: bool,
    transport: GilCell<Option<Py<PyAny>>>,
    loop_: Py<EventLoop>,
    peers: GilCell<Peers>,
}

/// asyncio's own `_SelectorDatagramTransport.sendto`: every path but the common one.
fn slow_sendto(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static F: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    F.get_or_try_init(py, || {
        let cls = py.import("asyncio.selector_events")?.getattr("_SelectorDatagramTransport")?;
        Ok::<_, PyErr>(cls.getattr("sendto")?.unbind())
    })
    .map(|f| f.bind(py))
}

/// `(host, port)` / `(host, port, flowinfo, scope_id)` from a raw IPv4/IPv6 `sockaddr`.
fn addr_tuple<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Option<Bound<'py, PyAny>>> {
    let mut host = [0 as libc::c_char; 64];
    // SAFETY: raw holds a sockaddr the kernel wrote (at least sa_family is there).
    let family = unsafe { (*(raw.as_ptr() as *const libc::sockaddr)).sa_family } as i32;
    match family {
        libc::AF_INET if raw.len() >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the length check above; read_unaligned copes with any alignment.
            let sin: libc::sockaddr_in = unsafe { std::ptr::read_unaligned(raw.as_ptr() as *const _) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            let t = PyTuple::new(py, [ip.to_string().into_pyobject(py)?.into_any(), u16::from_be(sin.sin_port).into_pyobject(py)?.into_any()])?;
            Ok(Some(t.into_any()))
        }
        libc::AF_INET6 if raw.len() >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the length check above.
            let sin6: libc::sockaddr_in6 = unsafe { std::ptr::read_unaligned(raw.as_ptr() as *const _) };
            // SAFETY: inet_ntop writes at most host.len() bytes, NUL-terminated, from the
            // 16-byte address.
            let p = unsafe {
                inet_ntop(libc::AF_INET6, &sin6.sin6_addr as *const _ as *const libc::c_void, host.as_mut_ptr(), host.len() as u32)
            };
            if p.is_null() {
                return Ok(None);
            }
            // SAFETY: inet_ntop succeeded, so host is a NUL-terminated string.
            let text = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) }.to_string_lossy().into_owned();
            let t = PyTuple::new(
                py,
                [
                    text.into_pyobject(py)?.into_any(),
                    u16::from_be(sin6.sin6_port).into_pyobject(py)?.into_any(),
                    u32::from_be(sin6.sin6_flowinfo).into_pyobject(py)?.into_any(),
                    sin6.sin6_scope_id.into_pyobject(py)?.into_any(),
                ],
            )?;
            Ok(Some(t.into_any()))
        }
        _ => Ok(None),
    }
}

impl DatagramFast {
    fn transport<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(self.transport.borrow_mut(py)?.as_ref().map(|t| t.bind(py).clone()))
    }

    /// One `recvfrom`: Ok(None) when it would block.
    fn recv<'py>(&self, py: Python<'py>) -> PyResult<Result<Option<(Bound<'py, PyBytes>, Bound<'py, PyAny>)>, PyErr>> {
        let lp = self.loop_.get();
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
        // SAFETY: sockaddr_storage is plain data; zeroed is valid.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let n = loop {
            // SAFETY: buf is MAX_READ writable bytes; storage/len describe a writable
            // sockaddr buffer.
            let n = unsafe {
                libc::recvfrom(self.fd, buf.cast(), MAX_READ, 0, &mut storage as *mut _ as *mut libc::sockaddr, &mut len)
            };
            if n >= 0 {
                break Ok(n as usize);
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                break Err(e);
            }
        };
        let out = match n {
            Err(e) if ferroloop::sock::would_block(&e) => Ok(None),
            Err(e) => Err(py_helpers::os_error(e)),
            Ok(n) => {
                // SAFETY: recvfrom wrote n bytes of data and len bytes of address.
                let data = PyBytes::new(py, unsafe { std::slice::from_raw_parts(buf, n) });
                let raw = unsafe { std::slice::from_raw_parts(&storage as *const _ as *const u8, (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>())) };
                let cached = self.peers.borrow_mut(py)?.by_raw(py, raw);
                let addr = match cached {
                    Some(t) => Some(t),
                    None => match addr_tuple(py, raw)? {
                        Some(t) => {
                            let old = self.peers.borrow_mut(py)?.insert(Peer { raw: raw.to_vec(), tuple: t.clone().unbind() });
                            drop(old);
                            Some(t)
                        }
                        None => None,
                    },
                };
                match addr {
                    Some(a) => Ok(Some((data, a))),
                    // unreachable: only AF_INET/AF_INET6 sockets get a DatagramFast
                    None => Err(PyOSError::new_err("recvfrom: unexpected address family")),
                }
            }
        };
        lp.put_read_spare(py, spare.unbind())?;
        Ok(out)
    }
}

#[pymethods]
impl DatagramFast {
    #[new]
    fn py_new(transport: Bound<'_, PyAny>, loop_: Bound<'_, EventLoop>, fd: RawFd, connected: bool, family: i32) -> PyResult<Self> {
        if family != libc::AF_INET && family != libc::AF_INET6 {
            return Err(PyTypeError::new_err("DatagramFast serves AF_INET and AF_INET6 sockets"));
        }
        Ok(DatagramFast { fd, connected, transport: GilCell::new(Some(transport.unbind())), loop_: loop_.unbind(), peers: GilCell::new(Peers::default()) })
    }

    /// asyncio's `_read_ready` for a datagram transport, for up to `READ_BATCH` datagrams
    /// while more are queued (asyncio reads one per readiness event; each further one would
    /// cost a loop turn and a poll).
    fn _read_ready(&self, py: Python<'_>) -> PyResult<()> {
        let Some(tr) = self.transport(py)? else { return Ok(()) };
        for _ in 0..READ_BATCH {
            if tr.getattr(intern!(py, "_conn_lost"))?.is_truthy()? || tr.getattr(intern!(py, "_paused"))?.is_truthy()? {
                return Ok(());
            }
            let protocol = tr.getattr(intern!(py, "_protocol"))?;
            match self.recv(py)? {
                Ok(None) => return Ok(()),
                Ok(Some((data, addr))) => {
                    protocol.call_method1(intern!(py, "datagram_received"), (data, addr))?;
                }
                Err(e) if e.is_instance_of::<PyOSError>(py) => {
                    protocol.call_method1(intern!(py, "error_received"), (e.into_value(py),))?;
                    return Ok(());
                }
                Err(e) => {
                    tr.call_method1(intern!(py, "_fatal_error"), (e.into_value(py), "Fatal read error on datagram transport"))?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// asyncio's `sendto`, sending at once on the common path.
    #[pyo3(signature = (data, addr=None))]
    fn sendto(&self, py: Python<'_>, data: &Bound<'_, PyAny>, addr: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let Some(tr) = self.transport(py)? else { return Ok(()) };
        let none = py.None().into_bound(py);
        let addr = addr.unwrap_or(&none);
        let slow = || slow_sendto(py)?.call1((&tr, data, addr)).map(|_| ());
        // SAFETY: type checks on a live object.
        if unsafe { ffi::PyBytes_Check(data.as_ptr()) } == 0 {
            return slow();
        }
        let bytes = data.cast::<PyBytes>()?.as_bytes();
        if bytes.is_empty()
            || tr.getattr(intern!(py, "_conn_lost"))?.is_truthy()?
            || tr.getattr(intern!(py, "_buffer"))?.is_truthy()?
        {
            return slow();
        }
        let sent = if self.connected {
            if !addr.is_none() {
                return slow(); // asyncio checks the address against the connected one
            }
            ferroloop::sock::send(self.fd, bytes)
        } else {
            let raw = self.peers.borrow_mut(py)?.raw_of(py, addr);
            let Some(raw) = raw else { return slow() };
            loop {
                // SAFETY: bytes is readable for its length; raw is a sockaddr the kernel
                // wrote for this socket's family.
                let n = unsafe {
                    libc::sendto(self.fd, bytes.as_ptr().cast(), bytes.len(), 0, raw.as_ptr() as *const libc::sockaddr, raw.len() as libc::socklen_t)
                };
                if n >= 0 {
                    break Ok(n as usize);
                }
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINTR) {
                    break Err(e);
                }
            }
        };
        match sent {
            Ok(_) => Ok(()),
            // a full socket: asyncio's sendto buffers and waits for writability
            Err(e) if ferroloop::sock::would_block(&e) => slow(),
            Err(e) => {
                let protocol = tr.getattr(intern!(py, "_protocol"))?;
                protocol.call_method1(intern!(py, "error_received"), (py_helpers::os_error(e).into_value(py),))?;
                Ok(())
            }
        }
    }

    /// Let go of the transport (connection lost).
    fn _detach(&self, py: Python<'_>) -> PyResult<()> {
        let old = self.transport.borrow_mut(py)?.take();
        drop(old);
        let peers = std::mem::take(&mut *self.peers.borrow_mut(py)?);
        drop(peers);
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
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let t = self.transport.borrow_mut(py).ok().and_then(|mut t| t.take());
            drop(t);
            let p = self.peers.borrow_mut(py).ok().map(|mut p| std::mem::take(&mut *p));
            drop(p);
        })
    }
}
