//! [`Queue`], [`LifoQueue`] and [`PriorityQueue`]: asyncio's producer/consumer queues.
//!
//! Owns: the items, the FIFOs of blocked getters and putters, and the unfinished-task counter
//! behind [`GenericQueue::task_done`] and [`GenericQueue::join`].
//!
//! Design: one [`GenericQueue<S>`] holds all of asyncio's `Queue` logic; the order in which
//! items come out is a [`QueueStorage`] (asyncio's overridable `_init`/`_put`/`_get`): [`Fifo`],
//! [`Lifo`] or [`Priority`] (smallest first, a min-heap like `heapq`). The three asyncio classes
//! are type aliases, so `Queue::new(0)`, `LifoQueue::new(0)` and `PriorityQueue::new(0)` all
//! infer their item type.
//!
//! Semantics follow CPython 3.11 `asyncio.Queue`:
//! - `maxsize == 0` means unbounded; `put` waits while [`GenericQueue::full`].
//! - `put_nowait` wakes the first waiting getter, `get_nowait` the first waiting putter. A woken
//!   task re-checks when it runs and, if another task took the item (or the slot) first with a
//!   `*_nowait` call or an immediate `get`/`put`, queues again at the back. As in asyncio, an
//!   immediate `get` is not prevented by waiting getters.
//! - a dropped (cancelled) `get`/`put` future that had been woken passes the wakeup on to the
//!   next getter/putter if there is still an item/a slot for it, so no wakeup is lost. A
//!   cancelled `put` drops its item, like asyncio.
//! - `task_done` more times than items were put is [`TaskDoneError`] (asyncio's `ValueError`);
//!   `join` waits until every item put has been marked done.
//! - [`GenericQueue::shutdown`] is Python 3.13's `Queue.shutdown`: afterwards `put` and
//!   `put_nowait` fail with [`QueueShutDown`] (the item handed back), `get` and `get_nowait`
//!   give the items still queued and then fail with it; every waiting getter and putter is
//!   woken to find out. `shutdown(true)` (asyncio's `immediate=True`) also drops the queued
//!   items, counting each as done, so `join` returns.
//!
//! Threading: single thread (`!Send`, `!Sync`), like asyncio's.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::event::{Event, EventWait};
use super::waiters::{WaiterKey, WaiterList};

/// How a [`GenericQueue`] stores its items and which one comes out next (asyncio's
/// `_init`/`_put`/`_get` overrides).
pub trait QueueStorage {
    /// The type of the items.
    type Item;
    /// Number of items stored.
    fn len(&self) -> usize;
    /// True if no item is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Stores an item.
    fn push(&mut self, item: Self::Item);
    /// Removes the next item, `None` if empty.
    fn pop(&mut self) -> Option<Self::Item>;
}

/// First in, first out storage ([`Queue`]).
pub struct Fifo<T>(VecDeque<T>);

/// Last in, first out storage ([`LifoQueue`]).
pub struct Lifo<T>(Vec<T>);

/// Smallest item first storage ([`PriorityQueue`]); equal items come out in no set order.
pub struct Priority<T>(BinaryHeap<Reverse<T>>);

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Fifo(VecDeque::new())
    }
}

impl<T> Default for Lifo<T> {
    fn default() -> Self {
        Lifo(Vec::new())
    }
}

impl<T: Ord> Default for Priority<T> {
    fn default() -> Self {
        Priority(BinaryHeap::new())
    }
}

impl<T> QueueStorage for Fifo<T> {
    type Item = T;
    fn len(&self) -> usize {
        self.0.len()
    }
    fn push(&mut self, item: T) {
        self.0.push_back(item);
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop_front()
    }
}

impl<T> QueueStorage for Lifo<T> {
    type Item = T;
    fn len(&self) -> usize {
        self.0.len()
    }
    fn push(&mut self, item: T) {
        self.0.push(item);
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop()
    }
}

impl<T: Ord> QueueStorage for Priority<T> {
    type Item = T;
    fn len(&self) -> usize {
        self.0.len()
    }
    fn push(&mut self, item: T) {
        self.0.push(Reverse(item));
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop().map(|Reverse(item)| item)
    }
}

