//! The cross-thread inbox and the waker: the only way into a loop from another thread.
//!
//! Decision: one `Mutex<Vec<T>>` and a [`Waker`] (an eventfd on Linux, `crate::sys`). A
//! push takes the lock briefly and wakes the loop only when it has not been woken since it
//! last drained (an atomic flag), so a burst of `call_soon_threadsafe` costs one syscall,
//! not one per call.
//!
//! A parking inbox ([`Inbox::parking`]) goes further: its pushes wake the loop only while
//! it is parked in a poll that may block ([`Inbox::park`]/[`Inbox::unpark`]), so a loop
//! that is busy running callbacks pays no syscall at all for them. The flag protocol is
//! sequentially consistent: a push sets `pending` then reads `parked`; the loop sets
//! `parked` then reads `pending`; one of the two always sees the other.
//!
//! Threading: `Inbox` and `Waker` are `Send + Sync`; `push` from any thread, `drain`,
//! `park` and `unpark` from the loop thread.

use std::sync::atomic::Ordering;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

pub use crate::sys::waker::Waker;

/// A multi-producer queue into the loop thread.
pub struct Inbox<T> {
    items: Mutex<Vec<T>>,
    pending: AtomicBool,
    /// Set (under the `items` lock) by [`close`](Inbox::close): pushes are refused.
    closed: AtomicBool,
    /// Wake only while `parked` (a parking inbox), or on the first push after each drain.
    parking: bool,
    parked: AtomicBool,
    waker: Arc<Waker>,
}

impl<T> Inbox<T> {
    /// An empty inbox that wakes the reactor through `waker`.
    pub fn new(waker: Arc<Waker>) -> Self {
        Self::with_parking(waker, false)
    }

    /// An empty inbox whose pushes wake the reactor through `waker` only while the loop is
    /// parked ([`park`](Self::park) .. [`unpark`](Self::unpark)). The loop resets the waker
    /// when its poll reports it; [`drain_into`](Self::drain_into) does not.
    pub fn parking(waker: Arc<Waker>) -> Self {
        Self::with_parking(waker, true)
    }

    fn with_parking(waker: Arc<Waker>, parking: bool) -> Self {
        Inbox {
            items: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            parking,
            parked: AtomicBool::new(false),
            waker,
        }
    }

    /// The loop is about to poll and may block: returns false if items are already waiting
    /// (poll without blocking then). Call [`unpark`](Self::unpark) after the poll either way.
    pub fn park(&self) -> bool {
        self.parked.store(true, SeqCst);
        !self.pending.load(SeqCst)
    }

    /// The poll returned.
    pub fn unpark(&self) {
        self.parked.store(false, SeqCst);
    }

    /// The queue, taken even if a pusher panicked while holding it (a `Vec` push cannot
    /// leave it inconsistent).
    fn lock_items(&self) -> std::sync::MutexGuard<'_, Vec<T>> {
        match self.items.lock() {
            Ok(items) => items,
            Err(poisoned) => poisoned.into_inner(),
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
            let mut items = self.lock_items();
            if self.closed.load(Ordering::Relaxed) {
                return Err(item);
            }
            items.push(item);
        }
        if !self.pending.swap(true, SeqCst) && (!self.parking || self.parked.load(SeqCst)) {
            self.waker.wake();
        }
        Ok(())
    }

    /// Refuse every later push and take what is queued (the loop is going away). The
    /// waker's eventfd stays open until the last reference to it is dropped, so a thread
    /// racing this call never writes to a closed (and maybe reused) descriptor number.
    pub fn close(&self) -> Vec<T> {
        let mut items = self.lock_items();
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

    /// Hand everything queued so far, in push order, to `f` (which empties the vector it is
    /// given, e.g. into a ready queue), under the inbox's lock: no copy in between. `f` must
    /// not push to this inbox.
    pub fn drain_with(&self, f: impl FnOnce(&mut Vec<T>)) {
        if !self.pending.swap(false, SeqCst) {
            return;
        }
        if !self.parking {
            self.waker.reset();
        }
        let mut guard = self.lock_items();
        f(&mut guard);
    }

    /// Take everything queued so far, in push order, appending to `out`.
    pub fn drain_into(&self, out: &mut Vec<T>) {
        self.drain_with(|queued| out.append(queued));
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
    fn a_parking_inbox_wakes_only_a_parked_loop() {
        let waker = Arc::new(Waker::new().unwrap());
        let inbox = Inbox::parking(waker.clone());
        let mut reactor = Reactor::new().unwrap();
        reactor.register_waker(&waker).unwrap();
        // busy loop (not parked): a push is queued without a wake-up
        inbox.push(1).unwrap();
        reactor.poll(Some(0.0)).unwrap();
        assert!(!reactor.take_woken());
        // about to block with an item waiting: park says "don't block"
        assert!(!inbox.park());
        inbox.unpark();
        let mut got = Vec::new();
        inbox.drain_into(&mut got);
        assert_eq!(got, [1]);
        // parked with nothing waiting: a push from another thread wakes the poll
        assert!(inbox.park());
        let inbox = Arc::new(inbox);
        let other = inbox.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(10));
            other.push(2).unwrap();
        });
        reactor.poll(Some(5.0)).unwrap();
        inbox.unpark();
        assert!(reactor.take_woken());
        waker.reset();
        inbox.drain_into(&mut got);
        assert_eq!(got, [1, 2]);
        t.join().unwrap();
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
