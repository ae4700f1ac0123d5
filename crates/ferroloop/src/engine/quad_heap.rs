//! A 4-ary max-heap: the timer store's out-of-order part.
//!
//! Decision: with 100,000+ pending timers, `std`'s binary heap spent its `pop` in cache
//! misses, one per level (17 levels); four children per node halve the depth and the four
//! siblings sit next to each other in memory. Same interface as the subset of
//! `BinaryHeap` the timer store uses.
//!
//! Threading: plain data, owned by its user.

/// A max-heap with four children per node (`a[i]`'s children are `a[4i+1..=4i+4]`).
pub struct QuadHeap<E> {
    a: Vec<E>,
}

impl<E: Ord> Default for QuadHeap<E> {
    fn default() -> Self {
        QuadHeap { a: Vec::new() }
    }
}

impl<E: Ord> QuadHeap<E> {
    /// An empty heap.
    pub fn new() -> Self {
        Self::default()
    }

    /// Build from any vector in O(n).
    pub fn from_vec(a: Vec<E>) -> Self {
        let mut h = QuadHeap { a };
        let n = h.a.len();
        if n > 1 {
            for i in (0..=(n - 2) / 4).rev() {
                h.sift_down(i);
            }
        }
        h
    }

    /// The entries, in heap order.
    pub fn into_vec(self) -> Vec<E> {
        self.a
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.a.len()
    }

    /// Whether the heap is empty.
    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }

    /// The top entry (the greatest), if any.
    pub fn peek(&self) -> Option<&E> {
        self.a.first()
    }

    /// The entries, in heap order.
    pub fn iter(&self) -> std::slice::Iter<'_, E> {
        self.a.iter()
    }

    /// Remove every entry, in heap order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, E> {
        self.a.drain(..)
    }

    /// Add an entry.
    pub fn push(&mut self, e: E) {
        self.a.push(e);
        let mut i = self.a.len() - 1;
        while i > 0 {
            let parent = (i - 1) / 4;
            if self.a[i] <= self.a[parent] {
                break;
            }
            self.a.swap(i, parent);
            i = parent;
        }
    }

    /// Remove and return the top entry (the greatest).
    pub fn pop(&mut self) -> Option<E> {
        let last = self.a.pop()?;
        if self.a.is_empty() {
            return Some(last);
        }
        let top = std::mem::replace(&mut self.a[0], last);
        self.sift_down(0);
        Some(top)
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.a.len();
        loop {
            let first = 4 * i + 1;
            if first >= n {
                return;
            }
            let end = (first + 4).min(n);
            let mut best = first;
            for c in first + 1..end {
                if self.a[c] > self.a[best] {
                    best = c;
                }
            }
            if self.a[best] <= self.a[i] {
                return;
            }
            self.a.swap(i, best);
            i = best;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::QuadHeap;

    /// A small deterministic generator (no dependency): xorshift64.
    fn numbers(mut x: u64, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % 1000
            })
            .collect()
    }

    #[test]
    fn pops_in_descending_order_like_a_sort() {
        for (seed, n) in [(1u64, 0usize), (2, 1), (3, 5), (4, 100), (5, 10_000)] {
            let v = numbers(seed * 7919 + 1, n);
            let mut h = QuadHeap::new();
            for x in &v {
                h.push(*x);
            }
            let mut got = Vec::new();
            while let Some(x) = h.pop() {
                got.push(x);
            }
            let mut want = v.clone();
            want.sort_unstable_by(|a, b| b.cmp(a));
            assert_eq!(got, want);
        }
    }

    #[test]
    fn from_vec_heapifies_and_interleaves_with_push() {
        let v = numbers(42, 5000);
        let mut h = QuadHeap::from_vec(v.clone());
        h.push(5000);
        assert_eq!(h.peek(), Some(&5000));
        assert_eq!(h.pop(), Some(5000));
        let mut prev = u64::MAX;
        let mut count = 0;
        while let Some(x) = h.pop() {
            assert!(x <= prev);
            prev = x;
            count += 1;
        }
        assert_eq!(count, v.len());
    }
}
