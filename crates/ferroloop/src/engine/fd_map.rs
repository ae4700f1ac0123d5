//! `FdMap`: a map keyed by file descriptor, as a vector indexed by the descriptor number.
//!
//! Decision: descriptors are small, dense, non-negative integers, so a lookup is an index,
//! not a hash. `HashMap<RawFd, _>` with the standard SipHash cost 412 instructions per 1 KiB
//! `Protocol` echo round trip in the turn's event dispatch and the reactor's bookkeeping
//! (`benches/instructions.py --case protocol_echo`, callgrind). Descriptor numbers beyond
//! `DENSE_LIMIT` (a process with a very high `ulimit -n`) go to a `HashMap`, so memory stays
//! proportional to the descriptors in use, not to the largest number.
//!
//! Threading: a plain container; its owner's rules apply.

use std::collections::HashMap;
use std::os::unix::io::RawFd;

/// Descriptor numbers below this are stored densely.
const DENSE_LIMIT: RawFd = 1 << 16;

/// A map from descriptor to `V`.
#[derive(Debug)]
pub struct FdMap<V> {
    dense: Vec<Option<V>>,
    sparse: HashMap<RawFd, V>,
    len: usize,
}

impl<V> Default for FdMap<V> {
    fn default() -> Self {
        FdMap {
            dense: Vec::new(),
            sparse: HashMap::new(),
            len: 0,
        }
    }
}

fn dense_index(fd: RawFd) -> Option<usize> {
    (0..DENSE_LIMIT).contains(&fd).then_some(fd as usize)
}

impl<V> FdMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value for `fd`.
    #[inline]
    pub fn get(&self, fd: &RawFd) -> Option<&V> {
        match dense_index(*fd) {
            Some(i) => self.dense.get(i).and_then(Option::as_ref),
            None => self.sparse.get(fd),
        }
    }

    /// The value for `fd`, mutably.
    #[inline]
    pub fn get_mut(&mut self, fd: &RawFd) -> Option<&mut V> {
        match dense_index(*fd) {
            Some(i) => self.dense.get_mut(i).and_then(Option::as_mut),
            None => self.sparse.get_mut(fd),
        }
    }

    /// Whether `fd` has a value.
    #[inline]
    pub fn contains_key(&self, fd: &RawFd) -> bool {
        self.get(fd).is_some()
    }

    /// Set the value for `fd`; returns the previous one.
    pub fn insert(&mut self, fd: RawFd, value: V) -> Option<V> {
        let old = match dense_index(fd) {
            Some(i) => {
                if i >= self.dense.len() {
                    self.dense.resize_with(i + 1, || None);
                }
                self.dense[i].replace(value)
            }
            None => self.sparse.insert(fd, value),
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Remove the value for `fd`; returns it.
    pub fn remove(&mut self, fd: &RawFd) -> Option<V> {
        let old = match dense_index(*fd) {
            Some(i) => self.dense.get_mut(i).and_then(Option::take),
            None => self.sparse.remove(fd),
        };
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Number of descriptors with a value.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no descriptor has a value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The values, dense descriptors first, in descriptor order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.dense
            .iter()
            .filter_map(Option::as_ref)
            .chain(self.sparse.values())
    }

    /// The values, taken out of the map.
    pub fn into_values(self) -> impl Iterator<Item = V> {
        self.dense
            .into_iter()
            .flatten()
            .chain(self.sparse.into_values())
    }

    /// `(descriptor, value)` pairs, dense descriptors first, in descriptor order.
    pub fn iter(&self) -> impl Iterator<Item = (RawFd, &V)> {
        self.dense
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (i as RawFd, v)))
            .chain(self.sparse.iter().map(|(fd, v)| (*fd, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_map_for_dense_and_sparse_descriptors() {
        let mut m = FdMap::new();
        assert!(m.is_empty());
        assert_eq!(m.insert(3, "a"), None);
        assert_eq!(m.insert(DENSE_LIMIT + 5, "big"), None);
        assert_eq!(m.insert(-1, "negative"), None);
        assert_eq!(m.insert(3, "b"), Some("a"));
        assert_eq!(m.len(), 3);
        assert_eq!(m.get(&3), Some(&"b"));
        assert_eq!(m.get(&4), None);
        assert_eq!(m.get(&(DENSE_LIMIT + 5)), Some(&"big"));
        assert!(m.contains_key(&-1));
        *m.get_mut(&3).unwrap() = "c";
        let mut values: Vec<_> = m.values().copied().collect();
        values.sort();
        assert_eq!(values, ["big", "c", "negative"]);
        assert_eq!(m.iter().next(), Some((3, &"c")));
        assert_eq!(m.remove(&3), Some("c"));
        assert_eq!(m.remove(&3), None);
        assert_eq!(m.remove(&(DENSE_LIMIT + 5)), Some("big"));
        assert_eq!(m.len(), 1);
    }
}
