//! I/O readiness for the runtime's sockets: a descriptor registered with the current loop,
//! and the "try the syscall, park on `EWOULDBLOCK`" step every I/O future is made of.
//!
//! A [`Registration`] watches its descriptor edge-triggered from creation to drop (see
//! `core.rs`); one waker per direction is parked at a time (the last task to wait wins, as
//! with any `AsyncRead`: share a socket between tasks by splitting it, not by polling one
//! direction from two tasks). The owner must drop the `Registration` before it closes the
//! descriptor (declare it first in the struct).
//!
//! Threading: `!Send`; created and used on the loop thread of the loop running at creation.

use std::future::poll_fn;
use std::io;
use std::os::unix::io::RawFd;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::core::{with_current, Core};

/// A descriptor watched by the loop that was running on this thread when it was made.
pub(crate) struct Registration {
    fd: RawFd,
    core: Rc<Core>,
}

/// The error for I/O objects created outside a running loop.
pub(crate) fn no_loop_error() -> io::Error {
    io::Error::other("no ferroloop loop is running on this thread (use ferroloop::run or Loop::block_on)")
}

impl Registration {
    /// Register `fd` (already non-blocking) with the current loop.
    pub(crate) fn new(fd: RawFd) -> io::Result<Registration> {
        let core = with_current(|c| c.cloned()).ok_or_else(no_loop_error)?;
        core.register(fd)?;
        Ok(Registration { fd, core })
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
        loop {
            match f() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.core.park_io(self.fd, write, cx.waker());
                    return Poll::Pending;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return Poll::Ready(r),
            }
        }
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
