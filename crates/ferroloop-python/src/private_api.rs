//! The CPython internals the extension uses for speed, each checked at import and each with
//! a public-API fallback; this module names them all and holds the switch that turns them
//! off.
//!
//! | internal | where | what it saves | checked by | fallback |
//! |---|---|---|---|---|
//! | `PyContext` layout (`ctx_vars`, `ctx_entered`; `Include/internal/pycore_context.h`, the same 3.7-3.13) | context.rs | a context copy per handle | `context::init` on live contexts | one `copy_context()` per handle |
//! | `PyThreadState.context` at this version's offset (`Include/cpython/pystate.h`: 224 on 3.11, 208 on 3.12 and 3.13, 64-bit) | context.rs | the copy made only to compare (84 instructions per `call_soon`) | a probe context entered and left at import | copy and compare |
//! | `_PyBytes_Resize` (`Include/cpython/bytesobject.h`, outside the limited API) | transport.rs | a copy of every short read | exported by every supported version | read into a spare buffer, copy out |
//! | `ssl.SSLObject._sslobj` (the C `_ssl._SSLSocket` an exact `SSLObject` forwards `read`/`write`/`pending` to; `Lib/ssl.py`, 3.5-3.13) | sslproto.rs | a Python frame per TLS record read or written | `type(sslobj) is ssl.SSLObject` and the attribute present, per connection | the `SSLObject`'s own methods |
//!
//! `FERROLOOP_PRIVATE_FAST_PATHS=0` in the environment when `ferroloop._native` is imported
//! turns every one of them off, so the fallbacks can be tested (`make test` runs the pytest
//! suite once that way); `_native.private_fast_paths()` says which are on.
//!
//! Threading: the switch is read once (a `OnceLock`); the rest under the GIL.

use std::sync::OnceLock;

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Whether the private fast paths may be used at all (the environment switch).
pub fn allowed() -> bool {
    static ALLOWED: OnceLock<bool> = OnceLock::new();
    *ALLOWED.get_or_init(|| {
        !matches!(
            std::env::var("FERROLOOP_PRIVATE_FAST_PATHS").as_deref(),
            Ok("0") | Ok("off") | Ok("false")
        )
    })
}

/// `PyThreadState.context`'s offset on this interpreter, per its `Include/cpython/pystate.h`
/// (measured with a probe context on each: 224 on 3.11, 208 on 3.12 and 3.13); `None` on any
/// other version or pointer width. `context::init` still checks the field before use.
pub fn thread_state_context_offset(py: Python<'_>) -> Option<usize> {
    if !cfg!(target_pointer_width = "64") {
        return None;
    }
    let v = py.version_info();
    match (v.major, v.minor) {
        (3, 11) => Some(224),
        (3, 12) | (3, 13) => Some(208),
        _ => None,
    }
}

/// `_native.private_fast_paths()`: which private fast paths are on in this process.
#[pyfunction]
pub fn private_fast_paths(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("allowed", allowed())?;
    d.set_item("context_layout", crate::context::sharing())?;
    d.set_item("thread_state_context", crate::context::current_readable())?;
    d.set_item("bytes_resize", allowed())?;
    d.set_item("ssl_object_inner", allowed())?;
    Ok(d)
}
