//! Mirrors the seeds' first programs: `asyncio.gather(task("A", 2), task("B", 1),
//! task("C", 3))` and the background `create_task` (seed 000_f882552a653cc3a6, 并发运行多个协程
//! / asyncio.create_task), and `[create_task(foo(i)) for i in range(3)]` + `gather(*tasks)`
//! (seed 001_33d0b892648d44b0). One second of the seeds is 100 ms here.
//!
//! Checks: the exact order of the start/finish lines (every coroutine starts before any
//! finishes, then they finish by sleep time), the results in argument order, and that each
//! part takes the longest sleep, not the sum of the sleeps.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// One second of the seeds.
const UNIT: Duration = Duration::from_millis(100);
/// Scheduling slack allowed above the ideal time of each part.
const SLACK: Duration = Duration::from_millis(150);

type Log = Rc<RefCell<Vec<String>>>;

/// The seed's `async def task(name, duration)`.
async fn task(log: Log, name: &'static str, units: u32) -> Result<&'static str, String> {
    log.borrow_mut().push(format!("Task {name} started"));
    ferroloop::sleep(UNIT * units).await; // asyncio.sleep: the loop runs the others meanwhile
    log.borrow_mut().push(format!("Task {name} finished"));
    Ok(name)
}

/// The seed's `async def foo(i)`.
async fn foo(log: Log, i: u32) -> u32 {
    log.borrow_mut().push(format!("Task {i} start"));
    ferroloop::sleep(UNIT).await;
    log.borrow_mut().push(format!("Task {i} end"));
    i
}

/// Run `part` and check that it took `ideal` (within `SLACK`).
async fn timed<F: std::future::Future>(what: &str, ideal: Duration, part: F) -> F::Output {
    let t0 = Instant::now();
    let out = part.await;
    let took = t0.elapsed();
    assert!(
        took >= ideal,
        "{what}: {took:?} is shorter than the longest sleep {ideal:?}"
    );
    assert!(
        took < ideal + SLACK,
        "{what}: {took:?}, the coroutines did not overlap (ideal {ideal:?})"
    );
    out
}

fn main() {
    let log: Log = Rc::default();
    let t0 = Instant::now();
    let (gathered, background, results) = ferroloop::run({
        let log = log.clone();
        async move {
            // 1. await asyncio.gather(task("A", 2), task("B", 1), task("C", 3)): 3 units, not 6
            let gathered = timed("gather", UNIT * 3, async {
                ferroloop::gather([
                    task(log.clone(), "A", 2),
                    task(log.clone(), "B", 1),
                    task(log.clone(), "C", 3),
                ])
                .await
                .expect("no coroutine failed")
            })
            .await;
            assert_eq!(
                log.borrow_mut().drain(..).collect::<Vec<_>>(),
                [
                    "Task A started",
                    "Task B started",
                    "Task C started",
                    "Task B finished",
                    "Task A finished",
                    "Task C finished",
                ]
            );

            // 2. task = create_task(task("Background", 2)); do something else for 1 unit;
            //    await task: 2 units in all, the task ran while main slept
            let background = timed("create_task", UNIT * 2, async {
                let bg = ferroloop::spawn(task(log.clone(), "Background", 2));
                log.borrow_mut().push("Doing something else...".into());
                ferroloop::sleep(UNIT).await;
                log.borrow_mut()
                    .push("Waiting for task to finish...".into());
                assert!(!bg.is_finished());
                bg.await.expect("the task ran").expect("the task succeeded")
            })
            .await;
            assert_eq!(
                log.borrow_mut().drain(..).collect::<Vec<_>>(),
                [
                    "Doing something else...",
                    "Task Background started",
                    "Waiting for task to finish...",
                    "Task Background finished",
                ]
            );

            // 3. tasks = [create_task(foo(i)) for i in range(3)]; await gather(*tasks)
            let results = timed("gather of tasks", UNIT, async {
                let tasks: Vec<_> = (0..3)
                    .map(|i| ferroloop::spawn(foo(log.clone(), i)))
                    .collect();
                ferroloop::gather(tasks).await.expect("no task failed")
            })
            .await;
            assert_eq!(
                log.borrow_mut().drain(..).collect::<Vec<_>>(),
                [
                    "Task 0 start",
                    "Task 1 start",
                    "Task 2 start",
                    "Task 0 end",
                    "Task 1 end",
                    "Task 2 end"
                ]
            );
            (gathered, background, results)
        }
    });
    let took = t0.elapsed();
    assert_eq!(gathered, ["A", "B", "C"], "gather keeps the argument order");
    assert_eq!(background, "Background");
    assert_eq!(results, [0, 1, 2]);
    println!(
        "tasks_gather: gather(A 2, B 1, C 3) + create_task(Background 2) + gather(3 tasks) in {:.0} ms \
         (6 units of {} ms; the sleeps add up to 12)",
        took.as_secs_f64() * 1e3,
        UNIT.as_millis()
    );
}
