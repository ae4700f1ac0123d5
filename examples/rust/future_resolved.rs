//! The seeds' `Future` program: one task awaits a future that another task resolves
//! (`loop.create_future()` + `fut.set_result`), and a done-callback-like continuation runs
//! when it is resolved. In Rust the future is a `oneshot` channel: the sender is the
//! resolving side, the receiver the awaitable. Checks the value, the order of events and
//! that an abandoned future (sender dropped) is reported, not hung on.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use ferroloop::oneshot;

fn main() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let value = ferroloop::run({
        let log = log.clone();
        async move {
            let (resolve, fut) = oneshot::channel::<String>();
            // the task that resolves the future after some work
            let resolver = ferroloop::spawn({
                let log = log.clone();
                async move {
                    log.borrow_mut().push("resolver: working");
                    ferroloop::sleep(Duration::from_millis(50)).await;
                    log.borrow_mut().push("resolver: set_result");
                    resolve.send("Future is done!".to_string()).expect("someone awaits");
                }
            });
            // the "done callback": a continuation task awaiting the same result
            let waiter = ferroloop::spawn({
                let log = log.clone();
                async move {
                    let v = fut.await.expect("resolved");
                    log.borrow_mut().push("callback: got the result");
                    v
                }
            });
            resolver.await.expect("resolver finished");
            let v = waiter.await.expect("waiter finished");
            // a future whose resolver gives up: awaiting it reports the error
            let (abandoned, never) = oneshot::channel::<u8>();
            ferroloop::spawn(async move { drop(abandoned) }).detach();
            assert_eq!(never.await, Err(oneshot::RecvError));
            v
        }
    });
    assert_eq!(value, "Future is done!");
    assert_eq!(*log.borrow(), ["resolver: working", "resolver: set_result", "callback: got the result"]);
    println!("future_resolved: {value:?} after {} steps", log.borrow().len());
}
