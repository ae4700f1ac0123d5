//! The reactor: level-triggered readiness over raw file descriptors, on the OS poller
//! (`crate::sys`: epoll on Linux). The reactor keeps what is the engine's policy, the
//! interest per descriptor and the parking of one-shot waits; the poller makes the calls.
//!
//! Decision: asyncio's `add_reader`/`add_writer` are level-triggered (a reader that leaves
//! data unread is called again on the next turn), so the reactor registers descriptors
//! without `EPOLLET`. mio only offers edge-triggered registration, which would need a re-arm
//! syscall per event to emulate this; a thin epoll wrapper costs nothing extra. (DESIGN.md
//! planned mio; see docs/architecture.md for this change.) An `EPOLLERR`/`EPOLLHUP` marks the
//! descriptor both readable and writable, as `selectors.EpollSelector` does.
//!
//! One-shot waits ([`Reactor::set_interest_oneshot`]): a caller that waits for one
//! readiness and then stops watching (asyncio's `sock_recv`/`sock_sendall`/`sock_accept`
//! waiting for a would-block socket) would cost an `EPOLL_CTL_ADD` and an `EPOLL_CTL_DEL`
//! per wait: measured 11% of the server's CPU in the `sock_*` echo benchmark. Such a wait
//! is registered one-shot (`EPOLLONESHOT`): the kernel disarms it when it reports the
//! event, so when the caller stops watching the registration is kept, disarmed ("parked",
//! no syscall), and the next wait on that descriptor re-arms it with one `EPOLL_CTL_MOD`. A
//! parked descriptor can never report (no stale events, no busy loop when a copy of a
//! closed descriptor lives on elsewhere); one whose number was closed and reused is found
//! by the `ENOENT` of that `MOD` and added afresh. A one-shot wait still watched after its
//! event (the call would still block) is re-armed before the next wait of
//! [`Reactor::poll`]. Any other interest set on the descriptor makes it an ordinary
//! level-triggered registration.
//!
//! Threading: `poll` is called by the loop thread only (with the GIL released by the
//! caller); the registration methods take `&mut self` and are also loop-thread only.

use std::io;
use std::os::unix::io::RawFd;

use super::fd_map::FdMap;
use crate::sys::{Mode, Poller};

/// Which readiness a descriptor is watched for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    /// Watch for readability (`EPOLLIN`).
    pub read: bool,
    /// Watch for writability (`EPOLLOUT`).
    pub write: bool,
}

impl Interest {
    fn is_empty(self) -> bool {
        !self.read && !self.write
    }
}

/// One readiness report, already filtered by the registered interest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The descriptor.
    pub fd: RawFd,
    /// Readable (or hung up / in error).
    pub readable: bool,
    /// Writable (or hung up / in error).
    pub writable: bool,
    /// The peer hung up or the descriptor is in error (`EPOLLRDHUP`, `EPOLLHUP`,
    /// `EPOLLERR`): reading will not block any more, whatever is read meanwhile.
    pub hangup: bool,
}

/// asyncio's `MAXIMUM_SELECT_TIMEOUT`: a day.
pub const MAXIMUM_SELECT_TIMEOUT: f64 = 24.0 * 3600.0;

/// The OS poller (epoll) with the interest registered per descriptor (level-triggered, or
/// edge-triggered through [`Reactor::add_edge`]).
pub struct Reactor {
    poller: Poller,
    interests: FdMap<Interest>,
    /// Descriptors registered one-shot: true while armed, false when disarmed by an event
    /// (still watched, or parked when no interest is left).
    oneshot: FdMap<bool>,
    /// One-shot descriptors disarmed by the last poll: re-armed before the next one if
    /// still watched.
    rearm: Vec<RawFd>,
    events: Vec<Event>,
    waker_fd: Option<RawFd>,
    woken: bool,
}

impl Reactor {
    /// A new poller (close-on-exec).
    pub fn new() -> io::Result<Reactor> {
        Ok(Reactor {
            poller: Poller::new()?,
            interests: FdMap::new(),
            oneshot: FdMap::new(),
            rearm: Vec::new(),
            events: Vec::with_capacity(256),
            waker_fd: None,
            woken: false,
        })
    }

