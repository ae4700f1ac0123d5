//! Tasks: spawn, await, cancel, detach, panics, exactly-once polling and dropping, and
//! cross-thread spawns and wakes.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use ferroloop::{run, sleep, spawn, yield_now, JoinError, Loop};

/// Counts its polls and its drops; pending until `release` is set, then ready with 7.
struct Probe {
    polls: Rc<Cell<usize>>,
    drops: Rc<Cell<usize>>,
    release: Rc<Cell<bool>>,
    waker: Rc<RefCell<Option<Waker>>>,
}

impl Future for Probe {
    type Output = u32;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        self.polls.set(self.polls.get() + 1);
        if self.release.get() {
            return Poll::Ready(7);
        }
        *self.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.drops.set(self.drops.get() + 1);
    }
}

#[allow(clippy::type_complexity)]
fn probe() -> (
    Probe,
    Rc<Cell<usize>>,
    Rc<Cell<usize>>,
    Rc<Cell<bool>>,
    Rc<RefCell<Option<Waker>>>,
) {
    let (polls, drops, release, waker) = Default::default();
    let p = Probe {
        polls: Rc::clone(&polls),
        drops: Rc::clone(&drops),
        release: Rc::clone(&release),
        waker: Rc::clone(&waker),
    };
    (p, polls, drops, release, waker)
}

#[test]
fn spawn_and_await_values_in_order() {
    let out = run(async {
        let tasks: Vec<_> = (0..100u32).map(|i| spawn(async move { i * 2 })).collect();
        let mut v = Vec::new();
        for t in tasks {
            v.push(t.await.unwrap());
        }
        v
    });
    assert_eq!(out, (0..100).map(|i| i * 2).collect::<Vec<_>>());
}

#[test]
fn many_wakes_before_a_poll_cause_one_poll() {
    let (p, polls, drops, release, waker) = probe();
    run(async move {
        let t = spawn(p);
        yield_now().await;
        yield_now().await;
        assert_eq!(polls.get(), 1);
        let w = waker.borrow().clone().unwrap();
        for _ in 0..10 {
            w.wake_by_ref();
        }
        yield_now().await;
        yield_now().await;
        assert_eq!(polls.get(), 2, "ten wakes, one poll");
        release.set(true);
        w.wake();
        assert_eq!(t.await.unwrap(), 7);
        assert_eq!(polls.get(), 3);
        assert_eq!(drops.get(), 1, "dropped once, on completion");
    });
}

#[test]
fn cancel_drops_the_future_once_and_awaiting_yields_cancelled() {
    let (p, polls, drops, _release, waker) = probe();
    run(async move {
        let t = spawn(p);
        yield_now().await;
        assert_eq!(polls.get(), 1);
        assert!(t.cancel());
        assert_eq!(drops.get(), 1, "dropped at once");
        assert!(!t.cancel(), "a finished task cannot be cancelled again");
        assert!(t.is_finished());
        // a stale wake after cancellation polls nothing
        waker.borrow().clone().unwrap().wake();
        yield_now().await;
        assert_eq!(polls.get(), 1);
        assert!(t.await.unwrap_err().is_cancelled());
        assert_eq!(drops.get(), 1);
    });
}

