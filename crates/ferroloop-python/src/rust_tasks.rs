//! Rust futures on the Python loop: the bridge that turns a Rust task spawned on the loop's
//! scheduler into an `asyncio.Future`.
//!
//! Decision: a Rust task is an entry of the same scheduler as the Python handles
//! (event_loop.rs): it is queued when woken and runs in the turn's run phase in its place
//! among the handles, its sockets are in the same epoll, its sleeps fire in the same turn.
//! Cancellation goes both ways: cancelling the
//! `asyncio.Future` cancels the Rust task (its future is dropped); a Rust future dropped
//! before it resolved (cancelled on the Rust side) cancels the `asyncio.Future`. Closing the
//! loop drops its Rust tasks and leaves their futures pending, as asyncio leaves any future
//! pending at close.
//!
//! Threading: the scheduler is `!Send`, reached under the GIL (event_loop.rs, `LoopCore`).
//! The bridge futures run on the loop's thread during its turn, GIL held.

use std::rc::Rc;
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::event_loop::EventLoop;

/// Cancels a Rust task when the `asyncio.Future` bridged to it is cancelled (installed as
/// the future's done callback).
#[pyclass(module = "ferroloop._native", unsendable)]
pub struct RustTaskCanceller {
    task: Option<Rc<ferroloop::Task<()>>>,
}

#[pymethods]
impl RustTaskCanceller {
    fn __call__(&mut self, fut: &Bound<'_, PyAny>) -> PyResult<()> {
        let cancelled: bool = fut.call_method0("cancelled")?.extract()?;
        if let Some(task) = self.task.take() {
            if cancelled {
                task.cancel();
            }
        }
        Ok(())
    }
}

/// Resolves the Python future from the Rust task; if dropped unresolved (the Rust task was
/// cancelled), cancels it.
struct Resolver {
    fut: Option<Py<PyAny>>,
}

impl Resolver {
    fn finish(&mut self, result: PyResult<Py<PyAny>>) {
        let Some(fut) = self.fut.take() else { return };
        Python::attach(|py| {
            let fut = fut.bind(py);
            let done = fut
                .call_method0("done")
                .and_then(|d| d.extract::<bool>())
                .unwrap_or(true);
            if done {
                return;
            }
            let r = match result {
                Ok(v) => fut.call_method1("set_result", (v,)),
                Err(e) => fut.call_method1("set_exception", (e.into_value(py),)),
            };
            if let Err(e) = r {
                // an InvalidStateError here would mean the future changed under us
                e.write_unraisable(py, Some(fut));
            }
        });
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        if let Some(fut) = self.fut.take() {
            Python::attach(|py| {
                let fut = fut.bind(py);
                let done = fut
                    .call_method0("done")
                    .and_then(|d| d.extract::<bool>())
                    .unwrap_or(true);
                // a loop that closes drops its Rust tasks: the future stays pending then, as
                // any asyncio future pending at close does (its callbacks could not run)
                let closed = fut
                    .call_method0("get_loop")
                    .and_then(|l| l.call_method0("is_closed"))
                    .and_then(|c| c.extract::<bool>())
                    .unwrap_or(true);
                if !done && !closed {
                    if let Err(e) = fut.call_method0("cancel") {
                        e.write_unraisable(py, Some(fut));
                    }
                }
            });
        }
    }
}

/// Spawn `make(resolver)` on the Rust loop of `loop_`; returns the bridged future and the
/// Rust task (also held by the future's canceller callback).
fn bridge<F>(
    loop_: &Bound<'_, PyAny>,
    make: impl FnOnce(Resolver) -> F,
) -> PyResult<(Py<PyAny>, Rc<ferroloop::Task<()>>)>
where
    F: std::future::Future<Output = ()> + 'static,
{
    let native = native_loop(loop_)?;
    let fut = loop_.call_method0("create_future")?;
    let resolver = Resolver {
        fut: Some(fut.clone().unbind()),
    };
    let task = Rc::new(EventLoop::with_scheduler(native, |sched| {
        sched.spawn(make(resolver))
    })?);
    let canceller = Py::new(
        loop_.py(),
        RustTaskCanceller {
            task: Some(task.clone()),
        },
    )?;
    fut.call_method1("add_done_callback", (canceller,))?;
    Ok((fut.unbind(), task))
}

fn native_loop<'a, 'py>(loop_: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, EventLoop>> {
    loop_
        .cast::<EventLoop>()
        .map_err(|_| PyTypeError::new_err("a ferroloop event loop is required"))
}

/// `rust_sleep(loop, delay, result=None, rust_cancel_after=None)`: an `asyncio.Future`
/// resolved with `result` by a Rust task that sleeps `delay` seconds on the loop's thread.
/// With `rust_cancel_after`, a second Rust task cancels the first after that many seconds
/// (the Python future is then cancelled).
#[pyfunction]
#[pyo3(signature = (r#loop, delay, result=None, rust_cancel_after=None))]
pub fn rust_sleep(
    r#loop: &Bound<'_, PyAny>,
    delay: f64,
    result: Option<Py<PyAny>>,
    rust_cancel_after: Option<f64>,
) -> PyResult<Py<PyAny>> {
    let delay = seconds(delay)?;
    let cancel_after = rust_cancel_after.map(seconds).transpose()?;
    let result = result.unwrap_or_else(|| r#loop.py().None());
    let (fut, task) = bridge(r#loop, move |mut resolver| async move {
        ferroloop::sleep(delay).await;
        resolver.finish(Ok(result));
    })?;
    if let Some(after) = cancel_after {
        EventLoop::with_scheduler(native_loop(r#loop)?, |sched| {
            sched
                .spawn(async move {
                    ferroloop::sleep(after).await;
                    task.cancel();
                })
                .detach();
        })?;
    }
    Ok(fut)
}

/// `rust_echo(loop, host, port, data)`: an `asyncio.Future` of the bytes a TCP server sends
/// back after a Rust task connected to it with the engine's `TcpStream`, sent `data`,
/// half-closed and read to the end.
#[pyfunction]
pub fn rust_echo(
    r#loop: &Bound<'_, PyAny>,
    host: String,
    port: u16,
    data: Vec<u8>,
) -> PyResult<Py<PyAny>> {
    let (fut, _task) = bridge(r#loop, move |mut resolver| async move {
        let r = echo(&host, port, &data).await;
        let r = Python::attach(|py| match r {
            Ok(v) => Ok(PyBytes::new(py, &v).into_any().unbind()),
            Err(e) => Err(crate::py_helpers::os_error(e)),
        });
        resolver.finish(r);
    })?;
    Ok(fut)
}

async fn echo(host: &str, port: u16, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let s = ferroloop::TcpStream::connect((host, port)).await?;
    s.write_all(data).await?;
    s.shutdown_write()?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn seconds(s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| PyValueError::new_err(format!("invalid delay: {s}")))
}
