//! The seeds' executor programs: blocking functions run on a thread pool
//! (`run_in_executor`) concurrently with the loop, and a coroutine started on the loop from
//! synchronous code in another thread (`run_coroutine_threadsafe`). Checks that four
//! 100 ms blocking calls overlap, that they ran off the loop thread, and the cross-thread
//! result.

use std::time::{Duration, Instant};

fn blocking_work(i: u64) -> (u64, std::thread::ThreadId) {
    std::thread::sleep(Duration::from_millis(100)); // time.sleep: blocks its thread
    (i * i, std::thread::current().id())
}

fn main() {
    let lp = ferroloop::Loop::new().expect("a loop");
    let loop_thread = std::thread::current().id();
    let handle = lp.handle();

    // synchronous code in another thread submits a coroutine to the loop and waits for it
    let other = std::thread::spawn(move || {
        let remote = handle.spawn_with(|| async {
            ferroloop::sleep(Duration::from_millis(20)).await;
            "computed on the loop"
        });
        remote.join().expect("the coroutine finished")
    });

    let t0 = Instant::now();
    let results = lp.block_on(async {
        let jobs = (1..=4).map(|i| ferroloop::spawn_blocking(move || blocking_work(i)));
        ferroloop::gather(jobs).await.expect("no job panicked")
    });
    let took = t0.elapsed();
    assert_eq!(results.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 4, 9, 16]);
    assert!(results.iter().all(|r| r.1 != loop_thread), "ran on the pool, not the loop thread");
    assert!(took < Duration::from_millis(350), "the blocking calls did not overlap: {took:?}");

    // keep the loop running until the other thread's coroutine is done
    lp.block_on(async {
        while !other.is_finished() {
            ferroloop::sleep(Duration::from_millis(5)).await;
        }
    });
    let from_thread = other.join().expect("thread");
    assert_eq!(from_thread, "computed on the loop");
    println!(
        "blocking_pool: 4 x 100 ms blocking calls in {:.0} ms; cross-thread coroutine: {from_thread:?}",
        took.as_secs_f64() * 1e3
    );
}
