//! The waiting half of the `sock_*` coroutines: try a socket call, else wait for readiness.
//!
//! `loop.sock_recv(sock, n)` and its siblings (`python/ferroloop/_sock.py`) call
//! `sock_call`/`sock_sendall`/`sock_accept`/`sock_connect_wait` here. Each tries the
//! operation at once and returns a future: already done when the socket was ready (awaiting
//! it does not yield, as asyncio's coroutine returns without yielding), or pending with a
//! `SockWaiter` registered as the descriptor's reader or writer. The waiter retries on each
//! readiness event until the call stops raising `BlockingIOError`/`InterruptedError`, then
//! finishes the future; the future's done callback removes the watcher (also on
//! cancellation), exactly as asyncio's `_sock_read_done`/`_sock_write_done`.
//!
//! The socket calls themselves are the socket object's methods (`recv`, `recv_into`,
//! `recvfrom`, `sendto`, `accept`...), so results and errors are the socket module's; only
//! `sendall` sends natively from the buffer (no memoryview slice per attempt).
//!
//! Threading: loop thread, under the GIL.

use std::os::unix::io::RawFd;

use pyo3::exceptions::{PyBlockingIOError, PyInterruptedError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyTuple, PyType};
use pyo3::{ffi, intern, PyTraverseError, PyVisit};

use crate::cell::GilCell;
use crate::event_loop::EventLoop;
use crate::handles::Handle;
use crate::py_helpers;

enum Op {
    /// `sock.recv(n)` done natively (no exception object for each would-block).
    Recv { n: usize },
    /// `sock.<method>(*args)`; the result is the future's.
    Call {
        method: Py<PyString>,
        args: Py<PyTuple>,
    },
    /// Send all of `data` (a bytes-like object) from offset `pos`.
    SendAll { data: Py<PyAny>, pos: usize },
    /// `sock.accept()`, the new socket made non-blocking.
    Accept,
    /// A connect in progress: `SO_ERROR` tells its outcome.
    Connect { address: Py<PyAny> },
}

/// The outcome of one attempt.
enum Attempt {
    Done(Py<PyAny>),
    WouldBlock,
    Failed(PyErr),
}

#[pyclass(module = "ferroloop._native", frozen)]
pub struct SockWaiter {
    loop_: Py<EventLoop>,
    fut: Py<PyAny>,
    sock: Py<PyAny>,
    fd: RawFd,
    write: bool,
    op: GilCell<Op>,
    handle: GilCell<Option<Py<Handle>>>,
}

fn would_block(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PyBlockingIOError>(py) || err.is_instance_of::<PyInterruptedError>(py)
}

