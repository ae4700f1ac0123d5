//! Watching a child process exit on Linux: a pidfd (`pidfd_open`, Linux 5.3), which becomes
//! readable when the child exits and which the loop's reactor watches like a socket; where
//! the kernel has none (`ENOSYS`) or refuses it, a blocking `waitid(..., WNOWAIT)` on a
//! thread of its own, which waits for the exit without reaping it (the caller reaps).
//!
//! Threading: plain functions; `wait_exit_blocking` blocks its thread until the child exits.

use std::io;
use std::os::unix::io::{FromRawFd, OwnedFd};

/// A pidfd for child `pid`, close-on-exec: readable once the child has exited.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor from pidfd_open that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Block until child `pid` has exited, leaving it to be reaped (`WNOWAIT`). Errors:
/// `ECHILD` if it is not a child of this process or was reaped already.
pub(crate) fn wait_exit_blocking(pid: u32) -> io::Result<()> {
    loop {
        // SAFETY: siginfo_t is plain data that waitid fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: info is valid for writes for the call.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
