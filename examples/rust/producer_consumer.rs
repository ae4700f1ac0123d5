//! Mirrors the seeds' queue program (seed 003_424c6018414abe8e, 实时数据处理):
//! `queue = asyncio.Queue(maxsize=10)`, one `producer(queue)` task putting items, three
//! `consumer(queue)` tasks that `get()`, work (sleep) and call `task_done()`, then the
//! tasks are cancelled. The seed cancels after a fixed `sleep(10)`; here the end is
//! `queue.join()` (every item processed), then the consumers, parked in `get()`, are
//! cancelled with `Task::cancel` and awaited (`CancelledError`).
//!
//! Checks: every item consumed exactly once, all three consumers worked, the bounded queue
//! never held more than `maxsize`, each cancelled consumer's future was dropped (a guard in
//! it counts drops), and the consumers worked concurrently.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ferroloop::sync::Queue;

const ITEMS: u32 = 30;
const CONSUMERS: usize = 3;
const MAXSIZE: usize = 10;
/// A consumer's work per item (the seed's `asyncio.sleep(0.1)`).
const WORK: Duration = Duration::from_millis(10);

/// Counts the consumer futures that were dropped (cancelled) rather than left running.
struct DropGuard(Rc<Cell<usize>>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// The seed's `producer(queue)`: puts `ITEMS` items, waiting when the queue is full.
async fn producer(queue: Rc<Queue<u32>>, high_water: Rc<Cell<usize>>) {
    for item in 0..ITEMS {
        queue.put(item).await.expect("the queue is never shut down");
        high_water.set(high_water.get().max(queue.qsize()));
        if item % 10 == 9 {
            ferroloop::sleep(Duration::from_millis(5)).await; // data arrives in bursts
        }
    }
}

/// The seed's `consumer(queue)`: an endless loop, ended only by cancellation.
async fn consumer(
    id: usize,
    queue: Rc<Queue<u32>>,
    consumed: Rc<RefCell<Vec<(usize, u32)>>>,
    dropped: Rc<Cell<usize>>,
) {
    let _guard = DropGuard(dropped);
    loop {
        let item = queue.get().await.expect("the queue is never shut down");
        ferroloop::sleep(WORK).await; // process it
        consumed.borrow_mut().push((id, item));
        queue.task_done().expect("one task_done per get");
    }
}

fn main() {
    let consumed = Rc::new(RefCell::new(Vec::new()));
    let dropped = Rc::new(Cell::new(0));
    let high_water = Rc::new(Cell::new(0));
    let t0 = Instant::now();
    let cancelled = ferroloop::run({
        let (consumed, dropped, high_water) =
            (consumed.clone(), dropped.clone(), high_water.clone());
        async move {
            let queue = Rc::new(Queue::new(MAXSIZE));
            let producer_task = ferroloop::spawn(producer(queue.clone(), high_water));
            let consumer_tasks: Vec<_> = (0..CONSUMERS)
                .map(|id| {
                    ferroloop::spawn(consumer(
                        id,
                        queue.clone(),
                        consumed.clone(),
                        dropped.clone(),
                    ))
                })
                .collect();

            producer_task.await.expect("the producer put every item");
            queue.join().await; // every item got its task_done
            assert!(queue.empty());
            assert_eq!(queue.unfinished_tasks(), 0);
            assert_eq!(
                dropped.get(),
                0,
                "the consumers are still running, parked in get()"
            );

            for task in &consumer_tasks {
                assert!(task.cancel(), "a consumer had finished on its own");
            }
            let mut cancelled = 0;
            for (i, task) in consumer_tasks.into_iter().enumerate() {
                match task.await {
                    Err(e) if e.is_cancelled() => cancelled += 1, // "consumer {i} cancelled"
                    other => panic!("consumer {i}: {other:?}"),
                }
            }
            cancelled
        }
    });
    let took = t0.elapsed();

    let consumed = consumed.borrow();
    let mut items: Vec<u32> = consumed.iter().map(|&(_, item)| item).collect();
    items.sort_unstable();
    assert_eq!(
        items,
        (0..ITEMS).collect::<Vec<_>>(),
        "each item consumed exactly once"
    );
    let busy: BTreeSet<usize> = consumed.iter().map(|&(id, _)| id).collect();
    assert_eq!(busy.len(), CONSUMERS, "all consumers worked");
    assert!(
        high_water.get() <= MAXSIZE,
        "the queue held {} > maxsize",
        high_water.get()
    );
    assert_eq!(
        high_water.get(),
        MAXSIZE,
        "the producer ran ahead until the queue was full"
    );
    assert_eq!(cancelled, CONSUMERS);
    assert_eq!(
        dropped.get(),
        CONSUMERS,
        "each cancelled consumer's future was dropped"
    );
    let sequential = WORK * ITEMS;
    assert!(
        took < sequential * 2 / 3,
        "consumers did not overlap: {took:?} (one at a time: {sequential:?})"
    );
    println!(
        "producer_consumer: {ITEMS} items through Queue(maxsize={MAXSIZE}) to {CONSUMERS} consumers in {:.0} ms, \
         each once; consumers cancelled after join()",
        took.as_secs_f64() * 1e3
    );
}