    /// The poller's own descriptor (readable while events are pending; for fork detection,
    /// diagnostics, and polling this reactor inside another).
    pub fn as_raw_fd(&self) -> RawFd {
        self.poller.as_raw_fd()
    }

    /// Watch `waker` so that [`crate::engine::Waker::wake`] interrupts [`poll`](Self::poll).
    pub fn register_waker(&mut self, waker: &crate::engine::Waker) -> io::Result<()> {
        let fd = waker.as_raw_fd();
        self.poller.add_waker(fd)?;
        self.waker_fd = Some(fd);
        Ok(())
    }

    /// The interest currently registered for `fd`.
    pub fn interest(&self, fd: RawFd) -> Interest {
        self.interests.get(&fd).copied().unwrap_or_default()
    }

    /// Number of descriptors watched (the waker excluded).
    pub fn registered(&self) -> usize {
        self.interests.len()
    }

    /// Set the interest of `fd`; an empty interest removes it. Errors (a closed or
    /// unpollable descriptor) are returned as the OS reports them, leaving the state intact.
    pub fn set_interest(&mut self, fd: RawFd, interest: Interest) -> io::Result<()> {
        if let Some(&armed) = self.oneshot.get(&fd) {
            return self.set_interest_of_oneshot(fd, armed, interest);
        }
        let old = self.interest(fd);
        if old == interest {
            return Ok(());
        }
        if interest.is_empty() {
            self.interests.remove(&fd);
            self.poller.delete(fd)?;
            return Ok(());
        }
        if old.is_empty() {
            self.poller.add(fd, interest, Mode::Level)?;
        } else {
            self.poller.modify(fd, interest, Mode::Level)?;
        }
        self.interests.insert(fd, interest);
        Ok(())
    }

    /// Watch `fd`, which nothing else watches now, for one readiness report of `interest`
    /// (see the module's "One-shot waits"); stop with `set_interest(fd, default)` as usual.
    /// If `fd` is already watched, this is `set_interest`.
    pub fn set_interest_oneshot(&mut self, fd: RawFd, interest: Interest) -> io::Result<()> {
        if interest.is_empty() || !self.interest(fd).is_empty() {
            return self.set_interest(fd, interest);
        }
        if self.oneshot.get(&fd) == Some(&false) {
            self.poller.modify(fd, interest, Mode::Oneshot)?; // parked: re-arm
        } else {
            self.poller.add(fd, interest, Mode::Oneshot)?;
        }
        self.oneshot.insert(fd, true);
        self.interests.insert(fd, interest);
        Ok(())
    }

    fn set_interest_of_oneshot(
        &mut self,
        fd: RawFd,
        armed: bool,
        interest: Interest,
    ) -> io::Result<()> {
        if interest.is_empty() {
            self.interests.remove(&fd);
            if !armed {
                return Ok(()); // parked: disarmed, kept for the next wait
            }
            self.oneshot.remove(&fd);
            return self.poller.delete(fd);
        }
        if interest == self.interest(fd) && armed {
            return Ok(());
        }
        // any other interest: an ordinary level-triggered registration from now on
        self.poller.modify(fd, interest, Mode::Level)?;
        self.oneshot.remove(&fd);
        self.interests.insert(fd, interest);
        Ok(())
    }

    /// Re-arm the one-shot descriptors the last poll disarmed that are still watched.
    fn rearm_oneshots(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for fd in std::mem::take(&mut self.rearm) {
            if self.oneshot.get(&fd) != Some(&false) {
                continue;
            }
            let Some(interest) = self.interests.get(&fd).copied() else {
                continue;
            };
            match self.poller.modify(fd, interest, Mode::Oneshot) {
                Ok(()) => {
                    self.oneshot.insert(fd, true);
                }
                Err(e) => {
                    // closed meanwhile: forget it, as a failed DEL is forgotten
                    self.oneshot.remove(&fd);
                    self.interests.remove(&fd);
                    if !Poller::is_gone(&e) && result.is_ok() {
                        result = Err(e);
                    }
                }
            }
        }
        result
    }

