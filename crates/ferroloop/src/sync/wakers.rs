//! `WakerSet`: the wakers of the tasks waiting on one condition, each under a key its future
//! keeps (to refresh its waker, or to leave when dropped). Used by the primitives that wake
//! every waiter at once (`watch`, `broadcast`, `Barrier`). `WakeList` and `with_lock`: the
//! wakers one operation calls after releasing its lock (`mpsc`, `Notify`, `RwLock`).
//!
//! Threading: plain data; its owner keeps it behind its own lock.

use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

/// Lock `m`, also after a panic poisoned it (the state the primitives keep under it stays
/// consistent: every change is made in one step under the lock).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Run `f` on the state under `m`'s lock, collecting the wakers it must call in a
/// [`WakeList`], and call them once the lock is released.
pub(crate) fn with_lock<T, R>(m: &Mutex<T>, f: impl FnOnce(&mut T, &mut WakeList) -> R) -> R {
    let mut wake = WakeList::default();
    let r = f(&mut lock(m), &mut wake);
    wake.wake_all();
    r
}

#[derive(Default)]
pub(crate) struct WakerSet {
    next_key: u64,
    list: Vec<(u64, Waker)>,
}

impl WakerSet {
    /// Register `waker`: refreshed under `key` if that key is still here, else added under a
    /// new key. Returns the key to keep.
    pub(crate) fn register(&mut self, key: Option<u64>, waker: &Waker) -> u64 {
        if let Some(key) = key {
            if let Some((_, w)) = self.list.iter_mut().find(|(k, _)| *k == key) {
                if !w.will_wake(waker) {
                    *w = waker.clone();
                }
                return key;
            }
        }
        let key = self.next_key;
        self.next_key += 1;
        self.list.push((key, waker.clone()));
        key
    }

    /// Leave (a dropped or finished future).
    pub(crate) fn remove(&mut self, key: u64) {
        self.list.retain(|(k, _)| *k != key);
    }

    /// Every waker, to be woken once the lock is released.
    pub(crate) fn take_all(&mut self) -> Vec<Waker> {
        std::mem::take(&mut self.list)
            .into_iter()
            .map(|(_, w)| w)
            .collect()
    }
}

/// The wakers one operation must call once its lock is released. Most operations wake one
/// task: that one is kept inline, so the common case allocates nothing.
#[derive(Default)]
pub(crate) struct WakeList {
    first: Option<Waker>,
    rest: Vec<Waker>,
}

impl WakeList {
    pub(crate) fn push(&mut self, waker: Waker) {
        if self.first.is_none() {
            self.first = Some(waker);
        } else {
            self.rest.push(waker);
        }
    }

    /// Wake them all (call with no lock held).
    pub(crate) fn wake_all(self) {
        if let Some(w) = self.first {
            w.wake();
        }
        for w in self.rest {
            w.wake();
        }
    }
}

impl Extend<Waker> for WakeList {
    fn extend<I: IntoIterator<Item = Waker>>(&mut self, iter: I) {
        for w in iter {
            self.push(w);
        }
    }
}
