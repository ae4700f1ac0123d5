//! Mirrors the seeds' programs mixing blocking and async code (seed 003_424c6018414abe8e,
//! "concurrent.futures与asyncio.Future" and 异步和非异步混合案例):
//! - `await loop.run_in_executor(None, blocking_function)`: `spawn_blocking`, here four
//!   `time.sleep`-style 100 ms calls at once, while the loop keeps running its tasks;
//! - synchronous code in another thread calling a coroutine on the running loop
//!   (`asyncio.run_coroutine_threadsafe(coro, loop).result()`): `LoopHandle::spawn` /
//!   `spawn_with` and the blocking `RemoteTask::join`;
//! - the seed's `sync_function`: a thread with its own new loop (`new_event_loop` +
//!   `run_until_complete`): `ferroloop::run` on that thread.
//!
//! Checks: the four blocking calls overlap (~100 ms, not 400), run off the loop thread, and
//! the loop's timers kept firing meanwhile; the cross-thread results; the second loop's.

use std::cell::Cell;
use std::rc::Rc;
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

const BLOCK: Duration = Duration::from_millis(100);

/// The seed's `blocking_function`: `time.sleep` blocks its whole thread.
fn blocking_function(i: u64) -> (u64, ThreadId) {
    thread::sleep(BLOCK);
    (i * i, thread::current().id())
}

/// The seed's `async_function`: `await asyncio.sleep(1)`, then a result.
async fn async_function() -> String {
    ferroloop::sleep(Duration::from_millis(20)).await;
    "the async function's result".to_string()
}

fn main() {
    let loop_thread = thread::current().id();
    let (pool_time, ticks, squares, from_thread) = ferroloop::run(async move {
        // a ticker on the loop: it must keep ticking while the pool threads block
        let ticks = Rc::new(Cell::new(0u32));
        let ticker = ferroloop::spawn({
            let ticks = ticks.clone();
            async move {
                let mut every = ferroloop::interval(Duration::from_millis(10));
                loop {
                    every.tick().await;
                    ticks.set(ticks.get() + 1);
                }
            }
        });

        // result = await loop.run_in_executor(None, blocking_function), four at once
        let t0 = Instant::now();
        let jobs = (1..=4).map(|i| ferroloop::spawn_blocking(move || blocking_function(i)));
        let results = ferroloop::gather(jobs)
            .await
            .expect("no blocking call panicked");
        let pool_time = t0.elapsed();
        assert!(ticker.cancel());
        assert!(
            results.iter().all(|&(_, thread)| thread != loop_thread),
            "ran on the pool, not the loop thread"
        );
        let squares: Vec<u64> = results.iter().map(|&(sq, _)| sq).collect();

        // run_coroutine_threadsafe: a plain thread submits coroutines to this loop and blocks
        // on their results. `spawn` takes a `Send` future; `spawn_with` builds a `!Send` one
        // (ferroloop's timers are `!Send`) on the loop thread.
        let handle = ferroloop::handle();
        let other = thread::spawn(move || {
            let answer = handle
                .spawn(async { 6 * 7 })
                .join()
                .expect("the Send coroutine ran");
            let text = handle
                .spawn_with(async_function)
                .join()
                .expect("the coroutine ran");
            (answer, text)
        });
        // wait for that thread without blocking the loop, which must run its coroutines
        let from_thread =
            ferroloop::spawn_blocking(move || other.join().expect("the thread did not panic"))
                .await
                .expect("joined");
        (pool_time, ticks.get(), squares, from_thread)
    });

    // the seed's sync_function: another thread, its own loop, run until complete
    let own_loop = thread::spawn(|| ferroloop::run(async_function()))
        .join()
        .expect("the thread's loop");

    assert_eq!(squares, [1, 4, 9, 16]);
    assert!(pool_time >= BLOCK, "{pool_time:?}");
    assert!(
        pool_time < BLOCK * 5 / 2,
        "the blocking calls did not overlap: {pool_time:?}"
    );
    assert!(
        ticks >= 4,
        "the loop stalled while the pool blocked: {ticks} ticks of 10 ms in {pool_time:?}"
    );
    assert_eq!(from_thread, (42, "the async function's result".to_string()));
    assert_eq!(own_loop, "the async function's result");
    println!(
        "blocking_pool: 4 x {} ms blocking calls in {:.0} ms ({ticks} loop ticks meanwhile); \
         run_coroutine_threadsafe from a thread -> {:?}; a second loop on a thread -> ok",
        BLOCK.as_millis(),
        pool_time.as_secs_f64() * 1e3,
        from_thread.0
    );
}
