//! The turn of a [`Scheduler`]: asyncio's `_run_once` over its parts (the module
//! documentation of `scheduler` gives the steps), and the helpers of each step.
//!
//! Threading: loop-thread only, as the scheduler.

use std::cell::RefCell;
use std::rc::Rc;

use super::{Error, Host, HostEntry, Ready, Scheduler};
use crate::engine::clock::{self, monotonic_ns};
use crate::engine::timers::{Cancellable, TimerHeap};
use crate::engine::{Event, Reactor};
use crate::runtime::core::{is_current, Core, Enter, Remote};

/// Take the cancelled entries out of `heap` (returned, to be dropped with nothing borrowed);
/// the earliest live deadline.
fn purge<T: Cancellable>(heap: &RefCell<TimerHeap<T>>) -> Result<(Option<f64>, Vec<T>), Error> {
    let mut dropped = Vec::new();
    let mut t = heap.try_borrow_mut().map_err(|_| Error::Reentrant)?;
    if t.cancelled_count() > 0 {
        t.purge_cancelled(&mut dropped);
    }
    Ok((t.next_deadline(), dropped))
}

impl<H: HostEntry> Scheduler<H> {
    /// Whether anything is ready to run without waiting.
    fn busy(&self) -> Result<bool, Error> {
        let ready = self.ready.try_borrow().map_err(|_| Error::Reentrant)?;
        Ok(!ready.is_empty()
            || self.main_woken.get()
            || (H::EXISTS && self.host_inbox.has_pending())
            || self.shared.inbox.has_pending())
    }

    /// One turn (see the module documentation). `block`: whether the poll may wait.
    pub fn turn<O: Host<H>>(self: &Rc<Self>, host: &mut O, block: bool) -> Result<(), O::Error>
    where
        H: 'static,
    {
        if self.closed.get() {
            return Err(Error::Closed.into());
        }
        // current on this thread while Rust tasks may run or be woken (a host with none
        // skips the thread-local swap, and so does a `Loop` run by `block_on`, which made
        // itself current already)
        if self.task_count() > 0 && !is_current(Rc::as_ptr(self) as *const ()) {
            let _enter = Enter::new(self.clone());
            self.turn_entered(host, block)
        } else {
            self.turn_entered(host, block)
        }
    }

    fn turn_entered<O: Host<H>>(&self, host: &mut O, block: bool) -> Result<(), O::Error> {
        self.stats.turn();
        // (no Rust sleep pending is the common case of a Python loop, no host timer that of
        // a Rust `Loop`: each heap is looked at once when empty)
        let slots = !self.slot_timers_empty();
        let host_timers = H::EXISTS && !self.host_timers_empty();

        // 1. purge cancelled timers, compute the timeout
        let host_deadline = if host_timers {
            self.purge_host_timers()?
        } else {
            None
        };
        let slot_deadline = if slots {
            self.purge_slot_timers()?
        } else {
            None
        };
        let busy = !block || self.busy()? || host.stopping();
        let timeout = if busy {
            Some(0.0)
        } else {
            let mut t: Option<f64> = None;
            if let Some(when) = host_deadline {
                t = Some((when - host.now()?).max(0.0));
            }
            if let Some(when) = slot_deadline {
                let s = (when - clock::monotonic()).max(0.0);
                t = Some(t.map_or(s, |t| t.min(s)));
            }
            t
        };
        // a timer already due: this turn does not wait either
        let busy = busy || timeout == Some(0.0);

        // 2. poll, 3. events and queued work to ready
        self.poll(host, busy, timeout)?;

        // 4. due timers
        // (looked at again: a signal handler run after the poll may have scheduled one)
        if H::EXISTS {
            self.fire_host_timers(host)?;
        }
        if slots || !self.slot_timers_empty() {
            self.fire_slot_timers();
        }

        // 5. run what was ready when this phase began, 6. the end of the phase
        let ntodo = self.ready.try_borrow().map_err(|_| Error::Reentrant)?.len();
        host.phase_begin();
        let ran = if ntodo == 0 {
            Ok(())
        } else {
            self.run_ready(host, ntodo)
        };
        let ended = host.phase_end();
        ran.and(ended)
    }

    /// Drop cancelled host timers; the earliest live deadline.
    fn purge_host_timers(&self) -> Result<Option<f64>, Error> {
        let (next, dropped) = purge(&self.host_timers)?;
        for e in &dropped {
            e.0.unscheduled();
        }
        drop(dropped);
        Ok(next)
    }