/// asyncio's `Queue`: first in, first out.
///
/// ```
/// use ferroloop::sync::Queue;
/// futures::executor::block_on(async {
///     let q = Queue::new(2);
///     q.put("a").await.unwrap();
///     q.put_nowait("b").unwrap();
///     assert!(q.full());
///     assert_eq!(q.put_nowait("c").unwrap_err().into_inner(), "c");
///     assert_eq!(q.get().await, Ok("a"));
///     q.task_done().unwrap();
///     assert_eq!(q.get_nowait(), Ok("b"));
///     q.task_done().unwrap();
///     q.join().await;
///     assert!(q.task_done().is_err());
/// });
/// ```
pub type Queue<T> = GenericQueue<Fifo<T>>;

/// asyncio's `LifoQueue`: the most recently added item comes out first.
pub type LifoQueue<T> = GenericQueue<Lifo<T>>;

/// asyncio's `PriorityQueue`: the smallest item comes out first (use `(priority, data)`
/// tuples as in Python, or [`std::cmp::Reverse`] for largest first).
pub type PriorityQueue<T> = GenericQueue<Priority<T>>;

/// The queue behind [`Queue`], [`LifoQueue`] and [`PriorityQueue`], generic over its
/// [`QueueStorage`].
pub struct GenericQueue<S> {
    maxsize: usize,
    items: RefCell<S>,
    getters: WaiterList,
    putters: WaiterList,
    unfinished_tasks: Cell<usize>,
    finished: Event,
    is_shutdown: Cell<bool>,
}

impl<S: QueueStorage + Default> GenericQueue<S> {
    /// A new empty queue holding at most `maxsize` items; `0` means unbounded.
    pub fn new(maxsize: usize) -> Self {
        Self::with_storage(S::default(), maxsize)
    }
}

impl<S: QueueStorage> GenericQueue<S> {
    /// A new queue over `storage`; items already in it count as put (unfinished tasks).
    pub fn with_storage(storage: S, maxsize: usize) -> Self {
        let unfinished = storage.len();
        let finished = Event::new();
        if unfinished == 0 {
            finished.set();
        }
        GenericQueue {
            maxsize,
            items: RefCell::new(storage),
            getters: WaiterList::new(),
            putters: WaiterList::new(),
            unfinished_tasks: Cell::new(unfinished),
            finished,
            is_shutdown: Cell::new(false),
        }
    }

    /// Number of items allowed in the queue; `0` means unbounded.
    pub fn maxsize(&self) -> usize {
        self.maxsize
    }

    /// Number of items in the queue.
    pub fn qsize(&self) -> usize {
        self.items.borrow().len()
    }

    /// True if the queue holds no item.
    pub fn empty(&self) -> bool {
        self.items.borrow().is_empty()
    }

    /// True if the queue holds `maxsize` items; never true for an unbounded queue.
    pub fn full(&self) -> bool {
        self.maxsize > 0 && self.qsize() >= self.maxsize
    }

    /// Number of items put and not yet marked done with [`GenericQueue::task_done`].
    pub fn unfinished_tasks(&self) -> usize {
        self.unfinished_tasks.get()
    }

