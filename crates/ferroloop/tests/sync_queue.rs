//! `ferroloop::sync::Queue` on the ferroloop runtime: a producer and three consumers as in
//! asyncio's queue example, consumers cancelled at the end with `Task::cancel()`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use ferroloop::sync::Queue;
use ferroloop::{JoinError, Task};

/// Spawns a consumer that takes items forever, records `(consumer, item)`, yields (its
/// "work") and marks the item done.
fn consumer(id: usize, q: &Rc<Queue<u32>>, log: &Rc<RefCell<Vec<(usize, u32)>>>) -> Task<()> {
    let (q, log) = (q.clone(), log.clone());
    ferroloop::spawn(async move {
        loop {
            let item = q.get().await.expect("never shut down");
            log.borrow_mut().push((id, item));
            ferroloop::yield_now().await;
            q.task_done().expect("one task_done per get");
        }
    })
}

#[test]
fn producer_three_consumers_join_then_cancel() {
    let log = ferroloop::run(async {
        let q = Rc::new(Queue::new(5));
        let log = Rc::new(RefCell::new(Vec::new()));
        let consumers: Vec<Task<()>> = (0..3).map(|id| consumer(id, &q, &log)).collect();

        let producer = {
            let q = q.clone();
            ferroloop::spawn(async move {
                for n in 0..300 {
                    q.put(n).await.expect("never shut down");
                    assert!(q.qsize() <= 5, "put must wait while full");
                }
            })
        };
        producer.await.expect("producer finishes");
        ferroloop::timeout(Duration::from_secs(10), q.join())
            .await
            .expect("join returns once every item is done");
        assert_eq!(q.unfinished_tasks(), 0);
        assert!(q.empty());

        for c in &consumers {
            assert!(
                c.cancel(),
                "consumers loop forever, so they are still running"
            );
        }
        for c in consumers {
            assert!(matches!(c.await, Err(JoinError::Cancelled)));
        }
        assert!(q.task_done().is_err(), "all items already marked done");
        Rc::try_unwrap(log).expect("consumers dropped").into_inner()
    });

    let mut items: Vec<u32> = log.iter().map(|&(_, item)| item).collect();
    items.sort_unstable();
    assert_eq!(
        items,
        (0..300).collect::<Vec<_>>(),
        "every item exactly once"
    );
    for id in 0..3 {
        let n = log.iter().filter(|&&(c, _)| c == id).count();
        assert!(
            n > 0,
            "consumer {id} got no item: getters are not served fairly"
        );
    }
}

#[test]
fn cancelling_a_woken_consumer_does_not_lose_the_item() {
    ferroloop::run(async {
        let q = Rc::new(Queue::new(0));
        let log = Rc::new(RefCell::new(Vec::new()));
        let consumers: Vec<Task<()>> = (0..3).map(|id| consumer(id, &q, &log)).collect();
        // Let all three block in get().
        for _ in 0..3 {
            ferroloop::yield_now().await;
        }
        // The item wakes consumer 0, which is cancelled before it runs: its wakeup must go to
        // consumer 1, or join() would hang.
        q.put_nowait(42).expect("unbounded");
        assert!(consumers[0].cancel());
        ferroloop::timeout(Duration::from_secs(5), q.join())
            .await
            .expect("the item reached another consumer");
        assert_eq!(*log.borrow(), vec![(1, 42)]);
        for c in &consumers[1..] {
            c.cancel();
        }
        for c in consumers {
            assert!(matches!(c.await, Err(JoinError::Cancelled)));
        }
    });
}

#[test]
fn consumers_end_when_the_queue_is_shut_down() {
    // Python 3.13's idiom: no cancellation, the consumers see QueueShutDown once the queue
    // is drained
    let (done, sum) = ferroloop::run(async {
        let q = Rc::new(Queue::new(3));
        let consumers: Vec<Task<u32>> = (0..3)
            .map(|_| {
                let q = q.clone();
                ferroloop::spawn(async move {
                    let mut sum = 0;
                    while let Ok(item) = q.get().await {
                        sum += item;
                        ferroloop::yield_now().await;
                    }
                    sum
                })
            })
            .collect();
        for n in 1..=100 {
            q.put(n).await.expect("not shut down yet");
        }
        q.shutdown(false);
        assert!(q.put(0).await.is_err(), "a put after shutdown is refused");
        let mut total = 0;
        for c in consumers {
            total += c.await.expect("consumer");
        }
        (q.empty(), total)
    });
    assert!(done);
    assert_eq!(sum, 5050);
}
