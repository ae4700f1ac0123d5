//! [`spawn_blocking`]: blocking work on a thread pool (asyncio's `run_in_executor` with the
//! default `ThreadPoolExecutor`).
//!
//! Decision: one process-wide pool, as asyncio's default executor is per loop but sized the
//! same way: at most `min(32, cpus + 4)` threads, started on demand, each leaving after 10
//! seconds idle. Jobs wait in one FIFO queue under a mutex; the result crosses back through
//! a [`oneshot`](super::oneshot) channel, whose wake reaches the loop through its inbox.
//!
//! Threading: the pool is `Sync` and lives for the process; jobs run on its threads.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use super::oneshot;
use super::task::JoinError;

type Job = Box<dyn FnOnce() + Send>;

struct PoolState {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

struct Pool {
    state: Mutex<PoolState>,
    cond: Condvar,
    max_threads: usize,
}

const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Pool {
            state: Mutex::new(PoolState {
                jobs: VecDeque::new(),
                threads: 0,
                idle: 0,
            }),
            cond: Condvar::new(),
            max_threads: (cpus + 4).min(32),
        }
    })
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn submit(&'static self, job: Job) {
        let mut st = self.lock();
        st.jobs.push_back(job);
        if st.idle > 0 {
            drop(st);
            self.cond.notify_one();
            return;
        }
        if st.threads < self.max_threads {
            st.threads += 1;
            drop(st);
            let spawned = std::thread::Builder::new()
                .name("ferroloop-blocking".into())
                .spawn(move || self.worker());
            if spawned.is_err() {
                // no thread now: the job waits for a running worker (or the next submit)
                self.lock().threads -= 1;
            }
        }
    }

    fn worker(&self) {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.jobs.pop_front() {
                drop(st);
                job();
                st = self.lock();
                continue;
            }
            st.idle += 1;
            let (guard, timeout) = match self.cond.wait_timeout(st, IDLE_TIMEOUT) {
                Ok(r) => r,
                Err(poisoned) => poisoned.into_inner(),
            };
            st = guard;
            st.idle -= 1;
            if timeout.timed_out() && st.jobs.is_empty() {
                st.threads -= 1;
                return;
            }
        }
    }
}

/// The future of a [`spawn_blocking`] call: the closure's value, or `JoinError::Panic` if it
/// panicked. Dropping it does not stop the closure (a thread cannot be interrupted), the
/// value is dropped when it arrives.
pub struct BlockingTask<R> {
    rx: oneshot::Receiver<Result<R, JoinError>>,
}

impl<R> Future for BlockingTask<R> {
    type Output = Result<R, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(JoinError::Cancelled)))
    }
}

/// Run `f` on the blocking pool and await its value (asyncio's
/// `loop.run_in_executor(None, f)`).
///
/// ```
/// let n = ferroloop::run(async {
///     ferroloop::spawn_blocking(|| (1..=10u64).product::<u64>()).await.unwrap()
/// });
/// assert_eq!(n, 3_628_800);
/// ```
pub fn spawn_blocking<F, R>(f: F) -> BlockingTask<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    pool().submit(Box::new(move || {
        let out = catch_unwind(AssertUnwindSafe(f)).map_err(JoinError::Panic);
        if let Err(unwanted) = tx.send(out) {
            drop(unwanted); // the awaiting future was dropped
        }
    }));
    BlockingTask { rx }
}