    /// Watch `fd` edge-triggered for both directions and peer hang-up: one report per
    /// change of readiness, for users that try the syscall first and wait only after
    /// `EWOULDBLOCK` (the Rust runtime's I/O). Removed with `set_interest(fd, default)`.
    pub fn add_edge(&mut self, fd: RawFd) -> io::Result<()> {
        let both = Interest {
            read: true,
            write: true,
        };
        self.poller.add(fd, both, Mode::Edge)?; // a parked one-shot registration is taken over
        self.oneshot.remove(&fd);
        self.interests.insert(fd, both);
        Ok(())
    }

    /// Wait up to `timeout` seconds (`None`: forever) and return the ready descriptors.
    /// The timeout is rounded up to whole milliseconds, as `selectors.EpollSelector` does.
    /// An interrupted wait (`EINTR`) returns no events, so the caller can run signal handlers.
    /// Whether the waker fired is reported by [`take_woken`](Self::take_woken).
    pub fn poll(&mut self, timeout: Option<f64>) -> io::Result<&[Event]> {
        self.events.clear();
        if !self.rearm.is_empty() {
            self.rearm_oneshots()?;
        }
        let (oneshot, rearm, interests, events) = (
            &mut self.oneshot,
            &mut self.rearm,
            &self.interests,
            &mut self.events,
        );
        let woken = self.poller.wait(timeout, |fd, ready| {
            if let Some(armed) = oneshot.get_mut(&fd) {
                *armed = false; // the kernel disarmed it with this report
                rearm.push(fd);
            }
            let Some(want) = interests.get(&fd).copied() else {
                return;
            };
            let readable = want.read && ready.readable;
            let writable = want.write && ready.writable;
            if readable || writable {
                events.push(Event {
                    fd,
                    readable,
                    writable,
                    hangup: ready.hangup,
                });
            }
        })?;
        if woken {
            self.woken = true;
        }
        Ok(&self.events)
    }

    /// Whether the waker fired since the last call (and clear the flag).
    pub fn take_woken(&mut self) -> bool {
        std::mem::take(&mut self.woken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> (RawFd, RawFd) {
        let mut fds = [0; 2];
        // SAFETY: fds has room for two descriptors.
        assert_eq!(
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) },
            0
        );
        (fds[0], fds[1])
    }

    #[test]
    fn level_triggered_read() {
        let mut r = Reactor::new().unwrap();
        let (rd, wr) = pipe();
        r.set_interest(
            rd,
            Interest {
                read: true,
                write: false,
            },
        )
        .unwrap();
        assert!(r.poll(Some(0.0)).unwrap().is_empty());
        // SAFETY: writing one byte from a valid buffer to our pipe.
        unsafe { libc::write(wr, b"x".as_ptr().cast(), 1) };
        // not consumed: reported again and again (level-triggered)
        for _ in 0..3 {
            let ev = r.poll(Some(1.0)).unwrap();
            assert_eq!(
                ev,
                &[Event {
                    fd: rd,
                    readable: true,
                    writable: false,
                    hangup: false
                }]
            );
        }
        r.set_interest(rd, Interest::default()).unwrap();
        assert!(r.poll(Some(0.0)).unwrap().is_empty());
        assert_eq!(r.registered(), 0);
        close(&[rd, wr]);
    }

    fn close(fds: &[RawFd]) {
        for &fd in fds {
            // SAFETY: closing a descriptor the test opened and no longer uses.
            unsafe { libc::close(fd) };
        }
    }

