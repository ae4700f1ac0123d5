//! The loop's clock: `time.monotonic()` as asyncio's `loop.time()` reads it, from the OS
//! backend (`crate::sys`: `CLOCK_MONOTONIC` on Linux, the clock CPython's
//! `time.monotonic()` reads there), so `loop.time()` and `time.monotonic()` agree.
//!
//! Threading: free functions, callable from any thread.

/// Seconds on the monotonic clock `time.monotonic()` reads.
pub fn monotonic() -> f64 {
    crate::sys::clock::monotonic()
}

/// Nanoseconds on the clock of [`monotonic`] (as `time.monotonic_ns()`), for durations.
#[inline]
pub fn monotonic_ns() -> u64 {
    crate::sys::clock::monotonic_ns()
}

/// The resolution of [`monotonic`] in seconds, as `time.get_clock_info('monotonic').resolution`.
pub fn resolution() -> f64 {
    crate::sys::clock::resolution()
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
