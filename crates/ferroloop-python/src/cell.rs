//! `GilCell`: loop state shared through `&self` of frozen pyclasses, guarded by the GIL.
//!
//! Decision: the loop's state (ready queue, timers, reader table, reactor) is reached from
//! re-entrant Python calls (`call_soon` inside a callback the loop is running), so it cannot
//! sit behind one `&mut`. A `RefCell` gives short, checked borrows; this wrapper makes it
//! `Sync` because every access requires a `Python<'_>` token, i.e. the GIL, which serialises
//! the threads that touch it (CPython 3.11 always has a GIL). A borrow must never be held
//! across a call into Python or across the drop of a Python object (a finalizer may re-enter);
//! a violation is a `RuntimeError`, never undefined behaviour.
//!
//! Threading: any thread holding the GIL.

use std::cell::{RefCell, RefMut};

use pyo3::exceptions::PyRuntimeError;
use pyo3::{PyResult, Python};

pub struct GilCell<T>(RefCell<T>);

// SAFETY: every access goes through `borrow_mut`/`try_borrow_mut`, which demand a GIL token;
// the GIL orders all accesses across threads (acquire/release), so the non-atomic borrow
// flag and the contents are never touched by two threads at once.
unsafe impl<T: Send> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    pub const fn new(value: T) -> Self {
        GilCell(RefCell::new(value))
    }

    /// Borrow mutably; a re-entrant borrow is a Python `RuntimeError`.
    #[inline]
    pub fn borrow_mut<'a>(&'a self, _py: Python<'_>) -> PyResult<RefMut<'a, T>> {
        self.0
            .try_borrow_mut()
            .map_err(|_| PyRuntimeError::new_err("ferroloop: re-entrant access to loop state"))
    }

    /// Borrow for the garbage collector, which holds the GIL but has no token to pass.
    /// `None` if the state is borrowed right now (the collector then skips it).
    pub fn try_borrow_for_gc(&self) -> Option<std::cell::Ref<'_, T>> {
        self.0.try_borrow().ok()
    }
}