#[test]
fn a_task_can_cancel_itself_from_its_own_poll() {
    run(async {
        let slot: Rc<RefCell<Option<ferroloop::Task<()>>>> = Rc::new(RefCell::new(None));
        let dropped = Rc::new(Cell::new(false));
        struct OnDrop(Rc<Cell<bool>>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        let (s2, d2) = (slot.clone(), dropped.clone());
        let t = spawn(async move {
            let _guard = OnDrop(d2);
            yield_now().await;
            let me = s2.borrow_mut().take().unwrap();
            assert!(me.cancel());
            // still running this poll: the drop happens when it returns
            poll_fn(|_| Poll::<()>::Pending).await;
            unreachable!();
        });
        // the handle the task cancels itself through; we keep a second way to observe it
        let observer = spawn(async {});
        *slot.borrow_mut() = Some(t);
        observer.await.unwrap();
        for _ in 0..3 {
            yield_now().await;
        }
        assert!(dropped.get());
    });
}

#[test]
fn dropping_the_handle_detaches_the_task() {
    let hits = Rc::new(Cell::new(0));
    let h2 = hits.clone();
    run(async move {
        drop(spawn(async move {
            sleep(Duration::from_millis(5)).await;
            h2.set(h2.get() + 1);
        }));
        sleep(Duration::from_millis(30)).await;
    });
    assert_eq!(hits.get(), 1);
}

#[test]
fn a_panicking_task_reports_its_panic_and_the_loop_goes_on() {
    let r = run(async {
        let t = spawn(async {
            yield_now().await;
            panic!("boom");
        });
        let other = spawn(async { 5 });
        let err = t.await.unwrap_err();
        assert!(err.is_panic());
        assert_eq!(err.to_string(), "task panicked: boom");
        other.await.unwrap()
    });
    assert_eq!(r, 5);
}

#[test]
fn dropping_the_loop_drops_pending_tasks_once() {
    let (p, _polls, drops, _release, _waker) = probe();
    let lp = Loop::new().unwrap();
    let t = lp.spawn(p);
    lp.block_on(yield_now());
    assert_eq!(lp.task_count(), 1);
    assert_eq!(drops.get(), 0);
    drop(lp);
    assert_eq!(drops.get(), 1);
    assert!(t.is_finished());
}

#[test]
fn tasks_left_pending_run_on_the_next_block_on() {
    let lp = Loop::new().unwrap();
    let t = lp.spawn(async {
        sleep(Duration::from_millis(2)).await;
        "later"
    });
    lp.block_on(async {});
    assert_eq!(lp.block_on(t).unwrap(), "later");
    assert_eq!(lp.task_count(), 0);
}

#[test]
fn ready_tasks_interleave_fairly() {
    let log = Rc::new(RefCell::new(Vec::new()));
    run({
        let log = log.clone();
        async move {
            let mk = |name: char| {
                let log = log.clone();
                spawn(async move {
                    for _ in 0..3 {
                        log.borrow_mut().push(name);
                        yield_now().await;
                    }
                })
            };
            let (a, b) = (mk('a'), mk('b'));
            a.await.unwrap();
            b.await.unwrap();
        }
    });
    assert_eq!(log.borrow().iter().collect::<String>(), "ababab");
}

#[test]
fn wake_from_another_thread() {
    let (p, polls, _drops, release, waker) = probe();
    let v = run(async move {
        let t = spawn(p);
        yield_now().await;
        let w = waker.borrow().clone().unwrap();
        release.set(true);
        let th = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            w.wake();
        });
        let v = t.await.unwrap();
        th.join().unwrap();
        v
    });
    assert_eq!(v, 7);
    assert_eq!(polls.get(), 2);
}

#[test]
fn handle_spawns_and_calls_from_other_threads() {
    let lp = Loop::new().unwrap();
    let handle = lp.handle();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let worker = std::thread::spawn(move || {
        let t = handle.spawn(async { 40 + 2 });
        // a !Send future built on the loop thread
        let u = handle.spawn_with(|| {
            let rc = Rc::new(5);
            async move {
                yield_now().await;
                *rc
            }
        });
        handle.call(move || {
            c2.fetch_add(1, Ordering::SeqCst);
        });
        (t.join().unwrap(), u.join().unwrap())
    });
    lp.block_on(async {
        let t0 = Instant::now();
        while calls.load(Ordering::SeqCst) == 0 && t0.elapsed() < Duration::from_secs(5) {
            sleep(Duration::from_millis(1)).await;
        }
        sleep(Duration::from_millis(5)).await;
    });
    assert_eq!(worker.join().unwrap(), (42, 5));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn remote_task_cancel_drops_the_future_on_the_loop_thread() {
    let lp = Loop::new().unwrap();
    let handle = lp.handle();
    let loop_thread = std::thread::current().id();
    let dropped_on = Arc::new(std::sync::Mutex::new(None));
    let d2 = dropped_on.clone();
    struct Mark(Arc<std::sync::Mutex<Option<std::thread::ThreadId>>>);
    impl Drop for Mark {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = Some(std::thread::current().id());
        }
    }
    // the loop's own futures (sleep, sockets) are !Send: build them on the loop thread
    let t = handle.spawn_with(move || async move {
        let _m = Mark(d2);
        sleep(Duration::from_secs(30)).await;
    });
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        t.cancel();
        t.join()
    });
    lp.block_on(async {
        let t0 = Instant::now();
        while dropped_on.lock().unwrap().is_none() && t0.elapsed() < Duration::from_secs(5) {
            sleep(Duration::from_millis(2)).await;
        }
    });
    assert!(matches!(
        canceller.join().unwrap(),
        Err(JoinError::Cancelled)
    ));
    assert_eq!(*dropped_on.lock().unwrap(), Some(loop_thread));
}

#[test]
#[should_panic(expected = "Cannot run the event loop while another loop is running")]
fn nested_block_on_panics() {
    run(async {
        run(async {});
    });
}

#[test]
fn spawn_outside_a_loop_panics_with_a_clear_message() {
    let err = std::panic::catch_unwind(|| {
        drop(spawn(async {}));
    })
    .unwrap_err();
    let msg = err
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap();
    assert!(msg.contains("no ferroloop loop is running"), "{msg}");
}
