//! Unix signals for Rust programs: [`Signal`] counts deliveries of one signal and wakes
//! the tasks waiting for the next (asyncio's `add_signal_handler`, as a stream).
//!
//! Decision: the signal handler does only async-signal-safe work: it writes the signal's
//! number to a process-wide non-blocking pipe. One dispatcher thread, started with the
//! first [`Signal`], reads that pipe, bumps the signal's delivery count and wakes the
//! listeners through their wakers (which cross into each loop through its inbox). So any
//! number of loops on any threads can listen, and a loop never has to own the handler.
//! Installing a listener replaces the process's disposition for that signal (as asyncio's
//! `add_signal_handler` does); it is not restored afterwards. The OS-specific parts (the
//! number of signals, `errno` in the handler, `sigaction`, the pipe) are `crate::sys`'s.
//!
//! Threading: `Signal` is `Send`; the handler and dispatcher are process-wide.

use std::future::poll_fn;
use std::io;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Poll, Waker};

use crate::sys::signal::{self as os, NSIG};

struct Listener {
    signum: i32,
    waker: Mutex<Option<Waker>>,
}

struct Registry {
    counts: Vec<AtomicU64>,
    installed: Mutex<[bool; NSIG]>,
    listeners: Mutex<Vec<Weak<Listener>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The pipe's write end, read by the handler (-1 before the first listener).
static PIPE_WR: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signum: libc::c_int) {
    // errno save/restore and write(2) are async-signal-safe; the buffer is a local.
    let errno = os::errno();
    let fd = PIPE_WR.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = signum as u8;
        // SAFETY: writing one byte from a local to our pipe's write end.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
    os::set_errno(errno);
}

fn registry() -> io::Result<&'static Registry> {
    static REG: OnceLock<Result<Registry, i32>> = OnceLock::new();
    let r = REG.get_or_init(|| {
        let (rd, wr) = match crate::sys::socket::pipe() {
            Ok(fds) => fds,
            Err(e) => return Err(e.raw_os_error().unwrap_or(libc::EIO)),
        };
        // the handler must never block: only the write end is non-blocking
        // SAFETY: fcntl on our own descriptor.
        unsafe { libc::fcntl(wr, libc::F_SETFL, libc::O_NONBLOCK) };
        PIPE_WR.store(wr, Ordering::Release);
        let spawned = std::thread::Builder::new()
            .name("ferroloop-signals".into())
            .spawn(move || dispatch(rd));
        if let Err(e) = spawned {
            return Err(e.raw_os_error().unwrap_or(libc::EAGAIN));
        }
        Ok(Registry {
            counts: (0..NSIG).map(|_| AtomicU64::new(0)).collect(),
            installed: Mutex::new([false; NSIG]),
            listeners: Mutex::new(Vec::new()),
        })
    });
    r.as_ref()
        .map_err(|&code| io::Error::from_raw_os_error(code))
}

fn dispatch(rd: i32) {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: reading into a local buffer from our pipe's read end.
        let n = unsafe { libc::read(rd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if n == 0 {
            return;
        }
        let Ok(reg) = registry() else { return };
        for &s in &buf[..n as usize] {
            if let Some(c) = reg.counts.get(s as usize) {
                c.fetch_add(1, Ordering::AcqRel);
            }
        }
        let mut wake = Vec::new();
        {
            let mut ls = lock(&reg.listeners);
            ls.retain(|w| w.strong_count() > 0);
            for l in ls.iter().filter_map(Weak::upgrade) {
                if buf[..n as usize].contains(&(l.signum as u8)) {
                    wake.extend(lock(&l.waker).take());
                }
            }
        }
        for w in wake {
            w.wake();
        }
    }
}

/// Deliveries of one Unix signal, awaited with [`recv`](Signal::recv).
pub struct Signal {
    listener: Arc<Listener>,
    seen: u64,
}

impl Signal {
    /// Listen for `signum`. asyncio's errors: `InvalidInput` for a number out of range or
    /// for `SIGKILL`/`SIGSTOP` (which cannot be caught).
    pub fn new(signum: i32) -> io::Result<Signal> {
        if signum <= 0
            || signum as usize >= NSIG
            || signum == libc::SIGKILL
            || signum == libc::SIGSTOP
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid signal number {signum}"),
            ));
        }
        let reg = registry()?;
        {
            let mut installed = lock(&reg.installed);
            if !installed[signum as usize] {
                // on_signal only does async-signal-safe work
                os::install(signum, on_signal)?;
                installed[signum as usize] = true;
            }
        }
        let listener = Arc::new(Listener {
            signum,
            waker: Mutex::new(None),
        });
        lock(&reg.listeners).push(Arc::downgrade(&listener));
        let seen = reg.counts[signum as usize].load(Ordering::Acquire);
        Ok(Signal { listener, seen })
    }

    /// Wait for the next delivery of the signal (deliveries that arrive while nobody waits
    /// are counted: each `recv` returns once per delivery since the last, as far as the
    /// kernel did not merge them).
    pub async fn recv(&mut self) {
        poll_fn(|cx| {
            let Ok(reg) = registry() else {
                return Poll::Ready(());
            };
            let count = &reg.counts[self.listener.signum as usize];
            if count.load(Ordering::Acquire) > self.seen {
                self.seen += 1;
                return Poll::Ready(());
            }
            *lock(&self.listener.waker) = Some(cx.waker().clone());
            // a delivery between the check and the parking: look again
            if count.load(Ordering::Acquire) > self.seen {
                self.seen += 1;
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await
    }
}

/// Wait for one Ctrl-C (`SIGINT`).
pub async fn ctrl_c() -> io::Result<()> {
    let mut s = Signal::new(libc::SIGINT)?;
    s.recv().await;
    Ok(())
}
