//! [`Loop`]: a loop for Rust futures, and [`run`]/[`spawn`] on the loop of this thread.
//!
//! `Loop::block_on` is asyncio's `run_until_complete`: the given future is polled in place on
//! this thread, between turns of the engine's [`Scheduler`] that run the spawned tasks, fire
//! timers and wait for I/O. A `Loop` is that scheduler with no host entries; the Python loop
//! runs Rust tasks on its own scheduler instead (no loop nested in another).
//!
//! Threading: `Loop` is `!Send`; [`crate::LoopHandle`] is how other threads reach it.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use super::core::{current, spawn_on, with_current, Core, Enter};
use super::handle::LoopHandle;
use super::task::{Header, Task, MAIN_KEY};
use crate::engine::scheduler::{NoHost, RustHost, Scheduler, RUST_POLL_INTERVAL};

/// An event loop for Rust futures on the current thread.
///
/// ```
/// let lp = ferroloop::Loop::new().unwrap();
/// let task = lp.spawn(async { 6 * 7 });
/// assert_eq!(lp.block_on(task).unwrap(), 42);
/// ```
pub struct Loop {
    core: Rc<Scheduler<NoHost>>,
}

impl Loop {
    /// A new loop (an epoll instance and an eventfd).
    pub fn new() -> io::Result<Loop> {
        Ok(Loop {
            core: Scheduler::new(RUST_POLL_INTERVAL)?,
        })
    }

    /// Run the loop until `future` completes, and return its output (asyncio's
    /// `run_until_complete`). Tasks spawned meanwhile run interleaved with it; those still
    /// pending when it completes stay in the loop for its next run.
    ///
    /// Panics if a loop is already running on this thread (asyncio: "Cannot run the event
    /// loop while another loop is running"), or if epoll fails.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        if with_current(|c| c.is_some()) {
            panic!("Cannot run the event loop while another loop is running");
        }
        let _enter = Enter::new(self.core.clone());
        let mut future = pin!(future);
        let header = Header::new(MAIN_KEY, self.core.shared().clone());
        let waker = Waker::from(header.clone());
        let mut cx = Context::from_waker(&waker);
        self.core.take_main_woken();
        loop {
            header.notified.store(false, Ordering::Release);
            let polled = super::coop::with_budget(|| future.as_mut().poll(&mut cx));
            if let Poll::Ready(v) = polled {
                return v;
            }
            // at least one turn between two polls of the main future, so a main future that
            // keeps waking itself does not starve the tasks
            loop {
                if let Err(e) = self.core.turn(&mut RustHost, true) {
                    panic!("ferroloop: the loop's poll failed: {e}");
                }
                if self.core.take_main_woken() {
                    break;
                }
            }
        }
    }

    /// Spawn `future` on this loop; it starts running when the loop next runs.
    pub fn spawn<F: Future + 'static>(&self, future: F) -> Task<F::Output> {
        spawn_on(&*self.core, future)
    }

    /// A handle other threads can use to call and spawn onto this loop.
    pub fn handle(&self) -> LoopHandle {
        LoopHandle::new(self.core.shared().clone())
    }

    /// Number of tasks not yet finished.
    pub fn task_count(&self) -> usize {
        self.core.task_count()
    }

    /// Make this loop the current one on this thread while the returned guard lives, so
    /// [`spawn`], timers and sockets made meanwhile belong to it (a host loop calling into
    /// Rust code does this).
    pub fn enter(&self) -> LoopGuard {
        self.core.enter()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        drop(self.core.close());
    }
}

/// Keeps a loop current on this thread (see [`Loop::enter`], [`Scheduler::enter`]).
pub struct LoopGuard {
    _enter: Enter,
}

impl LoopGuard {
    pub(crate) fn new(enter: Enter) -> LoopGuard {
        LoopGuard { _enter: enter }
    }
}

/// Run `future` to completion on a new loop, then drop the loop and every task still
/// pending in it (asyncio's `asyncio.run`).
///
/// ```
/// let v = ferroloop::run(async {
///     ferroloop::sleep(std::time::Duration::from_millis(1)).await;
///     "done"
/// });
/// assert_eq!(v, "done");
/// ```
pub fn run<F: Future>(future: F) -> F::Output {
    let lp = match Loop::new() {
        Ok(lp) => lp,
        Err(e) => panic!("ferroloop: cannot create a loop: {e}"),
    };
    lp.block_on(future)
}

/// Spawn `future` on the loop running on this thread (asyncio's `create_task`).
///
/// Panics outside a running loop.
pub fn spawn<F: Future + 'static>(future: F) -> Task<F::Output> {
    spawn_on(&*current(), future)
}

/// A [`LoopHandle`] to the loop running on this thread. Panics outside a running loop.
pub fn handle() -> LoopHandle {
    LoopHandle::new(current().shared().clone())
}
