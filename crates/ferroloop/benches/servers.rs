//! Servers under load from another process: hyper's hello-world under `wrk`, and a 1 KiB
//! echo under a load-generator process; ferroloop on one loop and on a `LoopPool`, beside
//! tokio's current-thread and multi-thread runtimes and smol (one thread), interleaved.
//!
//! `cargo bench -p ferroloop --features hyper --bench servers -- [--rounds N] [--secs S]
//! [--conns C] [--only SUBSTRING]`
//!
//! Each round starts every server in a process of its own (this binary with `--serve KIND`),
//! loads it for `--secs` seconds (wrk, or this binary with `--echo-load`), reads the
//! server's CPU time from `/proc`, and stops it; the order of the servers rotates every
//! round. The table gives the median throughput and the server's CPU time per request, and
//! the paired per-round throughput ratio against the tokio runtime of the same shape (one
//! thread against current-thread, the pool against multi-thread). On a 2-core machine the
//! load generator shares the cores with the server: compare rows, not absolute numbers.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{server::conn::http1, service::service_fn, Request, Response};

const KINDS: [&str; 10] = [
    "http ferroloop",
    "http tokio-ct",
    "http smol",
    "http ferroloop-pool",
    "http tokio-mt",
    "echo ferroloop",
    "echo tokio-ct",
    "echo smol",
    "echo ferroloop-pool",
    "echo tokio-mt",
];

const ECHO_SIZE: usize = 1024;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, World!",
    ))))
}

fn announce(addr: SocketAddr) {
    println!("{}", addr.port());
}

// -- the servers ------------------------------------------------------------------------------

/// ferroloop's accept loop on the current loop: HTTP or echo per connection.
async fn ferro_accept(listener: ferroloop::TcpListener, http: bool) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        ferroloop::spawn(async move {
            if http {
                let served = http1::Builder::new()
                    .timer(ferroloop::hyper::Timer)
                    .serve_connection(conn, service_fn(hello))
                    .await;
                drop(served); // wrk's connections end mid-request when it stops: expected
            } else {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        })
        .detach();
    }
}

fn serve_ferroloop(http: bool) {
    ferroloop::run(async move {
        let listener = ferroloop::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        announce(listener.local_addr().expect("addr"));
        ferro_accept(listener, http).await;
    });
}

fn serve_ferroloop_pool(http: bool) {
    let pool = ferroloop::LoopPool::new().expect("pool");
    let (addr, _tasks) = pool
        .serve_tcp("127.0.0.1:0".parse().unwrap(), move |l| {
            ferro_accept(l, http)
        })
        .expect("serve");
    announce(addr);
    loop {
        std::thread::park();
    }
}

async fn tokio_accept(listener: tokio::net::TcpListener, http: bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        conn.set_nodelay(true).expect("nodelay");
        tokio::spawn(async move {
            if http {
                let served = http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(conn), service_fn(hello))
                    .await;
                drop(served); // as above
            } else {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
    }
}

fn serve_tokio(http: bool, multi: bool) {
    let rt = if multi {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores())
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        announce(listener.local_addr().expect("addr"));
        tokio_accept(listener, http).await;
    });
}

fn serve_smol(http: bool) {
    use futures::{AsyncReadExt, AsyncWriteExt};
    let ex = smol::LocalExecutor::new();
    smol::block_on(ex.run(async {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        announce(listener.local_addr().expect("addr"));
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            conn.set_nodelay(true).expect("nodelay");
            ex.spawn(async move {
                if http {
                    // hyper's rt traits over smol's futures-io stream (no timer: smol has
                    // none for hyper in the box)
                    let served = http1::Builder::new()
                        .serve_connection(ferroloop::hyper::Io::new(conn), service_fn(hello))
                        .await;
                    drop(served); // as above
                } else {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            })
            .detach();
        }
    }));
}

fn serve(kind: &str) {
    let (proto, runtime) = kind.split_once(' ').expect("KIND is 'http|echo RUNTIME'");
    let http = proto == "http";
    match runtime {
        "ferroloop" => serve_ferroloop(http),
        "ferroloop-pool" => serve_ferroloop_pool(http),
        "tokio-ct" => serve_tokio(http, false),
        "tokio-mt" => serve_tokio(http, true),
        "smol" => serve_smol(http),
        other => panic!("unknown runtime {other}"),
    }
}

// -- the echo load generator ------------------------------------------------------------------

