//! `JoinSet` and `AbortHandle`: results as tasks finish, aborts, panics, drop cancels.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use ferroloop::{JoinError, JoinSet};

#[test]
fn results_come_out_in_the_order_tasks_finish() {
    let order = ferroloop::run(async {
        let mut set = JoinSet::new();
        for (i, ms) in [(0u32, 30u64), (1, 10), (2, 20)] {
            set.spawn(async move {
                ferroloop::sleep(Duration::from_millis(ms)).await;
                i
            });
        }
        assert_eq!(set.len(), 3);
        let mut order = Vec::new();
        while let Some(r) = set.join_next().await {
            order.push(r.unwrap());
        }
        assert!(set.is_empty());
        order
    });
    assert_eq!(order, vec![1, 2, 0]);
}

#[test]
fn an_aborted_task_and_a_panicking_one_report_as_such() {
    ferroloop::run(async {
        let mut set = JoinSet::new();
        let slow = set.spawn(async {
            ferroloop::sleep(Duration::from_secs(60)).await;
            "slow"
        });
        set.spawn(async { panic!("boom") });
        set.spawn(async { "quick" });
        assert!(slow.abort());
        assert!(slow.is_finished());
        let mut quick = 0;
        let mut cancelled = 0;
        let mut panicked = 0;
        while let Some(r) = set.join_next().await {
            match r {
                Ok("quick") => quick += 1,
                Err(JoinError::Cancelled) => cancelled += 1,
                Err(e) if e.is_panic() => panicked += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((quick, cancelled, panicked), (1, 1, 1));
    });
}

#[test]
fn dropping_the_set_cancels_what_it_holds() {
    ferroloop::run(async {
        let dropped = Rc::new(Cell::new(0));
        struct Count(Rc<Cell<u32>>);
        impl Drop for Count {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        let mut set = JoinSet::new();
        for _ in 0..5 {
            let guard = Count(dropped.clone());
            set.spawn(async move {
                let _guard = guard;
                ferroloop::sleep(Duration::from_secs(60)).await;
            });
        }
        ferroloop::yield_now().await;
        drop(set);
        ferroloop::yield_now().await;
        assert_eq!(dropped.get(), 5, "every task's future dropped with the set");
    });
}

#[test]
fn shutdown_and_join_all() {
    ferroloop::run(async {
        let mut set = JoinSet::new();
        for i in 0..3u32 {
            set.spawn(async move { i });
        }
        let mut all: Vec<u32> = set
            .join_all()
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2]);

        let mut set = JoinSet::new();
        for _ in 0..3 {
            set.spawn(ferroloop::sleep(Duration::from_secs(60)));
        }
        ferroloop::timeout(Duration::from_secs(5), set.shutdown())
            .await
            .unwrap();
        assert!(set.is_empty());
        assert!(set.try_join_next().is_none());
    });
}

#[test]
fn many_tasks_join_in_linear_time() {
    // 20,000 tasks finishing one per turn: join_next looks only at finished tasks
    let n = ferroloop::run(async {
        let mut set = JoinSet::new();
        for i in 0..20_000u32 {
            set.spawn(async move {
                for _ in 0..(i % 3) {
                    ferroloop::yield_now().await;
                }
                i
            });
        }
        let mut n = 0;
        while let Some(r) = set.join_next().await {
            r.unwrap();
            n += 1;
        }
        n
    });
    assert_eq!(n, 20_000);
}

#[test]
fn task_abort_handle_cancels_without_the_handle() {
    ferroloop::run(async {
        let task = ferroloop::spawn(ferroloop::sleep(Duration::from_secs(60)));
        let abort = task.abort_handle();
        assert!(!abort.is_finished());
        assert!(abort.abort());
        assert!(!abort.abort(), "already finished");
        assert!(matches!(task.await, Err(JoinError::Cancelled)));
    });
}
