//! The poller on Linux: epoll.
//!
//! Registrations are level-triggered unless asked otherwise (asyncio's readers are), with
//! `EPOLLONESHOT` for one-shot waits and `EPOLLET | EPOLLRDHUP` for edge-triggered ones.
//! The descriptor number is the event's data; the waker gets a token no descriptor can
//! have. Adding a descriptor epoll already has, or modifying one it forgot (closed and
//! reopened under the same number), falls back to the other operation, so the engine's
//! bookkeeping never has to agree with the kernel's to the syscall.
//!
//! Threading: loop thread only.

use std::io;
use std::os::unix::io::RawFd;

use crate::engine::reactor::{Interest, MAXIMUM_SELECT_TIMEOUT};
use crate::sys::{Mode, Readiness};

/// Token used in epoll data for the waker's eventfd (never a valid fd number).
const WAKER_TOKEN: u64 = u64::MAX;

/// An epoll instance and its event buffer.
pub(crate) struct Poller {
    epfd: RawFd,
    buf: Vec<libc::epoll_event>,
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn bits(interest: Interest, mode: Mode) -> u32 {
    let mut b = 0;
    if interest.read {
        b |= libc::EPOLLIN as u32;
    }
    if interest.write {
        b |= libc::EPOLLOUT as u32;
    }
    match mode {
        Mode::Level => b,
        Mode::Oneshot => b | libc::EPOLLONESHOT as u32,
        Mode::Edge => b | (libc::EPOLLRDHUP | libc::EPOLLET) as u32,
    }
}

impl Poller {
    /// A new epoll instance (close-on-exec).
    pub(crate) fn new() -> io::Result<Poller> {
        // SAFETY: plain syscall with a valid flag.
        let epfd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Poller {
            epfd,
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
        })
    }

    /// The epoll descriptor (readable while events are pending).
    pub(crate) fn as_raw_fd(&self) -> RawFd {
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

    /// Watch the waker's descriptor for reading; [`wait`](Self::wait) reports it apart.
    pub(crate) fn add_waker(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, WAKER_TOKEN)
    }

    /// Watch `fd`, which epoll is not expected to know: `EPOLL_CTL_ADD`, or `MOD` if epoll
    /// already has it.
    pub(crate) fn add(&self, fd: RawFd, interest: Interest, mode: Mode) -> io::Result<()> {
        let bits = bits(interest, mode);
        match self.ctl(libc::EPOLL_CTL_ADD, fd, bits, fd as u64) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.ctl(libc::EPOLL_CTL_MOD, fd, bits, fd as u64)
            }
            r => r,
        }
    }

    /// Change the registration of `fd` (and re-arm a disarmed one-shot registration):
    /// `EPOLL_CTL_MOD`, or `ADD` if epoll forgot the descriptor (closed and reopened under
    /// the same number).
    pub(crate) fn modify(&self, fd: RawFd, interest: Interest, mode: Mode) -> io::Result<()> {
        let bits = bits(interest, mode);
        match self.ctl(libc::EPOLL_CTL_MOD, fd, bits, fd as u64) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                self.ctl(libc::EPOLL_CTL_ADD, fd, bits, fd as u64)
            }
            r => r,
        }
    }

    /// `EPOLL_CTL_DEL`; a descriptor already closed (epoll forgot it then) is not an error,
    /// as `selectors` ignores it too.
    pub(crate) fn delete(&self, fd: RawFd) -> io::Result<()> {
        match self.ctl(libc::EPOLL_CTL_DEL, fd, 0, fd as u64) {
            Err(e) if Self::is_gone(&e) => Ok(()),
            r => r,
        }
    }

    /// Whether `err` says the descriptor is closed or unknown to epoll (`EBADF`, `ENOENT`).
    pub(crate) fn is_gone(err: &io::Error) -> bool {
        matches!(err.raw_os_error(), Some(libc::EBADF) | Some(libc::ENOENT))
    }

    /// Wait up to `timeout` seconds (`None`: forever), rounded up to whole milliseconds as
    /// `selectors.EpollSelector` does and capped at `MAXIMUM_SELECT_TIMEOUT`, and call
    /// `on_event` for each ready descriptor. Returns whether the waker fired. An
    /// interrupted wait (`EINTR`) reports nothing, so the caller can run signal handlers.
    pub(crate) fn wait(
        &mut self,
        timeout: Option<f64>,
        mut on_event: impl FnMut(RawFd, Readiness),
    ) -> io::Result<bool> {
        let ms: libc::c_int = match timeout {
            None => -1,
            Some(t) if t <= 0.0 => 0,
            Some(t) => (t.min(MAXIMUM_SELECT_TIMEOUT) * 1e3).ceil() as libc::c_int,
        };
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
                return Ok(false);
            }
            return Err(e);
        }
        let mut woken = false;
        for ev in &self.buf[..n as usize] {
            let data = ev.u64;
            if data == WAKER_TOKEN {
                woken = true;
                continue;
            }
            let bits = ev.events;
            on_event(
                data as RawFd,
                Readiness {
                    readable: (bits & !(libc::EPOLLOUT as u32)) != 0,
                    writable: (bits & !(libc::EPOLLIN as u32)) != 0,
                    hangup: bits & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0,
                },
            );
        }
        if n as usize == self.buf.len() {
            let grow = self.buf.len() * 2;
            self.buf
                .resize(grow, libc::epoll_event { events: 0, u64: 0 });
        }
        Ok(woken)
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        // SAFETY: we own epfd and close it exactly once.
        unsafe { libc::close(self.epfd) };
    }
}
