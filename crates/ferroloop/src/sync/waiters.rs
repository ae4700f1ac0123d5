//! The FIFO list of parked tasks shared by every primitive in [`crate::sync`].
//!
//! Owns: the queue of waiters of one wait condition (a lock's acquirers, a queue's getters, ...)
//! and, per waiter, whether it has been granted a wakeup. It plays the part of asyncio's
//! `collections.deque` of futures: an entry is a future that is pending (`woken == false`, holds
//! the task's [`Waker`]) or done (`woken == true`, its result set but not yet seen by its task).
//!
//! The design rule that the primitives rely on: **a waiter stays in the list from its
//! registration until its own future either sees the wakeup ([`WaiterList::take_if_woken`]) or
//! is dropped ([`WaiterList::remove`])**. So a woken waiter that has not run yet is still
//! counted, exactly as asyncio keeps a done future in `_waiters` until its task resumes, and a
//! dropped future (Rust's cancellation) learns from `remove` whether it had been granted a
//! wakeup, so its owner can pass the wakeup on to the next waiter, as asyncio does in its
//! `except CancelledError` branches. No wakeup is ever lost.
//!
//! Threading: single thread. The list is `RefCell`-based and `!Send`/`!Sync`; it is used by
//! tasks of one loop. It depends on no runtime: the futures built on it are plain `Waker`-based
//! futures that any executor can poll. Wakers are always invoked after the `RefCell` borrow is
//! released, so an executor that polls from inside `wake()` cannot cause a re-entrant borrow.
//!
//! Cost: registration is a `push_back`; keys grow monotonically so the deque stays sorted by key
//! and lookups are a binary search; removal from the middle shifts the deque (asyncio's
//! `deque.remove` is linear too).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::task::{Context, Waker};

/// Identifies one registered waiter of a [`WaiterList`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WaiterKey(u64);

/// One parked waiter: asyncio's future in a `_waiters` deque.
#[derive(Debug)]
struct Entry {
    key: u64,
    /// The wakeup has been granted (asyncio: `fut.done()`), the task has not consumed it yet.
    woken: bool,
    /// The task to wake; `None` once woken (the waker was consumed by the wake-up).
    waker: Option<Waker>,
}

#[derive(Debug, Default)]
struct State {
    next_key: u64,
    entries: VecDeque<Entry>,
}

impl State {
    fn position(&self, key: WaiterKey) -> Option<usize> {
        self.entries.binary_search_by_key(&key.0, |e| e.key).ok()
    }
}

/// A FIFO list of waiters with per-waiter "woken" state. See the module docs for the rules.
#[derive(Debug, Default)]
pub(crate) struct WaiterList {
    state: RefCell<State>,
}

impl WaiterList {
    /// An empty list.
    pub(crate) const fn new() -> Self {
        WaiterList {
            state: RefCell::new(State {
                next_key: 0,
                entries: VecDeque::new(),
            }),
        }
    }

    /// Number of registered waiters, woken or not.
    pub(crate) fn len(&self) -> usize {
        self.state.borrow().entries.len()
    }

    /// True if no waiter is registered (neither pending nor woken-but-not-yet-run).
    pub(crate) fn is_empty(&self) -> bool {
        self.state.borrow().entries.is_empty()
    }

    /// Registers a pending waiter at the back of the list.
    pub(crate) fn push(&self, waker: &Waker) -> WaiterKey {
        let mut st = self.state.borrow_mut();
        let key = st.next_key;
        st.next_key += 1;
        st.entries.push_back(Entry {
            key,
            woken: false,
            waker: Some(waker.clone()),
        });
        WaiterKey(key)
    }

