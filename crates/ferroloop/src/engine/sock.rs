//! Non-blocking socket calls on raw descriptors: `recv`, vectored `send`, `shutdown`.
//!
//! Thin wrappers that turn the C return conventions into `io::Result`, retry `EINTR`, and
//! send with the OS backend's `SEND_FLAGS` (`MSG_NOSIGNAL` on Linux: a closed peer is an
//! `EPIPE` error, never a `SIGPIPE`, whatever the embedding program did with the signal). The descriptor is borrowed: these helpers
//! never open or close one.
//!
//! Threading: any thread; the caller owns the descriptor's lifetime.

use std::io;
use std::os::unix::io::RawFd;

use crate::sys::socket::SEND_FLAGS;

/// At most this many buffers go into one `sendmsg` (Linux's `IOV_MAX` is 1024; a few dozen
/// already fill a socket buffer).
pub const MAX_IOVECS: usize = 64;

fn retry<F: FnMut() -> isize>(mut f: F) -> io::Result<usize> {
    loop {
        let n = f();
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// `recv(fd, buf)`: bytes read, 0 at end of stream, `WouldBlock` when nothing is there.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid writable region of buf.len() bytes for the whole call.
    retry(|| unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) })
}

/// `recv` into raw memory (a Python buffer the caller keeps exported for the call).
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes for the duration of the call.
pub unsafe fn recv_raw(fd: RawFd, ptr: *mut u8, len: usize) -> io::Result<usize> {
    // SAFETY: the caller guarantees ptr/len describe writable memory.
    retry(|| unsafe { libc::recv(fd, ptr.cast(), len, 0) })
}

/// Send the buffers in order with one `sendmsg`; returns how many bytes the kernel took.
pub fn send_vectored(fd: RawFd, bufs: &[&[u8]]) -> io::Result<usize> {
    let mut iov: [libc::iovec; MAX_IOVECS] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_IOVECS];
    let mut count = 0;
    for b in bufs.iter().filter(|b| !b.is_empty()).take(MAX_IOVECS) {
        iov[count] = libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        };
        count += 1;
    }
    if count == 0 {
        return Ok(0);
    }
    // SAFETY: msghdr is plain data; zeroed is a valid "no name, no control data" header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = count as _; // size_t on Linux, int on the BSDs
                                 // SAFETY: msg points at `count` iovecs describing live, readable slices of `bufs`.
    retry(|| unsafe { libc::sendmsg(fd, &msg, SEND_FLAGS) })
}

/// `send(fd, data)` with `SEND_FLAGS` (`MSG_NOSIGNAL`).
pub fn send(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: data is a valid readable region for the whole call.
    retry(|| unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), SEND_FLAGS) })
}

/// `shutdown(fd, SHUT_WR)`: send end-of-stream, keep reading.
pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: shutdown takes plain integers.
    retry(|| unsafe { libc::shutdown(fd, libc::SHUT_WR) } as isize).map(|_| ())
}

/// True for the errors that mean "try again when ready": `EAGAIN`/`EWOULDBLOCK`.
pub fn would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A connected, non-blocking Unix stream pair (the engine's socket tests share it).
    pub(crate) fn pair() -> (RawFd, RawFd) {
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two descriptors socketpair writes.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0);
        (fds[0], fds[1])
    }

    fn close(fd: RawFd) {
        // SAFETY: fd was opened by this test and is closed once.
        unsafe { libc::close(fd) };
    }

    #[test]
    fn vectored_send_keeps_order_and_recv_reports_eof() {
        let (a, b) = pair();
        let n = send_vectored(a, &[b"he", b"", b"llo", b" world"]).unwrap();
        assert_eq!(n, 11);
        let mut buf = [0u8; 32];
        assert_eq!(recv(b, &mut buf).unwrap(), 11);
        assert_eq!(&buf[..11], b"hello world");
        assert!(would_block(&recv(b, &mut buf).unwrap_err()));
        shutdown_write(a).unwrap();
        assert_eq!(recv(b, &mut buf).unwrap(), 0);
        close(a);
        close(b);
    }

    #[test]
    fn send_to_closed_peer_is_epipe_not_a_signal() {
        let (a, b) = pair();
        close(b);
        let err = send(a, b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
        close(a);
    }
}