    /// Puts an item, waiting while the queue is full. Dropping the future before it completes
    /// drops the item. Fails with [`QueueShutDown`], holding the item, once the queue is shut
    /// down.
    pub fn put(&self, item: S::Item) -> Put<'_, S> {
        Put {
            queue: self,
            item: Some(item),
            state: WaitState::Start,
        }
    }

    /// Puts an item if a slot is free, and wakes the first waiting getter.
    ///
    /// # Errors
    /// [`TryPutError::ShutDown`] once the queue is shut down, else [`TryPutError::Full`] if
    /// it is full; both hold the item.
    pub fn put_nowait(&self, item: S::Item) -> Result<(), TryPutError<S::Item>> {
        if self.is_shutdown.get() {
            return Err(TryPutError::ShutDown(item));
        }
        if self.full() {
            return Err(TryPutError::Full(item));
        }
        self.items.borrow_mut().push(item);
        self.unfinished_tasks.set(self.unfinished_tasks.get() + 1);
        self.finished.clear();
        self.getters.wake_next();
        Ok(())
    }

    /// Removes and returns the next item, waiting while the queue is empty. Fails with
    /// [`QueueShutDown`] once the queue is shut down and empty.
    pub fn get(&self) -> Get<'_, S> {
        Get {
            queue: self,
            state: WaitState::Start,
        }
    }

    /// Removes and returns the next item if there is one, and wakes the first waiting putter.
    ///
    /// # Errors
    /// [`TryGetError::Empty`] if the queue holds no item ([`TryGetError::ShutDown`] if it is
    /// also shut down).
    pub fn get_nowait(&self) -> Result<S::Item, TryGetError> {
        let item = self.items.borrow_mut().pop();
        let Some(item) = item else {
            return Err(if self.is_shutdown.get() {
                TryGetError::ShutDown
            } else {
                TryGetError::Empty
            });
        };
        self.putters.wake_next();
        Ok(item)
    }

    /// Python 3.13's `Queue.shutdown(immediate)`: refuse new items; with `immediate`, also
    /// drop the queued ones, each counted as done. Every waiting getter and putter is woken
    /// (to get an item still queued, or [`QueueShutDown`]).
    pub fn shutdown(&self, immediate: bool) {
        self.is_shutdown.set(true);
        if immediate {
            loop {
                let item = self.items.borrow_mut().pop();
                let Some(item) = item else { break };
                drop(item);
                let n = self.unfinished_tasks.get();
                if n > 0 {
                    self.unfinished_tasks.set(n - 1);
                }
            }
            if self.unfinished_tasks.get() == 0 {
                self.finished.set();
            }
        }
        self.getters.wake_all();
        self.putters.wake_all();
    }

    /// Whether [`shutdown`](GenericQueue::shutdown) was called.
    pub fn is_shutdown(&self) -> bool {
        self.is_shutdown.get()
    }

    /// Marks one item taken with `get` as processed. When every item put has been marked,
    /// [`GenericQueue::join`] returns.
    ///
    /// # Errors
    /// [`TaskDoneError`] if called more times than items were put.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let n = self.unfinished_tasks.get();
        if n == 0 {
            return Err(TaskDoneError);
        }
        self.unfinished_tasks.set(n - 1);
        if n == 1 {
            self.finished.set();
        }
        Ok(())
    }

    /// Waits until every item put has been gotten and marked done with `task_done`.
    pub fn join(&self) -> Join<'_> {
        Join {
            unfinished_tasks: &self.unfinished_tasks,
            finished: &self.finished,
            wait: None,
        }
    }
}

impl<S: QueueStorage> fmt::Debug for GenericQueue<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("maxsize", &self.maxsize)
            .field("qsize", &self.qsize())
            .field("getters", &self.getters.len())
            .field("putters", &self.putters.len())
            .field("unfinished_tasks", &self.unfinished_tasks.get())
            .finish_non_exhaustive()
    }
}

/// Why [`GenericQueue::put_nowait`] did not put; holds the item.
#[derive(Clone, PartialEq, Eq)]
pub enum TryPutError<T> {
    /// The queue is full (asyncio's `QueueFull`).
    Full(T),
    /// The queue was shut down (asyncio's `QueueShutDown`).
    ShutDown(T),
}

impl<T> TryPutError<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        match self {
            TryPutError::Full(item) | TryPutError::ShutDown(item) => item,
        }
    }
}

impl<T> fmt::Debug for TryPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPutError::Full(_) => f.write_str("Full(..)"),
            TryPutError::ShutDown(_) => f.write_str("ShutDown(..)"),
        }
    }
}

impl<T> fmt::Display for TryPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPutError::Full(_) => f.write_str("queue is full"),
            TryPutError::ShutDown(_) => f.write_str("queue is shut down"),
        }
    }
}

impl<T> Error for TryPutError<T> {}

/// Why [`GenericQueue::get_nowait`] gave no item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryGetError {
    /// The queue holds no item (asyncio's `QueueEmpty`).
    Empty,
    /// The queue holds no item and was shut down (asyncio's `QueueShutDown`).
    ShutDown,
}

impl fmt::Display for TryGetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryGetError::Empty => f.write_str("queue is empty"),
            TryGetError::ShutDown => f.write_str("queue is shut down"),
        }
    }
}

impl Error for TryGetError {}

/// A `put` or `get` on a shut-down queue (asyncio's `QueueShutDown`); `put`'s holds the item.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct QueueShutDown<T = ()>(pub T);

impl<T> fmt::Debug for QueueShutDown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("QueueShutDown(..)")
    }
}

impl<T> fmt::Display for QueueShutDown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue is shut down")
    }
}

impl<T> Error for QueueShutDown<T> {}

/// [`GenericQueue::task_done`] called more times than items were put (asyncio's
/// `ValueError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskDoneError;

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task_done() called too many times")
    }
}

