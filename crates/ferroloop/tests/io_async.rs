//! `ferroloop::io::Async`: readiness for any descriptor (pipes, std sockets), its level
//! semantics for `readable()`/`writable()`, `try_*_with`, the futures-io traits, and its errors.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::io::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use ferroloop::io::Async;
use futures::io::{AsyncReadExt, AsyncWriteExt};

fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are fresh and owned by nobody else.
    unsafe {
        (
            File::from(OwnedFd::from_raw_fd(fds[0])),
            File::from(OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

fn is_would_block<T>(r: &io::Result<T>) -> bool {
    matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

#[test]
fn pipe_read_with_and_write_with() {
    ferroloop::run(async {
        let (r, w) = pipe();
        let (r, w) = (Async::new(r).unwrap(), Async::new(w).unwrap());
        let reader = ferroloop::spawn(async move {
            let mut buf = [0u8; 16];
            let n = r.read_with(|f| (&*f).read(&mut buf)).await.unwrap();
            buf[..n].to_vec()
        });
        ferroloop::sleep(Duration::from_millis(10)).await;
        w.write_with(|f| (&*f).write(b"through a pipe"))
            .await
            .unwrap();
        assert_eq!(reader.await.unwrap(), b"through a pipe");
    });
}

#[test]
fn readable_is_level_triggered_when_drained_elsewhere() {
    ferroloop::run(async {
        let (a, b) = UnixStream::pair().unwrap();
        let a = Async::new(a).unwrap();
        let mut b = b;
        b.write_all(b"0123456789").unwrap();
        a.readable().await.unwrap();
        // a partial read behind the loop's back: data is still there, readable() says so
        let mut buf = [0u8; 4];
        a.get_ref().read_exact(&mut buf).unwrap();
        ferroloop::timeout(Duration::from_secs(1), a.readable())
            .await
            .expect("data remains: readable at once")
            .unwrap();
        // drained behind the loop's back: readable() must wait, not spin on stale readiness
        let mut rest = [0u8; 6];
        a.get_ref().read_exact(&mut rest).unwrap();
        let waited = ferroloop::timeout(Duration::from_millis(50), a.readable()).await;
        assert!(waited.is_err(), "readable() resolved with nothing to read");
        b.write_all(b"x").unwrap();
        ferroloop::timeout(Duration::from_secs(1), a.readable())
            .await
            .expect("new data wakes readable()")
            .unwrap();
    });
}

#[test]
fn writable_waits_for_room() {
    ferroloop::run(async {
        let (r, w) = pipe();
        let w = Async::new(w).unwrap();
        let chunk = [7u8; 4096];
        let mut filled = 0usize;
        loop {
            let r = w.try_write_with(|f| (&*f).write(&chunk));
            if is_would_block(&r) {
                break;
            }
            filled += r.unwrap();
        }
        assert!(filled >= 4096);
        assert!(is_would_block(&w.try_write_with(|f| (&*f).write(&chunk))));
        let w = Rc::new(w);
        let waiter = {
            let w = w.clone();
            ferroloop::spawn(async move { w.writable().await })
        };
        ferroloop::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "writable() with a full pipe");
        let mut r = r;
        let mut sink = vec![0u8; filled];
        r.read_exact(&mut sink).unwrap();
        ferroloop::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("room wakes writable()")
            .unwrap()
            .unwrap();
    });
}

#[test]
fn try_read_with_reports_would_block_then_data() {
    ferroloop::run(async {
        let (a, mut b) = UnixStream::pair().unwrap();
        let a = Async::new(a).unwrap();
        let mut buf = [0u8; 8];
        assert!(is_would_block(&a.try_read_with(|s| (&*s).read(&mut buf))));
        // known not ready: op is not even called
        let mut called = false;
        let r = a.try_read_with(|_| {
            called = true;
            Ok(0)
        });
        assert!(is_would_block(&r) && !called);
        b.write_all(b"hi").unwrap();
        a.readable().await.unwrap();
        assert_eq!(a.try_read_with(|s| (&*s).read(&mut buf)).unwrap(), 2);
    });
}

#[test]
fn two_tasks_wait_on_one_descriptor() {
    ferroloop::run(async {
        let (a, mut b) = UnixStream::pair().unwrap();
        let a = Rc::new(Async::new(a).unwrap());
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let a = a.clone();
                ferroloop::spawn(async move { a.readable().await })
            })
            .collect();
        ferroloop::sleep(Duration::from_millis(10)).await;
        b.write_all(b"!").unwrap();
        for w in waiters {
            ferroloop::timeout(Duration::from_secs(1), w)
                .await
                .expect("both waiters woken")
                .unwrap()
                .unwrap();
        }
    });
}

#[test]
fn futures_io_traits_and_hangup() {
    ferroloop::run(async {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
        let big = vec![42u8; 1 << 20];
        let writer = ferroloop::spawn(async move {
            b.write_all(&big).await.unwrap();
            b.close().await.unwrap();
            drop(b); // hang up
        });
        let mut got = Vec::new();
        a.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 1 << 20);
        assert!(got.iter().all(|&x| x == 42));
        writer.await.unwrap();
        // after the hang-up readable() answers at once, and reads give end of stream
        a.readable().await.unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(a.read(&mut buf).await.unwrap(), 0);
    });
}

#[test]
fn into_inner_leaves_the_loop() {
    ferroloop::run(async {
        let (a, _b) = UnixStream::pair().unwrap();
        let a = Async::new(a).unwrap();
        let a = a.into_inner();
        // registered again without EEXIST: the first registration was removed
        let a = Async::new(a).unwrap();
        drop(a);
    });
}

#[test]
fn errors() {
    // outside a loop
    let (a, _b) = UnixStream::pair().unwrap();
    assert!(Async::new(a).is_err());
    ferroloop::run(async {
        // a regular file: epoll refuses it
        let f = File::open("/proc/self/exe").or_else(|_| File::open("Cargo.toml"));
        let err = Async::new(f.unwrap()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    });
}