/// `conns` connections each sending 1 KiB and reading the echo back, for `secs` seconds, on
/// a tokio multi-thread runtime (the same generator for every server); prints round trips.
fn echo_load(port: u16, conns: usize, secs: f64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores())
        .enable_all()
        .build()
        .expect("runtime");
    let total: u64 = rt.block_on(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
        let tasks: Vec<_> = (0..conns)
            .map(|_| {
                tokio::spawn(async move {
                    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .expect("connect");
                    c.set_nodelay(true).expect("nodelay");
                    let msg = [7u8; ECHO_SIZE];
                    let mut back = [0u8; ECHO_SIZE];
                    let mut n = 0u64;
                    while tokio::time::Instant::now() < deadline {
                        c.write_all(&msg).await.expect("write");
                        c.read_exact(&mut back).await.expect("read");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("client");
        }
        total
    });
    println!("{total}");
}

// -- the driver -------------------------------------------------------------------------------

/// User + system CPU seconds of process `pid` so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // fields after the command name (which may hold spaces) start after the last ')'
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the ')'
    // SAFETY: sysconf takes an integer name and returns a value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn start_server(kind: &str) -> (Child, u16) {
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args(["--serve", kind])
        .stdout(Stdio::piped())
        .spawn()
        .expect("server process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port");
    (child, line.trim().parse().expect("a port number"))
}

/// Requests per second reported by wrk.
fn run_wrk(port: u16, conns: usize, secs: f64) -> f64 {
    let out = Command::new("wrk")
        .args([
            "-t2".to_owned(),
            format!("-c{conns}"),
            format!("-d{}s", secs.ceil() as u64),
            format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .expect("wrk (apt install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"))
}

fn run_echo_load(port: u16, conns: usize, secs: f64) -> f64 {
    let out = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--echo-load".to_owned(),
            port.to_string(),
            conns.to_string(),
            secs.to_string(),
        ])
        .output()
        .expect("load generator");
    let n: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("round trips");
    n / secs
}

/// One measurement: (requests per second, server CPU microseconds per request).
fn measure(kind: &str, conns: usize, secs: f64) -> (f64, f64) {
    let (mut server, port) = start_server(kind);
    std::thread::sleep(Duration::from_millis(100));
    let cpu0 = cpu_seconds(server.id());
    let t0 = Instant::now();
    let rate = if kind.starts_with("http") {
        run_wrk(port, conns, secs)
    } else {
        run_echo_load(port, conns, secs)
    };
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.id()) - cpu0;
    server.kill().expect("kill server");
    server.wait().expect("reap server");
    (rate, cpu * 1e6 / (rate * wall.min(secs.ceil())))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(kind) = arg::<String>(&args, "--serve") {
        return serve(&kind);
    }
    if let Some(i) = args.iter().position(|a| a == "--echo-load") {
        let port = args[i + 1].parse().expect("port");
        let conns = args[i + 2].parse().expect("conns");
        let secs = args[i + 3].parse().expect("secs");
        return echo_load(port, conns, secs);
    }
    let rounds: usize = arg(&args, "--rounds").unwrap_or(3);
    let secs: f64 = arg(&args, "--secs").unwrap_or(3.0);
    let conns: usize = arg(&args, "--conns").unwrap_or(64);
    let only: Option<String> = arg(&args, "--only");
    let kinds: Vec<&str> = KINDS
        .iter()
        .copied()
        .filter(|k| only.as_ref().is_none_or(|o| k.contains(o.as_str())))
        .collect();
    let mut results: Vec<Vec<(f64, f64)>> = kinds.iter().map(|_| Vec::new()).collect();
    for r in 0..rounds {
        for k in 0..kinds.len() {
            let i = (k + r) % kinds.len();
            results[i].push(measure(kinds[i], conns, secs));
        }
        eprintln!("round {}/{rounds} done", r + 1);
    }
    println!(
        "{} cores, {conns} connections, {secs} s per measurement, {rounds} rounds",
        cores()
    );
    println!(
        "| case | runtime | requests/s | server CPU per request | vs tokio of the same shape |"
    );
    println!("|---|---|---|---|---|");
    for (i, kind) in kinds.iter().enumerate() {
        let (proto, runtime) = kind.split_once(' ').unwrap();
        let rates: Vec<f64> = results[i].iter().map(|m| m.0).collect();
        let cpus: Vec<f64> = results[i].iter().map(|m| m.1).collect();
        let peer = match runtime {
            "ferroloop" => Some(format!("{proto} tokio-ct")),
            "ferroloop-pool" => Some(format!("{proto} tokio-mt")),
            _ => None,
        };
        let ratio = peer
            .and_then(|p| kinds.iter().position(|k| *k == p))
            .map(|j| {
                let per: Vec<f64> = rates
                    .iter()
                    .zip(&results[j])
                    .map(|(f, t)| f / t.0)
                    .collect();
                let lo = per.iter().copied().fold(f64::MAX, f64::min);
                let hi = per.iter().copied().fold(f64::MIN, f64::max);
                format!("{:.2}x [{lo:.2}-{hi:.2}]", median(&per))
            })
            .unwrap_or_default();
        println!(
            "| {proto} | {runtime} | {:.0} | {:.1} us | {ratio} |",
            median(&rates),
            median(&cpus)
        );
    }
}
