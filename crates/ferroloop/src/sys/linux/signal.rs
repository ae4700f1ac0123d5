//! Signals on Linux: the number of signals, `errno` as a signal handler saves and restores
//! it, and installing a handler with `sigaction`.
//!
//! Threading: process-wide; [`errno`] and [`set_errno`] are async-signal-safe.

use std::io;

/// Signal numbers are below this (Linux: 64 signals, numbered from 1).
pub(crate) const NSIG: usize = 65;

/// The calling thread's `errno`.
#[inline]
pub(crate) fn errno() -> libc::c_int {
    // SAFETY: __errno_location returns the calling thread's errno, always valid.
    unsafe { *libc::__errno_location() }
}

/// Set the calling thread's `errno` (a signal handler puts back what it found).
#[inline]
pub(crate) fn set_errno(value: libc::c_int) {
    // SAFETY: __errno_location returns the calling thread's errno, always valid.
    unsafe { *libc::__errno_location() = value };
}

/// Install `handler` for `signum`, with `SA_RESTART` so that other system calls are not
/// interrupted by it. The handler must only do async-signal-safe work.
pub(crate) fn install(signum: i32, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is valid; the caller's handler only does async-signal-safe
    // work.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(signum, &sa, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
