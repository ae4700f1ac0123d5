//! # ferroloop: asyncio's event loop, for Rust and for Python
//!
//! One engine runs Python's coroutines (through the `ferroloop._native` extension) and Rust
//! futures, on the same thread and the same epoll. For Rust programs it is a small
//! single-threaded async runtime with asyncio's model: a loop, tasks you can await and
//! cancel, `sleep`/`timeout`, `gather`, queues and locks, TCP/UDP/Unix sockets, a thread pool
//! for blocking work.
//!
//! ```
//! use std::time::Duration;
//!
//! let total = ferroloop::run(async {
//!     // three tasks, concurrently (asyncio.create_task)
//!     let tasks: Vec<_> = (1..=3u64)
//!         .map(|i| ferroloop::spawn(async move {
//!             ferroloop::sleep(Duration::from_millis(10 * i)).await;
//!             i
//!         }))
//!         .collect();
//!     // awaited together (asyncio.gather): the first error would cancel the rest
//!     let values = ferroloop::gather(tasks).await.unwrap();
//!     // blocking work off the loop thread (run_in_executor)
//!     let doubled = ferroloop::spawn_blocking(move || values.iter().sum::<u64>() * 2).await.unwrap();
//!     // a deadline (asyncio.wait_for)
//!     ferroloop::timeout(Duration::from_secs(1), async { doubled }).await.unwrap()
//! });
//! assert_eq!(total, 12);
//! ```
//!
//! ## The Rust API
//!
//! - Loop and tasks: [`run`], [`Loop`] (`block_on`, `spawn`, `handle`), [`spawn`] returning a
//!   [`Task`] (await it for `Result<T, JoinError>`, [`Task::cancel`] drops its future),
//!   [`LoopHandle`] (`Send`: `call`, `spawn`, `spawn_with` from other threads, giving a
//!   [`RemoteTask`]), [`JoinSet`] (tasks joined as they finish, cancelled with the set),
//!   [`AbortHandle`]; [`LoopPool`] (one loop per core: `Send` futures to the least-loaded
//!   loop, `spawn_with` for `!Send` ones, `serve_tcp` with a `SO_REUSEPORT` listener per
//!   loop, graceful shutdown).
//! - Time: [`sleep`], [`sleep_until`], [`timeout`], [`timeout_at`], [`interval`] (a `Stream`,
//!   with a [`MissedTickBehavior`]), [`interval_at`], [`yield_now`]; [`SendSleep`], a sleep
//!   that is `Send + Sync` for APIs that demand it (hyper's timer).
//! - Composition: [`gather`] (ordered results, first error cancels the rest), [`select()`];
//!   [`select!`], [`join!`] and [`try_join!`] over up to eight futures of any output types.
//! - Synchronisation with asyncio's semantics: [`sync`] (`Queue`, `Lock`, `Event`,
//!   `Condition`, `Semaphore`, `BoundedSemaphore`); and Rust's: [`sync::mpsc`] and
//!   [`sync::watch`] channels, `Notify`, `Barrier`, `RwLock` (these cross threads), and
//!   [`oneshot`] channels.
//! - Networking on the loop's reactor: [`net`] (`TcpListener`, `TcpStream`, `UdpSocket`,
//!   `UnixListener`, `UnixStream`, `lookup_host`), implementing `futures-io`'s traits, and
//!   the socket builders `TcpSocket` and `UnixSocket` (`SO_REUSEPORT`, backlog, bind before
//!   connect); [`io::Async`] for any other descriptor (`readable`, `read_with`, ...).
//! - [`spawn_blocking`] (a thread pool), [`signal`] (Unix signals), [`process`] (child
//!   processes with piped stdio, awaited through a pidfd), [`fs`] (files and directories on
//!   the blocking pool).
//! - [`main`] and [`test`]: attributes that run an `async fn main()` or an async test on a
//!   new loop (`#[ferroloop::main]`, `#[ferroloop::test]`).
//!
//! Tasks are `!Send` futures polled on the loop's thread; a task woken from another thread
//! goes through the loop's inbox and waker. Ready tasks run in turns, as asyncio's
//! callbacks do: each turn polls the tasks that were ready when it began.
//!
//! Threading: [`Loop`] and the tasks belong to the thread that runs the loop. [`LoopHandle`],
//! [`RemoteTask`] and [`oneshot`] cross threads.
//!
//! ## For embedders
//!
//! The Python loop (`crates/ferroloop-python`) builds asyncio's `_run_once` from the parts
//! the runtime above is made of: the clock, the reactor, the timer heap, the cross-thread
//! inbox and its waker, the socket calls and write queue of stream transports, the batched
//! datagram calls and the loop statistics. They are public under one module, [`engine`],
//! documented for embedders; a Rust program that runs futures does not need it.

#![deny(missing_docs)]

// `select!`, `join!`, `try_join!` (exported at the crate root).
mod macros;

/// What the macros expand to (not an API).
#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::combinators::MaybeDone;
}

// The user API. Loop and tasks:
pub use runtime::{
    handle, run, spawn, AbortHandle, BlockingTask, JoinError, JoinNext, JoinSet, Loop, LoopGuard,
    LoopHandle, LoopPool, RemoteTask, ShutdownSignal, Task,
};

// Time:
pub use runtime::{
    interval, interval_at, sleep, sleep_until, timeout, timeout_at, yield_now, Elapsed, Interval,
    MissedTickBehavior, SendSleep, Sleep, Timeout, YieldNow,
};

// `#[ferroloop::main]` and `#[ferroloop::test]`:
pub use ferroloop_macros::{main, test};

// Composition, blocking work, channels, signals:
pub use runtime::{gather, oneshot, select, signal, spawn_blocking, Either, Gather, Select};

// Synchronisation, networking, readiness for any descriptor, files, child processes:
pub mod fs;
pub mod io;
pub mod net;
pub mod process;
pub mod sync;

pub use net::{
    lookup_host, TcpListener, TcpSocket, TcpStream, UdpSocket, UnixDatagram, UnixListener,
    UnixSocket, UnixStream,
};

// hyper 1.x's runtime traits (feature `hyper`):
#[cfg(feature = "hyper")]
pub mod hyper;

// The machinery, public for embedders (the Python extension).
pub mod engine;

mod runtime;
// The OS seam: every Linux-specific call, one module per concern.
mod sys;
