//! Regressions of the Rust runtime that a user hits in a few lines: several tasks waiting on
//! one socket direction, a `LoopHandle` that outlives its loop, a panic in a task future's
//! `Drop` while the loop is dropped, and a task whose socket is always ready starving the
//! others (the cooperative budget).

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferroloop::net::{TcpListener, TcpStream, UdpSocket};
use ferroloop::{run, sleep, spawn, timeout, JoinError, Loop};

fn run_limited<F: std::future::Future>(body: F) -> F::Output {
    match run(timeout(Duration::from_secs(10), body)) {
        Ok(v) => v,
        Err(_) => panic!("test body timed out"),
    }
}

#[test]
fn an_expired_second_waiter_does_not_swallow_the_first_waiters_wakeups() {
    run_limited(async {
        let sock = Rc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = sock.local_addr().unwrap();
        let received = Rc::new(std::cell::Cell::new(0));
        let background = {
            let (sock, received) = (sock.clone(), received.clone());
            spawn(async move {
                let mut buf = [0u8; 64];
                for _ in 0..5 {
                    sock.recv_from(&mut buf).await.unwrap();
                    received.set(received.get() + 1);
                }
            })
        };
        // let the background task park first, then a second waiter that gives up
        sleep(Duration::from_millis(5)).await;
        let mut buf = [0u8; 64];
        assert!(timeout(Duration::from_millis(20), sock.recv_from(&mut buf))
            .await
            .is_err());
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for i in 0..5u8 {
            sender.send_to(&[i], addr).await.unwrap();
            sleep(Duration::from_millis(2)).await;
        }
        timeout(Duration::from_secs(2), background)
            .await
            .expect("the background receiver was never woken")
            .unwrap();
        assert_eq!(received.get(), 5);
    });
}

#[test]
fn two_acceptors_on_one_listener_accept_every_connection() {
    run_limited(async {
        let listener = Rc::new(TcpListener::bind("127.0.0.1:0").await.unwrap());
        let addr = listener.local_addr().unwrap();
        let accepted = Rc::new(std::cell::Cell::new(0));
        let acceptors: Vec<_> = (0..2)
            .map(|_| {
                let (listener, accepted) = (listener.clone(), accepted.clone());
                spawn(async move {
                    loop {
                        let (conn, _) = listener.accept().await.unwrap();
                        accepted.set(accepted.get() + 1);
                        drop(conn);
                    }
                })
            })
            .collect();
        sleep(Duration::from_millis(5)).await;
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.unwrap());
            sleep(Duration::from_millis(5)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while accepted.get() < 3 && Instant::now() < deadline {
            sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(accepted.get(), 3, "connections accepted");
        for a in acceptors {
            a.cancel();
        }
    });
}

#[test]
fn a_loop_handle_after_its_loop_is_dropped_reports_cancelled() {
    let lp = Loop::new().unwrap();
    let h = lp.handle();
    drop(lp);
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let r = h.spawn(async { 1 }).join();
        tx.send(r.map_err(|e| e.is_cancelled())).unwrap();
        // call() on a dropped loop drops the closure without running it
        let ran = Arc::new(AtomicUsize::new(0));
        let r2 = ran.clone();
        h.call(move || {
            r2.fetch_add(1, Ordering::SeqCst);
        });
        ran.load(Ordering::SeqCst)
    });
    let result = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("join() on a dropped loop's task hung");
    assert_eq!(result, Err(true));
    assert_eq!(t.join().unwrap(), 0);
}

#[test]
fn a_loop_handle_racing_the_loops_drop_never_writes_to_a_reused_descriptor() {
    // threads keep waking the loop while it is dropped; afterwards, descriptors opened
    // (which may reuse the eventfd's number) must not receive the wakers' 8-byte writes
    for _ in 0..20 {
        let lp = Loop::new().unwrap();
        let h = lp.handle();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let wakers: Vec<_> = (0..2)
            .map(|_| {
                let (h, stop) = (h.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        h.call(|| {});
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(2));
        drop(lp);
        // a pipe likely takes the freed numbers; nothing may arrive on it
        let mut fds = [0; 2];
        // SAFETY: fds is a valid array of two ints.
        assert_eq!(
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) },
            0
        );
        std::thread::sleep(Duration::from_millis(2));
        stop.store(true, Ordering::Relaxed);
        for w in wakers {
            w.join().unwrap();
        }
        let mut buf = [0u8; 64];
        // SAFETY: fds[0] is the pipe's read end, open; buf is writable.
        let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
        // SAFETY: both ends are open and ours.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        assert_eq!(
            n, -1,
            "a waker wrote {n} bytes into an unrelated descriptor"
        );
    }
}

struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("panic in a task's Drop");
    }
}

