//! Time: sleep order and accuracy, timeouts, intervals, yield_now.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ferroloop::{
    interval, run, sleep, sleep_until, spawn, timeout, timeout_at, yield_now, Elapsed,
};

#[test]
fn sleeps_wake_in_deadline_order() {
    let log = Rc::new(RefCell::new(Vec::new()));
    run({
        let log = log.clone();
        async move {
            let tasks: Vec<_> = [30u64, 10, 20, 0, 10]
                .into_iter()
                .enumerate()
                .map(|(i, ms)| {
                    let log = log.clone();
                    spawn(async move {
                        sleep(Duration::from_millis(ms)).await;
                        log.borrow_mut().push(i);
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        }
    });
    // equal deadlines keep their scheduling order (1 before 4)
    assert_eq!(*log.borrow(), vec![3, 1, 4, 2, 0]);
}

#[test]
fn sleep_lasts_at_least_its_duration() {
    let t0 = Instant::now();
    run(sleep(Duration::from_millis(25)));
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(25), "{took:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
}

#[test]
fn sleep_until_a_past_instant_is_ready_at_once() {
    run(async {
        let t0 = Instant::now();
        sleep_until(t0 - Duration::from_secs(1)).await;
        sleep(Duration::ZERO).await;
        assert!(t0.elapsed() < Duration::from_millis(50));
    });
}

#[test]
fn timeout_elapses_and_drops_the_future() {
    struct Flag(Rc<RefCell<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            *self.0.borrow_mut() = true;
        }
    }
    let dropped = Rc::new(RefCell::new(false));
    let d2 = dropped.clone();
    let r = run(async move {
        timeout(Duration::from_millis(10), async move {
            let _f = Flag(d2);
            sleep(Duration::from_secs(10)).await;
        })
        .await
    });
    assert_eq!(r, Err(Elapsed));
    assert!(*dropped.borrow());
    let io: std::io::Error = Elapsed.into();
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
}

#[test]
fn timeout_passes_the_value_through() {
    let r = run(timeout(Duration::from_secs(5), async {
        sleep(Duration::from_millis(1)).await;
        9
    }));
    assert_eq!(r, Ok(9));
    let r = run(timeout_at(Instant::now() + Duration::from_secs(5), async {
        3
    }));
    assert_eq!(r, Ok(3));
}

#[test]
fn dropped_sleeps_are_cancelled_and_do_not_keep_the_loop_busy() {
    run(async {
        for _ in 0..1000 {
            let s = sleep(Duration::from_secs(60));
            let r = timeout(Duration::ZERO, s).await;
            assert_eq!(r, Err(Elapsed));
        }
        let t0 = Instant::now();
        sleep(Duration::from_millis(5)).await;
        assert!(t0.elapsed() < Duration::from_secs(1));
    });
}

#[test]
fn interval_ticks_on_schedule_and_skips_missed_ticks() {
    run(async {
        let mut iv = interval(Duration::from_millis(10));
        let t0 = iv.tick().await; // immediate
        let t1 = iv.tick().await;
        assert_eq!(t1 - t0, Duration::from_millis(10));
        // fall behind by several periods: no burst of catch-up ticks
        std::thread::sleep(Duration::from_millis(35));
        let late = iv.tick().await;
        assert_eq!(late, t1 + Duration::from_millis(10));
        let next = iv.tick().await;
        assert!(next >= t1 + Duration::from_millis(40), "{:?}", next - t1);
        assert!(Instant::now() >= next);
    });
}

#[test]
fn yield_now_lets_others_run_once() {
    let log = Rc::new(RefCell::new(String::new()));
    run({
        let log = log.clone();
        async move {
            let l2 = log.clone();
            let t = spawn(async move { l2.borrow_mut().push('b') });
            log.borrow_mut().push('a');
            yield_now().await;
            log.borrow_mut().push('c');
            t.await.unwrap();
        }
    });
    assert_eq!(*log.borrow(), "abc");
}

/// `SendSleep`: `Send + Sync`; armed on one loop, then finished on another thread's loop,
/// its first timer handed back to the first loop and dropped there; dropped on a foreign
/// thread the same way; reset on its own loop.
#[test]
fn send_sleep_moves_between_loop_threads() {
    use ferroloop::SendSleep;
    use std::pin::pin;
    fn assert_send_sync<T: Send + Sync>(_: &T) {}

    let home = ferroloop::Loop::new().unwrap();
    let start = std::time::Instant::now();
    let mut moved = Box::pin(SendSleep::new(Duration::from_millis(60)));
    assert_send_sync(&moved);
    home.block_on(async {
        // armed on this loop: pending
        assert!(futures::poll!(moved.as_mut()).is_pending());
    });
    let waited = std::thread::spawn(move || {
        ferroloop::run(async move {
            moved.await;
        });
        start.elapsed()
    })
    .join()
    .unwrap();
    assert!(waited >= Duration::from_millis(60), "{waited:?}");

    // armed here, dropped on another thread: handed back, not touched there
    let mut armed = Box::pin(SendSleep::new(Duration::from_secs(30)));
    home.block_on(async {
        assert!(futures::poll!(armed.as_mut()).is_pending());
    });
    std::thread::spawn(move || drop(armed)).join().unwrap();
    // the home loop drops what came back at its next turn (LeakSanitizer sees no leak)
    home.block_on(ferroloop::yield_now());
    drop(home);

    // reset on its own loop moves the deadline
    ferroloop::run(async {
        let mut s = pin!(SendSleep::new(Duration::from_secs(30)));
        assert!(futures::poll!(s.as_mut()).is_pending());
        let t = std::time::Instant::now();
        s.as_mut().get_mut().reset(t + Duration::from_millis(10));
        s.await;
        assert!(t.elapsed() < Duration::from_secs(5));
    });
}

/// A deadline pushed later after the timer was armed: the sleep ends at the new deadline,
/// not the armed one (the timer is re-armed when it fires); pushed earlier: at the earlier.
#[test]
fn sleep_reset_later_and_earlier_after_arming() {
    ferroloop::run(async {
        let start = std::time::Instant::now();
        let mut s = Box::pin(ferroloop::sleep(Duration::from_millis(20)));
        assert!(futures::poll!(s.as_mut()).is_pending()); // armed for 20 ms
        for ms in [30, 50, 80] {
            s.as_mut().reset(start + Duration::from_millis(ms));
            assert!(futures::poll!(s.as_mut()).is_pending());
        }
        assert!(!s.is_elapsed());
        s.as_mut().await;
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(80),
            "ended at {took:?}, before the new deadline"
        );
        assert!(s.is_elapsed());
        // fired, then pushed later again: waits once more
        let again = std::time::Instant::now();
        s.as_mut().reset(again + Duration::from_millis(30));
        assert!(!s.is_elapsed());
        s.as_mut().await;
        assert!(again.elapsed() >= Duration::from_millis(30));
        // armed far away, pulled earlier: ends at the earlier deadline
        let mut far = Box::pin(ferroloop::sleep(Duration::from_secs(30)));
        assert!(futures::poll!(far.as_mut()).is_pending());
        let t = std::time::Instant::now();
        far.as_mut().reset(t + Duration::from_millis(10));
        far.await;
        assert!(t.elapsed() < Duration::from_secs(5));
    });
}