    /// Drop cancelled Rust sleeps; the earliest live deadline.
    fn purge_slot_timers(&self) -> Result<Option<f64>, Error> {
        let (next, dropped) = purge(&self.timers)?;
        drop(dropped);
        Ok(next)
    }

    fn poll<O: Host<H>>(
        &self,
        host: &mut O,
        busy: bool,
        timeout: Option<f64>,
    ) -> Result<(), O::Error> {
        let look = {
            let reactor = self.reactor.try_borrow().map_err(|_| Error::Reentrant)?;
            let reactor = reactor.as_ref().ok_or(Error::Closed)?;
            if !busy {
                self.busy_turns.set(0);
                true
            } else if reactor.registered() == 0 {
                false
            } else if self.poll_interval == 1 {
                true
            } else {
                let n = self.busy_turns.get().wrapping_add(1);
                self.busy_turns.set(n);
                n.is_multiple_of(self.poll_interval)
            }
        };
        if !look {
            self.drain_inboxes()?;
            return Ok(());
        }
        {
            let mut reactor_cell = self
                .reactor
                .try_borrow_mut()
                .map_err(|_| Error::Reentrant)?;
            let reactor = reactor_cell.as_mut().ok_or(Error::Closed)?;
            let mut events = self.events.try_borrow_mut().map_err(|_| Error::Reentrant)?;
            events.clear();
            let result = if busy {
                reactor
                    .poll(Some(0.0))
                    .map(|ev| events.extend_from_slice(ev))
            } else {
                // parked: from now on another thread's push writes the waker; one that came
                // first means this poll must not block
                let timeout = if self.host_inbox.park() {
                    timeout
                } else {
                    Some(0.0)
                };
                let r: &mut Reactor = reactor;
                let out: &mut Vec<Event> = &mut events;
                let t0 = monotonic_ns();
                let res =
                    host.blocking(move || r.poll(timeout).map(|ev| out.extend_from_slice(ev)));
                self.stats.idle(monotonic_ns().saturating_sub(t0));
                self.host_inbox.unpark();
                res
            };
            result.map_err(Error::Io)?;
            if reactor.take_woken() {
                self.host_inbox.waker().reset();
            }
        }
        // what other threads queued before this point joins the queue first, as it would
        // have in asyncio's _ready (appended at call time)
        self.drain_inboxes()?;
        // the events are handed out before the host's code runs (a signal handler that
        // raises ends the turn): the Rust tasks' registrations are edge-triggered, so an
        // event dropped here would never come again
        self.dispatch_events()?;
        if !busy {
            host.woke()?;
        }
        Ok(())
    }

    /// Move what other threads queued to the ready queue (host entries) or run it (Rust
    /// wakes and calls).
    fn drain_inboxes(&self) -> Result<(), Error> {
        if H::EXISTS && self.host_inbox.has_pending() {
            let mut ready = self.ready.try_borrow_mut().map_err(|_| Error::Reentrant)?;
            // moved, not dropped: nothing runs under the inbox's lock
            self.host_inbox
                .drain_with(|queued| ready.extend(queued.drain(..).map(Ready::Host)));
        }
        if self.shared.inbox.has_pending() {
            let mut items =
                std::mem::take(&mut *self.remote.try_borrow_mut().map_err(|_| Error::Reentrant)?);
            self.shared.inbox.drain_into(&mut items);
            for item in items.drain(..) {
                match item {
                    Remote::Wake(key) => self.wake_local(key),
                    Remote::Call(f) => f(),
                }
            }
            if let Ok(mut r) = self.remote.try_borrow_mut() {
                *r = items;
            }
        }
        Ok(())
    }

