//! The waker on Linux: an eventfd, counted up by [`Waker::wake`] from any thread and read
//! back to zero by [`Waker::reset`] on the loop thread. The poller watches it for reading.
//!
//! Threading: `Send + Sync`; `wake` from any thread, `reset` and `close` by the owner.

use std::io;
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

/// Interrupts the reactor's poll from any thread: on Linux, an eventfd.
pub struct Waker {
    fd: AtomicI32,
}

impl Waker {
    /// A new non-blocking, close-on-exec eventfd.
    pub fn new() -> io::Result<Waker> {
        // SAFETY: plain syscall with valid flags.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Waker {
            fd: AtomicI32::new(fd),
        })
    }

    /// The eventfd, or -1 once [`close`](Self::close)d.
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.load(Ordering::Acquire)
    }

    /// Close the eventfd now (a closed loop releases its descriptors at once). Later wakes
    /// are no-ops. The owner must make sure no other thread is inside `wake` at this moment
    /// (the Python loop does: both run under the GIL).
    pub fn close(&self) {
        let fd = self.fd.swap(-1, Ordering::AcqRel);
        if fd >= 0 {
            // SAFETY: we owned fd and swapped it out, so it is closed exactly once.
            unsafe { libc::close(fd) };
        }
    }

    /// Make the reactor's current or next poll return.
    pub fn wake(&self) {
        let fd = self.as_raw_fd();
        if fd < 0 {
            return;
        }
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to our eventfd. A full counter (EAGAIN)
        // means a wake is already pending, which is all we want.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }

    /// Consume pending wakes (called by the loop thread after its poll reported the waker).
    pub fn reset(&self) {
        let fd = self.as_raw_fd();
        if fd < 0 {
            return;
        }
        let mut v: u64 = 0;
        // SAFETY: reading 8 bytes into a valid u64; EAGAIN (nothing pending) is fine.
        unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
    }
}

impl Drop for Waker {
    fn drop(&mut self) {
        self.close();
    }
}
