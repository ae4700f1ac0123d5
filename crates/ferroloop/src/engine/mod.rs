//! The engine's parts, for embedders: what a host loop (the Python extension,
//! `crates/ferroloop-python`) builds asyncio's `_run_once` from. A Rust program that only
//! runs futures never needs this module: [`run`](crate::run), [`spawn`](crate::spawn) and
//! the rest of the crate root are built on these parts.
//!
//! | Module | What it gives an embedder |
//! | --- | --- |
//! | [`scheduler`] | [`Scheduler`]: the loop (ready queue of host entries and Rust tasks, timers, registrations, reactor, inboxes, asyncio's `_run_once`), and the [`Host`] a turn asks of its host |
//! | [`ready_queue`] | [`ready_queue::ReadyQueue`]: the scheduler's FIFO, a ring buffer with inlined push and pop |
//! | [`clock`] | `time.monotonic()` as `loop.time()` reads it, and its resolution |
//! | [`reactor`] | [`Reactor`]: level-triggered readiness over raw descriptors (asyncio's selector), one-shot waits parked between `sock_*` calls, edge-triggered registrations for the Rust runtime |
//! | [`inbox`] | [`Inbox`] and its [`Waker`]: the only way into a loop from another thread |
//! | [`timers`] | [`TimerHeap`]: `call_later`/`call_at` handles by deadline, lazy cancellation |
//! | [`sock`] | non-blocking `recv`, vectored `send`, `shutdown` on raw descriptors |
//! | [`write_queue`] | [`WriteQueue`]: a stream transport's outgoing chunks, one vectored send per flush |
//! | [`datagram`] | many datagrams per system call: [`datagram::RecvBatch`], [`datagram::send_batch`] |
//! | [`fd_map`] | [`FdMap`]: a map keyed by descriptor, indexed rather than hashed |
//! | [`stats`] | [`LoopStats`]: a loop's counters and optional callback timing |
//!
//! Each part is a plain Rust type with no Python in it; the OS calls under them sit behind
//! the crate's OS seam (`src/sys/`, see docs/architecture.md), so the API here is the same
//! whatever the backend.
//!
//! A [`Loop`](crate::Loop) is a `Scheduler<NoHost>`; the Python loop is a
//! `Scheduler` whose host entries are asyncio handles, on which Rust tasks run too.
//!
//! Threading: [`Scheduler`], [`Reactor`], [`TimerHeap`], [`WriteQueue`] and [`datagram::RecvBatch`] belong
//! to the thread that runs the loop. [`Inbox`], [`Waker`] and [`LoopStats`] cross threads;
//! the free functions of [`clock`], [`sock`] and [`datagram`] work from any thread on
//! descriptors their caller keeps open.

pub mod clock;
pub mod datagram;
pub mod fd_map;
pub mod inbox;
mod quad_heap;
pub mod reactor;
pub mod ready_queue;
pub mod scheduler;
pub mod sock;
pub mod stats;
pub mod timers;
pub mod write_queue;

pub use fd_map::FdMap;
pub use inbox::{Inbox, Waker};
pub use reactor::{Event, Interest, Reactor};
pub use scheduler::{Host, HostEntry, NoHost, Scheduler};
pub use stats::{LoopStats, StatsSnapshot};
pub use timers::{TimerHeap, TimerId};
pub use write_queue::WriteQueue;
