//! Calls from the extension into `ferroloop._handles` and `ferroloop._transports`: the rare
//! paths written in Python.
//!
//! Formatting a handle, reporting a callback's exception, capturing a debug-mode source
//! traceback, logging a slow callback and the debug-mode callback check run once per error
//! or only in debug mode, so they stay in Python where asyncio's own helpers
//! (`format_helpers`) are at hand. The functions are looked up once per process.
//!
//! Threading: any thread holding the GIL.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

const MODULE: &str = "ferroloop._handles";
const TRANSPORTS: &str = "ferroloop._transports";

macro_rules! helper {
    ($py:expr, $name:literal) => {
        helper!($py, MODULE, $name)
    };
    ($py:expr, $module:expr, $name:literal) => {{
        static F: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        F.import($py, $module, $name)
    }};
}

pub fn handle_repr<'py>(handle: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = handle.py();
    helper!(py, "handle_repr")?.call1((handle,))
}

/// Send a callback's exception to its loop's exception handler, as `Handle._run` does.
pub fn report_callback_error(handle: &Bound<'_, PyAny>, err: PyErr) -> PyResult<()> {
    let py = handle.py();
    helper!(py, "report_callback_error")?.call1((handle, err.into_value(py)))?;
    Ok(())
}

/// The creation stack of a handle (debug mode only).
pub fn source_traceback(py: Python<'_>) -> PyResult<Py<PyAny>> {
    Ok(helper!(py, "source_traceback")?.call0()?.unbind())
}

/// Log a callback slower than `loop.slow_callback_duration` (debug mode only).
pub fn log_slow_callback(handle: &Bound<'_, PyAny>, seconds: f64) -> PyResult<()> {
    let py = handle.py();
    helper!(py, "log_slow_callback")?.call1((handle, seconds))?;
    Ok(())
}

/// A handle as asyncio's slow-callback warning names it (`_format_handle`), as a `str`.
pub fn describe_handle<'py>(handle: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = handle.py();
    helper!(py, "describe_handle")?.call1((handle,))
}

/// Report a callback slower than `slow_callback_duration` outside debug mode (callback
/// timing on), with the stack a watchdog captured while it blocked, if any.
pub fn report_slow_callback(
    event_loop: &Bound<'_, PyAny>,
    handle: &Bound<'_, PyAny>,
    ns: u64,
    stack: Option<Py<PyAny>>,
) -> PyResult<()> {
    let py = handle.py();
    helper!(py, "ferroloop._monitor", "report_slow_callback")?.call1((
        event_loop,
        handle,
        ns as f64 * 1e-9,
        stack,
    ))?;
    Ok(())
}

/// asyncio's `_check_callback`: coroutines and non-callables are refused with its messages.
pub fn check_callback(callback: &Bound<'_, PyAny>, method: &str) -> PyResult<()> {
    let py = callback.py();
    helper!(py, "check_callback")?.call1((callback, method))?;
    Ok(())
}

/// `logger.debug(fmt, transport)` on asyncio's logger (debug mode only).
pub fn transport_debug(transport: &Bound<'_, PyAny>, fmt: &str) -> PyResult<()> {
    let py = transport.py();
    helper!(py, TRANSPORTS, "debug")?.call1((fmt, transport))?;
    Ok(())
}

/// asyncio's warning for repeated writes to a transport whose connection is lost.
pub fn send_after_lost_warning(py: Python<'_>) -> PyResult<()> {
    helper!(py, TRANSPORTS, "warn_send_after_lost")?.call0()?;
    Ok(())
}

/// A server's connection is lost: `ferroloop._transports.detach(server, transport)`.
pub fn detach_from_server(
    server: &Bound<'_, PyAny>,
    transport: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = server.py();
    helper!(py, TRANSPORTS, "detach")?.call1((server, transport))?;
    Ok(())
}

/// `contextvars.copy_context()`.
pub fn copy_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // SAFETY: returns a new reference or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent()) }.map(Bound::unbind)
}

/// `OSError(errno, strerror)`: CPython picks the subclass (`BlockingIOError`, ...) from errno.
pub fn os_error(e: std::io::Error) -> PyErr {
    match e.raw_os_error() {
        Some(code) => {
            // SAFETY: strerror returns a pointer to a static or thread-local C string.
            let msg = unsafe { std::ffi::CStr::from_ptr(libc::strerror(code)) }
                .to_string_lossy()
                .into_owned();
            pyo3::exceptions::PyOSError::new_err((code, msg))
        }
        None => pyo3::exceptions::PyOSError::new_err(e.to_string()),
    }
}

/// `SystemExit` or `KeyboardInterrupt`: the exceptions asyncio lets out of the loop.
pub fn is_exit(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<pyo3::exceptions::PySystemExit>(py)
        || err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py)
}

/// `type(obj).name(obj, *args)`: a transport's own general method where the instance
/// binds a native one of the same name (`write`, `sendto`) over it.
pub fn call_class_method<'py>(
    obj: &Bound<'py, PyAny>,
    name: &Bound<'py, pyo3::types::PyString>,
    args: &[&Bound<'py, PyAny>],
) -> PyResult<()> {
    let py = obj.py();
    let all: Vec<&Bound<'py, PyAny>> = std::iter::once(obj).chain(args.iter().copied()).collect();
    obj.get_type()
        .getattr(name)?
        .call1(pyo3::types::PyTuple::new(py, all)?)?;
    Ok(())
}

/// The text of a caught panic's payload (a `&str` or `String` message, as `panic!` makes).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic in ferroloop".to_string()
    }
}
