//! `LoopPool`: tasks spread over the loops (least loaded), `!Send` work through
//! `spawn_with`, a server on every loop with `SO_REUSEPORT`, graceful shutdown (signal,
//! grace, cancellation on each loop's own thread), drop, and panics.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferroloop::{JoinError, LoopPool, TcpStream};

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("?").to_owned()
}

#[test]
fn spawn_spreads_over_every_loop() {
    let pool = LoopPool::with_threads(3).unwrap();
    assert_eq!(pool.len(), 3);
    // Send futures that stay unfinished until released: the least-loaded choice spreads them
    let release = Arc::new(ferroloop::sync::Notify::new());
    let tasks: Vec<_> = (0..9)
        .map(|_| {
            let release = release.clone();
            pool.spawn(async move {
                release.notified().await;
                thread_name()
            })
        })
        .collect();
    // every loop holds 3 (each pick went to a least-loaded loop)
    let start = Instant::now();
    while pool.loads().iter().sum::<usize>() < 9 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(pool.loads(), vec![3, 3, 3]);
    release.notify_waiters();
    // tasks not yet waiting when notify_waiters ran: notify again until all are done
    let names: HashSet<String> = tasks
        .into_iter()
        .map(|t| {
            while !t.is_finished() {
                release.notify_waiters();
                std::thread::sleep(Duration::from_millis(1));
            }
            t.join().unwrap()
        })
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("ferroloop-pool-")));
    assert_eq!(pool.loads(), vec![0, 0, 0]);
    assert_eq!(pool.shutdown(Duration::from_secs(1)), 0);
}

#[test]
fn spawn_with_runs_not_send_futures_and_each_loop_runs_in_parallel() {
    let pool = LoopPool::with_threads(2).unwrap();
    let spans = Arc::new(Mutex::new(Vec::new()));
    let tasks = pool.spawn_on_each({
        let spans = spans.clone();
        move || {
            let spans = spans.clone();
            async move {
                let local = std::rc::Rc::new(thread_name()); // !Send, fine here
                let start = Instant::now();
                // busy on the CPU, and a loop timer
                while start.elapsed() < Duration::from_millis(100) {
                    std::hint::spin_loop();
                }
                ferroloop::sleep(Duration::from_millis(1)).await;
                spans.lock().unwrap().push((start, Instant::now()));
                (*local).clone()
            }
        }
    });
    let names: HashSet<String> = tasks.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(names.len(), 2);
    let spans = spans.lock().unwrap();
    let ((a0, a1), (b0, b1)) = (spans[0], spans[1]);
    assert!(a0 < b1 && b0 < a1, "the two loops' tasks did not overlap");
}

#[test]
fn serve_tcp_listens_on_every_loop() {
    let pool = LoopPool::with_threads(2).unwrap();
    let per_loop: Arc<Vec<AtomicUsize>> = Arc::new((0..2).map(|_| AtomicUsize::new(0)).collect());
    let stop = pool.shutdown_signal();
    let counts = per_loop.clone();
    let (addr, servers) = pool
        .serve_tcp("127.0.0.1:0".parse().unwrap(), move |listener| {
            let (stop, counts) = (stop.clone(), counts.clone());
            async move {
                let index: usize = thread_name().rsplit('-').next().unwrap().parse().unwrap();
                let accept = async {
                    loop {
                        let (conn, _) = listener.accept().await.unwrap();
                        counts[index].fetch_add(1, Ordering::Relaxed);
                        ferroloop::spawn(async move {
                            let mut buf = [0u8; 64];
                            loop {
                                let n = conn.read(&mut buf).await.unwrap_or(0);
                                if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        });
                    }
                };
                ferroloop::select(Box::pin(accept), Box::pin(stop.wait())).await;
                "stopped"
            }
        })
        .unwrap();
    assert_ne!(addr.port(), 0);
    // 64 clients from this thread's own loop
    ferroloop::run(async move {
        let mut clients = Vec::new();
        for i in 0..64u32 {
            clients.push(ferroloop::spawn(async move {
                let c = TcpStream::connect(addr).await.unwrap();
                let msg = format!("client {i}");
                c.write_all(msg.as_bytes()).await.unwrap();
                let mut buf = vec![0u8; msg.len()];
                c.read_exact(&mut buf).await.unwrap();
                assert_eq!(buf, msg.as_bytes());
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
    });
    let counts: Vec<usize> = per_loop.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    assert_eq!(counts.iter().sum::<usize>(), 64);
    assert!(
        counts.iter().all(|&c| c > 0),
        "one loop took every connection: {counts:?}"
    );
    // graceful: the servers see the signal and end within the grace period
    let start = Instant::now();
    assert_eq!(pool.shutdown(Duration::from_secs(5)), 0);
    assert!(start.elapsed() < Duration::from_secs(2));
    for s in servers {
        assert_eq!(s.join().unwrap(), "stopped");
    }
}

/// Records the thread its owner was dropped on.
struct DropProbe(Arc<Mutex<Option<String>>>);

impl Drop for DropProbe {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = Some(thread_name());
    }
}

#[test]
fn shutdown_cancels_what_outlives_the_grace_on_its_own_thread() {
    let pool = LoopPool::with_threads(2).unwrap();
    let dropped_on = Arc::new(Mutex::new(None));
    let probe_slot = dropped_on.clone();
    let stuck = pool.spawn_with(move || async move {
        let _probe = DropProbe(probe_slot);
        std::future::pending::<()>().await;
    });
    let quick = pool.spawn(async { 1 });
    assert_eq!(quick.join().unwrap(), 1);
    let start = Instant::now();
    assert_eq!(pool.shutdown(Duration::from_millis(100)), 1);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(matches!(stuck.join(), Err(JoinError::Cancelled)));
    let on = dropped_on.lock().unwrap().clone().unwrap();
    assert!(on.starts_with("ferroloop-pool-"), "dropped on {on}");
}

#[test]
fn drop_stops_the_loops_and_panics_stay_in_their_task() {
    let pool = LoopPool::with_threads(2).unwrap();
    let boom = pool.spawn(async { panic!("boom in a pool task") });
    let err = boom.join().unwrap_err();
    assert!(matches!(err, JoinError::Panic(_)));
    // the loops carry on
    let after: Vec<_> = (0..4).map(|i| pool.spawn(async move { i })).collect();
    assert_eq!(after.into_iter().map(|t| t.join().unwrap()).sum::<i32>(), 6);
    let forever = pool.spawn(std::future::pending::<()>());
    let signal = pool.shutdown_signal();
    assert!(!signal.is_shutdown());
    drop(pool);
    assert!(matches!(forever.join(), Err(JoinError::Cancelled)));
    // the signal of a dropped pool resolves
    ferroloop::run(signal.wait());
}
