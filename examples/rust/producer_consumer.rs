//! The seeds' queue program: one producer puts items on an `asyncio.Queue`, three
//! consumers take them and call `task_done`; the producer waits with `queue.join()`, then
//! the consumers (still waiting in `get()`) are cancelled. Checks that every item was
//! consumed exactly once and that the cancelled consumers' futures were dropped.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use ferroloop::sync::Queue;

const ITEMS: u32 = 30;

fn main() {
    let consumed = Rc::new(RefCell::new(Vec::new()));
    let cancelled = ferroloop::run({
        let consumed = consumed.clone();
        async move {
            let queue: Rc<Queue<u32>> = Rc::new(Queue::new(5)); // bounded: the producer waits
            let consumers: Vec<_> = (0..3)
                .map(|id| {
                    let (queue, consumed) = (queue.clone(), consumed.clone());
                    ferroloop::spawn(async move {
                        loop {
                            let item = queue.get().await;
                            ferroloop::sleep(Duration::from_millis(1 + u64::from(item % 3))).await;
                            consumed.borrow_mut().push((id, item));
                            queue.task_done().expect("one task_done per item");
                        }
                    })
                })
                .collect();
            for item in 0..ITEMS {
                queue.put(item).await;
            }
            queue.join().await; // every item processed
            for c in &consumers {
                assert!(c.cancel());
            }
            let mut cancelled = 0;
            for c in consumers {
                if c.await.err().is_some_and(|e| e.is_cancelled()) {
                    cancelled += 1;
                }
            }
            assert!(queue.empty());
            cancelled
        }
    });
    let mut items: Vec<u32> = consumed.borrow().iter().map(|&(_, item)| item).collect();
    items.sort_unstable();
    assert_eq!(items, (0..ITEMS).collect::<Vec<_>>(), "each item exactly once");
    let busy: std::collections::BTreeSet<u32> = consumed.borrow().iter().map(|&(id, _)| id).collect();
    assert_eq!(busy.len(), 3, "all three consumers worked");
    assert_eq!(cancelled, 3);
    println!("producer_consumer: {ITEMS} items through a Queue(5), 3 consumers, all cancelled at the end");
}
