//! # ferroloop: the engine of an asyncio event loop
//!
//! This crate owns the parts of the loop that never touch Python: the clock, the epoll
//! reactor, the timer heap, the cross-thread inbox with its waker, and the socket calls and write
//! queue of stream transports. The PyO3 extension
//! (`ferroloop-python`) builds asyncio's `_run_once` out of these pieces; Rust code can use
//! them directly.
//!
//! Threading: [`Reactor`], [`TimerHeap`] and the ready queue belong to the thread that runs
//! the loop and are not shared. [`Inbox`] is the one cross-thread entry: any thread may push
//! into it, and pushing wakes the reactor through its [`Waker`].
//!
//! ```
//! use ferroloop::{clock, Reactor, TimerHeap};
//! let mut reactor = Reactor::new().unwrap();
//! let mut timers: TimerHeap<&str> = TimerHeap::new();
//! let now = clock::monotonic();
//! timers.push(now + 0.001, "tick");
//! let timeout = timers.next_deadline().map(|when| (when - clock::monotonic()).max(0.0));
//! reactor.poll(timeout).unwrap();
//! let mut due = Vec::new();
//! timers.pop_due(clock::monotonic() + 1e-9, &mut due);
//! assert_eq!(due, vec!["tick"]);
//! ```

pub mod clock;
pub mod inbox;
pub mod net;
pub mod quad_heap;
pub mod reactor;
mod runtime;
pub mod sock;
pub mod sync;
pub mod timers;
pub mod write_queue;

pub use runtime::{
    gather, handle, interval, oneshot, run, select, signal, sleep, sleep_until, spawn, spawn_blocking,
    timeout, timeout_at, yield_now, BlockingTask, Either, Elapsed, Gather, Interval, JoinError, Loop,
    LoopGuard, LoopHandle, RemoteTask, Select, Sleep, Task, Timeout, YieldNow,
};

pub use inbox::{Inbox, Waker};
pub use reactor::{Event, Interest, Reactor};
pub use timers::{TimerHeap, TimerId};
pub use write_queue::WriteQueue;
