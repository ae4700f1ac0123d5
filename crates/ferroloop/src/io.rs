//! Readiness for any descriptor: [`Async<T>`] registers an `AsRawFd` value (a pipe, a
//! `std` socket, an eventfd, a terminal, the descriptor of a C library's connection) with the
//! running loop, so another fd-based crate can plug its non-blocking calls into the loop.
//!
//! Decision: the descriptor is watched edge-triggered, as the loop's own sockets are
//! (`runtime/io.rs`), so an operation is tried first and parks only after `EWOULDBLOCK`
//! ([`read_with`](Async::read_with), [`write_with`](Async::write_with)). [`readable`](Async::readable)
//! and [`writable`](Async::writable) answer as a level-triggered poller would: when the loop
//! believes the direction ready they confirm it with a zero-timeout `poll(2)`, so code that
//! drains the descriptor by itself (a C library reading until `EAGAIN`, or reading only part)
//! never spins on a stale readiness nor misses data that is still there. The confirmation
//! costs one system call per `readable()` that does not have to wait.
//!
//! Threading: `!Send`; made, used and dropped on the thread of the loop running when
//! [`Async::new`] was called. The wrapped value is dropped (and its descriptor closed) after
//! the descriptor has left the reactor.

use std::fmt;
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::os::unix::io::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::runtime::io::Registration;

/// An I/O object registered with the running loop, whose operations wait for readiness.
///
/// Any `T: AsRawFd` works whose descriptor epoll accepts (not a regular file: use
/// [`crate::fs`] for those). [`Async::new`] makes the descriptor non-blocking.
///
/// ```
/// use std::io::{Read, Write};
/// use std::os::unix::net::UnixStream;
/// use ferroloop::io::Async;
///
/// ferroloop::run(async {
///     let (a, b) = UnixStream::pair()?;
///     let (a, b) = (Async::new(a)?, Async::new(b)?);
///     ferroloop::spawn(async move { b.write_with(|s| (&*s).write(b"hello")).await });
///     let mut buf = [0u8; 5];
///     let n = a.read_with(|s| (&*s).read(&mut buf)).await?;
///     assert_eq!(&buf[..n], b"hello");
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct Async<T: AsRawFd> {
    // declared first: the descriptor leaves the reactor before `io` closes it
    reg: Registration,
    io: Option<T>,
}

/// Whether `fd` is ready for `events` now (`poll(2)` with no timeout). Hang-up and error
/// count as ready: the next operation will not block.
fn ready_now(fd: RawFd, events: libc::c_short) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call, timeout 0.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if pfd.revents & libc::POLLNVAL != 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    if pfd.revents & (events | libc::POLLHUP | libc::POLLERR) != 0 {
        Ok(())
    } else {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// Set `O_NONBLOCK` on `fd`.
fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns; F_GETFL/F_SETFL take no pointers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK != 0 {
        return Ok(());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl<T: AsRawFd> Async<T> {
    /// Make `io`'s descriptor non-blocking and register it with the running loop.
    ///
    /// Errors: outside a running loop; `EPERM` for a descriptor epoll cannot watch (a
    /// regular file or a directory); `EEXIST` if the descriptor is already registered (by
    /// another `Async` or socket of this loop).
    pub fn new(io: T) -> io::Result<Async<T>> {
        let fd = io.as_raw_fd();
        set_nonblocking(fd)?;
        let reg = Registration::new(fd)?;
        Ok(Async { reg, io: Some(io) })
    }

    /// The wrapped value.
    pub fn get_ref(&self) -> &T {
        self.io
            .as_ref()
            .expect("Async holds its value until into_inner")
    }

    /// Leave the loop and give back the value (its descriptor stays non-blocking).
    pub fn into_inner(mut self) -> T {
        let io = self
            .io
            .take()
            .expect("Async holds its value until into_inner");
        // `self` drops here: the registration goes, the value was taken out
        io
    }

    /// Wait until the descriptor is readable (or hung up, or in error): a read would not
    /// block now.
    pub async fn readable(&self) -> io::Result<()> {
        poll_fn(|cx| self.poll_readable(cx)).await
    }

    /// Wait until the descriptor is writable (or in error).
    pub async fn writable(&self) -> io::Result<()> {
        poll_fn(|cx| self.poll_writable(cx)).await
    }

    /// The poll form of [`readable`](Self::readable).
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let fd = self.reg.fd();
        self.reg.poll_read_io(cx, || ready_now(fd, libc::POLLIN))
    }

    /// The poll form of [`writable`](Self::writable).
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let fd = self.reg.fd();
        self.reg.poll_write_io(cx, || ready_now(fd, libc::POLLOUT))
    }

    /// Run `op` (a non-blocking read-side operation on the value) until it does not fail
    /// with `WouldBlock`, waiting for readability between attempts. Its first attempt is
    /// made at once unless the loop knows the descriptor has nothing to read.
    pub async fn read_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        poll_fn(|cx| self.poll_read_with(cx, &mut op)).await
    }

    /// As [`read_with`](Self::read_with), for the write side.
    pub async fn write_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        poll_fn(|cx| self.poll_write_with(cx, &mut op)).await
    }

    /// The poll form of [`read_with`](Self::read_with), for hand-written futures.
    pub fn poll_read_with<R>(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let io = self.get_ref();
        self.reg.poll_read_io(cx, || op(io))
    }

    /// The poll form of [`write_with`](Self::write_with).
    pub fn poll_write_with<R>(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let io = self.get_ref();
        self.reg.poll_write_io(cx, || op(io))
    }

    /// Try `op` (a read-side operation) once, without waiting: `WouldBlock` if the loop knows
    /// the descriptor has nothing to read, or if `op` reports it (which the loop remembers
    /// until the next readiness event). Other runtimes call this `try_io`.
    pub fn try_read_with<R>(&self, op: impl FnOnce(&T) -> io::Result<R>) -> io::Result<R> {
        let io = self.get_ref();
        self.reg.try_io(false, || op(io))
    }

    /// As [`try_read_with`](Self::try_read_with), for the write side.
    pub fn try_write_with<R>(&self, op: impl FnOnce(&T) -> io::Result<R>) -> io::Result<R> {
        let io = self.get_ref();
        self.reg.try_io(true, || op(io))
    }
}

impl<T: AsRawFd> AsRawFd for Async<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.reg.fd()
    }
}

impl<T: AsRawFd + fmt::Debug> fmt::Debug for Async<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Async").field("io", &self.io).finish()
    }
}

/// `AsyncRead`/`AsyncWrite` for `Async<T>` and `&Async<T>` where `&T` reads and writes
/// (sockets, pipes as `File`, `UnixStream`...). Closing flushes: the value has no buffer.
macro_rules! impl_async_rw {
    ($ty:ty) => {
        impl<T: AsRawFd> futures_io::AsyncRead for $ty
        where
            for<'a> &'a T: Read,
        {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                self.poll_read_with(cx, |mut io| io.read(buf))
            }
        }

        impl<T: AsRawFd> futures_io::AsyncWrite for $ty
        where
            for<'a> &'a T: Write,
        {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.poll_write_with(cx, |mut io| io.write(buf))
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.poll_write_with(cx, |mut io| io.flush())
            }

            fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.poll_flush(cx)
            }
        }
    };
}

impl_async_rw!(Async<T>);
impl_async_rw!(&Async<T>);
