//! The raw socket calls shared by the `net` types: a non-blocking `connect` and its
//! completion check, `bind` and `listen`, integer socket options, and the read/write steps
//! of stream sockets on a [`Registration`]. What differs between operating systems, making
//! and accepting sockets non-blocking and close-on-exec and socket addresses in their C
//! layout, is the OS backend's (`crate::sys`), re-exported here for the `net` types.
//!
//! Decision: std has no way to make a socket without binding or connecting it, nor to set
//! the listen backlog or `IPV6_V6ONLY` first, so descriptors are made with `libc` and
//! handed to std's types at once (`OwnedFd` → `std::net::TcpStream` ...), which own and
//! close them.
//!
//! Threading: the free functions work on borrowed descriptors from any thread; the
//! `Registration` helpers run on the loop thread that owns the registration.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::SocketAddr;
use std::os::unix::io::RawFd;
use std::task::{Context, Poll};

use crate::engine::sock;
use crate::runtime::io::Registration;
pub(crate) use crate::sys::addr::{sockaddr_of, sockaddr_un_of, socket_addr_from};
pub(crate) use crate::sys::socket::{accept, new_socket, unix_backlog_full};

/// The listen backlog of the Rust listeners: 1,024 (tokio's default). asyncio's
/// `create_server` uses 100, which drops SYNs when a thousand clients connect at once; the
/// kernel caps it at `net.core.somaxconn` (4,096 on current Linux).
pub(crate) const LISTEN_BACKLOG: libc::c_int = 1024;

/// Turn a `-1` return into the thread's `errno`.
fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The address family of `addr`.
pub(crate) fn domain_of(addr: &SocketAddr) -> libc::c_int {
    match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    }
}

/// Start connecting `fd` to the C address `addr`/`len`. `Ok(true)`: connected already;
/// `Ok(false)`: in progress (`EINPROGRESS`, or `EINTR`, after which Linux carries on
/// connecting in the background); wait for writability and ask [`connect_finished`].
///
/// # Safety
/// `addr` must point at a socket address of `len` readable bytes.
pub(crate) unsafe fn connect_raw(
    fd: RawFd,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> io::Result<bool> {
    // SAFETY: the caller guarantees addr/len describe a readable socket address.
    match cvt(unsafe { libc::connect(fd, addr, len) }) {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINPROGRESS) | Some(libc::EINTR)
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Start connecting `fd` to `addr` (see [`connect_raw`]).
pub(crate) fn connect_inet(fd: RawFd, addr: &SocketAddr) -> io::Result<bool> {
    let (storage, len) = sockaddr_of(addr);
    // SAFETY: storage holds an address of len bytes and lives across the call.
    unsafe { connect_raw(fd, (&storage as *const libc::sockaddr_storage).cast(), len) }
}

/// The pending error of `fd` (`SO_ERROR`), which reading clears.
pub(crate) fn take_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    let err: libc::c_int = get_int_opt(fd, libc::SOL_SOCKET, libc::SO_ERROR)?;
    Ok(if err == 0 {
        None
    } else {
        Some(io::Error::from_raw_os_error(err))
    })
}

/// Whether the connect started on `fd` has finished: `Ok` when connected, its error when it
/// failed, `WouldBlock` while it is still in progress (so a `write_io` closure can call this
/// first thing and park until writable).
pub(crate) fn connect_finished(fd: RawFd) -> io::Result<()> {
    if let Some(e) = take_error(fd)? {
        return Err(e);
    }
    // SAFETY: sockaddr_storage is plain data; getpeername writes at most `len` bytes of it.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage and len are valid for writes for the call.
    let r = unsafe {
        libc::getpeername(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    match cvt(r) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            // not connected and no error: still in progress, unless the error arrived
            // between the two calls
            match take_error(fd)? {
                Some(e) => Err(e),
                None => Err(io::ErrorKind::WouldBlock.into()),
            }
        }
        Err(e) => Err(e),
    }
}

/// `bind` `fd` to the C address `addr`/`len`.
///
/// # Safety
/// `addr` must point at a socket address of `len` readable bytes.
pub(crate) unsafe fn bind_raw(
    fd: RawFd,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> io::Result<()> {
    // SAFETY: the caller guarantees addr/len describe a readable socket address.
    cvt(unsafe { libc::bind(fd, addr, len) }).map(|_| ())
}

/// `listen(backlog)`.
pub(crate) fn listen(fd: RawFd, backlog: libc::c_int) -> io::Result<()> {
    // SAFETY: listen takes plain integers.
    cvt(unsafe { libc::listen(fd, backlog) }).map(|_| ())
}

/// The local address of an IP socket (`getsockname`).
pub(crate) fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data; getsockname writes at most `len` bytes of it.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage and len are valid for writes for the call.
    cvt(unsafe {
        libc::getsockname(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    socket_addr_from(&storage, len)
}

/// Set an `int` socket option.
pub(crate) fn set_int_opt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: value is a live c_int and its size is passed with it.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// Read an `int` socket option.
pub(crate) fn get_int_opt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value = MaybeUninit::<libc::c_int>::zeroed();
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes and len is value's size.
    cvt(unsafe { libc::getsockopt(fd, level, name, value.as_mut_ptr().cast(), &mut len) })?;
    // SAFETY: zero-initialised and then (partly) written by getsockopt: initialised.
    Ok(unsafe { value.assume_init() })
}

// -- stream I/O on a registration -----------------------------------------------------------

/// `recv` into `buf`, waiting for data; 0 at end of stream.
pub(crate) async fn read(reg: &Registration, buf: &mut [u8]) -> io::Result<usize> {
    std::future::poll_fn(|cx| poll_read(reg, cx, buf)).await
}

/// `send` from `buf` (with `MSG_NOSIGNAL`), waiting for room; how many bytes went.
pub(crate) async fn write(reg: &Registration, buf: &[u8]) -> io::Result<usize> {
    std::future::poll_fn(|cx| poll_write(reg, cx, buf)).await
}

/// Fill `buf` completely; `UnexpectedEof` if the stream ends first.
pub(crate) async fn read_exact(reg: &Registration, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match read(reg, buf).await? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => buf = &mut buf[n..],
        }
    }
    Ok(())
}

/// Send all of `buf`, waiting for room as often as needed.
pub(crate) async fn write_all(reg: &Registration, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match write(reg, buf).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => buf = &buf[n..],
        }
    }
    Ok(())
}

