//! The raw socket calls shared by the `net` types: non-blocking `CLOEXEC` sockets, socket
//! addresses to and from their C layout, a non-blocking `connect` and its completion check,
//! `accept4`, integer socket options, and the read/write steps of stream sockets on a
//! [`Registration`].
//!
//! Decision: std has no way to make a socket without binding or connecting it, nor to set
//! the listen backlog or `IPV6_V6ONLY` first, so descriptors are made here with `libc` and
//! handed to std's types at once (`OwnedFd` → `std::net::TcpStream` ...), which own and
//! close them. Every socket is created `SOCK_NONBLOCK | SOCK_CLOEXEC` in one call (no window
//! in which a forked child inherits it, no `fcntl` afterwards).
//!
//! Threading: the free functions work on borrowed descriptors from any thread; the
//! `Registration` helpers run on the loop thread that owns the registration.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::task::{Context, Poll};

use crate::engine::sock;
use crate::runtime::io::Registration;

/// asyncio's `create_server` listens with a backlog of 100.
pub(crate) const LISTEN_BACKLOG: libc::c_int = 100;

/// Turn a `-1` return into the thread's `errno`.
fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A new non-blocking, close-on-exec socket.
pub(crate) fn new_socket(domain: libc::c_int, ty: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket takes plain integers and returns a new descriptor or -1.
    let fd =
        cvt(unsafe { libc::socket(domain, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just returned by socket(2) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The address family of `addr`.
pub(crate) fn domain_of(addr: &SocketAddr) -> libc::c_int {
    match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    }
}

/// `addr` in its C layout, with the length to pass along with it.
pub(crate) fn sockaddr_of(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid (unspecified) address.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and at least as aligned as sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_in6 is plain data; zeroed fills the fields set below and
            // any private padding libc may declare.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            // SAFETY: sockaddr_storage is larger than and at least as aligned as sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// The `SocketAddr` the kernel wrote into `storage` (an IPv4 or IPv6 address).
pub(crate) fn socket_addr_from(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> io::Result<SocketAddr> {
    let len = len as usize;
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and the storage is
            // aligned for it.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6, and the storage is
            // aligned for it.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an IPv4 or IPv6 socket address",
        )),
    }
}

/// `path` as a `sockaddr_un`. A path starting with a NUL byte names an address in Linux's
/// abstract namespace (no file); any other path must fit `sun_path` with its terminator.
pub(crate) fn sockaddr_un_of(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all zeroes is an empty path.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    let abstract_name = bytes.first() == Some(&0);
    if bytes.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty Unix socket path",
        ));
    }
    if !abstract_name && bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "Unix socket path contains a NUL byte",
        ));
    }
    // a filesystem path keeps one byte for its terminating NUL (already zero)
    let room = sun.sun_path.len() - usize::from(!abstract_name);
    if bytes.len() > room {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "Unix socket path is longer than sun_path (108 bytes)",
        ));
    }
    for (dst, src) in sun.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let base = std::mem::offset_of!(libc::sockaddr_un, sun_path);
    let len = base + bytes.len() + usize::from(!abstract_name);
    Ok((sun, len as libc::socklen_t))
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

/// `accept4` a connection on the listening `fd`, non-blocking and close-on-exec; the new
/// descriptor and the raw peer address. `ECONNABORTED` (the peer gave up while queued) is
/// skipped, as asyncio's accept loop does.
pub(crate) fn accept(fd: RawFd) -> io::Result<(OwnedFd, libc::sockaddr_storage, libc::socklen_t)> {
    loop {
        // SAFETY: sockaddr_storage is plain data; accept4 writes at most `len` bytes of it.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: storage and len are valid for writes for the call.
        let r = unsafe {
            libc::accept4(
                fd,
                (&mut storage as *mut libc::sockaddr_storage).cast(),
                &mut len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        match cvt(r) {
            // SAFETY: r is a new descriptor from accept4 that nothing else owns.
            Ok(new_fd) => return Ok((unsafe { OwnedFd::from_raw_fd(new_fd) }, storage, len)),
            Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `bind` then `listen(backlog)`.
pub(crate) fn bind_listen_raw(
    fd: RawFd,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
    backlog: libc::c_int,
) -> io::Result<()> {
    // SAFETY: every caller passes a pointer to a live socket address of len bytes.
    cvt(unsafe { libc::bind(fd, addr, len) })?;
    // SAFETY: listen takes plain integers.
    cvt(unsafe { libc::listen(fd, backlog) })?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet_addresses_round_trip_through_the_c_layout() {
        for text in ["127.0.0.1:8080", "[::1]:443", "[fe80::1%3]:9", "0.0.0.0:0"] {
            let addr: SocketAddr = match text.parse() {
                Ok(a) => a,
                Err(e) => panic!("{text}: {e}"),
            };
            let (storage, len) = sockaddr_of(&addr);
            assert_eq!(socket_addr_from(&storage, len).ok(), Some(addr));
        }
    }

    #[test]
    fn unix_paths_are_checked_for_length_and_nul() {
        assert!(sockaddr_un_of(Path::new("/tmp/x.sock")).is_ok());
        assert!(sockaddr_un_of(Path::new("")).is_err());
        assert!(sockaddr_un_of(Path::new(&"a".repeat(108))).is_err());
        assert!(sockaddr_un_of(Path::new(&"a".repeat(107))).is_ok());
        let (_, len) = match sockaddr_un_of(Path::new("\0abstract")) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            len as usize,
            std::mem::offset_of!(libc::sockaddr_un, sun_path) + 9
        );
    }
}
