//! The cross-thread inbox and the waker: the only way into a loop from another thread.
//!
//! Decision: one `Mutex<Vec<T>>` and a [`Waker`] (an eventfd on Linux, `crate::sys`). A
//! push takes the lock briefly and wakes the loop only when it has not been woken since it
//! last drained (an atomic flag), so a burst of `call_soon_threadsafe` costs one syscall,
//! not one per call.
//!
//! Threading: `Inbox` and `Waker` are `Send + Sync`; `push` from any thread, `drain` from
//! the loop thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub use crate::sys::waker::Waker;

/// A multi-producer queue into the loop thread.
pub struct Inbox<T> {
    items: Mutex<Vec<T>>,
    pending: AtomicBool,
    /// Set (under the `items` lock) by [`close`](Inbox::close): pushes are refused.
    closed: AtomicBool,
    waker: Arc<Waker>,
}

impl<T> Inbox<T> {
    /// An empty inbox that wakes the reactor through `waker`.
    pub fn new(waker: Arc<Waker>) -> Self {
        Inbox {
            items: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            waker,
        }
    }

    /// The waker this inbox writes to.
    pub fn waker(&self) -> &Arc<Waker> {
        &self.waker
    }

    /// Queue `item` and wake the loop if it was not already woken. After
    /// [`close`](Self::close) the item is handed back: the loop is gone.
    pub fn push(&self, item: T) -> Result<(), T> {
        {
            let mut items = match self.items.lock() {
                Ok(v) => v,
                Err(poisoned) => poisoned.into_inner(),
            };
            if self.closed.load(Ordering::Relaxed) {
                return Err(item);
            }
            items.push(item);
        }
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
        Ok(())
    }

    /// Refuse every later push and take what is queued (the loop is going away). The
    /// waker's eventfd stays open until the last reference to it is dropped, so a thread
    /// racing this call never writes to a closed (and maybe reused) descriptor number.
    pub fn close(&self) -> Vec<T> {
        let mut items = match self.items.lock() {
            Ok(v) => v,
            Err(poisoned) => poisoned.into_inner(),
        };
        self.closed.store(true, Ordering::Relaxed);
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut *items)
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Whether items may be waiting (cheap; no syscall, no lock).
    pub fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Take everything queued so far, in push order, appending to `out`.
    pub fn drain_into(&self, out: &mut Vec<T>) {
        if !self.pending.swap(false, Ordering::AcqRel) {
            return;
        }
        self.waker.reset();
        let mut guard = match self.items.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        out.append(&mut guard);
    }
}

impl<T> Inbox<T> {
    /// Visit the queued items if the lock is free right now (for a garbage collector that
    /// must not block); returns `None` when it is taken.
    pub fn try_visit<E>(&self, mut f: impl FnMut(&T) -> Result<(), E>) -> Option<Result<(), E>> {
        let guard = self.items.try_lock().ok()?;
        Some(guard.iter().try_for_each(&mut f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Reactor;

    #[test]
    fn push_from_threads_wakes_and_keeps_order_per_thread() {
        let waker = Arc::new(Waker::new().unwrap());
        let inbox = Arc::new(Inbox::new(waker.clone()));
        let mut reactor = Reactor::new().unwrap();
        reactor.register_waker(&waker).unwrap();
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let inbox = inbox.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        inbox.push((t, i)).unwrap();
                    }
                })
            })
            .collect();
        let mut got = Vec::new();
        while got.len() < 4000 {
            reactor.poll(Some(1.0)).unwrap();
            reactor.take_woken();
            inbox.drain_into(&mut got);
        }
        for h in handles {
            h.join().unwrap();
        }
        for t in 0..4 {
            let mine: Vec<_> = got.iter().filter(|x| x.0 == t).map(|x| x.1).collect();
            assert_eq!(mine, (0..1000).collect::<Vec<_>>());
        }
    }

    #[test]
    fn wake_interrupts_an_infinite_poll() {
        let waker = Arc::new(Waker::new().unwrap());
        let mut reactor = Reactor::new().unwrap();
        reactor.register_waker(&waker).unwrap();
        let w = waker.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            w.wake();
        });
        reactor.poll(None).unwrap();
        assert!(reactor.take_woken());
        t.join().unwrap();
    }
}