impl Error for TaskDoneError {}

#[derive(Clone, Copy)]
enum WaitState {
    Start,
    Waiting(WaiterKey),
    Done,
}

/// Future returned by [`GenericQueue::put`].
#[must_use = "futures do nothing unless polled"]
pub struct Put<'a, S: QueueStorage> {
    queue: &'a GenericQueue<S>,
    item: Option<S::Item>,
    state: WaitState,
}

// The item is moved, never pinned.
impl<S: QueueStorage> Unpin for Put<'_, S> {}

impl<S: QueueStorage> Future for Put<'_, S> {
    type Output = Result<(), QueueShutDown<S::Item>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let queue = self.queue;
        loop {
            match self.state {
                WaitState::Start => {
                    if queue.is_shutdown.get() {
                        let Some(item) = self.item.take() else {
                            panic!("`Put` polled after completion");
                        };
                        self.state = WaitState::Done;
                        return Poll::Ready(Err(QueueShutDown(item)));
                    }
                    if queue.full() {
                        self.state = WaitState::Waiting(queue.putters.push(cx.waker()));
                        return Poll::Pending;
                    }
                    let Some(item) = self.item.take() else {
                        panic!("`Put` polled after completion");
                    };
                    self.state = WaitState::Done;
                    // Not full and not shut down, so this cannot fail.
                    let pushed = queue.put_nowait(item);
                    debug_assert!(pushed.is_ok(), "put_nowait on a queue that is not full");
                    return Poll::Ready(Ok(()));
                }
                WaitState::Waiting(key) => {
                    if !queue.putters.take_if_woken(key, cx) {
                        return Poll::Pending;
                    }
                    // asyncio's `while self.full()`: check again, maybe queue again.
                    self.state = WaitState::Start;
                }
                WaitState::Done => panic!("`Put` polled after completion"),
            }
        }
    }
}

impl<S: QueueStorage> Drop for Put<'_, S> {
    fn drop(&mut self) {
        if let WaitState::Waiting(key) = self.state {
            if self.queue.putters.remove(key) == Some(true) && !self.queue.full() {
                // Woken by a get but cancelled: the free slot goes to the next putter.
                self.queue.putters.wake_next();
            }
        }
    }
}

impl<S: QueueStorage> fmt::Debug for Put<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Put").finish_non_exhaustive()
    }
}

/// Future returned by [`GenericQueue::get`].
#[must_use = "futures do nothing unless polled"]
pub struct Get<'a, S: QueueStorage> {
    queue: &'a GenericQueue<S>,
    state: WaitState,
}

impl<S: QueueStorage> Future for Get<'_, S> {
    type Output = Result<S::Item, QueueShutDown>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let queue = self.queue;
        loop {
            match self.state {
                WaitState::Start => match queue.get_nowait() {
                    Ok(item) => {
                        self.state = WaitState::Done;
                        return Poll::Ready(Ok(item));
                    }
                    Err(TryGetError::ShutDown) => {
                        self.state = WaitState::Done;
                        return Poll::Ready(Err(QueueShutDown(())));
                    }
                    Err(TryGetError::Empty) => {
                        self.state = WaitState::Waiting(queue.getters.push(cx.waker()));
                        return Poll::Pending;
                    }
                },
                WaitState::Waiting(key) => {
                    if !queue.getters.take_if_woken(key, cx) {
                        return Poll::Pending;
                    }
                    // asyncio's `while self.empty()`: check again, maybe queue again.
                    self.state = WaitState::Start;
                }
                WaitState::Done => panic!("`Get` polled after completion"),
            }
        }
    }
}

impl<S: QueueStorage> Drop for Get<'_, S> {
    fn drop(&mut self) {
        if let WaitState::Waiting(key) = self.state {
            if self.queue.getters.remove(key) == Some(true) && !self.queue.empty() {
                // Woken by a put but cancelled: the item goes to the next getter.
                self.queue.getters.wake_next();
            }
        }
    }
}

impl<S: QueueStorage> fmt::Debug for Get<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Get").finish_non_exhaustive()
    }
}

/// Future returned by [`GenericQueue::join`].
#[must_use = "futures do nothing unless polled"]
pub struct Join<'a> {
    unfinished_tasks: &'a Cell<usize>,
    finished: &'a Event,
    wait: Option<EventWait<'a>>,
}