    /// If the waiter `key` has been woken, removes it and returns true. Otherwise refreshes its
    /// waker from `cx` and returns false. A key that is no longer in the list counts as woken
    /// (it cannot happen with the primitives' usage; answering true avoids a hang).
    pub(crate) fn take_if_woken(&self, key: WaiterKey, cx: &mut Context<'_>) -> bool {
        let mut st = self.state.borrow_mut();
        let Some(pos) = st.position(key) else {
            return true;
        };
        let entry = &mut st.entries[pos];
        if entry.woken {
            st.entries.remove(pos);
            return true;
        }
        match &entry.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => entry.waker = Some(cx.waker().clone()),
        }
        false
    }

    /// Removes the waiter `key` (its future was dropped). Returns `Some(woken)` if it was still
    /// registered: `Some(true)` means it had been granted a wakeup that it will never use, and
    /// the caller must pass it on (asyncio's `except CancelledError` branch).
    pub(crate) fn remove(&self, key: WaiterKey) -> Option<bool> {
        let mut st = self.state.borrow_mut();
        let pos = st.position(key)?;
        st.entries.remove(pos).map(|e| e.woken)
    }

    /// asyncio's `Lock._wake_up_first`: wakes the head of the list if it is still pending.
    /// Does nothing if the head was already woken (that waiter will run and take over, or be
    /// dropped and call this again). Returns true if a waiter was woken.
    pub(crate) fn wake_first(&self) -> bool {
        let waker = {
            let mut st = self.state.borrow_mut();
            match st.entries.front_mut() {
                Some(head) if !head.woken => {
                    head.woken = true;
                    head.waker.take()
                }
                _ => return false,
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Wakes the first pending (not yet woken) waiter, skipping woken ones, like asyncio's
    /// `Semaphore._wake_up_next` and `Queue._wakeup_next`. Returns true if one was woken.
    pub(crate) fn wake_next(&self) -> bool {
        let waker = {
            let mut st = self.state.borrow_mut();
            match st.entries.iter_mut().find(|e| !e.woken) {
                Some(e) => {
                    e.woken = true;
                    e.waker.take()
                }
                None => return false,
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Wakes up to `n` pending waiters in FIFO order (asyncio's `Condition.notify(n)`,
    /// `Event.set()` with `n == usize::MAX`). Returns how many were woken.
    pub(crate) fn wake(&self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let mut wakers = Vec::new();
        let mut count = 0;
        {
            let mut st = self.state.borrow_mut();
            for e in st.entries.iter_mut().filter(|e| !e.woken) {
                e.woken = true;
                count += 1;
                if let Some(w) = e.waker.take() {
                    wakers.push(w);
                }
                if count == n {
                    break;
                }
            }
        }
        for w in wakers {
            w.wake();
        }
        count
    }

    /// Wakes every pending waiter. Returns how many were woken.
    pub(crate) fn wake_all(&self) -> usize {
        self.wake(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Counter(AtomicUsize);
    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Counter>, Waker) {
        let c = Arc::new(Counter(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    #[test]
    fn wake_next_is_fifo_and_skips_woken() {
        let list = WaiterList::new();
        let (c1, w1) = counter();
        let (c2, w2) = counter();
        let k1 = list.push(&w1);
        let k2 = list.push(&w2);
        assert!(list.wake_next());
        assert_eq!(c1.0.load(Ordering::SeqCst), 1);
        assert_eq!(c2.0.load(Ordering::SeqCst), 0);
        assert!(list.wake_next());
        assert_eq!(c2.0.load(Ordering::SeqCst), 1);
        assert!(!list.wake_next());
        assert_eq!(list.remove(k1), Some(true));
        assert_eq!(list.remove(k1), None);
        let mut cx = Context::from_waker(&w2);
        assert!(list.take_if_woken(k2, &mut cx));
        assert!(list.is_empty());
    }

    #[test]
    fn wake_first_only_wakes_a_pending_head() {
        let list = WaiterList::new();
        let (c1, w1) = counter();
        let (c2, w2) = counter();
        let k1 = list.push(&w1);
        let _k2 = list.push(&w2);
        assert!(list.wake_first());
        assert!(!list.wake_first(), "head already woken: nothing more to do");
        assert_eq!(c1.0.load(Ordering::SeqCst), 1);
        assert_eq!(c2.0.load(Ordering::SeqCst), 0);
        assert_eq!(list.remove(k1), Some(true));
        assert!(list.wake_first());
        assert_eq!(c2.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn take_if_woken_refreshes_the_waker() {
        let list = WaiterList::new();
        let (c1, w1) = counter();
        let (c2, w2) = counter();
        let k = list.push(&w1);
        let mut cx = Context::from_waker(&w2);
        assert!(!list.take_if_woken(k, &mut cx));
        assert_eq!(list.wake(3), 1);
        assert_eq!(c1.0.load(Ordering::SeqCst), 0);
        assert_eq!(c2.0.load(Ordering::SeqCst), 1);
        assert_eq!(list.len(), 1);
    }
}