fn ssl_socket_type(py: Python<'_>) -> Option<&Bound<'_, PyType>> {
    static T: PyOnceLock<Option<Py<PyType>>> = PyOnceLock::new();
    T.get_or_init(py, || {
        py.import("ssl")
            .and_then(|m| m.getattr("SSLSocket"))
            .and_then(|t| t.cast_into::<PyType>().map_err(PyErr::from))
            .ok()
            .map(Bound::unbind)
    })
    .as_ref()
    .map(|t| t.bind(py))
}

/// asyncio's `_check_ssl_socket` plus its debug-mode non-blocking check (always on here;
/// docs/compatibility.md).
pub fn check_socket(sock: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = sock.py();
    if let Some(t) = ssl_socket_type(py) {
        if sock.is_instance(t)? {
            return Err(PyTypeError::new_err("Socket cannot be of type SSLSocket"));
        }
    }
    let timeout = sock.call_method0(intern!(py, "gettimeout"))?;
    let nonblocking = match timeout.extract::<f64>() {
        Ok(t) => t == 0.0,
        Err(_) => false, // None: blocking
    };
    if !nonblocking {
        return Err(PyValueError::new_err("the socket must be non-blocking"));
    }
    Ok(())
}

fn attempt(
    lp: &EventLoop,
    py: Python<'_>,
    sock: &Bound<'_, PyAny>,
    fd: RawFd,
    op: &mut Op,
) -> Attempt {
    let result = match op {
        Op::Recv { n } => {
            // straight into a new bytes when the allocation stays on the heap (a copy of a
            // large read costs more than a large allocation shrunk: callgrind, 60 KB
            // reads, 68,900 -> 9,150 instructions per read; 1 KiB reads, 8,960 -> 9,215)
            let got = if *n > 0 && *n <= crate::transport::DIRECT_READ_MAX {
                crate::transport::recv_into_new(py, fd, *n)
            } else {
                crate::transport::recv_bytes(lp, py, fd, *n)
            };
            return match got {
                Ok(Ok(data)) => Attempt::Done(data.into_any().unbind()),
                Ok(Err(e)) if ferroloop::engine::sock::would_block(&e) => Attempt::WouldBlock,
                Ok(Err(e)) => Attempt::Failed(py_helpers::os_error(e)),
                Err(e) => Attempt::Failed(e),
            };
        }
        Op::Call { method, args } => sock
            .call_method1(method.bind(py), args.bind(py).clone())
            .map(Bound::unbind),
        Op::Accept => sock.call_method0(intern!(py, "accept")).and_then(|pair| {
            let conn = pair.get_item(0)?;
            conn.call_method1(intern!(py, "setblocking"), (false,))?;
            Ok(pair.unbind())
        }),
        Op::Connect { address } => {
            match sock
                .call_method1(
                    intern!(py, "getsockopt"),
                    (libc::SOL_SOCKET, libc::SO_ERROR),
                )
                .and_then(|e| e.extract::<i32>())
            {
                Ok(0) => Ok(py.None()),
                Ok(err) => {
                    let msg = format!(
                        "Connect call failed {}",
                        address
                            .bind(py)
                            .str()
                            .map(|s| s.to_string())
                            .unwrap_or_default()
                    );
                    // SAFETY: strerror is not needed: OSError(errno, msg) picks the subclass.
                    Err(pyo3::exceptions::PyOSError::new_err((err, msg)))
                }
                Err(e) => Err(e),
            }
        }
        Op::SendAll { data, pos } => return send_some(py, fd, data.bind(py), pos),
    };
    match result {
        Ok(v) => Attempt::Done(v),
        Err(e) if would_block(py, &e) => Attempt::WouldBlock,
        Err(e) => Attempt::Failed(e),
    }
}

/// One `send` of the rest of `data`; done when all of it has left.
fn send_some(py: Python<'_>, fd: RawFd, data: &Bound<'_, PyAny>, pos: &mut usize) -> Attempt {
    let mut view = std::mem::MaybeUninit::<ffi::Py_buffer>::uninit();
    // SAFETY: data is live; on success the view is released below exactly once.
    if unsafe { ffi::PyObject_GetBuffer(data.as_ptr(), view.as_mut_ptr(), ffi::PyBUF_SIMPLE) } != 0
    {
        return Attempt::Failed(PyErr::fetch(py));
    }
    // SAFETY: PyObject_GetBuffer succeeded.
    let mut view = unsafe { view.assume_init() };
    let len = view.len as usize;
    let r = if *pos >= len {
        Ok(0)
    } else {
        // SAFETY: the view's buffer is len readable bytes while exported; pos < len.
        let rest =
            unsafe { std::slice::from_raw_parts((view.buf as *const u8).add(*pos), len - *pos) };
        ferroloop::engine::sock::send(fd, rest)
    };
    // SAFETY: releasing the view obtained above.
    unsafe { ffi::PyBuffer_Release(&mut view) };
    match r {
        Ok(n) => {
            *pos += n;
            if *pos >= len {
                Attempt::Done(py.None())
            } else {
                Attempt::WouldBlock
            }
        }
        Err(e) if ferroloop::engine::sock::would_block(&e) => Attempt::WouldBlock,
        Err(e) => Attempt::Failed(py_helpers::os_error(e)),
    }
}

fn finish(fut: &Bound<'_, PyAny>, outcome: Attempt) -> PyResult<()> {
    let py = fut.py();
    match outcome {
        Attempt::Done(v) => {
            fut.call_method1(intern!(py, "set_result"), (v,))?;
        }
        Attempt::Failed(e) => {
            fut.call_method1(intern!(py, "set_exception"), (e.into_value(py),))?;
        }
        Attempt::WouldBlock => {}
    }
    Ok(())
}

impl SockWaiter {
    /// Remove this waiter's watcher, unless someone else took the descriptor since.
    fn stop_watching(&self, py: Python<'_>) -> PyResult<()> {
        let handle = self.handle.borrow_mut(py)?.take();
        if let Some(h) = handle {
            if !h.get().is_cancelled() {
                EventLoop::unwatch_fd(self.loop_.bind(py), self.fd, self.write)?;
            }
        }
        Ok(())
    }

    /// Try `op` on `sock` now; return a future, done or waiting on a watcher.
    fn start(
        lp: &Bound<'_, EventLoop>,
        sock: &Bound<'_, PyAny>,
        write: bool,
        mut op: Op,
        first_try: bool,
    ) -> PyResult<Py<PyAny>> {
        let py = lp.py();
        check_socket(sock)?;
        let fd: RawFd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
        let fut = EventLoop::new_future(lp)?;
        if first_try {
            match attempt(lp.get(), py, sock, fd, &mut op) {
                Attempt::WouldBlock => {}
                Attempt::Failed(e) if py_helpers::is_exit(py, &e) => return Err(e),
                outcome => {
                    finish(&fut, outcome)?;
                    return Ok(fut.unbind());
                }
            }
        }
        // asyncio's _ensure_fd_no_transport (asked only when a transport may own fd), then
        // the watcher
        if lp.get().maybe_transport_fd(py, fd)? {
            lp.call_method1(intern!(py, "_ensure_fd_no_transport"), (fd,))?;
        }
        let waiter = Bound::new(
            py,
            SockWaiter {
                loop_: lp.clone().unbind(),
                fut: fut.clone().unbind(),
                sock: sock.clone().unbind(),
                fd,
                write,
                op: GilCell::new(op),
                handle: GilCell::new(None),
            },
        )?;
        let handle = EventLoop::watch_fd(
            lp,
            fd,
            waiter.getattr(intern!(py, "_ready"))?,
            PyTuple::empty(py),
            write,
            true,
        )?;
        *waiter.get().handle.borrow_mut(py)? = Some(handle);
        fut.call_method1(
            intern!(py, "add_done_callback"),
            (waiter.getattr(intern!(py, "_done"))?,),
        )?;
        Ok(fut.unbind())
    }
}

#[pymethods]
impl SockWaiter {
    /// The watcher: retry the call, finish the future unless it would block again.
    fn _ready(&self, py: Python<'_>) -> PyResult<()> {
        let fut = self.fut.bind(py);
        if fut.call_method0(intern!(py, "done"))?.is_truthy()? {
            return Ok(());
        }
        let mut op = std::mem::replace(&mut *self.op.borrow_mut(py)?, Op::Accept);
        let outcome = attempt(self.loop_.get(), py, self.sock.bind(py), self.fd, &mut op);
        *self.op.borrow_mut(py)? = op;
        match outcome {
            Attempt::WouldBlock => Ok(()),
            Attempt::Failed(e) if py_helpers::is_exit(py, &e) => Err(e),
            outcome => {
                // stop watching now, while the reactor has just disarmed the one-shot
                // registration (it is parked, no syscall); the done callback finds nothing
                // left to do
                self.stop_watching(py)?;
                finish(fut, outcome)
            }
        }
    }

    /// The future's done callback: stop watching (also on cancellation), as asyncio's
    /// `_sock_read_done`/`_sock_write_done`.
    fn _done(&self, py: Python<'_>, _fut: &Bound<'_, PyAny>) -> PyResult<()> {
        self.stop_watching(py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.fut)?;
        visit.call(&self.sock)?;
        if let Some(op) = self.op.try_borrow_for_gc() {
            match &*op {
                Op::Call { args, .. } => visit.call(args)?,
                Op::SendAll { data, .. } => visit.call(data)?,
                Op::Connect { address } => visit.call(address)?,
                Op::Accept | Op::Recv { .. } => {}
            }
        }
        Ok(())
    }
}

/// `sock.<method>(*args)` now, or when the socket is ready (`write`: for writing).
#[pyfunction]
#[pyo3(signature = (loop_, sock, write, method, *args))]
pub fn sock_call(
    loop_: &Bound<'_, EventLoop>,
    sock: &Bound<'_, PyAny>,
    write: bool,
    method: Bound<'_, PyString>,
    args: Bound<'_, PyTuple>,
) -> PyResult<Py<PyAny>> {
    SockWaiter::start(
        loop_,
        sock,
        write,
        Op::Call {
            method: method.unbind(),
            args: args.unbind(),
        },
        true,
    )
}

/// `sock_recv(sock, n)`: natively when `0 < n <= 256 KiB`, else through `sock.recv`.
#[pyfunction]
pub fn sock_recv(
    loop_: &Bound<'_, EventLoop>,
    sock: &Bound<'_, PyAny>,
    n: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    let py = sock.py();
    let op = match n.extract::<isize>() {
        Ok(k) if k > 0 && k as usize <= crate::transport::MAX_READ => Op::Recv { n: k as usize },
        _ => Op::Call {
            method: intern!(py, "recv").clone().unbind(),
            args: PyTuple::new(py, [n])?.unbind(),
        },
    };
    SockWaiter::start(loop_, sock, false, op, true)
}

/// `sock_sendall`: send everything, waiting for writability as often as needed.
#[pyfunction]
pub fn sock_sendall(
    loop_: &Bound<'_, EventLoop>,
    sock: &Bound<'_, PyAny>,
    data: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    SockWaiter::start(
        loop_,
        sock,
        true,
        Op::SendAll {
            data: data.clone().unbind(),
            pos: 0,
        },
        true,
    )
}

/// `sock_accept`: `(conn, address)` with `conn` non-blocking.
#[pyfunction]
pub fn sock_accept(loop_: &Bound<'_, EventLoop>, sock: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    SockWaiter::start(loop_, sock, false, Op::Accept, true)
}

/// `sock_connect` after `connect()` raised `BlockingIOError`: wait for the outcome.
#[pyfunction]
pub fn sock_connect_wait(
    loop_: &Bound<'_, EventLoop>,
    sock: &Bound<'_, PyAny>,
    address: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    SockWaiter::start(
        loop_,
        sock,
        true,
        Op::Connect {
            address: address.clone().unbind(),
        },
        false,
    )
}