impl Future for Join<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.wait.is_none() {
            if self.unfinished_tasks.get() == 0 {
                return Poll::Ready(());
            }
            self.wait = Some(self.finished.wait());
        }
        match self.wait.as_mut() {
            Some(wait) => Pin::new(wait).poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl fmt::Debug for Join<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Join").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::testing::poll;
    use futures::executor::{block_on, LocalPool};
    use futures::task::LocalSpawnExt;
    use std::rc::Rc;

    #[test]
    fn put_blocks_when_full_and_resumes_after_get() {
        let q: Queue<u32> = Queue::new(1);
        q.put_nowait(1).unwrap();
        let mut put = q.put(2);
        assert!(poll(&mut put).is_pending());
        assert_eq!(q.qsize(), 1);
        assert_eq!(q.get_nowait(), Ok(1));
        assert!(poll(&mut put).is_ready());
        assert_eq!(q.get_nowait(), Ok(2));
        assert_eq!(q.get_nowait(), Err(TryGetError::Empty));
    }

    #[test]
    fn put_nowait_on_full_gives_the_item_back() {
        let q = Queue::new(1);
        q.put_nowait(String::from("a")).unwrap();
        let err = q.put_nowait(String::from("b")).unwrap_err();
        assert_eq!(err.to_string(), "queue is full");
        assert_eq!(err.into_inner(), "b");
        assert_eq!(q.unfinished_tasks(), 1);
    }

    #[test]
    fn getters_are_served_in_fifo_order() {
        let mut pool = LocalPool::new();
        let q: Rc<Queue<u32>> = Rc::new(Queue::new(0));
        let got = Rc::new(RefCell::new(Vec::new()));
        for name in 0..3u32 {
            let (q, got) = (q.clone(), got.clone());
            pool.spawner()
                .spawn_local(async move {
                    let item = q.get().await.unwrap();
                    got.borrow_mut().push((name, item));
                })
                .unwrap();
        }
        pool.run_until_stalled();
        for item in [10, 11, 12] {
            q.put_nowait(item).unwrap();
        }
        pool.run_until_stalled();
        assert_eq!(*got.borrow(), vec![(0, 10), (1, 11), (2, 12)]);
    }

    #[test]
    fn cancelled_woken_getter_passes_the_item_on() {
        let q = Queue::new(0);
        let mut a = q.get();
        let mut b = q.get();
        assert!(poll(&mut a).is_pending());
        assert!(poll(&mut b).is_pending());
        q.put_nowait(7).unwrap(); // wakes a
        drop(a); // cancelled before it ran
        assert_eq!(
            poll(&mut b),
            Poll::Ready(Ok(7)),
            "b must be woken for the item"
        );
    }

    #[test]
    fn cancelled_pending_getter_does_not_steal() {
        let q = Queue::new(0);
        let mut a = q.get();
        let mut b = q.get();
        assert!(poll(&mut a).is_pending());
        assert!(poll(&mut b).is_pending());
        drop(a);
        q.put_nowait(1).unwrap();
        assert_eq!(poll(&mut b), Poll::Ready(Ok(1)));
    }

    #[test]
    fn cancelled_woken_putter_passes_the_slot_on() {
        let q = Queue::new(1);
        q.put_nowait(0).unwrap();
        let mut a = q.put(1);
        let mut b = q.put(2);
        assert!(poll(&mut a).is_pending());
        assert!(poll(&mut b).is_pending());
        assert_eq!(q.get_nowait(), Ok(0)); // wakes a
        drop(a);
        assert!(poll(&mut b).is_ready(), "b must be woken for the free slot");
        assert_eq!(q.get_nowait(), Ok(2));
        assert!(q.empty());
    }

    #[test]
    fn woken_getter_robbed_by_get_nowait_queues_again() {
        let q = Queue::new(0);
        let mut a = q.get();
        assert!(poll(&mut a).is_pending());
        q.put_nowait(1).unwrap();
        assert_eq!(q.get_nowait(), Ok(1)); // barging is allowed in asyncio's queue
        assert!(poll(&mut a).is_pending());
        q.put_nowait(2).unwrap();
        assert_eq!(poll(&mut a), Poll::Ready(Ok(2)));
    }

    #[test]
    fn task_done_and_join() {
        let q = Queue::new(0);
        assert_eq!(q.task_done(), Err(TaskDoneError));
        assert!(
            poll(&mut q.join()).is_ready(),
            "nothing put: join returns at once"
        );
        q.put_nowait('a').unwrap();
        q.put_nowait('b').unwrap();
        let mut join = q.join();
        assert!(poll(&mut join).is_pending());
        assert_eq!(q.get_nowait(), Ok('a'));
        assert_eq!(q.get_nowait(), Ok('b'));
        assert!(poll(&mut join).is_pending(), "gotten is not done");
        q.task_done().unwrap();
        assert!(poll(&mut join).is_pending());
        q.task_done().unwrap();
        assert!(poll(&mut join).is_ready());
        let err = q.task_done().unwrap_err();
        assert_eq!(err.to_string(), "task_done() called too many times");
    }

    #[test]
    fn producer_consumer_with_join() {
        let mut pool = LocalPool::new();
        let q: Rc<Queue<u32>> = Rc::new(Queue::new(2));
        let sum = Rc::new(Cell::new(0));
        for _ in 0..2 {
            let (q, sum) = (q.clone(), sum.clone());
            pool.spawner()
                .spawn_local(async move {
                    loop {
                        let n = q.get().await.unwrap();
                        sum.set(sum.get() + n);
                        q.task_done().unwrap();
                    }
                })
                .unwrap();
        }
        let qp = q.clone();
        let joined = Rc::new(Cell::new(false));
        let j = joined.clone();
        pool.spawner()
            .spawn_local(async move {
                for n in 1..=100 {
                    qp.put(n).await.unwrap();
                }
                qp.join().await;
                j.set(true);
            })
            .unwrap();
        pool.run_until_stalled();
        assert!(joined.get());
        assert_eq!(sum.get(), 5050);
        assert_eq!(q.unfinished_tasks(), 0);
    }

    #[test]
    fn lifo_and_priority_order() {
        block_on(async {
            let l = LifoQueue::new(0);
            let p = PriorityQueue::new(0);
            for n in [3, 1, 2] {
                l.put(n).await.unwrap();
                p.put((n, "x")).await.unwrap();
            }
            let mut lifo = Vec::new();
            let mut prio = Vec::new();
            for _ in 0..3 {
                lifo.push(l.get().await.unwrap());
                prio.push(p.get().await.unwrap().0);
            }
            assert_eq!(lifo, [2, 1, 3]);
            assert_eq!(prio, [1, 2, 3]);
        });
    }

    #[test]
    fn shutdown_refuses_puts_and_drains_then_refuses_gets() {
        let q = Queue::new(1);
        q.put_nowait(1).unwrap();
        let mut waiting_put = q.put(2);
        assert!(poll(&mut waiting_put).is_pending());
        q.shutdown(false);
        assert!(q.is_shutdown());
        assert_eq!(poll(&mut waiting_put), Poll::Ready(Err(QueueShutDown(2))));
        assert!(matches!(q.put_nowait(3), Err(TryPutError::ShutDown(3))));
        // the item already queued is still given, then the shutdown
        assert_eq!(poll(&mut q.get()), Poll::Ready(Ok(1)));
        assert_eq!(poll(&mut q.get()), Poll::Ready(Err(QueueShutDown(()))));
        assert_eq!(q.get_nowait(), Err(TryGetError::ShutDown));
    }

    #[test]
    fn shutdown_wakes_waiting_getters() {
        let q: Queue<u8> = Queue::new(0);
        let mut a = q.get();
        let mut b = q.get();
        assert!(poll(&mut a).is_pending());
        assert!(poll(&mut b).is_pending());
        q.shutdown(false);
        assert_eq!(poll(&mut a), Poll::Ready(Err(QueueShutDown(()))));
        assert_eq!(poll(&mut b), Poll::Ready(Err(QueueShutDown(()))));
    }

    #[test]
    fn immediate_shutdown_drops_items_and_releases_join() {
        let q = Queue::new(0);
        for n in 0..3 {
            q.put_nowait(n).unwrap();
        }
        assert_eq!(q.get_nowait(), Ok(0)); // gotten, not yet done
        let mut join = q.join();
        assert!(poll(&mut join).is_pending());
        q.shutdown(true);
        assert!(q.empty());
        assert_eq!(q.unfinished_tasks(), 1, "the dropped items count as done");
        assert!(poll(&mut join).is_pending());
        q.task_done().unwrap();
        assert!(poll(&mut join).is_ready());
    }
}
