//! The loop's clock: `time.monotonic()` as asyncio's `loop.time()` reads it.
//!
//! Threading: free functions, callable from any thread.

/// Seconds on `CLOCK_MONOTONIC`, the clock CPython's `time.monotonic()` reads on Linux, so
/// `loop.time()` and `time.monotonic()` agree.
pub fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The resolution of [`monotonic`] in seconds, as `time.get_clock_info('monotonic').resolution`.
pub fn resolution() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 1e-9;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

#[cfg(test)]
mod tests {
    #[test]
    fn monotonic_never_goes_back() {
        let a = super::monotonic();
        let b = super::monotonic();
        assert!(b >= a);
        assert!(super::resolution() > 0.0);
    }
}
