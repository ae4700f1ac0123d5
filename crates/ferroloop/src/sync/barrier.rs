//! [`Barrier`]: `n` tasks wait until all `n` have arrived, then all go on.
//!
//! Owns: how many tasks have arrived in the current round, the round's number and the
//! wakers of the tasks waiting in it.
//!
//! Semantics, as tokio's `Barrier` (and Python's `asyncio.Barrier` without its `abort`):
//! the `n`-th task to arrive releases the round and is its leader
//! ([`BarrierWaitResult::is_leader`]); the barrier then starts a new round. A waiting
//! future dropped before its round is released no longer counts as arrived, so a cancelled
//! task never releases the others early. `Barrier::new(0)` behaves as `new(1)`.
//!
//! Threading: `Send` and `Sync` (a `Mutex` around the state; wakers are called after it is
//! released), so a `Barrier` in an `Arc` can join tasks of several loops or threads.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use super::wakers::{lock, WakerSet};

struct State {
    arrived: usize,
    round: u64,
    waiters: WakerSet,
}

/// A barrier for `n` tasks: see the module docs.
pub struct Barrier {
    n: usize,
    state: Mutex<State>,
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}

/// What [`Barrier::wait`] tells a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// True for exactly one task per round: the one that arrived last.
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl Barrier {
    /// A barrier released by every `n` arrivals.
    pub fn new(n: usize) -> Self {
        Barrier {
            n: n.max(1),
            state: Mutex::new(State {
                arrived: 0,
                round: 0,
                waiters: WakerSet::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Arrive, and wait for the round to be released.
    pub fn wait(&self) -> BarrierWait<'_> {
        BarrierWait {
            barrier: self,
            waiting: None,
        }
    }

    /// Tasks arrived in the current round.
    pub fn n_waiting(&self) -> usize {
        self.lock().arrived
    }
}

/// The future of [`Barrier::wait`].
#[must_use = "futures do nothing unless polled"]
pub struct BarrierWait<'a> {
    barrier: &'a Barrier,
    /// `(round, key)` once arrived.
    waiting: Option<(u64, u64)>,
}

impl Future for BarrierWait<'_> {
    type Output = BarrierWaitResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<BarrierWaitResult> {
        let this = &mut *self;
        let mut st = this.barrier.lock();
        match this.waiting {
            None => {
                st.arrived += 1;
                if st.arrived == this.barrier.n {
                    st.arrived = 0;
                    st.round += 1;
                    let waiters = st.waiters.take_all();
                    drop(st);
                    for w in waiters {
                        w.wake();
                    }
                    return Poll::Ready(BarrierWaitResult(true));
                }
                let key = st.waiters.register(None, cx.waker());
                this.waiting = Some((st.round, key));
                Poll::Pending
            }
            Some((round, key)) => {
                if st.round != round {
                    this.waiting = None;
                    return Poll::Ready(BarrierWaitResult(false));
                }
                st.waiters.register(Some(key), cx.waker());
                Poll::Pending
            }
        }
    }
}

impl Drop for BarrierWait<'_> {
    fn drop(&mut self) {
        if let Some((round, key)) = self.waiting.take() {
            let mut st = self.barrier.lock();
            if st.round == round {
                // left before the round was released: no longer arrived
                st.arrived -= 1;
                st.waiters.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::testing::poll;

    #[test]
    fn the_last_arrival_releases_the_round_and_leads() {
        let b = Barrier::new(3);
        let mut a = b.wait();
        let mut c = b.wait();
        assert!(poll(&mut a).is_pending());
        assert!(poll(&mut c).is_pending());
        assert_eq!(b.n_waiting(), 2);
        assert_eq!(poll(&mut b.wait()), Poll::Ready(BarrierWaitResult(true)));
        assert_eq!(poll(&mut a), Poll::Ready(BarrierWaitResult(false)));
        assert_eq!(poll(&mut c), Poll::Ready(BarrierWaitResult(false)));
        assert_eq!(b.n_waiting(), 0, "a new round");
    }

    #[test]
    fn a_dropped_waiter_no_longer_counts() {
        let b = Barrier::new(2);
        {
            let mut gone = b.wait();
            assert!(poll(&mut gone).is_pending());
        }
        assert_eq!(b.n_waiting(), 0);
        let mut a = b.wait();
        assert!(poll(&mut a).is_pending());
        assert!(poll(&mut b.wait()).is_ready());
        assert!(poll(&mut a).is_ready());
    }

    #[test]
    fn zero_behaves_as_one() {
        let b = Barrier::new(0);
        assert!(poll(&mut b.wait()).is_ready());
    }
}
