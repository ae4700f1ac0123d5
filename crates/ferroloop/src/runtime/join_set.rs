//! [`JoinSet`]: a set of tasks of one type, awaited in the order they finish.
//!
//! Owns: the [`Task`] handles of the tasks spawned into it, and the keys of those whose
//! handles were woken since they were last polled.
//!
//! Decision: each handle is polled with a waker of its own that queues the handle's key and
//! wakes whoever awaits [`JoinSet::join_next`] (what `FuturesUnordered` does), so a call looks
//! only at the tasks that finished, not at all of them: `join_next` over `n` tasks is O(1)
//! per finished task, not O(n).
//!
//! Semantics, as tokio's `JoinSet`: [`join_next`](JoinSet::join_next) gives each task's
//! result once (`Err(JoinError::Cancelled)` for an aborted task, `Err(JoinError::Panic)` for
//! a panic), and `None` when the set is empty; dropping the set cancels the tasks still in it
//! (asyncio's `TaskGroup` cancels its tasks when its body fails, and tokio's `JoinSet` on
//! drop: a forgotten set leaves nothing running).
//!
//! Threading: `!Send`, on the loop's thread (the tasks are); its wakers are `Send`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use super::task::{AbortHandle, JoinError, Task};

/// The keys of woken handles and the waker of the set's awaiter.
#[derive(Default)]
struct Woken {
    keys: VecDeque<u64>,
    waker: Option<Waker>,
}

#[derive(Default)]
struct Shared(Mutex<Woken>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Woken> {
        match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// The waker one handle is polled with.
struct EntryWaker {
    key: u64,
    shared: Arc<Shared>,
}

impl Wake for EntryWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let waker = {
            let mut w = self.shared.lock();
            w.keys.push_back(self.key);
            w.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

struct Entry<T> {
    task: Task<T>,
    waker: Waker,
}

/// A set of spawned tasks whose results come out as they finish.
pub struct JoinSet<T> {
    entries: HashMap<u64, Entry<T>>,
    shared: Arc<Shared>,
    next_key: u64,
}

impl<T> Default for JoinSet<T> {
    fn default() -> Self {
        JoinSet {
            entries: HashMap::new(),
            shared: Arc::default(),
            next_key: 0,
        }
    }
}

impl<T> fmt::Debug for JoinSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinSet")
            .field("len", &self.entries.len())
            .finish()
    }
}

impl<T: 'static> JoinSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawn `future` on the current loop (as [`spawn`](crate::spawn)) into this set.
    ///
    /// # Panics
    /// Outside a running loop, as `spawn` does.
    pub fn spawn<F>(&mut self, future: F) -> AbortHandle
    where
        F: Future<Output = T> + 'static,
    {
        self.insert(crate::spawn(future))
    }

    /// Add a task spawned elsewhere (its handle moves into the set).
    pub fn insert(&mut self, task: Task<T>) -> AbortHandle {
        let handle = task.abort_handle();
        let key = self.next_key;
        self.next_key += 1;
        let waker = Waker::from(Arc::new(EntryWaker {
            key,
            shared: Arc::clone(&self.shared),
        }));
        // polled once by the next join_next, which registers its waker
        waker.wake_by_ref();
        self.entries.insert(key, Entry { task, waker });
        handle
    }

    /// Tasks in the set (running, or finished and not yet joined).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no task is in the set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The result of the next task to finish; `None` when the set is empty.
    pub fn join_next(&mut self) -> JoinNext<'_, T> {
        JoinNext { set: self }
    }

    /// Poll for the next finished task (what [`join_next`](JoinSet::join_next) does).
    pub fn poll_join_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, JoinError>>> {
        if self.entries.is_empty() {
            return Poll::Ready(None);
        }
        loop {
            let key = {
                let mut w = self.shared.lock();
                match w.keys.pop_front() {
                    Some(key) => key,
                    None => {
                        match &w.waker {
                            Some(old) if old.will_wake(cx.waker()) => {}
                            _ => w.waker = Some(cx.waker().clone()),
                        }
                        return Poll::Pending;
                    }
                }
            };
            // a key may be queued twice, or after its entry left: skip those
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            let mut entry_cx = Context::from_waker(&entry.waker);
            if let Poll::Ready(result) = Pin::new(&mut entry.task).poll(&mut entry_cx) {
                self.entries.remove(&key);
                return Poll::Ready(Some(result));
            }
        }
    }

    /// The result of a task that has finished already, without waiting.
    pub fn try_join_next(&mut self) -> Option<Result<T, JoinError>> {
        struct Noop;
        impl Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        let waker = Waker::from(Arc::new(Noop));
        match self.poll_join_next(&mut Context::from_waker(&waker)) {
            Poll::Ready(r) => r,
            Poll::Pending => None,
        }
    }

    /// Cancel every task in the set; their results (`Err(JoinError::Cancelled)` for those that
    /// had not finished) still come out of `join_next`.
    pub fn abort_all(&mut self) {
        for entry in self.entries.values() {
            entry.task.cancel();
        }
    }

    /// Cancel every task and wait until the set is empty.
    pub async fn shutdown(&mut self) {
        self.abort_all();
        while self.join_next().await.is_some() {}
    }

    /// Every task's result, in the order they finish.
    pub async fn join_all(mut self) -> Vec<Result<T, JoinError>> {
        let mut out = Vec::with_capacity(self.len());
        while let Some(r) = self.join_next().await {
            out.push(r);
        }
        out
    }

    /// Remove every task from the set and let them run on (no longer cancelled on drop).
    pub fn detach_all(&mut self) {
        for (_, entry) in self.entries.drain() {
            entry.task.detach();
        }
        self.shared.lock().keys.clear();
    }
}

impl<T> Drop for JoinSet<T> {
    fn drop(&mut self) {
        for entry in self.entries.values() {
            entry.task.cancel();
        }
    }
}

/// The future of [`JoinSet::join_next`].
#[must_use = "futures do nothing unless polled"]
pub struct JoinNext<'a, T> {
    set: &'a mut JoinSet<T>,
}

impl<T: 'static> Future for JoinNext<'_, T> {
    type Output = Option<Result<T, JoinError>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.set.poll_join_next(cx)
    }
}