    fn write_byte(fd: RawFd) {
        // SAFETY: writing one byte from a valid buffer to our pipe.
        assert_eq!(unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) }, 1);
    }

    fn read_byte(fd: RawFd) {
        let mut b = [0u8; 1];
        // SAFETY: reading one byte into a valid buffer from our pipe.
        assert_eq!(unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) }, 1);
    }

    const READ: Interest = Interest {
        read: true,
        write: false,
    };

    /// A reactor and a pipe whose read end had one one-shot wait, reported, then parked
    /// (the byte that fired it is left unread).
    fn parked_pipe() -> (Reactor, RawFd, RawFd) {
        let mut r = Reactor::new().unwrap();
        let (rd, wr) = pipe();
        r.set_interest_oneshot(rd, READ).unwrap();
        write_byte(wr);
        assert_eq!(r.poll(Some(1.0)).unwrap().len(), 1);
        r.set_interest(rd, Interest::default()).unwrap(); // parked
        (r, rd, wr)
    }

    #[test]
    fn oneshot_wait_parks_and_rearms() {
        let mut r = Reactor::new().unwrap();
        let (rd, wr) = pipe();
        for _ in 0..3 {
            r.set_interest_oneshot(rd, READ).unwrap();
            assert!(r.poll(Some(0.0)).unwrap().is_empty());
            write_byte(wr);
            assert_eq!(r.poll(Some(1.0)).unwrap().len(), 1);
            read_byte(rd);
            r.set_interest(rd, Interest::default()).unwrap(); // parked
            assert_eq!(r.registered(), 0);
            write_byte(wr); // a parked descriptor reports nothing
            assert!(r.poll(Some(0.0)).unwrap().is_empty());
            read_byte(rd);
        }
        close(&[rd, wr]);
    }

    #[test]
    fn oneshot_still_watched_after_its_event_is_rearmed() {
        let mut r = Reactor::new().unwrap();
        let (rd, wr) = pipe();
        r.set_interest_oneshot(rd, READ).unwrap();
        write_byte(wr);
        // not consumed and still watched: reported again, like a level-triggered watch
        for _ in 0..3 {
            assert_eq!(r.poll(Some(1.0)).unwrap().len(), 1);
        }
        r.set_interest(rd, Interest::default()).unwrap();
        assert!(r.poll(Some(0.0)).unwrap().is_empty());
        close(&[rd, wr]);
    }

    #[test]
    fn parked_number_reused_by_a_new_descriptor() {
        let (mut r, rd, wr) = parked_pipe();
        // the number `rd` now names a new pipe (dup2 closes the old one atomically, so no
        // test running alongside can take the number meanwhile)
        let (new_rd, wr2) = pipe();
        // SAFETY: dup2 over our own descriptor; then closing our own descriptors.
        unsafe {
            assert_eq!(libc::dup2(new_rd, rd), rd);
            libc::close(new_rd);
            libc::close(wr);
        }
        let rd2 = rd;
        for oneshot in [true, false] {
            if oneshot {
                r.set_interest_oneshot(rd2, READ).unwrap();
            } else {
                r.set_interest(rd2, READ).unwrap();
            }
            write_byte(wr2);
            assert_eq!(
                r.poll(Some(1.0)).unwrap(),
                &[Event {
                    fd: rd2,
                    readable: true,
                    writable: false,
                    hangup: false
                }]
            );
            read_byte(rd2);
            r.set_interest(rd2, Interest::default()).unwrap();
        }
        close(&[rd2, wr2]);
    }

    #[test]
    fn another_interest_makes_a_parked_descriptor_level_triggered() {
        let (mut r, rd, wr) = parked_pipe();
        r.set_interest(rd, READ).unwrap(); // an ordinary reader now
        for _ in 0..3 {
            assert_eq!(r.poll(Some(1.0)).unwrap().len(), 1);
        }
        r.set_interest(rd, Interest::default()).unwrap();
        assert!(r.poll(Some(0.0)).unwrap().is_empty());
        r.add_edge(rd).unwrap(); // and the Rust runtime can take it over too
        r.set_interest(rd, Interest::default()).unwrap();
        close(&[rd, wr]);
    }

    #[test]
    fn bad_fd_is_an_error() {
        let mut r = Reactor::new().unwrap();
        let err = r
            .set_interest(
                987_654,
                Interest {
                    read: true,
                    write: false,
                },
            )
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        assert_eq!(r.registered(), 0);
    }

    #[test]
    fn timeout_is_honoured() {
        let mut r = Reactor::new().unwrap();
        let t0 = crate::engine::clock::monotonic();
        r.poll(Some(0.02)).unwrap();
        assert!(crate::engine::clock::monotonic() - t0 >= 0.019);
    }
}
