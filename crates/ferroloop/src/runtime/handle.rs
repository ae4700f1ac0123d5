//! [`LoopHandle`]: how other threads call and spawn onto a loop (asyncio's
//! `call_soon_threadsafe` and `run_coroutine_threadsafe`), and [`RemoteTask`], the
//! thread-safe handle of a task spawned that way.
//!
//! Decision: a remote spawn sends a closure through the loop's inbox; the closure builds
//! the future on the loop thread (so it may be `!Send`) and spawns it there. Cancelling a
//! remote task sets a flag and wakes the task, which then drops its future on its own
//! thread: a future is never dropped off its loop.
//!
//! Threading: `LoopHandle` and `RemoteTask` are `Send + Sync` (given a `Send` output).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::core::{current, spawn_on, Remote, Shared};
use super::oneshot;
use super::task::JoinError;

/// A `Send + Sync` handle to a loop, for other threads.
#[derive(Clone)]
pub struct LoopHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for LoopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoopHandle")
    }
}

struct CancelState {
    cancelled: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl CancelState {
    fn waker(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        match self.waker.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// The handle of a task spawned through a [`LoopHandle`]: a `Send` future of its result,
/// which can also be cancelled or waited for from a plain thread.
pub struct RemoteTask<T> {
    rx: oneshot::Receiver<Result<T, JoinError>>,
    cancel: Arc<CancelState>,
    finished: Arc<AtomicBool>,
}

impl LoopHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> LoopHandle {
        LoopHandle { shared }
    }

    /// Run `f` on the loop's thread during its next turn (asyncio's
    /// `call_soon_threadsafe`). Inside `f`, [`crate::spawn`] spawns on that loop. If the loop
    /// is dropped first, `f` is dropped without running.
    pub fn call(&self, f: impl FnOnce() + Send + 'static) {
        if let Err(refused) = self.shared.inbox.push(Remote::Call(Box::new(f))) {
            // the loop is gone: `f` is dropped here (a remote spawn's result sender with
            // it, so its `RemoteTask` reports `Cancelled`)
            drop(refused);
        }
    }

    /// Spawn a `Send` future on the loop (asyncio's `run_coroutine_threadsafe`).
    ///
    /// ferroloop's sleeps, sockets and tasks belong to one loop and are `!Send`: a future
    /// that holds one across an `.await` is not `Send`, and the compiler's error names their
    /// insides (`Rc<dyn Core>`, `TimerSlot`, `IoState`). Build such a future on the loop's
    /// thread with [`spawn_with`](Self::spawn_with), or send a [`SendSleep`](crate::SendSleep)
    /// instead of a `Sleep`.
    pub fn spawn<F>(&self, future: F) -> RemoteTask<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_with(move || future)
    }

    /// Build a future on the loop's thread with `make` (so the future itself may be
    /// `!Send`: it may hold `Rc`s, sockets of that loop, ...) and spawn it there.
    pub fn spawn_with<M, F>(&self, make: M) -> RemoteTask<F::Output>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let cancel = Arc::new(CancelState {
            cancelled: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        let finished = Arc::new(AtomicBool::new(false));
        let (c2, f2) = (cancel.clone(), finished.clone());
        self.call(move || {
            let fut = make();
            let wrapped = Cancellable {
                fut: Box::pin(fut),
                cancel: c2,
            };
            let task = spawn_on(&*current(), async move {
                let out = wrapped.await;
                f2.store(true, Ordering::Release);
                // the receiver may be gone: the result is simply dropped then
                if let Err(unwanted) = tx.send(out) {
                    drop(unwanted);
                }
            });
            task.detach();
        });
        RemoteTask {
            rx,
            cancel,
            finished,
        }
    }
}

/// A future that ends early with `JoinError::Cancelled` once its flag is set.
struct Cancellable<F: Future> {
    fut: Pin<Box<F>>,
    cancel: Arc<CancelState>,
}

impl<F: Future> Future for Cancellable<F> {
    type Output = Result<F::Output, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.cancel.cancelled.load(Ordering::Acquire) {
            return Poll::Ready(Err(JoinError::Cancelled));
        }
        *self.cancel.waker() = Some(cx.waker().clone());
        let fut = self.fut.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => Poll::Ready(Err(JoinError::Panic(p))),
        }
    }
}

impl<T> RemoteTask<T> {
    /// Ask the loop to cancel the task: its future is dropped on the loop thread at its
    /// next turn and the result becomes [`JoinError::Cancelled`] (unless it finished first).
    pub fn cancel(&self) {
        self.cancel.cancelled.store(true, Ordering::Release);
        let w = self.cancel.waker().take();
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Block this thread until the task finishes (never on the loop's own thread).
    pub fn join(self) -> Result<T, JoinError> {
        self.rx.blocking_recv().unwrap_or(Err(JoinError::Cancelled))
    }
}

impl<T> Future for RemoteTask<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // a loop dropped before the task ran or finished drops the sender: cancelled
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(JoinError::Cancelled)))
    }
}

impl<T> fmt::Debug for RemoteTask<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteTask")
            .field("finished", &self.is_finished())
            .finish()
    }
}
