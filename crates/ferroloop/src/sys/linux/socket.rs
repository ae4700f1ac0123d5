//! Sockets and pipes on Linux: descriptors are born non-blocking and close-on-exec in
//! the creating call (`SOCK_NONBLOCK | SOCK_CLOEXEC`, `accept4`, `pipe2`: no window in
//! which a forked child inherits them, no `fcntl` afterwards), and sends pass
//! `MSG_NOSIGNAL` so a closed peer is an `EPIPE` error, never a `SIGPIPE`, whatever the
//! embedding program did with the signal.
//!
//! Threading: plain functions; the caller owns the descriptors they return.

use std::io;
use std::mem::size_of;
use std::os::unix::io::{FromRawFd, OwnedFd, RawFd};

/// The flags of every `send`/`sendmsg`/`sendmmsg` on a socket: no `SIGPIPE`.
pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;

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

/// A close-on-exec pipe, both ends blocking: `(read end, write end)`, owned by the caller.
pub(crate) fn pipe() -> io::Result<(RawFd, RawFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((fds[0], fds[1]))
}

/// Whether a non-blocking `connect` on a Unix stream socket failed because the listener's
/// backlog is full (Linux: `EAGAIN`; no readiness event announces room, so the caller
/// retries later).
pub(crate) fn unix_backlog_full(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EAGAIN)
}
