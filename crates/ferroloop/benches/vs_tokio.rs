//! ferroloop's Rust runtime against tokio's current-thread runtime and smol (one thread),
//! interleaved in one run.
//!
//! `cargo bench -p ferroloop --bench vs_tokio -- [--rounds N] [--quick]`
//!
//! Each round runs every case once on each runtime, rotating which goes first; the table
//! shows the median time per operation and the paired per-round ratios tokio/ferroloop and
//! smol/ferroloop (median [min-max]; above 1 means ferroloop is faster). A fresh runtime per
//! measurement (smol: the thread's `LocalExecutor`, empty between measurements).

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[path = "common/smol_cases.rs"]
mod smol_cases;
use smol_cases::time_smol;

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn time_ferro<F: Future<Output = ()>>(f: impl FnOnce() -> F) -> Duration {
    let lp = ferroloop::Loop::new().expect("loop");
    let fut = f();
    let t0 = Instant::now();
    lp.block_on(fut);
    t0.elapsed()
}

fn time_tokio<F: Future<Output = ()>>(f: impl FnOnce() -> F) -> Duration {
    let rt = tokio_rt();
    let local = tokio::task::LocalSet::new();
    let fut = f();
    let t0 = Instant::now();
    local.block_on(&rt, fut);
    t0.elapsed()
}

// -- cases ----------------------------------------------------------------------------------

async fn ferro_spawn(n: usize) {
    let tasks: Vec<_> = (0..n).map(|i| ferroloop::spawn(async move { i })).collect();
    let mut sum = 0;
    for t in tasks {
        sum += t.await.expect("task");
    }
    assert_eq!(sum, n * (n - 1) / 2);
}

async fn tokio_spawn(n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::task::spawn_local(async move { i }))
        .collect();
    let mut sum = 0;
    for t in tasks {
        sum += t.await.expect("task");
    }
    assert_eq!(sum, n * (n - 1) / 2);
}

async fn ferro_yield(n: usize) {
    for _ in 0..n {
        ferroloop::yield_now().await;
    }
}

async fn tokio_yield(n: usize) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

