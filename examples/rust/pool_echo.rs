//! The seeds' echo server on every core: a `LoopPool` with one loop per core, each with its
//! own `SO_REUSEPORT` listener on the same port (`serve_tcp`), so the kernel spreads the
//! connections and each connection lives on one loop. The clients run on a loop of their
//! own, on the main thread.
//!
//! 200 clients each send 20 lines and read each echo. Then the pool shuts down gracefully:
//! the servers see the shutdown signal, stop accepting, and end.
//!
//! Checks: every echo, every connection accepted by some loop, the shutdown leaving no task
//! behind.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferroloop::{JoinSet, LoopPool, TcpListener, TcpStream};

const CLIENTS: usize = 200;
const LINES: usize = 20;

/// One loop's server: accept until the shutdown signal, echo each connection in a task.
async fn serve(listener: TcpListener, stop: ferroloop::ShutdownSignal, accepted: Arc<AtomicUsize>) {
    let accept = async {
        loop {
            let (conn, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            accepted.fetch_add(1, Ordering::Relaxed);
            ferroloop::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    };
    ferroloop::select(Box::pin(accept), Box::pin(stop.wait())).await;
}

async fn client(addr: std::net::SocketAddr, id: usize) -> usize {
    let conn = TcpStream::connect(addr).await.expect("connect");
    for i in 0..LINES {
        let line = format!("client {id} line {i}\n");
        conn.write_all(line.as_bytes()).await.expect("write");
        let mut echo = vec![0u8; line.len()];
        conn.read_exact(&mut echo).await.expect("read");
        assert_eq!(echo, line.as_bytes());
    }
    LINES
}

fn main() {
    let pool = LoopPool::new().expect("pool");
    let loops = pool.len();
    let per_loop: Arc<Vec<Arc<AtomicUsize>>> =
        Arc::new((0..loops).map(|_| Arc::new(AtomicUsize::new(0))).collect());
    let stop = pool.shutdown_signal();
    let next = Arc::new(AtomicUsize::new(0));
    let counts = per_loop.clone();
    let (addr, servers) = pool
        .serve_tcp("127.0.0.1:0".parse().unwrap(), move |listener| {
            // each loop takes its own counter
            let i = next.fetch_add(1, Ordering::Relaxed);
            serve(listener, stop.clone(), counts[i].clone())
        })
        .expect("listen");

    let start = Instant::now();
    let echoed = ferroloop::run(async move {
        let mut clients = JoinSet::new();
        for id in 0..CLIENTS {
            clients.spawn(client(addr, id));
        }
        let mut echoed = 0;
        while let Some(n) = clients.join_next().await {
            echoed += n.expect("client");
        }
        echoed
    });
    let elapsed = start.elapsed();
    assert_eq!(echoed, CLIENTS * LINES);
    let counts: Vec<usize> = per_loop.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    assert_eq!(counts.iter().sum::<usize>(), CLIENTS);

    let left = pool.shutdown(Duration::from_secs(5));
    assert_eq!(left, 0, "a server did not stop at the signal");
    for s in servers {
        s.join().expect("server task");
    }
    println!(
        "pool_echo: {CLIENTS} clients x {LINES} lines echoed by {loops} loops sharing one port \
         (connections per loop {counts:?}) in {:.0} ms; graceful shutdown",
        elapsed.as_secs_f64() * 1e3
    );
}
