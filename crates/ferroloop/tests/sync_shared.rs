//! `Notify`, `watch`, `Barrier` and `RwLock` on the ferroloop runtime: tasks of one loop,
//! loops on several threads, and cancellation by timeout.

use std::sync::Arc;
use std::time::Duration;

use ferroloop::sync::{watch, Barrier, Notify, RwLock};

#[test]
fn notify_from_another_thread_wakes_a_task() {
    let notify = Arc::new(Notify::new());
    let n = notify.clone();
    ferroloop::run(async move {
        let waiting = n.notified();
        let thread = {
            let n = n.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(10));
                n.notify_one();
            })
        };
        ferroloop::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken");
        thread.join().unwrap();
    });
    drop(notify);
}

#[test]
fn a_notification_is_not_lost_when_its_waiter_times_out() {
    ferroloop::run(async {
        let notify = std::rc::Rc::new(Notify::new());
        // a waiter that gives up: nothing is consumed
        assert!(
            ferroloop::timeout(Duration::from_millis(2), notify.notified())
                .await
                .is_err()
        );
        let waiter = {
            let notify = notify.clone();
            ferroloop::spawn(async move { notify.notified().await })
        };
        ferroloop::yield_now().await;
        notify.notify_one();
        ferroloop::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    });
}

#[test]
fn watch_receivers_see_the_last_configuration() {
    ferroloop::run(async {
        let (tx, rx) = watch::channel(0u32);
        let watchers: Vec<_> = (0..3)
            .map(|_| {
                let mut rx = rx.clone();
                ferroloop::spawn(async move {
                    let mut seen = Vec::new();
                    while rx.changed().await.is_ok() {
                        seen.push(*rx.borrow_and_update());
                    }
                    seen
                })
            })
            .collect();
        drop(rx);
        for v in 1..=5 {
            tx.send(v).unwrap();
            if v % 2 == 0 {
                ferroloop::yield_now().await;
            }
        }
        drop(tx);
        for w in watchers {
            let seen = w.await.unwrap();
            assert_eq!(seen.last(), Some(&5), "{seen:?}");
            assert!(seen.windows(2).all(|p| p[0] < p[1]), "{seen:?}");
        }
    });
}

#[test]
fn a_barrier_joins_loops_on_three_threads() {
    let barrier = Arc::new(Barrier::new(3));
    let threads: Vec<_> = (0..3)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                ferroloop::run(async move {
                    ferroloop::sleep(Duration::from_millis(5 * i)).await;
                    barrier.wait().await.is_leader()
                })
            })
        })
        .collect();
    let leaders = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|leader| *leader)
        .count();
    assert_eq!(leaders, 1);
}

#[test]
fn rwlock_writers_are_exclusive_across_tasks_and_threads() {
    let lock = Arc::new(RwLock::new(Vec::<u32>::new()));
    let thread = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            ferroloop::run(async move {
                for n in 0..100 {
                    let mut g = lock.write().await;
                    let len = g.len();
                    ferroloop::yield_now().await; // held across a suspension
                    assert_eq!(g.len(), len, "nobody else wrote meanwhile");
                    g.push(1000 + n);
                }
            })
        })
    };
    ferroloop::run({
        let lock = lock.clone();
        async move {
            let writer = {
                let lock = lock.clone();
                ferroloop::spawn(async move {
                    for n in 0..100 {
                        lock.write().await.push(n);
                        ferroloop::yield_now().await;
                    }
                })
            };
            let reader = {
                let lock = lock.clone();
                ferroloop::spawn(async move {
                    for _ in 0..100 {
                        let g = lock.read().await;
                        assert!(g.iter().filter(|v| **v < 1000).count() <= 100);
                        drop(g);
                        ferroloop::yield_now().await;
                    }
                })
            };
            writer.await.unwrap();
            reader.await.unwrap();
        }
    });
    thread.join().unwrap();
    let v = Arc::try_unwrap(lock).unwrap().into_inner();
    assert_eq!(v.len(), 200);
}