/// n tasks each sleeping a distinct 0..10 ms, half of them cancelled by a timeout first.
async fn ferro_timers(n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            ferroloop::spawn(async move {
                let d = Duration::from_micros((i % 10_000) as u64);
                if i % 2 == 0 {
                    ferroloop::sleep(d).await;
                } else {
                    let r = ferroloop::timeout(
                        Duration::ZERO,
                        ferroloop::sleep(d + Duration::from_secs(1)),
                    )
                    .await;
                    assert!(r.is_err());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
}

async fn tokio_timers(n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            tokio::task::spawn_local(async move {
                let d = Duration::from_micros((i % 10_000) as u64);
                if i % 2 == 0 {
                    tokio::time::sleep(d).await;
                } else {
                    let r = tokio::time::timeout(
                        Duration::ZERO,
                        tokio::time::sleep(d + Duration::from_secs(1)),
                    )
                    .await;
                    assert!(r.is_err());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
}

/// Two tasks bat a value across two bounded channels of one slot, `n` round trips.
async fn ferro_ping_pong(n: usize) {
    use ferroloop::sync::mpsc;
    let (to_pong, mut ping_rx) = mpsc::channel::<usize>(1);
    let (to_ping, mut pong_rx) = mpsc::channel::<usize>(1);
    let pong = ferroloop::spawn(async move {
        while let Some(v) = ping_rx.recv().await {
            to_ping.send(v + 1).await.expect("ping is alive");
        }
    });
    let mut v = 0;
    for _ in 0..n {
        to_pong.send(v).await.expect("pong is alive");
        v = pong_rx.recv().await.expect("a reply");
    }
    assert_eq!(v, n);
    drop(to_pong);
    pong.await.expect("pong");
}

async fn tokio_ping_pong(n: usize) {
    use tokio::sync::mpsc;
    let (to_pong, mut ping_rx) = mpsc::channel::<usize>(1);
    let (to_ping, mut pong_rx) = mpsc::channel::<usize>(1);
    let pong = tokio::task::spawn_local(async move {
        while let Some(v) = ping_rx.recv().await {
            to_ping.send(v + 1).await.expect("ping is alive");
        }
    });
    let mut v = 0;
    for _ in 0..n {
        to_pong.send(v).await.expect("pong is alive");
        v = pong_rx.recv().await.expect("a reply");
    }
    assert_eq!(v, n);
    drop(to_pong);
    pong.await.expect("pong");
}

const FAN_OUT: usize = 8;

/// One sender, `FAN_OUT` receiving tasks, `n` values each (per value received).
async fn ferro_broadcast(n: usize) {
    use ferroloop::sync::broadcast;
    let (tx, _) = broadcast::channel::<usize>(1024);
    let tasks: Vec<_> = (0..FAN_OUT)
        .map(|_| {
            let mut rx = tx.subscribe();
            ferroloop::spawn(async move {
                let mut sum = 0;
                while let Ok(v) = rx.recv().await {
                    sum += v;
                }
                sum
            })
        })
        .collect();
    for v in 0..n {
        tx.send(v).expect("receivers");
        if v % 64 == 63 {
            ferroloop::yield_now().await;
        }
    }
    drop(tx);
    for t in tasks {
        assert_eq!(t.await.expect("task"), n * (n - 1) / 2);
    }
}

async fn tokio_broadcast(n: usize) {
    use tokio::sync::broadcast;
    let (tx, _) = broadcast::channel::<usize>(1024);
    let tasks: Vec<_> = (0..FAN_OUT)
        .map(|_| {
            let mut rx = tx.subscribe();
            tokio::task::spawn_local(async move {
                let mut sum = 0;
                while let Ok(v) = rx.recv().await {
                    sum += v;
                }
                sum
            })
        })
        .collect();
    for v in 0..n {
        tx.send(v).expect("receivers");
        if v % 64 == 63 {
            tokio::task::yield_now().await;
        }
    }
    drop(tx);
    for t in tasks {
        assert_eq!(t.await.expect("task"), n * (n - 1) / 2);
    }
}

/// `n` tasks asleep at once for 10 ms, then joined (per task).
async fn ferro_many_sleeps(n: usize) {
    let mut set = ferroloop::JoinSet::new();
    for _ in 0..n {
        set.spawn(ferroloop::sleep(Duration::from_millis(10)));
    }
    while let Some(r) = set.join_next().await {
        r.expect("task");
    }
}

async fn tokio_many_sleeps(n: usize) {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        set.spawn_local(tokio::time::sleep(Duration::from_millis(10)));
    }
    while let Some(r) = set.join_next().await {
        r.expect("task");
    }
}

/// A 30 s timeout pushed later and polled once per "request", as hyper's header-read
/// timeout is on a kept-alive connection (through `Timer::reset`).
async fn ferro_sleep_reset(n: usize) {
    use std::future::Future as _;
    let mut sleep = Box::pin(ferroloop::SendSleep::new(Duration::from_secs(30)));
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    for _ in 0..n {
        sleep
            .as_mut()
            .get_mut()
            .reset(Instant::now() + Duration::from_secs(30));
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
    }
}

async fn tokio_sleep_reset(n: usize) {
    use std::future::Future as _;
    let mut sleep = Box::pin(tokio::time::sleep(Duration::from_secs(30)));
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    for _ in 0..n {
        sleep
            .as_mut()
            .reset(tokio::time::Instant::now() + Duration::from_secs(30));
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
    }
}

const ECHO_CLIENTS: usize = 10;

/// 10 clients each sending `msgs` 1 KiB messages and reading each echo back.
async fn ferro_echo(msgs: usize) {
    let listener = ferroloop::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = ferroloop::spawn(async move {
        for _ in 0..ECHO_CLIENTS {
            let (s, _) = listener.accept().await.expect("accept");
            ferroloop::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = s.read(&mut buf).await.expect("read");
                    if n == 0 {
                        break;
                    }
                    s.write_all(&buf[..n]).await.expect("write");
                }
            })
            .detach();
        }
    });
    let clients: Vec<_> = (0..ECHO_CLIENTS)
        .map(|_| {
            ferroloop::spawn(async move {
                let c = ferroloop::TcpStream::connect(addr).await.expect("connect");
                let msg = vec![7u8; 1024];
                let mut back = vec![0u8; 1024];
                for _ in 0..msgs {
                    c.write_all(&msg).await.expect("write");
                    c.read_exact(&mut back).await.expect("read");
                }
            })
        })
        .collect();
    for c in clients {
        c.await.expect("client");
    }
    server.await.expect("server");
}

/// A spawned task as a boxed future, and a spawner that starts one at once and gives back
/// the future of its end (dropping that detaches the task).
type Job = std::pin::Pin<Box<dyn Future<Output = ()>>>;

fn spawn_tokio(job: Job) -> Job {
    let handle = tokio::task::spawn_local(job);
    Box::pin(async move { handle.await.expect("task") })
}

/// A task of the running ferroloop loop whose tokio I/O goes through `async_compat::Compat`.
fn spawn_compat(job: Job) -> Job {
    let task = ferroloop::spawn(async_compat::Compat::new(job));
    Box::pin(async move { task.await.expect("task") })
}

/// The echo on tokio's `TcpStream`, its tasks started by `spawn`.
async fn tokio_io_echo(msgs: usize, spawn: fn(Job) -> Job) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = spawn(Box::pin(async move {
        for _ in 0..ECHO_CLIENTS {
            let (mut s, _) = listener.accept().await.expect("accept");
            s.set_nodelay(true).expect("nodelay");
            drop(spawn(Box::pin(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = s.read(&mut buf).await.expect("read");
                    if n == 0 {
                        break;
                    }
                    s.write_all(&buf[..n]).await.expect("write");
                }
            })));
        }
    }));
    let clients: Vec<_> = (0..ECHO_CLIENTS)
        .map(|_| {
            spawn(Box::pin(async move {
                let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
                c.set_nodelay(true).expect("nodelay");
                let msg = vec![7u8; 1024];
                let mut back = vec![0u8; 1024];
                for _ in 0..msgs {
                    c.write_all(&msg).await.expect("write");
                    c.read_exact(&mut back).await.expect("read");
                }
            }))
        })
        .collect();
    for c in clients {
        c.await;
    }
    server.await;
}

