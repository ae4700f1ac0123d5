//! [`Child`]: a running child process, its pipes, and its exit as a future.
//!
//! Decision: the exit is watched through a pidfd registered with the loop's reactor (one
//! descriptor per child, no signal handler, nothing shared with other code of the process
//! that waits for its own children); where the kernel has no pidfd, a thread per child waits
//! with `waitid(WNOWAIT)` and wakes the task through a oneshot channel. In both cases the
//! child is reaped by `std`'s `try_wait` on the loop thread once it has exited, so `std`'s
//! `Child` stays the one owner of the pid. A `Child` dropped before its exit was collected is
//! reaped in the background (a task of the running loop, or a thread outside one), so no
//! zombie is left; with `kill_on_drop` it is killed first.
//!
//! Threading: `!Send`; used and dropped on the loop thread that spawned it.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::os::unix::io::OwnedFd;
use std::pin::Pin;
use std::process::{ExitStatus, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use super::pipes::{ChildStderr, ChildStdin, ChildStdout};
use crate::io::Async;
use crate::runtime::oneshot;
use crate::sys::process as os;

/// For tests: watch exits with a thread, as on a kernel without pidfds.
static FORCE_THREAD_WATCH: AtomicBool = AtomicBool::new(false);

#[doc(hidden)]
/// Watch the exits of children spawned from now on with a thread each instead of a pidfd
/// (what happens on kernels older than 5.3); for tests of that path.
pub fn __force_thread_watch(on: bool) {
    FORCE_THREAD_WATCH.store(on, Ordering::Relaxed);
}

/// How the exit of one child is awaited.
enum ExitWatch {
    /// Readable when the child has exited.
    Pidfd(Async<OwnedFd>),
    /// Sent to by the waiting thread.
    Thread(oneshot::Receiver<io::Result<()>>),
}

impl ExitWatch {
    fn new(pid: u32) -> io::Result<ExitWatch> {
        if !FORCE_THREAD_WATCH.load(Ordering::Relaxed) {
            if let Ok(fd) = os::pidfd_open(pid) {
                return Ok(ExitWatch::Pidfd(Async::new(fd)?));
            }
        }
        let (tx, rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("ferroloop-child-watch".into())
            .spawn(move || {
                if let Err(unwanted) = tx.send(os::wait_exit_blocking(pid)) {
                    drop(unwanted); // the Child went away: the reaper took over
                }
            })?;
        Ok(ExitWatch::Thread(rx))
    }

    /// Ready once the child has exited (it is not reaped yet).
    fn poll_exited(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            ExitWatch::Pidfd(fd) => fd.poll_readable(cx),
            ExitWatch::Thread(rx) => Pin::new(rx).poll(cx).map(|r| {
                r.unwrap_or_else(|_| Err(io::Error::other("the child watcher thread ended")))
            }),
        }
    }
}

/// A child process spawned by [`Command::spawn`](super::Command::spawn).
///
/// Its pipes are public fields, as in `std` (take them out to use them from other tasks).
pub struct Child {
    /// The child's standard input, if it was `Stdio::piped()`.
    pub stdin: Option<ChildStdin>,
    /// The child's standard output, if it was `Stdio::piped()`.
    pub stdout: Option<ChildStdout>,
    /// The child's standard error, if it was `Stdio::piped()`.
    pub stderr: Option<ChildStderr>,
    // `None` only while dropping
    std: Option<std::process::Child>,
    watch: Option<ExitWatch>,
    status: Option<ExitStatus>,
    kill_on_drop: bool,
}

impl Child {
    pub(super) fn new(mut std: std::process::Child, kill_on_drop: bool) -> io::Result<Child> {
        // the pipes first: if registering fails, `std` still owns them and closes them
        let stdin = std
            .stdin
            .take()
            .map(OwnedFd::from)
            .map(super::pipes::register);
        let stdout = std
            .stdout
            .take()
            .map(OwnedFd::from)
            .map(super::pipes::register);
        let stderr = std
            .stderr
            .take()
            .map(OwnedFd::from)
            .map(super::pipes::register);
        let watch = ExitWatch::new(std.id());
        let mut child = Child {
            stdin: None,
            stdout: None,
            stderr: None,
            std: Some(std),
            watch: None,
            status: None,
            kill_on_drop,
        };
        // on any error below, `child` drops: killed if asked, and reaped
        child.watch = Some(watch?);
        child.stdin = stdin.transpose()?.map(ChildStdin::new);
        child.stdout = stdout.transpose()?.map(ChildStdout::new);
        child.stderr = stderr.transpose()?.map(ChildStderr::new);
        Ok(child)
    }

    fn std(&mut self) -> &mut std::process::Child {
        self.std.as_mut().expect("the std child is held until drop")
    }

    /// The child's process id, or `None` once its exit has been collected (the pid may
    /// belong to another process by then).
    pub fn id(&self) -> Option<u32> {
        match (&self.status, &self.std) {
            (None, Some(c)) => Some(c.id()),
            _ => None,
        }
    }

    /// Wait for the child to exit and collect its status. Closes the child's stdin first
    /// (as `std` does) so that a child reading to end of file can finish. Cancel-safe: the
    /// status is kept for the next call.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        drop(self.stdin.take());
        poll_fn(|cx| self.poll_wait(cx)).await
    }

    /// The poll form of [`wait`](Self::wait) (stdin is not closed by it).
    pub fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<ExitStatus>> {
        if let Some(status) = self.status {
            return Poll::Ready(Ok(status));
        }
        let watch = self.watch.as_mut().expect("a live child has a watch");
        match watch.poll_exited(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {}
        }
        match self.try_wait() {
            Ok(Some(status)) => Poll::Ready(Ok(status)),
            Ok(None) => Poll::Ready(Err(io::Error::other(
                "the child was reported exited but waitpid finds it running",
            ))),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// The exit status if the child has exited (collecting it), `None` if it still runs.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let status = self.std().try_wait()?;
        if status.is_some() {
            self.status = status;
            self.watch = None; // the pidfd is closed, the thread has finished
        }
        Ok(status)
    }

    /// Send `SIGKILL` without waiting (`Ok` if the child has already exited).
    pub fn start_kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        self.std().kill()
    }

    /// Send `SIGKILL` and wait for the child to exit.
    pub async fn kill(&mut self) -> io::Result<()> {
        self.start_kill()?;
        self.wait().await.map(drop)
    }

    /// Close stdin, read stdout and stderr to their ends (those that are piped) while
    /// waiting for the exit: the status and everything the child wrote.
    pub async fn wait_with_output(mut self) -> io::Result<Output> {
        drop(self.stdin.take());
        let (stdout, stderr) = (self.stdout.take(), self.stderr.take());
        let out = async {
            let mut buf = Vec::new();
            if let Some(pipe) = &stdout {
                pipe.read_to_end(&mut buf).await?;
            }
            Ok::<_, io::Error>(buf)
        };
        let err = async {
            let mut buf = Vec::new();
            if let Some(pipe) = &stderr {
                pipe.read_to_end(&mut buf).await?;
            }
            Ok::<_, io::Error>(buf)
        };
        let (out, err, status) = crate::join!(out, err, self.wait());
        Ok(Output {
            status: status?,
            stdout: out?,
            stderr: err?,
        })
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let Some(mut std) = self.std.take() else {
            return;
        };
        if self.status.is_some() {
            return;
        }
        if self.kill_on_drop && std.kill().is_err() {
            // already exited (or not ours any more): reaped below either way
        }
        if let Ok(Some(_)) = std.try_wait() {
            return;
        }
        reap_in_background(std, self.watch.take());
    }
}

/// Collect the exit of a child nobody waits for any more: a task of the running loop when
/// there is one and the exit comes through a pidfd, else a thread that blocks in `wait`.
fn reap_in_background(mut std: std::process::Child, watch: Option<ExitWatch>) {
    if let Some(ExitWatch::Pidfd(fd)) = watch {
        if crate::runtime::core::with_current(|c| c.is_some()) {
            drop(crate::spawn(async move {
                if fd.readable().await.is_ok() && std.try_wait().is_err() {
                    // ECHILD: somebody else reaped it
                }
            }));
            return;
        }
    }
    let spawned = std::thread::Builder::new()
        .name("ferroloop-child-reap".into())
        .spawn(move || std.wait().map(drop));
    if spawned.is_err() {
        // no thread to be had: the zombie stays until this process exits
    }
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.id())
            .field("status", &self.status)
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .finish()
    }
}
