//! The `vs_tokio` cases on smol 2 (a `LocalExecutor` on the thread, `smol::block_on`), for
//! the third column: the same programs with smol's tasks, timers, channels and sockets.
//! Cases smol has no counterpart for (a broadcast channel, a `JoinSet`, tokio's crates through
//! `async-compat`) have none here.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt as _, AsyncWriteExt as _};
use smol::{LocalExecutor, Timer};

thread_local! {
    static EX: LocalExecutor<'static> = const { LocalExecutor::new() };
}

fn spawn<T: 'static>(f: impl Future<Output = T> + 'static) -> smol::Task<T> {
    EX.with(|ex| ex.spawn(f))
}

pub fn time_smol<F: Future<Output = ()>>(f: impl FnOnce() -> F) -> Duration {
    let fut = f();
    let t0 = Instant::now();
    EX.with(|ex| smol::block_on(ex.run(fut)));
    t0.elapsed()
}

pub async fn spawn_await(n: usize) {
    let tasks: Vec<_> = (0..n).map(|i| spawn(async move { i })).collect();
    let mut sum = 0;
    for t in tasks {
        sum += t.await;
    }
    assert_eq!(sum, n * (n - 1) / 2);
}

pub async fn yield_now(n: usize) {
    for _ in 0..n {
        smol::future::yield_now().await;
    }
}

pub async fn timers(n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            spawn(async move {
                let d = Duration::from_micros((i % 10_000) as u64);
                if i % 2 == 0 {
                    Timer::after(d).await;
                } else {
                    let slept = smol::future::or(
                        async {
                            Timer::after(d + Duration::from_secs(1)).await;
                            true
                        },
                        async {
                            Timer::after(Duration::ZERO).await;
                            false
                        },
                    )
                    .await;
                    assert!(!slept);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await;
    }
}

pub async fn ping_pong(n: usize) {
    let (to_pong, ping_rx) = smol::channel::bounded::<usize>(1);
    let (to_ping, pong_rx) = smol::channel::bounded::<usize>(1);
    let pong = spawn(async move {
        while let Ok(v) = ping_rx.recv().await {
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
    pong.await;
}

pub async fn many_sleeps(n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|_| spawn(async { Timer::after(Duration::from_millis(10)).await }))
        .collect();
    for t in tasks {
        t.await;
    }
}

pub async fn sleep_reset(n: usize) {
    let mut timer = Timer::after(Duration::from_secs(30));
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    for _ in 0..n {
        timer.set_after(Duration::from_secs(30));
        assert!(std::pin::Pin::new(&mut timer).poll(&mut cx).is_pending());
    }
}

pub async fn echo(msgs: usize, clients: usize) {
    let listener = smol::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = spawn(async move {
        for _ in 0..clients {
            let (mut s, _) = listener.accept().await.expect("accept");
            s.set_nodelay(true).expect("nodelay");
            spawn(async move {
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
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            spawn(async move {
                let mut c = smol::net::TcpStream::connect(addr).await.expect("connect");
                c.set_nodelay(true).expect("nodelay");
                let msg = vec![7u8; 1024];
                let mut back = vec![0u8; 1024];
                for _ in 0..msgs {
                    c.write_all(&msg).await.expect("write");
                    c.read_exact(&mut back).await.expect("read");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await;
    }
    server.await;
}