#[test]
fn a_panic_in_a_task_futures_drop_during_loop_drop_is_the_tasks_result() {
    let lp = Loop::new().unwrap();
    let other_dropped = Rc::new(std::cell::Cell::new(false));
    struct Flag(Rc<std::cell::Cell<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let panicking = lp.spawn(async {
        let _p = PanicOnDrop;
        std::future::pending::<()>().await;
    });
    let flag = Flag(other_dropped.clone());
    let other = lp.spawn(async move {
        let _f = flag;
        std::future::pending::<()>().await;
    });
    lp.block_on(sleep(Duration::from_millis(1)));
    // the drop completes: no panic escapes it, and every other task is dropped too
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(lp)));
    assert!(dropped.is_ok(), "a panic escaped Loop::drop");
    assert!(other_dropped.get());
    assert!(other.is_finished());
    let result = Loop::new().unwrap().block_on(panicking);
    match result {
        Err(JoinError::Panic(p)) => {
            assert_eq!(p.downcast_ref::<&str>(), Some(&"panic in a task's Drop"));
        }
        other => panic!("expected the task's panic, got {other:?}"),
    }
}

#[test]
fn a_task_with_always_ready_io_yields_to_a_sleep_beside_it() {
    run_limited(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        drop(server); // the client's reads now always succeed (EOF); its writes fail
        let stop = Rc::new(std::cell::Cell::new(false));
        let spinner = {
            let stop = stop.clone();
            spawn(async move {
                let mut reads = 0u64;
                let mut buf = [0u8; 16];
                while !stop.get() {
                    let n = futures_io_read(&client, &mut buf).await.unwrap();
                    assert_eq!(n, 0);
                    reads += 1;
                }
                reads
            })
        };
        let t0 = Instant::now();
        sleep(Duration::from_millis(5)).await;
        let waited = t0.elapsed();
        eprintln!("5 ms sleep beside an always-ready reader woke after {waited:?}");
        stop.set(true);
        let reads = spinner.await.unwrap();
        assert!(reads > 0);
        assert!(
            waited < Duration::from_millis(50),
            "a 5 ms sleep beside an always-ready reader woke after {waited:?}"
        );
    });
}

async fn futures_io_read(stream: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    use futures_io::AsyncRead;
    let mut s = stream;
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut s).poll_read(cx, buf)).await
}

/// A future that records the address it was polled at and the address it was dropped at:
/// `Pin` promises they are the same.
struct AddressProbe {
    polled_at: Rc<std::cell::Cell<usize>>,
    dropped_at: Rc<std::cell::Cell<usize>>,
    _pinned: std::marker::PhantomPinned,
}

impl std::future::Future for AddressProbe {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.polled_at.set(&*self as *const Self as usize);
        std::task::Poll::Pending
    }
}

impl Drop for AddressProbe {
    fn drop(&mut self) {
        self.dropped_at.set(self as *const Self as usize);
    }
}

#[test]
fn a_cancelled_task_is_dropped_where_it_was_pinned() {
    // the task's future was moved out of its slot before being dropped: an async block that
    // held a borrow of its own local (a channel receiver and its recv future) then read
    // freed memory in its drop (found with a broadcast receiver: SIGSEGV)
    run_limited(async {
        let polled_at = Rc::new(std::cell::Cell::new(0));
        let dropped_at = Rc::new(std::cell::Cell::new(0));
        let task = spawn(AddressProbe {
            polled_at: polled_at.clone(),
            dropped_at: dropped_at.clone(),
            _pinned: std::marker::PhantomPinned,
        });
        ferroloop::yield_now().await;
        assert_ne!(polled_at.get(), 0, "polled once");
        assert!(task.cancel());
        assert_eq!(
            dropped_at.get(),
            polled_at.get(),
            "dropped at its pinned address"
        );

        // the case that found it: a receiver borrowed by its pending recv future
        let (tx, rx) = ferroloop::sync::broadcast::channel::<String>(4);
        let task = spawn(async move {
            let mut rx = rx;
            while rx.recv().await.is_ok() {}
        });
        ferroloop::yield_now().await;
        tx.send("one".into()).unwrap();
        ferroloop::yield_now().await;
        assert!(task.cancel());
        assert!(matches!(task.await, Err(JoinError::Cancelled)));
    });
}

#[test]
fn a_task_that_cancels_itself_from_its_own_drop_finishes_once() {
    use std::cell::RefCell;
    struct CancelOnDrop(Rc<RefCell<Option<ferroloop::AbortHandle>>>);
    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            if let Some(h) = self.0.borrow().as_ref() {
                assert!(!h.abort(), "already finishing: nothing to cancel");
            }
        }
    }
    run_limited(async {
        let slot = Rc::new(RefCell::new(None));
        let guard = CancelOnDrop(slot.clone());
        let task = spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        *slot.borrow_mut() = Some(task.abort_handle());
        ferroloop::yield_now().await;
        assert!(task.cancel());
        assert!(matches!(task.await, Err(JoinError::Cancelled)));
    });
}
