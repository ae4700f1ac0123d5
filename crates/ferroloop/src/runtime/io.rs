//! I/O readiness for the runtime's sockets: a descriptor registered with the current loop,
//! and the "try the syscall, park on `EWOULDBLOCK`" step every I/O future is made of.
//!
//! A [`Registration`] watches its descriptor edge-triggered from creation to drop (see
//! `core.rs`). Any number of tasks may wait on one direction (two acceptors on one listener,
//! a receive loop beside a `timeout(recv)`): each parks its waker, and readiness wakes them
//! all; those that find nothing to read park again. A waiter that goes away (a timeout, a
//! cancelled task) cannot swallow a wake-up meant for the others. Each completed operation
//! spends the task's cooperative budget (`coop.rs`). The owner must drop the `Registration`
//! before it closes the descriptor (declare it first in the struct).
//!
//! Threading: `!Send`; created and used on the loop thread of the loop running at creation.

use std::future::poll_fn;
use std::io;
use std::os::unix::io::RawFd;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::core::{with_current, Core, IoState};

/// A descriptor watched by the loop that was running on this thread when it was made.
pub(crate) struct Registration {
    fd: RawFd,
    state: Rc<IoState>,
    core: Rc<dyn Core>,
}

/// The error for I/O objects created outside a running loop.
pub(crate) fn no_loop_error() -> io::Error {
    io::Error::other(
        "no ferroloop loop is running on this thread (use ferroloop::run or Loop::block_on)",
    )
}

impl Registration {
    /// Register `fd` (already non-blocking) with the current loop.
    pub(crate) fn new(fd: RawFd) -> io::Result<Registration> {
        let core = with_current(|c| c.cloned()).ok_or_else(no_loop_error)?;
        let state = core.register(fd)?;
        Ok(Registration { fd, state, core })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        write: bool,
        mut f: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let (ready, slot) = if write {
            (&self.state.writable, &self.state.write)
        } else {
            (&self.state.readable, &self.state.read)
        };
        if !super::coop::proceed(cx) {
            return Poll::Pending;
        }
        loop {
            if !ready.get() {
                let mut waiters = slot.borrow_mut();
                if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    waiters.push(cx.waker().clone());
                }
                return Poll::Pending;
            }
            match f() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready.set(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => {
                    super::coop::spend();
                    return Poll::Ready(r);
                }
            }
        }
    }

    /// Run `f` once if the direction is believed ready: `WouldBlock` without calling it
    /// otherwise, and a `WouldBlock` from it clears the readiness until the next event.
    pub(crate) fn try_io<R>(
        &self,
        write: bool,
        f: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R> {
        let ready = if write {
            &self.state.writable
        } else {
            &self.state.readable
        };
        if !ready.get() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let r = f();
        if matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            ready.set(false);
        }
        r
    }

    /// A read returned less than asked for: the kernel buffer is drained, so the next read
    /// waits for the reactor instead of trying (an edge follows any new data).
    pub(crate) fn clear_read_ready(&self) {
        if !self.state.hangup.get() {
            self.state.readable.set(false);
        }
    }

    /// A write took less than offered: the kernel buffer is full.
    pub(crate) fn clear_write_ready(&self) {
        self.state.writable.set(false);
    }

    /// Run `f` (a non-blocking read-side syscall) until it does not report `EWOULDBLOCK`,
    /// parking the task until the descriptor is readable in between.
    pub(crate) fn poll_read_io<R>(
        &self,
        cx: &mut Context<'_>,
        f: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_io(cx, false, f)
    }

    /// As [`poll_read_io`](Self::poll_read_io), for the write side.
    pub(crate) fn poll_write_io<R>(
        &self,
        cx: &mut Context<'_>,
        f: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_io(cx, true, f)
    }

    /// `poll_read_io` as an `async fn`.
    pub(crate) async fn read_io<R>(&self, mut f: impl FnMut() -> io::Result<R>) -> io::Result<R> {
        poll_fn(|cx| self.poll_read_io(cx, &mut f)).await
    }

    /// `poll_write_io` as an `async fn`.
    pub(crate) async fn write_io<R>(&self, mut f: impl FnMut() -> io::Result<R>) -> io::Result<R> {
        poll_fn(|cx| self.poll_write_io(cx, &mut f)).await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.core.deregister(self.fd);
    }
}
