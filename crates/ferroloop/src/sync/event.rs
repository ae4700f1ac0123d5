//! [`Event`]: asyncio's `Event`, a flag that tasks can wait for.
//!
//! Owns: the flag and the list of tasks blocked in [`Event::wait`].
//!
//! Semantics follow CPython 3.11 `asyncio.Event`: [`Event::set`] wakes every waiter at once, and
//! a woken waiter returns even if [`Event::clear`] was called before it ran (its future is
//! already done). `wait` on a set event returns at once. A dropped `wait` future just leaves
//! the list: `set` wakes everyone, so there is no wakeup to pass on.
//!
//! Threading: single thread (`!Send`, `!Sync`), like asyncio's.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::waiters::{WaiterKey, WaiterList};

/// An asynchronous flag (asyncio's `Event`); initially unset.
///
/// ```
/// use ferroloop::sync::Event;
/// futures::executor::block_on(async {
///     let ev = Event::new();
///     ev.set();
///     ev.wait().await;
///     assert!(ev.is_set());
/// });
/// ```
#[derive(Default)]
pub struct Event {
    value: Cell<bool>,
    waiters: WaiterList,
}

impl Event {
    /// A new, unset event.
    pub const fn new() -> Self {
        Event {
            value: Cell::new(false),
            waiters: WaiterList::new(),
        }
    }

    /// True if the flag is set.
    pub fn is_set(&self) -> bool {
        self.value.get()
    }

    /// Sets the flag and wakes every waiting task. Tasks calling [`Event::wait`] afterwards do
    /// not block. Does nothing if already set.
    pub fn set(&self) {
        if !self.value.get() {
            self.value.set(true);
            self.waiters.wake_all();
        }
    }

    /// Resets the flag; later [`Event::wait`] calls block until the next [`Event::set`].
    /// Tasks already woken by a `set` still return.
    pub fn clear(&self) {
        self.value.set(false);
    }

    /// Number of tasks blocked in [`Event::wait`] (including woken ones that have not run).
    pub fn waiters(&self) -> usize {
        self.waiters.len()
    }

    /// Waits until the flag is set; returns at once if it is set already.
    pub fn wait(&self) -> EventWait<'_> {
        EventWait {
            event: self,
            state: WaitState::Start,
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.value.get())
            .field("waiters", &self.waiters.len())
            .finish()
    }
}

enum WaitState {
    Start,
    Waiting(WaiterKey),
    Done,
}

/// Future returned by [`Event::wait`].
#[must_use = "futures do nothing unless polled"]
pub struct EventWait<'a> {
    event: &'a Event,
    state: WaitState,
}

impl Future for EventWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let event = self.event;
        match self.state {
            WaitState::Start => {
                if event.value.get() {
                    self.state = WaitState::Done;
                    return Poll::Ready(());
                }
                self.state = WaitState::Waiting(event.waiters.push(cx.waker()));
                Poll::Pending
            }
            WaitState::Waiting(key) => {
                if event.waiters.take_if_woken(key, cx) {
                    self.state = WaitState::Done;
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
            WaitState::Done => panic!("`EventWait` polled after completion"),
        }
    }
}

impl Drop for EventWait<'_> {
    fn drop(&mut self) {
        if let WaitState::Waiting(key) = self.state {
            self.event.waiters.remove(key);
        }
    }
}

impl fmt::Debug for EventWait<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventWait").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::testing::poll;
    use futures::executor::LocalPool;
    use futures::task::LocalSpawnExt;
    use std::rc::Rc;

    #[test]
    fn set_wakes_all_waiters() {
        let mut pool = LocalPool::new();
        let ev = Rc::new(Event::new());
        let done = Rc::new(Cell::new(0));
        for _ in 0..3 {
            let (ev, done) = (ev.clone(), done.clone());
            pool.spawner()
                .spawn_local(async move {
                    ev.wait().await;
                    done.set(done.get() + 1);
                })
                .unwrap();
        }
        pool.run_until_stalled();
        assert_eq!(done.get(), 0);
        assert_eq!(ev.waiters(), 3);
        ev.set();
        pool.run_until_stalled();
        assert_eq!(done.get(), 3);
        assert_eq!(ev.waiters(), 0);
    }

    #[test]
    fn woken_waiter_returns_even_if_cleared_before_it_runs() {
        let ev = Event::new();
        let mut w = ev.wait();
        assert!(poll(&mut w).is_pending());
        ev.set();
        ev.clear();
        assert!(poll(&mut w).is_ready());
        let mut late = ev.wait();
        assert!(poll(&mut late).is_pending(), "cleared: a new wait blocks");
    }

    #[test]
    fn dropped_waiter_leaves_the_list() {
        let ev = Event::new();
        let mut w = ev.wait();
        assert!(poll(&mut w).is_pending());
        assert_eq!(ev.waiters(), 1);
        drop(w);
        assert_eq!(ev.waiters(), 0);
        ev.set();
        assert!(ev.is_set());
        assert!(poll(&mut ev.wait()).is_ready());
    }
}
