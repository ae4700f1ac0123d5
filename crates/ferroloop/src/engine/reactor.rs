//! The reactor: level-triggered epoll over raw file descriptors.
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
//! is registered `EPOLLONESHOT`: the kernel disarms it when it reports the event, so when
//! the caller stops watching the registration is kept, disarmed ("parked", no syscall), and
//! the next wait on that descriptor re-arms it with one `EPOLL_CTL_MOD`. A parked
//! descriptor can never report (no stale events, no busy loop when a copy of a closed
//! descriptor lives on elsewhere); one whose number was closed and reused is found by the
//! `ENOENT` of that `MOD` and added afresh. A one-shot wait still watched after its event
//! (the call would still block) is re-armed before the next wait of [`Reactor::poll`]. Any
//! other interest set on the descriptor makes it an ordinary level-triggered registration.
//!
//! Threading: `poll` is called by the loop thread only (with the GIL released by the
//! caller); the registration methods take `&mut self` and are also loop-thread only.

use std::collections::HashMap;
use std::io;
use std::os::unix::io::RawFd;

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
    fn bits(self) -> u32 {
        let mut b = 0;
        if self.read {
            b |= libc::EPOLLIN as u32;
        }
        if self.write {
            b |= libc::EPOLLOUT as u32;
        }
        b
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

/// Token used in epoll data for the waker's eventfd (never a valid fd number).
const WAKER_TOKEN: u64 = u64::MAX;
/// asyncio's `MAXIMUM_SELECT_TIMEOUT`: a day.
pub const MAXIMUM_SELECT_TIMEOUT: f64 = 24.0 * 3600.0;

/// An epoll instance with the interest registered per descriptor (level-triggered, or edge-triggered through [`Reactor::add_edge`]).
pub struct Reactor {
    epfd: RawFd,
    interests: HashMap<RawFd, Interest>,
    /// Descriptors registered `EPOLLONESHOT`: true while armed, false when disarmed by
    /// an event (still watched, or parked when no interest is left).
    oneshot: HashMap<RawFd, bool>,
    /// One-shot descriptors disarmed by the last poll: re-armed before the next one if
    /// still watched.
    rearm: Vec<RawFd>,
    buf: Vec<libc::epoll_event>,
    events: Vec<Event>,
    waker_fd: Option<RawFd>,
    woken: bool,
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl Reactor {
    /// A new epoll instance (close-on-exec).
    pub fn new() -> io::Result<Reactor> {
        // SAFETY: plain syscall with a valid flag.
        let epfd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Reactor {
            epfd,
            interests: HashMap::new(),
            oneshot: HashMap::new(),
            rearm: Vec::new(),
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
            events: Vec::with_capacity(256),
            waker_fd: None,
            woken: false,
        })
    }

    /// The epoll descriptor itself (for fork detection and diagnostics).
    pub fn as_raw_fd(&self) -> RawFd {
        self.epfd
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, bits: u32, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: bits,
            u64: data,
        };
        // SAFETY: `ev` is a valid epoll_event living across the call; epfd is ours.
        cvt(unsafe { libc::epoll_ctl(self.epfd, op, fd, &mut ev) }).map(|_| ())
    }

    /// Watch `waker` so that [`crate::engine::Waker::wake`] interrupts [`poll`](Self::poll).
    pub fn register_waker(&mut self, waker: &crate::engine::Waker) -> io::Result<()> {
        let fd = waker.as_raw_fd();
        self.ctl(libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, WAKER_TOKEN)?;
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
            self.delete(fd)?;
            return Ok(());
        }
        let bits = interest.bits();
        if old.is_empty() {
            self.add_or_modify(fd, bits)?;
        } else {
            self.modify_or_add(fd, bits)?;
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
        let bits = interest.bits() | libc::EPOLLONESHOT as u32;
        if self.oneshot.get(&fd) == Some(&false) {
            self.modify_or_add(fd, bits)?; // parked: re-arm
        } else {
            self.add_or_modify(fd, bits)?;
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
            return self.delete(fd);
        }
        if interest == self.interest(fd) && armed {
            return Ok(());
        }
        // any other interest: an ordinary level-triggered registration from now on
        self.modify_or_add(fd, interest.bits())?;
        self.oneshot.remove(&fd);
        self.interests.insert(fd, interest);
        Ok(())
    }

    /// `EPOLL_CTL_DEL`; a descriptor already closed (epoll forgot it then) is not an error,
    /// as `selectors` ignores it too.
    fn delete(&self, fd: RawFd) -> io::Result<()> {
        match self.ctl(libc::EPOLL_CTL_DEL, fd, 0, fd as u64) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBADF) | Some(libc::ENOENT)) => Ok(()),
            r => r,
        }
    }

    /// `EPOLL_CTL_ADD`, or `MOD` if epoll already has this descriptor.
    fn add_or_modify(&self, fd: RawFd, bits: u32) -> io::Result<()> {
        match self.ctl(libc::EPOLL_CTL_ADD, fd, bits, fd as u64) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.ctl(libc::EPOLL_CTL_MOD, fd, bits, fd as u64)
            }
            r => r,
        }
    }

    /// `EPOLL_CTL_MOD`, or `ADD` if epoll forgot the descriptor (closed and reopened under
    /// the same number).
    fn modify_or_add(&self, fd: RawFd, bits: u32) -> io::Result<()> {
        match self.ctl(libc::EPOLL_CTL_MOD, fd, bits, fd as u64) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                self.ctl(libc::EPOLL_CTL_ADD, fd, bits, fd as u64)
            }
            r => r,
        }
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
            match self.modify_or_add(fd, interest.bits() | libc::EPOLLONESHOT as u32) {
                Ok(()) => {
                    self.oneshot.insert(fd, true);
                }
                Err(e) => {
                    // closed meanwhile: forget it, as a failed DEL is forgotten
                    self.oneshot.remove(&fd);
                    self.interests.remove(&fd);
                    if !matches!(e.raw_os_error(), Some(libc::EBADF) | Some(libc::ENOENT))
                        && result.is_ok()
                    {
                        result = Err(e);
                    }
                }
            }
        }
        result
    }

    /// Watch `fd` edge-triggered for both directions and peer hang-up (`EPOLLET`): one
    /// report per change of readiness, for users that try the syscall first and wait only
    /// after `EWOULDBLOCK` (the Rust runtime's I/O). Removed with `set_interest(fd, default)`.
    pub fn add_edge(&mut self, fd: RawFd) -> io::Result<()> {
        let bits = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        self.add_or_modify(fd, bits)?; // a parked one-shot registration is taken over
        self.oneshot.remove(&fd);
        self.interests.insert(
            fd,
            Interest {
                read: true,
                write: true,
            },
        );
        Ok(())
    }

    /// Wait up to `timeout` seconds (`None`: forever) and return the ready descriptors.
    /// The timeout is rounded up to whole milliseconds, as `selectors.EpollSelector` does.
    /// An interrupted wait (`EINTR`) returns no events, so the caller can run signal handlers.
    /// Whether the waker fired is reported by [`take_woken`](Self::take_woken).
    pub fn poll(&mut self, timeout: Option<f64>) -> io::Result<&[Event]> {
        let ms: libc::c_int = match timeout {
            None => -1,
            Some(t) if t <= 0.0 => 0,
            Some(t) => (t.min(MAXIMUM_SELECT_TIMEOUT) * 1e3).ceil() as libc::c_int,
        };
        self.events.clear();
        if !self.rearm.is_empty() {
            self.rearm_oneshots()?;
        }
        // SAFETY: `buf` has `buf.len()` initialised entries that epoll may overwrite.
        let n = unsafe {
            libc::epoll_wait(
                self.epfd,
                self.buf.as_mut_ptr(),
                self.buf.len() as libc::c_int,
                ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(&self.events);
            }
            return Err(e);
        }
        for ev in &self.buf[..n as usize] {
            let data = ev.u64;
            if data == WAKER_TOKEN {
                self.woken = true;
                continue;
            }
            let fd = data as RawFd;
            if let Some(armed) = self.oneshot.get_mut(&fd) {
                *armed = false; // the kernel disarmed it with this report
                self.rearm.push(fd);
            }
            let Some(want) = self.interests.get(&fd).copied() else {
                continue;
            };
            let bits = ev.events;
            let readable = want.read && (bits & !(libc::EPOLLOUT as u32)) != 0;
            let writable = want.write && (bits & !(libc::EPOLLIN as u32)) != 0;
            if readable || writable {
                let hangup =
                    bits & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0;
                self.events.push(Event {
                    fd,
                    readable,
                    writable,
                    hangup,
                });
            }
        }
        if n as usize == self.buf.len() {
            let grow = self.buf.len() * 2;
            self.buf
                .resize(grow, libc::epoll_event { events: 0, u64: 0 });
        }
        Ok(&self.events)
    }

    /// Whether the waker fired since the last call (and clear the flag).
    pub fn take_woken(&mut self) -> bool {
        std::mem::take(&mut self.woken)
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        // SAFETY: we own epfd and close it exactly once.
        unsafe { libc::close(self.epfd) };
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
