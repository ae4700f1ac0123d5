//! The seeds' first program: several coroutines that each "work" (sleep) a different time,
//! run concurrently with `create_task` and `gather`; the whole takes the longest one's time,
//! not the sum. Checks the results (in order), the order of completion and the total time.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

async fn work(name: &'static str, seconds: f64, finished: Rc<RefCell<Vec<&'static str>>>) -> Result<String, String> {
    ferroloop::sleep(Duration::from_secs_f64(seconds)).await;
    finished.borrow_mut().push(name);
    Ok(format!("{name} done after {seconds}s"))
}

fn main() {
    let finished = Rc::new(RefCell::new(Vec::new()));
    let t0 = Instant::now();
    let results = ferroloop::run({
        let finished = finished.clone();
        async move {
            // a task started on its own (asyncio.create_task), then three more gathered
            let first = ferroloop::spawn(work("A", 0.20, finished.clone()));
            let rest = ferroloop::gather(vec![
                work("B", 0.10, finished.clone()),
                work("C", 0.30, finished.clone()),
                work("D", 0.05, finished.clone()),
            ])
            .await
            .expect("no coroutine failed");
            let a = first.await.expect("task A finished").expect("A succeeded");
            let mut all = vec![a];
            all.extend(rest);
            all
        }
    });
    let took = t0.elapsed();
    assert_eq!(
        results,
        ["A done after 0.2s", "B done after 0.1s", "C done after 0.3s", "D done after 0.05s"]
    );
    assert_eq!(*finished.borrow(), ["D", "B", "A", "C"], "completion follows the sleep times");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(550), "ran one after another: {took:?}");
    println!("tasks_gather: 4 coroutines concurrently in {:.0} ms (sum of sleeps 650 ms)", took.as_secs_f64() * 1e3);
}
