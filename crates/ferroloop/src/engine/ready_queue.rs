//! [`ReadyQueue`]: the scheduler's FIFO of ready entries, a ring buffer whose push and pop
//! are a handful of instructions inlined into their callers.
//!
//! Decision: `std::collections::VecDeque` did the same job, but with the scheduler's 16-byte
//! entries its `push_back` went through an out-of-line `push_back_mut` (measured with
//! `benches/instructions.py`: 24 instructions per `call_soon`, 1.6% of a `call_soon` and its
//! run). Here only growth is out of line (`#[cold]`). The slots are `MaybeUninit`, so that
//! growing moves the live entries with two `memcpy`s and dropping the queue visits only the
//! live ones (a ring of `Option`s walked every slot: 8 instructions per entry of a burst of
//! 20,000 `call_soon_threadsafe`).
//!
//! Invariant: exactly the slots `head .. head + len` (modulo the capacity, a power of two
//! or zero) are initialised.
//!
//! Threading: none of its own; the scheduler keeps it on the loop thread.

use std::mem::MaybeUninit;

/// A first-in, first-out queue.
pub struct ReadyQueue<T> {
    slots: Box<[MaybeUninit<T>]>,
    head: usize,
    len: usize,
}

impl<T> Default for ReadyQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> ReadyQueue<T> {
    /// An empty queue (the first push allocates).
    pub fn new() -> Self {
        ReadyQueue {
            slots: Box::new([]),
            head: 0,
            len: 0,
        }
    }

    /// Number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the queue is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Append `item` at the back.
    #[inline(always)]
    pub fn push_back(&mut self, item: T) {
        if self.len == self.slots.len() {
            self.grow(1);
        }
        let i = (self.head + self.len) & self.mask();
        // (an uninitialised slot: writing it drops nothing)
        self.slots[i].write(item);
        self.len += 1;
    }

    /// Append every item of `items` at the back, in order.
    #[inline]
    pub fn extend<I: ExactSizeIterator<Item = T>>(&mut self, items: I) {
        let n = items.len();
        if self.len + n > self.slots.len() {
            self.grow(n);
        }
        for item in items {
            let i = (self.head + self.len) & self.mask();
            self.slots[i].write(item);
            self.len += 1;
        }
    }

    /// Take the entry at the front.
    #[inline(always)]
    pub fn pop_front(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let i = self.head;
        self.head = (self.head + 1) & self.mask();
        self.len -= 1;
        // SAFETY: slot `i` was the front of the live range, so it is initialised; it has
        // just left the range, so it is read exactly once.
        Some(unsafe { self.slots[i].assume_init_read() })
    }

    /// The entries, front to back.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        let mask = self.mask();
        (0..self.len).map(move |k| {
            // SAFETY: `head + k` for `k < len` is in the live range: initialised.
            unsafe { self.slots[(self.head + k) & mask].assume_init_ref() }
        })
    }

    /// Take every entry out, front to back.
    pub fn take_all(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len);
        while let Some(item) = self.pop_front() {
            out.push(item);
        }
        out
    }

    /// Make room for `more` entries beyond `len`: a ring of at least twice the size (a power
    /// of two), the live entries moved to its start in order.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, more: usize) {
        let need = self.len + more;
        let mut new_len = (self.slots.len() * 2).max(16);
        while new_len < need {
            new_len *= 2;
        }
        let mut slots: Box<[MaybeUninit<T>]> =
            (0..new_len).map(|_| MaybeUninit::uninit()).collect();
        let cap = self.slots.len();
        let first = self.len.min(cap - self.head.min(cap));
        let second = self.len - first;
        // SAFETY: the live range is `head .. head + first` then `0 .. second` of the old ring
        // (initialised, non-overlapping with the new allocation); they are moved bitwise to
        // `0 .. len` of the new ring, and the old ring, of `MaybeUninit`s, drops nothing.
        unsafe {
            let src = self.slots.as_ptr();
            let dst = slots.as_mut_ptr();
            std::ptr::copy_nonoverlapping(src.add(self.head), dst, first);
            std::ptr::copy_nonoverlapping(src, dst.add(first), second);
        }
        self.slots = slots;
        self.head = 0;
    }
}

impl<T> Drop for ReadyQueue<T> {
    fn drop(&mut self) {
        // the live entries only; a panicking drop leaves the rest to leak, never to be read
        // twice (each is taken out of the range before it is dropped)
        while let Some(item) = self.pop_front() {
            drop(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ReadyQueue;

    #[test]
    fn fifo_across_wraps_and_growth() {
        let mut q = ReadyQueue::new();
        let mut expect = std::collections::VecDeque::new();
        let mut next = 0u32;
        // interleave pushes and pops so the ring wraps before it grows
        for round in 0..200 {
            for _ in 0..(round % 7 + 1) {
                q.push_back(next);
                expect.push_back(next);
                next += 1;
            }
            for _ in 0..(round % 5) {
                assert_eq!(q.pop_front(), expect.pop_front());
            }
            assert_eq!(q.len(), expect.len());
            assert!(q.iter().eq(expect.iter()));
        }
        // a batch that wraps around the end of the ring, and one that makes it grow
        for batch in [5usize, 300] {
            q.extend((next..next + batch as u32).collect::<Vec<_>>().into_iter());
            expect.extend(next..next + batch as u32);
            next += batch as u32;
            assert!(q.iter().eq(expect.iter()));
            q.pop_front();
            expect.pop_front();
        }
        assert_eq!(q.take_all(), Vec::from(expect));
        assert!(q.is_empty());
        assert_eq!(q.pop_front(), None);
    }

    #[test]
    fn every_entry_is_dropped_exactly_once() {
        let token = std::rc::Rc::new(());
        let mut q = ReadyQueue::new();
        for round in 0..50 {
            for _ in 0..(round % 9 + 1) {
                q.push_back(token.clone());
            }
            for _ in 0..(round % 4) {
                drop(q.pop_front());
            }
        }
        q.extend(
            (0..40)
                .map(|_| token.clone())
                .collect::<Vec<_>>()
                .into_iter(),
        );
        assert_eq!(std::rc::Rc::strong_count(&token), 1 + q.len());
        drop(q);
        assert_eq!(std::rc::Rc::strong_count(&token), 1);
    }
}