async fn tokio_echo(msgs: usize) {
    tokio_io_echo(msgs, spawn_tokio).await;
}

/// The same echo with tokio's `TcpStream` (a tokio-based crate's I/O) in ferroloop tasks,
/// each wrapped in `async_compat::Compat`, which drives tokio's I/O with a tokio reactor on a
/// background thread: the "ferroloop" column is that, the "tokio" column tokio's own runtime.
async fn compat_echo(msgs: usize) {
    async_compat::Compat::new(tokio_io_echo(msgs, spawn_compat)).await;
}

// -- harness --------------------------------------------------------------------------------

struct Case {
    name: &'static str,
    ops: usize,
    ferro: fn(usize) -> Duration,
    tokio: fn(usize) -> Duration,
    smol: Option<fn(usize) -> Duration>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1000.0 {
        format!("{:.2} us", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 1 } else { 5 });
    let scale = if quick { 100 } else { 1 };
    let cases = [
        Case {
            name: "spawn + await",
            ops: 1_000_000 / scale,
            ferro: |n| time_ferro(|| ferro_spawn(n)),
            tokio: |n| time_tokio(|| tokio_spawn(n)),
            smol: Some(|n| time_smol(|| smol_cases::spawn_await(n))),
        },
        Case {
            name: "yield_now",
            ops: 1_000_000 / scale,
            ferro: |n| time_ferro(|| ferro_yield(n)),
            tokio: |n| time_tokio(|| tokio_yield(n)),
            smol: Some(|n| time_smol(|| smol_cases::yield_now(n))),
        },
        Case {
            name: "timers: sleep + timeout (per task)",
            ops: 200_000 / scale,
            ferro: |n| time_ferro(|| ferro_timers(n)),
            tokio: |n| time_tokio(|| tokio_timers(n)),
            smol: Some(|n| time_smol(|| smol_cases::timers(n))),
        },
        Case {
            name: "mpsc ping-pong (per round trip)",
            ops: 200_000 / scale,
            ferro: |n| time_ferro(|| ferro_ping_pong(n)),
            tokio: |n| time_tokio(|| tokio_ping_pong(n)),
            smol: Some(|n| time_smol(|| smol_cases::ping_pong(n))),
        },
        Case {
            name: "broadcast to 8 tasks (per value sent)",
            ops: 200_000 / scale,
            ferro: |n| time_ferro(|| ferro_broadcast(n)),
            tokio: |n| time_tokio(|| tokio_broadcast(n)),
            smol: None,
        },
        Case {
            name: "200,000 sleeps at once, JoinSet (per task)",
            ops: 200_000 / scale,
            ferro: |n| time_ferro(|| ferro_many_sleeps(n)),
            tokio: |n| time_tokio(|| tokio_many_sleeps(n)),
            smol: Some(|n| time_smol(|| smol_cases::many_sleeps(n))),
        },
        Case {
            name: "30 s timeout reset + poll (hyper's per request)",
            ops: 1_000_000 / scale,
            ferro: |n| time_ferro(|| ferro_sleep_reset(n)),
            tokio: |n| time_tokio(|| tokio_sleep_reset(n)),
            smol: Some(|n| time_smol(|| smol_cases::sleep_reset(n))),
        },
        Case {
            name: "TCP echo 1 KiB, 10 conns (per msg)",
            ops: 20_000 / scale,
            ferro: |n| time_ferro(|| ferro_echo(n / ECHO_CLIENTS)),
            tokio: |n| time_tokio(|| tokio_echo(n / ECHO_CLIENTS)),
            smol: Some(|n| time_smol(|| smol_cases::echo(n / ECHO_CLIENTS, ECHO_CLIENTS))),
        },
        Case {
            name: "TCP echo, tokio's TcpStream on ferroloop via async-compat (per msg)",
            ops: 20_000 / scale,
            ferro: |n| time_ferro(|| compat_echo(n / ECHO_CLIENTS)),
            tokio: |n| time_tokio(|| tokio_echo(n / ECHO_CLIENTS)),
            smol: None,
        },
    ];
    // --only SUBSTRING: just the matching cases; --runtime ferroloop|tokio|smol: just one side
    // (for profiling; the ratio column is then meaningless)
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let runtime = args
        .iter()
        .position(|a| a == "--runtime")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let cases: Vec<Case> = cases
        .into_iter()
        .filter(|c| only.as_ref().is_none_or(|o| c.name.contains(o.as_str())))
        .collect();
    let skip = |side: &str| runtime.as_ref().is_some_and(|r| r != side);
    let mut per: Vec<[Vec<f64>; 3]> = cases.iter().map(|_| Default::default()).collect();
    for r in 0..rounds {
        for (i, c) in cases.iter().enumerate() {
            // side 0 ferroloop, 1 tokio, 2 smol; the first to run rotates each round
            for k in 0..3 {
                let side = (k + r) % 3;
                let (name, run) = match side {
                    0 => ("ferroloop", Some(c.ferro)),
                    1 => ("tokio", Some(c.tokio)),
                    _ => ("smol", c.smol),
                };
                let Some(run) = run.filter(|_| !skip(name)) else {
                    continue;
                };
                per[i][side].push(run(c.ops).as_nanos() as f64 / c.ops as f64);
            }
        }
        eprintln!("round {}/{} done", r + 1, rounds);
    }
    println!("| case | N | tokio /op | smol /op | ferroloop /op | ferroloop vs tokio | ferroloop vs smol |");
    println!("|---|---|---|---|---|---|---|");
    let ratio = |f: &[f64], o: &[f64]| -> String {
        if f.is_empty() || o.is_empty() {
            return "-".into();
        }
        let mut ratios: Vec<f64> = f.iter().zip(o).map(|(f, o)| o / f).collect();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        format!("{:.2}x [{lo:.2}-{hi:.2}]", median(&mut ratios))
    };
    let per_op = |v: &[f64]| -> String {
        if v.is_empty() {
            "-".into()
        } else {
            fmt_ns(median(&mut v.to_vec()))
        }
    };
    for (i, c) in cases.iter().enumerate() {
        let [f, t, m] = &per[i];
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            c.name,
            c.ops,
            per_op(t),
            per_op(m),
            per_op(f),
            ratio(f, t),
            ratio(f, m)
        );
    }
}
