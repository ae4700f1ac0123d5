//! The Rust runtime: a single-threaded loop of `!Send` futures on the engine's reactor and
//! timer heap, with the pieces asyncio programs use (tasks, sleep, timeouts, gather,
//! a thread pool, signals). See the crate documentation for the tour.
//!
//! Threading: everything here runs on the loop's thread except [`LoopHandle`],
//! [`RemoteTask`], [`oneshot`] and the blocking pool, which cross threads.

pub(crate) mod blocking;
pub(crate) mod combinators;
pub(crate) mod coop;
pub(crate) mod core;
pub(crate) mod event_loop;
pub(crate) mod handle;
pub(crate) mod io;
pub(crate) mod join_set;
pub mod oneshot;
pub(crate) mod pool;
pub(crate) mod send_sleep;
pub mod signal;
pub(crate) mod task;
pub(crate) mod time;

pub use blocking::{spawn_blocking, BlockingTask};
pub use combinators::{gather, select, Either, Gather, Select};
pub use event_loop::{handle, run, spawn, Loop, LoopGuard};
pub use handle::{LoopHandle, RemoteTask};
pub use join_set::{JoinNext, JoinSet};
pub use pool::{LoopPool, ShutdownSignal};
pub use send_sleep::SendSleep;
pub use task::{AbortHandle, JoinError, Task};
pub use time::{
    interval, interval_at, sleep, sleep_until, timeout, timeout_at, yield_now, Elapsed, Interval,
    MissedTickBehavior, Sleep, Timeout, YieldNow,
};
