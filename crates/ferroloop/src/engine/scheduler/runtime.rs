//! A [`Scheduler`] as the Rust runtime sees it (the `dyn Core` its tasks, sleeps and sockets
//! reach), and closing it.
//!
//! Threading: loop-thread only, as the scheduler.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::unix::io::RawFd;
use std::rc::Rc;
use std::sync::Arc;

use super::{Closed, Error, HostEntry, Ready, Scheduler};
use crate::engine::Interest;
use crate::runtime::core::{Core, Enter, IoState, Remote, Shared, TimerSlot};
use crate::runtime::task::{Runnable, TaskKey, MAIN_KEY};

impl<H: HostEntry> Scheduler<H> {
    /// Close the loop: drop every Rust task's future (with this scheduler current, so wakes
    /// during the drops stay local), the Rust timers and waiters, the reactor (its epoll
    /// descriptor), and refuse what other threads send from now on. The host's entries are
    /// handed back. The eventfd stays open until the last reference to it is gone (other
    /// threads may be about to write it); a host that knows better closes it itself.
    pub fn close(self: &Rc<Self>) -> Closed<H>
    where
        H: 'static,
    {
        let mut out = Closed {
            ready: Vec::new(),
            timers: Vec::new(),
            watchers: Vec::new(),
            inbox: Vec::new(),
        };
        if self.closed.replace(true) {
            return out;
        }
        let _enter = Enter::new(self.clone());
        loop {
            let tasks = match self.tasks.try_borrow_mut() {
                Ok(mut slab) => slab.take_all(),
                Err(_) => Vec::new(),
            };
            if tasks.is_empty() {
                break;
            }
            for t in &tasks {
                t.abandon();
            }
            drop(tasks);
        }
        let mut slots = Vec::new();
        if let Ok(mut t) = self.timers.try_borrow_mut() {
            t.drain_into(&mut slots);
        }
        drop(slots);
        let waiters = self
            .io
            .try_borrow_mut()
            .map(|mut io| std::mem::take(&mut *io));
        drop(waiters);
        // Rust work sent from now on is refused (a remote task reports `Cancelled`)
        let items = self.shared.inbox.close();
        // a closure's captures may panic in their drop: the rest is dropped all the same
        for item in items {
            if let Err(payload) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(item)))
            {
                drop(payload);
            }
        }
        out.inbox = self.host_inbox.close();
        if let Ok(mut r) = self.ready.try_borrow_mut() {
            out.ready = r
                .take_all()
                .into_iter()
                .filter_map(|e| match e {
                    Ready::Host(h) => Some(h),
                    Ready::Task(_) => None,
                })
                .collect();
        }
        if let Ok(mut t) = self.host_timers.try_borrow_mut() {
            let mut timers = Vec::new();
            t.drain_into(&mut timers);
            out.timers = timers.into_iter().map(|e| e.0).collect();
        }
        for e in &out.timers {
            e.unscheduled();
        }
        for table in [&self.readers, &self.writers] {
            if let Ok(mut t) = table.try_borrow_mut() {
                out.watchers.extend(std::mem::take(&mut *t).into_values());
            }
        }
        let reactor = self
            .reactor
            .try_borrow_mut()
            .ok()
            .and_then(|mut r| r.take());
        drop(reactor);
        out
    }
}

impl<H: HostEntry> Core for Scheduler<H> {
    fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn wake_local(&self, key: TaskKey) {
        if key == MAIN_KEY {
            self.main_woken.set(true);
        } else if let Ok(mut r) = self.ready.try_borrow_mut() {
            r.push_back(Ready::Task(key));
        } else {
            // the queue is borrowed up the stack (a waker run from inside the scheduler's own
            // bookkeeping): the wake goes the long way, through the inbox
            if let Err(refused) = self.shared.inbox.push(Remote::Wake(key)) {
                // the loop is closed: there is nothing left to wake
                drop(refused);
            }
        }
    }

    fn vacant_key(&self) -> TaskKey {
        self.tasks.borrow_mut().vacant_key()
    }

    fn insert_ready(&self, key: TaskKey, task: Rc<dyn Runnable>) {
        self.tasks.borrow_mut().insert(key, task);
        self.ready.borrow_mut().push_back(Ready::Task(key));
    }

    fn add_timer(&self, when: f64, waker: std::task::Waker) -> Rc<TimerSlot> {
        let slot = Rc::new(TimerSlot {
            waker: RefCell::new(Some(waker)),
            fired: Cell::new(false),
            cancelled: Cell::new(false),
        });
        self.timers.borrow_mut().push(when, slot.clone());
        slot
    }

    fn cancel_timer(&self, slot: &TimerSlot) {
        if !slot.fired.get() && !slot.cancelled.replace(true) {
            slot.waker.borrow_mut().take();
            if let Ok(mut t) = self.timers.try_borrow_mut() {
                t.note_cancelled();
            }
        }
    }

    fn register(&self, fd: RawFd) -> io::Result<Rc<IoState>> {
        let mut reactor = self
            .reactor
            .try_borrow_mut()
            .map_err(|_| io::Error::from(Error::Reentrant))?;
        reactor
            .as_mut()
            .ok_or_else(|| io::Error::from(Error::Closed))?
            .add_edge(fd)?;
        let st = Rc::new(IoState {
            read: RefCell::new(Vec::new()),
            write: RefCell::new(Vec::new()),
            // unknown until the first try: try
            readable: Cell::new(true),
            writable: Cell::new(true),
            hangup: Cell::new(false),
        });
        let old = self.io.borrow_mut().insert(fd, st.clone());
        drop(old);
        Ok(st)
    }

    fn deregister(&self, fd: RawFd) {
        let st = self
            .io
            .try_borrow_mut()
            .ok()
            .and_then(|mut io| io.remove(&fd));
        if let Ok(mut r) = self.reactor.try_borrow_mut() {
            if let Some(r) = r.as_mut() {
                // a descriptor closed already has left epoll: nothing to report
                if let Err(e) = r.set_interest(fd, Interest::default()) {
                    debug_assert!(false, "epoll_ctl DEL failed: {e}");
                }
            }
        }
        drop(st);
    }
}
