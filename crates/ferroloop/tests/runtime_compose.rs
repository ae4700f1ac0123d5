//! gather, select, the blocking pool, oneshot channels and signals.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ferroloop::signal::Signal;
use ferroloop::{gather, oneshot, run, select, sleep, spawn, spawn_blocking, Either};

#[test]
fn gather_keeps_order_whatever_the_finishing_order() {
    let v = run(gather((0..50u64).map(|i| async move {
        sleep(Duration::from_millis(50 - i)).await;
        Ok::<_, String>(i)
    })));
    assert_eq!(v.unwrap(), (0..50).collect::<Vec<_>>());
}

#[test]
fn gather_first_error_wins_and_cancels_the_rest() {
    let finished = Rc::new(Cell::new(0));
    let f2 = finished.clone();
    let r = run(async move {
        let futs = (0..5u64).map(|i| {
            let f = f2.clone();
            async move {
                sleep(Duration::from_millis(if i == 2 { 5 } else { 50 + i })).await;
                if i == 2 {
                    return Err(format!("child {i} failed"));
                }
                f.set(f.get() + 1);
                Ok(i)
            }
        });
        let r = gather(futs).await;
        sleep(Duration::from_millis(100)).await;
        r
    });
    assert_eq!(r, Err("child 2 failed".to_string()));
    assert_eq!(finished.get(), 0, "the other children were dropped");
}

#[test]
fn gather_of_tasks_and_of_nothing() {
    let r = run(async {
        let tasks: Vec<_> = (0..1000).map(|i| spawn(async move { i })).collect();
        gather(tasks).await
    });
    assert_eq!(r.unwrap().len(), 1000);
    let empty: Result<Vec<u8>, ()> = run(gather(Vec::<std::future::Ready<Result<u8, ()>>>::new()));
    assert_eq!(empty, Ok(vec![]));
}

#[test]
fn select_takes_the_first_and_drops_the_other() {
    let r = run(async {
        let t0 = Instant::now();
        let r = select(sleep(Duration::from_secs(10)), async {
            sleep(Duration::from_millis(5)).await;
            "fast"
        })
        .await;
        assert!(t0.elapsed() < Duration::from_secs(1));
        r
    });
    assert_eq!(r, Either::Right("fast"));
}

#[test]
fn spawn_blocking_runs_off_the_loop_thread_concurrently() {
    let loop_thread = std::thread::current().id();
    let t0 = Instant::now();
    let ids = run(async move {
        let jobs = (0..4).map(|_| {
            spawn_blocking(move || {
                std::thread::sleep(Duration::from_millis(50));
                std::thread::current().id()
            })
        });
        gather(jobs).await.unwrap()
    });
    assert!(ids.iter().all(|&id| id != loop_thread));
    assert!(
        t0.elapsed() < Duration::from_millis(190),
        "ran one after another: {:?}",
        t0.elapsed()
    );
}

#[test]
fn spawn_blocking_reports_a_panic() {
    let r = run(spawn_blocking(|| -> u8 { panic!("in the pool") }));
    let e = r.unwrap_err();
    assert!(e.is_panic());
    assert_eq!(e.to_string(), "task panicked: in the pool");
}

#[test]
fn oneshot_across_threads_and_a_dropped_sender() {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(5));
        tx.send(String::from("from a thread")).unwrap();
    });
    assert_eq!(run(rx).unwrap(), "from a thread");
    let (tx, rx) = oneshot::channel::<u8>();
    drop(tx);
    assert_eq!(run(rx), Err(oneshot::RecvError));
    let (tx, rx) = oneshot::channel::<u8>();
    drop(rx);
    assert!(tx.is_closed());
    assert_eq!(tx.send(1), Err(1));
}

#[test]
fn signal_delivery_wakes_the_listener() {
    let got = run(async {
        let mut s = Signal::new(libc_sigusr1()).unwrap();
        let pid = std::process::id();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            std::process::Command::new("kill")
                .args(["-USR1", &pid.to_string()])
                .status()
                .unwrap();
        });
        ferroloop::timeout(Duration::from_secs(5), s.recv()).await
    });
    assert!(got.is_ok(), "SIGUSR1 was not seen");
}

#[test]
fn signal_rejects_uncatchable_and_invalid_numbers() {
    assert_eq!(
        Signal::new(9).err().unwrap().kind(),
        std::io::ErrorKind::InvalidInput
    );
    assert_eq!(
        Signal::new(0).err().unwrap().kind(),
        std::io::ErrorKind::InvalidInput
    );
    assert_eq!(
        Signal::new(1000).err().unwrap().kind(),
        std::io::ErrorKind::InvalidInput
    );
}

fn libc_sigusr1() -> i32 {
    10 // SIGUSR1 on Linux
}
