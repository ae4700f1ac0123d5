//! `ferroloop._native`: the PyO3 extension. Registers the native event loop, handles and
//! the stream transport core.
//!
//! Threading: module init runs once, under the GIL.

mod cell;
mod context;
mod datagram;
mod event_loop;
mod handles;
mod pipe;
mod pool_calls;
mod private_api;
mod py_helpers;
mod rust_tasks;
mod sock_ops;
mod sslproto;
mod transport;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    context::init(m.py())?;
    event_loop::register_handle_hooks();
    m.add_class::<event_loop::EventLoop>()?;
    m.add_class::<handles::Handle>()?;
    m.add_class::<handles::TimerHandle>()?;
    m.add_class::<transport::SocketTransportCore>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<sock_ops::SockWaiter>()?;
    m.add_class::<datagram::DatagramFast>()?;
    m.add_class::<pipe::PipeFast>()?;
    m.add_class::<sslproto::SslProtocolCore>()?;
    m.add_function(wrap_pyfunction!(sock_ops::sock_call, m)?)?;
    m.add_function(wrap_pyfunction!(sock_ops::sock_recv, m)?)?;
    m.add_function(wrap_pyfunction!(sock_ops::sock_sendall, m)?)?;
    m.add_function(wrap_pyfunction!(sock_ops::sock_accept, m)?)?;
    m.add_function(wrap_pyfunction!(sock_ops::sock_connect_wait, m)?)?;
    m.add_class::<pool_calls::CallQueue>()?;
    m.add_class::<pool_calls::CallSteps>()?;
    m.add_function(wrap_pyfunction!(_panic_for_tests, m)?)?;
    m.add_function(wrap_pyfunction!(private_api::private_fast_paths, m)?)?;
    m.add_class::<rust_tasks::RustTaskCanceller>()?;
    m.add_function(wrap_pyfunction!(rust_tasks::rust_sleep, m)?)?;
    m.add_function(wrap_pyfunction!(rust_tasks::rust_echo, m)?)?;
    Ok(())
}

/// Panic inside native code (tests prove a Rust panic surfaces as a Python exception and
/// leaves the interpreter running).
#[pyfunction]
fn _panic_for_tests(message: &str) {
    panic!("{message}");
}
