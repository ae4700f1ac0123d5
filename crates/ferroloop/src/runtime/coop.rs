//! The cooperative budget: how many I/O operations one poll of a task may complete before
//! its I/O futures return `Pending` (having woken the task), so that a task whose socket is
//! always ready cannot keep the loop from its other tasks and timers.
//!
//! Decision: 128 operations per poll, as tokio's budget. Outside a task poll (a future
//! polled by hand, or by another executor) the budget is unlimited. Measured with
//! `tests/runtime_regressions.rs`: a 5 ms sleep beside a task reading an always-readable
//! socket woke after 208 ms without it; with it, within a turn or two of its deadline.
//!
//! Threading: a thread-local of the loop's thread.

use std::cell::Cell;
use std::task::Context;

/// Operations per task poll.
const BUDGET: u32 = 128;
const UNLIMITED: u32 = u32::MAX;

thread_local! {
    static LEFT: Cell<u32> = const { Cell::new(UNLIMITED) };
}

/// Run `f` (one poll of a task or of the main future) with a fresh budget; the previous
/// budget is restored afterwards (polls may nest: a loop's `block_on` inside a blocking
/// pool thread's own executor).
pub(crate) fn with_budget<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(u32);
    impl Drop for Restore {
        fn drop(&mut self) {
            LEFT.with(|l| l.set(self.0));
        }
    }
    let _restore = Restore(LEFT.with(|l| l.replace(BUDGET)));
    f()
}

/// Whether an I/O operation may proceed in this poll. When the budget is spent the task is
/// woken (it runs again next turn) and the caller returns `Pending`.
#[inline]
pub(crate) fn proceed(cx: &mut Context<'_>) -> bool {
    LEFT.with(|l| {
        let left = l.get();
        if left == 0 {
            cx.waker().wake_by_ref();
            false
        } else {
            true
        }
    })
}

/// An I/O operation completed: one unit of the budget is spent.
#[inline]
pub(crate) fn spend() {
    LEFT.with(|l| {
        let left = l.get();
        if left != UNLIMITED && left > 0 {
            l.set(left - 1);
        }
    });
}