/// The `AsyncRead::poll_read` step.
pub(crate) fn poll_read(
    reg: &Registration,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    let fd = reg.fd();
    let want = buf.len();
    let r = reg.poll_read_io(cx, || sock::recv(fd, buf));
    if let Poll::Ready(Ok(n)) = r {
        if n > 0 && n < want {
            reg.clear_read_ready();
        }
    }
    r
}

/// The `AsyncWrite::poll_write` step.
pub(crate) fn poll_write(
    reg: &Registration,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    let fd = reg.fd();
    let r = reg.poll_write_io(cx, || sock::send(fd, buf));
    if let Poll::Ready(Ok(n)) = r {
        if n < buf.len() {
            reg.clear_write_ready();
        }
    }
    r
}

/// The `AsyncWrite::poll_write_vectored` step (one `sendmsg`).
pub(crate) fn poll_write_vectored(
    reg: &Registration,
    cx: &mut Context<'_>,
    bufs: &[io::IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    let fd = reg.fd();
    let mut slices: [&[u8]; sock::MAX_IOVECS] = [&[]; sock::MAX_IOVECS];
    let mut count = 0;
    for b in bufs.iter().filter(|b| !b.is_empty()).take(sock::MAX_IOVECS) {
        slices[count] = b;
        count += 1;
    }
    if count == 0 {
        return Poll::Ready(Ok(0));
    }
    reg.poll_write_io(cx, || sock::send_vectored(fd, &slices[..count]))
}

/// `futures_io::AsyncRead` and `AsyncWrite` for a stream type with a `reg: Registration`
/// field and a `shutdown_write()` method, and for shared references to it (so one task can
/// read while another writes through `&stream`).
macro_rules! impl_async_io {
    ($ty:ty) => {
        impl futures_io::AsyncRead for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut &*self).poll_read(cx, buf)
            }
        }

        impl futures_io::AsyncRead for &$ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                $crate::net::socket::poll_read(&self.reg, cx, buf)
            }
        }

        /// Delegates to the `&stream` implementation below.
        impl futures_io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut &*self).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut &*self).poll_write_vectored(cx, bufs)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut &*self).poll_flush(cx)
            }

            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut &*self).poll_close(cx)
            }
        }

        impl futures_io::AsyncWrite for &$ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                $crate::net::socket::poll_write(&self.reg, cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                $crate::net::socket::poll_write_vectored(&self.reg, cx, bufs)
            }

            /// Writes go straight to the kernel: nothing to flush.
            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }

            /// Half-close: sends end-of-stream (`shutdown(SHUT_WR)`), reading stays possible.
            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(self.shutdown_write())
            }
        }
    };
}

pub(crate) use impl_async_io;