    /// Queue the watchers of the descriptors the poll reported; wake the Rust tasks waiting
    /// on them.
    fn dispatch_events(&self) -> Result<(), Error> {
        let events = self.events.try_borrow().map_err(|_| Error::Reentrant)?;
        if events.is_empty() {
            return Ok(());
        }
        if H::EXISTS {
            let mut ready = self.ready.try_borrow_mut().map_err(|_| Error::Reentrant)?;
            let readers = self.readers.try_borrow().map_err(|_| Error::Reentrant)?;
            let writers = self.writers.try_borrow().map_err(|_| Error::Reentrant)?;
            let before = ready.len();
            for ev in events.iter() {
                if ev.readable {
                    if let Some(h) = readers.get(&ev.fd) {
                        if !h.is_cancelled() {
                            ready.push_back(Ready::Host(h.share()));
                        }
                    }
                }
                if ev.writable {
                    if let Some(h) = writers.get(&ev.fd) {
                        if !h.is_cancelled() {
                            ready.push_back(Ready::Host(h.share()));
                        }
                    }
                }
            }
            self.stats.io_events(ready.len() - before);
        }
        let io = self.io.try_borrow().map_err(|_| Error::Reentrant)?;
        if io.is_empty() {
            return Ok(());
        }
        let mut wake = Vec::new();
        for ev in events.iter() {
            if let Some(st) = io.get(&ev.fd) {
                if ev.hangup {
                    st.hangup.set(true);
                }
                if ev.readable {
                    st.readable.set(true);
                    wake.append(&mut st.read.borrow_mut());
                }
                if ev.writable {
                    st.writable.set(true);
                    wake.append(&mut st.write.borrow_mut());
                }
            }
        }
        // (woken with nothing borrowed: a wake queues the task)
        drop(io);
        drop(events);
        for w in wake {
            w.wake();
        }
        Ok(())
    }

    /// The host's due timers to the ready queue, in deadline order.
    fn fire_host_timers<O: Host<H>>(&self, host: &mut O) -> Result<(), O::Error> {
        if self
            .host_timers
            .try_borrow()
            .map_err(|_| Error::Reentrant)?
            .is_empty()
        {
            return Ok(());
        }
        // (the clock is read with nothing borrowed: a host clock may call back in)
        let now = host.now()?;
        let end_time = now + host.clock_resolution();
        let mut due = Vec::new();
        let first = {
            let mut t = self
                .host_timers
                .try_borrow_mut()
                .map_err(|_| Error::Reentrant)?;
            let first = t.next_deadline();
            t.pop_due(end_time, &mut due);
            first
        };
        if due.is_empty() {
            return Ok(());
        }
        if let Some(first) = first {
            self.stats.timers_due(due.len(), now - first);
        }
        for e in &due {
            e.0.unscheduled();
        }
        let mut ready = self.ready.try_borrow_mut().map_err(|_| Error::Reentrant)?;
        for e in due {
            ready.push_back(Ready::Host(e.0));
        }
        Ok(())
    }

    /// Wake the Rust tasks whose sleeps are due.
    /// No host timer is scheduled.
    #[inline]
    fn host_timers_empty(&self) -> bool {
        self.host_timers.try_borrow().map_or(true, |t| t.is_empty())
    }

    /// No Rust sleep is pending (the common case on a Python loop: checked first, cheaply).
    #[inline]
    fn slot_timers_empty(&self) -> bool {
        self.timers.try_borrow().map_or(true, |t| t.is_empty())
    }

    fn fire_slot_timers(&self) {
        let mut due = Vec::new();
        {
            let Ok(mut t) = self.timers.try_borrow_mut() else {
                return;
            };
            t.pop_due(clock::monotonic() + clock::resolution(), &mut due);
        }
        for slot in due {
            if slot.cancelled.get() {
                continue;
            }
            slot.fired.set(true);
            let w = slot.waker.borrow_mut().take();
            if let Some(w) = w {
                w.wake();
            }
        }
    }

    /// Run `ntodo` entries; those queued meanwhile wait for the next turn.
    fn run_ready<O: Host<H>>(&self, host: &mut O, ntodo: usize) -> Result<(), O::Error> {
        let mut ran = 0u64;
        let mut result = Ok(());
        for _ in 0..ntodo {
            let next = match self.ready.try_borrow_mut() {
                Ok(mut r) => r.pop_front(),
                Err(_) => {
                    result = Err(Error::Reentrant.into());
                    break;
                }
            };
            match next {
                None => break,
                Some(Ready::Host(h)) => {
                    if h.is_cancelled() {
                        continue;
                    }
                    ran += 1;
                    if let Err(e) = host.run(h) {
                        result = Err(e);
                        break;
                    }
                }
                Some(Ready::Task(key)) => {
                    let task = match self.tasks.try_borrow() {
                        Ok(t) => t.get(key),
                        Err(_) => None,
                    };
                    let Some(task) = task else { continue };
                    ran += 1;
                    if crate::runtime::coop::with_budget(|| task.run()) {
                        let removed = self
                            .tasks
                            .try_borrow_mut()
                            .ok()
                            .and_then(|mut t| t.remove(key));
                        drop(removed);
                    }
                }
            }
        }
        self.stats.callbacks_ran(ran);
        result
    }
}
