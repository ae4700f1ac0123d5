//! `select!`, `join!`, `try_join!` and the interval's missed-tick choices on the runtime.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ferroloop::{MissedTickBehavior, Task};
use futures::StreamExt;

/// Counts its drops: a future the macros dropped (cancelled).
struct Dropped(Rc<Cell<u32>>);
impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn select_runs_the_first_branch_to_finish_and_drops_the_rest() {
    ferroloop::run(async {
        let dropped = Rc::new(Cell::new(0));
        let slow = |d: Dropped| async move {
            let _d = d;
            ferroloop::sleep(Duration::from_secs(60)).await;
            0u8
        };
        let r: &str = ferroloop::select! {
            _ = slow(Dropped(dropped.clone())) => "slow",
            n = async {
                ferroloop::sleep(Duration::from_millis(2)).await;
                7u32
            } => if n == 7 { "fast" } else { "wrong" },
            _ = slow(Dropped(dropped.clone())) => "slow too",
        };
        assert_eq!(r, "fast");
        assert_eq!(dropped.get(), 2, "the losers were dropped");
    });
}

#[test]
fn select_bodies_run_in_the_callers_scope() {
    fn first_even(values: &[u32]) -> Option<u32> {
        ferroloop::run(async {
            for &v in values {
                ferroloop::select! {
                    x = async { v } => if x % 2 == 0 { return Some(x) },
                    _ = ferroloop::sleep(Duration::from_secs(5)) => break,
                }
            }
            None
        })
    }
    assert_eq!(first_even(&[1, 3, 4, 5]), Some(4));
    assert_eq!(first_even(&[1, 3]), None);
}

#[test]
fn select_prefers_the_first_written_when_several_are_ready() {
    let r = ferroloop::run(async {
        ferroloop::select! {
            a = async { 1 } => a,
            b = async { 2 } => b,
        }
    });
    assert_eq!(r, 1);
}

#[test]
fn join_waits_for_all_of_any_types() {
    let t0 = Instant::now();
    let (a, b, c) = ferroloop::run(async {
        ferroloop::join!(
            async {
                ferroloop::sleep(Duration::from_millis(20)).await;
                1u8
            },
            async {
                ferroloop::sleep(Duration::from_millis(20)).await;
                "two"
            },
            async { vec![3] },
        )
    });
    assert_eq!((a, b, c), (1, "two", vec![3]));
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "concurrently, not one after the other"
    );
}

#[test]
fn try_join_stops_at_the_first_error_and_drops_the_rest() {
    let dropped = Rc::new(Cell::new(0));
    let d = dropped.clone();
    let r: Result<(u8, u8), &str> = ferroloop::run(async move {
        let pending = async move {
            let _d = Dropped(d);
            ferroloop::sleep(Duration::from_secs(60)).await;
            Ok(1)
        };
        let failing = async {
            ferroloop::sleep(Duration::from_millis(2)).await;
            Err("no")
        };
        ferroloop::try_join!(pending, failing)
    });
    assert_eq!(r, Err("no"));
    assert_eq!(dropped.get(), 1);
    let ok: Result<(u8, &str), ()> =
        ferroloop::run(async { ferroloop::try_join!(async { Ok(1) }, async { Ok("x") }) });
    assert_eq!(ok, Ok((1, "x")));
}

#[test]
fn join_of_tasks() {
    let (a, b) = ferroloop::run(async {
        let a: Task<u32> = ferroloop::spawn(async { 1 });
        let b: Task<&str> = ferroloop::spawn(async { "b" });
        ferroloop::join!(a, b)
    });
    assert_eq!((a.unwrap(), b.unwrap()), (1, "b"));
}

/// Ticks of an interval whose task is busy (blocks the thread) for `busy` after the first.
fn ticks_after_stall(behavior: MissedTickBehavior) -> Vec<Duration> {
    ferroloop::run(async move {
        let period = Duration::from_millis(20);
        let mut iv = ferroloop::interval(period);
        iv.set_missed_tick_behavior(behavior);
        assert_eq!(iv.missed_tick_behavior(), behavior);
        let start = iv.tick().await;
        std::thread::sleep(Duration::from_millis(70)); // misses the ticks at 20, 40, 60
        let mut at = Vec::new();
        for _ in 0..3 {
            at.push(iv.tick().await - start);
        }
        at
    })
}

#[test]
fn interval_missed_ticks_burst_delay_or_skip() {
    let ms = Duration::from_millis;
    // Burst: the missed ticks at once, on their schedule
    assert_eq!(
        ticks_after_stall(MissedTickBehavior::Burst),
        vec![ms(20), ms(40), ms(60)]
    );
    // Skip: the next tick of the schedule still to come (80), then on schedule
    let skip = ticks_after_stall(MissedTickBehavior::Skip);
    assert_eq!(skip[0], ms(20), "the late tick itself");
    assert_eq!(&skip[1..], &[ms(80), ms(100)]);
    // Delay: a period after the late tick was taken (about 70 + 20), then every period
    let delay = ticks_after_stall(MissedTickBehavior::Delay);
    assert_eq!(delay[0], ms(20));
    assert!(delay[1] >= ms(90) && delay[1] < ms(150), "{delay:?}");
    assert_eq!(delay[2] - delay[1], ms(20));
}

#[test]
fn interval_reset_and_stream() {
    ferroloop::run(async {
        let period = Duration::from_millis(10);
        let mut iv = ferroloop::interval_at(Instant::now() + Duration::from_secs(60), period);
        iv.reset_immediately();
        let t0 = Instant::now();
        iv.tick().await;
        assert!(t0.elapsed() < Duration::from_secs(5));
        iv.reset();
        let ticks: Vec<Instant> = (&mut iv).take(3).collect().await;
        assert_eq!(ticks[1] - ticks[0], period);
        assert_eq!(ticks[2] - ticks[1], period);
        assert_eq!(iv.period(), period);
    });
}
