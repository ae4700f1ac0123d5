//! The OS seam: every call that differs between Linux and the BSDs or macOS, one module per
//! concern, behind the engine's own types. The scheduler (the Python loop's turn, the Rust
//! runtime's [`Core`](crate::runtime)) and the networking types only see those types, so a
//! second backend (kqueue) is a new directory beside `linux/`, not a change to them.
//!
//! | Concern | Linux backend | Engine type or caller | What a backend provides |
//! | --- | --- | --- | --- |
//! | poller | `linux/poller.rs`: epoll | [`Reactor`](crate::engine::Reactor) (which keeps the interest table and the parking of one-shot waits) | `Poller`: `new`, `as_raw_fd` (a descriptor that is readable when an event is pending, so one loop can be polled inside another), `add_waker`, `add`/`modify`/`delete` of a descriptor in a [`Mode`] (level, one-shot, edge), `is_gone` (the error of a descriptor the kernel no longer knows), `wait` reporting [`Readiness`] per descriptor and whether the waker fired |
//! | waker | `linux/waker.rs`: eventfd | [`Waker`](crate::engine::Waker), under [`Inbox`](crate::engine::Inbox) | `Waker`: `new`, `as_raw_fd` (what the poller watches), `wake` from any thread, `reset` on the loop thread, `close` |
//! | datagram batches | `linux/datagram.rs`: `recvmmsg`/`sendmmsg` | [`datagram`](crate::engine::datagram) | `RecvBatch` (`new`, `recv`, `get`) and `send_batch`, with the engine's `BATCH`, `DATAGRAM_ROOM` and `Outgoing` (a port without the batch calls loops over `recvmsg`/`sendmsg`) |
//! | socket flags | `linux/socket.rs`: `SOCK_NONBLOCK \| SOCK_CLOEXEC`, `accept4`, `MSG_NOSIGNAL`, `pipe2` | [`sock`](crate::engine::sock), `net::socket` | `new_socket`, `accept` (both non-blocking and close-on-exec, and never raising `SIGPIPE` on a send), `SEND_FLAGS`, `pipe`, `unix_backlog_full` |
//! | socket addresses | `linux/addr.rs`: the C layouts, Linux's abstract Unix names | `net::socket`, [`datagram::peer_addr`](crate::engine::datagram::peer_addr) | `sockaddr_of`, `socket_addr_from`, `sockaddr_un_of`, `peer_addr` |
//! | signals | `linux/signal.rs`: `NSIG`, `errno` from a handler, `sigaction` | [`signal`](crate::signal) (the self-pipe and its dispatcher thread are portable) | `NSIG`, `errno`/`set_errno`, `install` |
//! | child exits | `linux/process.rs`: `pidfd_open`, and a blocking `waitid(WNOWAIT)` where the kernel has no pidfd | [`process`](crate::process) | `pidfd_open` (a descriptor the poller can watch, readable at exit; an error where there is none) and `wait_exit_blocking` (wait without reaping, on a thread of its own) |
//! | clock | `linux/clock.rs`: `CLOCK_MONOTONIC` | [`clock`](crate::engine::clock), [`stats`](crate::engine::stats) | `monotonic`, `monotonic_ns`, `resolution`: the clock CPython's `time.monotonic()` reads on that OS |
//!
//! Outside the seam: the Python loop's child processes are watched by the Python package
//! (`python/ferroloop/_subprocess.py`: a pidfd per child on Linux, a thread per child where
//! `os.pidfd_open` is missing), as the one OS-specific piece that runs once per child. Calls
//! that POSIX defines alike everywhere (`read`, `write`, `close`, `socket` options by name,
//! `bind`, `listen`, `connect`, `getsockopt`, `recv`, `sendmsg`, `shutdown`) stay where they
//! are used.
//!
//! Only Linux is built and tested; any other target stops at the `compile_error!` below,
//! which names what a port must provide.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(not(target_os = "linux"))]
compile_error!(
    "ferroloop has a Linux backend only. A port adds src/sys/<os>/ with the modules of \
     src/sys/linux/: poller (Poller: add/modify/delete in level, one-shot and edge modes, \
     wait), waker (Waker), datagram (RecvBatch, send_batch), socket (new_socket, accept, \
     SEND_FLAGS, pipe, unix_backlog_full), addr (sockaddr conversions, peer_addr), signal \
     (NSIG, errno, install), process (pidfd_open, wait_exit_blocking) and clock (monotonic, monotonic_ns, resolution); see \
     src/sys/mod.rs."
);

/// How the poller watches a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Reported at every wait while ready (asyncio's readers and writers).
    Level,
    /// Reported once, then disarmed by the kernel (still registered) until modified again.
    Oneshot,
    /// Reported once per change of readiness, with peer hang-up (the Rust runtime's I/O).
    Edge,
}

/// What the poller reported for one descriptor, before the engine filters it by the
/// interest it registered. An error or hang-up makes a descriptor both readable and
/// writable, as `selectors` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Readiness {
    /// Readable, or hung up, or in error.
    pub(crate) readable: bool,
    /// Writable, or hung up, or in error.
    pub(crate) writable: bool,
    /// The peer hung up or the descriptor is in error: reading will not block any more.
    pub(crate) hangup: bool,
}
