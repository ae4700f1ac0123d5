//! Mirrors the seeds' `Future` program (seed 003_424c6018414abe8e, "Future对象"):
//! `future = asyncio.Future()`, `create_task(set_future_result(future))` which sleeps and
//! calls `future.set_result(...)`, and `result = await future` in main. In Rust the future
//! is a `oneshot` channel: the `Sender` is the resolving side (`set_result`), the
//! `Receiver` the awaitable. The seeds list `Task.done()`/`cancel()`; asyncio's
//! `task.add_done_callback(cb)` is here `spawn_with_done_callback`, a guard carried by the
//! task's future.
//!
//! Checks: the value and the order of events, that the future is not done before it is
//! resolved, that an abandoned future (sender dropped) reports an error instead of hanging,
//! and that done callbacks run once with the outcome, for a finished and a cancelled task.

use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ferroloop::{oneshot, Task};

const DELAY: Duration = Duration::from_millis(50);

type Log = Rc<RefCell<Vec<String>>>;

/// The seed's `async def set_future_result(future)`.
async fn set_future_result(log: Log, future: oneshot::Sender<String>) {
    ferroloop::sleep(DELAY).await;
    log.borrow_mut().push("resolver: set_result".into());
    future
        .send("the future's result".into())
        .expect("main is awaiting the future");
}

/// asyncio's `task.add_done_callback(cb)`: `cb` runs on the loop once the task is done, with
/// `Some(&value)` when it finished and `None` when it was cancelled (or panicked). The
/// callback rides in a guard owned by the task's future, so dropping that future (what
/// [`Task::cancel`] does) calls it too. Unlike asyncio, which schedules callbacks with
/// `call_soon`, it runs right when the task finishes or inside `cancel()`.
fn spawn_with_done_callback<F, C>(future: F, callback: C) -> Task<F::Output>
where
    F: Future + 'static,
    C: FnOnce(Option<&F::Output>) + 'static,
{
    struct OnDone<T, C: FnOnce(Option<&T>)>(Option<C>, PhantomData<fn(&T)>);
    impl<T, C: FnOnce(Option<&T>)> Drop for OnDone<T, C> {
        fn drop(&mut self) {
            if let Some(callback) = self.0.take() {
                callback(None); // the future was dropped before it finished
            }
        }
    }
    let mut guard = OnDone(Some(callback), PhantomData);
    ferroloop::spawn(async move {
        let out = future.await;
        if let Some(callback) = guard.0.take() {
            callback(Some(&out));
        }
        out
    })
}

fn main() {
    let log: Log = Rc::default();
    let t0 = Instant::now();
    let result = ferroloop::run({
        let log = log.clone();
        async move {
            // future = asyncio.Future(); asyncio.create_task(set_future_result(future))
            let (resolve, mut future) = oneshot::channel::<String>();
            let setter = spawn_with_done_callback(set_future_result(log.clone(), resolve), {
                let log = log.clone();
                move |outcome| {
                    log.borrow_mut().push(format!(
                        "done callback: setter finished={}",
                        outcome.is_some()
                    ))
                }
            });
            assert!(
                future.try_recv().is_none(),
                "future.done() is False before set_result"
            );

            // result = await future
            let result = future.await.expect("resolved");
            log.borrow_mut().push(format!("main: got {result:?}"));
            setter.await.expect("the setter finished");

            // a done callback also runs when the task is cancelled (CancelledError)
            let sleeper = spawn_with_done_callback(ferroloop::sleep(Duration::from_secs(3600)), {
                let log = log.clone();
                move |outcome| {
                    log.borrow_mut().push(format!(
                        "done callback: sleeper finished={}",
                        outcome.is_some()
                    ))
                }
            });
            ferroloop::yield_now().await; // the sleeper starts sleeping
            log.borrow_mut().push("main: cancel".into());
            assert!(sleeper.cancel(), "not finished yet");
            assert!(sleeper.await.is_err_and(|e| e.is_cancelled()));

            // a future whose resolving side gives up: awaiting it reports RecvError
            let (abandoned, never) = oneshot::channel::<u8>();
            ferroloop::spawn(async move { drop(abandoned) }).detach();
            assert_eq!(never.await, Err(oneshot::RecvError));
            result
        }
    });
    let took = t0.elapsed();
    assert_eq!(
        *log.borrow(),
        [
            "resolver: set_result",
            "done callback: setter finished=true",
            "main: got \"the future's result\"",
            "main: cancel",
            "done callback: sleeper finished=false",
        ]
    );
    assert_eq!(result, "the future's result");
    assert!(
        took >= DELAY && took < DELAY + Duration::from_millis(200),
        "{took:?}"
    );
    println!(
        "future_resolved: {result:?} set by another task after {:.0} ms; {} events in order",
        took.as_secs_f64() * 1e3,
        log.borrow().len()
    );
}
