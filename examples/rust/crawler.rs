//! Mirrors the seeds' crawler (seed 003_424c6018414abe8e, 异步爬虫 and I/O密集型任务: 25
//! URLs, `download(session, url)` each, all under one `asyncio.gather`, timing the whole),
//! without aiohttp or the internet: a minimal HTTP/1.1 server on `TcpListener` runs on the
//! same loop and answers `GET /page/N` after 50 ms with a body naming N; the client sends
//! `GET` with `Connection: close`, reads to EOF (`futures::io::AsyncReadExt::read_to_end`
//! through the stream's `futures-io` impl) and parses the status line, headers and body. A
//! `Semaphore(10)` bounds the fetches in flight, the usual asyncio crawler idiom (aiohttp's
//! connector pool plays that part in the seed, with its default of 100).
//!
//! Checks: all 25 statuses and bodies, a 404 for an unknown path, that the server had exactly
//! 10 requests in flight at its peak (the semaphore's bound, reached), and the total time:
//! three waves of 50 ms, far below 25 x 50 ms one after another.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ferroloop::sync::Semaphore;
use ferroloop::{TcpListener, TcpStream};
use futures::io::AsyncReadExt;

const PAGES: usize = 25;
const LIMIT: usize = 10;
/// How long the server takes over each page.
const DELAY: Duration = Duration::from_millis(50);

/// The server's count of requests being answered, and its peak.
#[derive(Default)]
struct InFlight {
    now: Cell<usize>,
    peak: Cell<usize>,
}

fn other(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::other(msg.into())
}

/// One HTTP/1.1 exchange on the server side: read the request head, answer, close.
async fn serve_one(conn: TcpStream, in_flight: Rc<InFlight>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Err(other("EOF inside the request head"));
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8(head).map_err(|_| other("request head is not UTF-8"))?;
    let mut request_line = head.lines().next().unwrap_or_default().split(' ');
    let (method, path, version) = (
        request_line.next(),
        request_line.next(),
        request_line.next(),
    );
    if method != Some("GET") || version != Some("HTTP/1.1") {
        return Err(other(format!("unexpected request line in {head:?}")));
    }

    in_flight.now.set(in_flight.now.get() + 1);
    in_flight
        .peak
        .set(in_flight.peak.get().max(in_flight.now.get()));
    ferroloop::sleep(DELAY).await; // a slow page
    in_flight.now.set(in_flight.now.get() - 1);

    let page = path
        .and_then(|p| p.strip_prefix("/page/"))
        .and_then(|n| n.parse::<usize>().ok());
    let (status, body) = match page {
        Some(n) => (
            "200 OK",
            format!("<html><title>page {n}</title><body>this is page {n}</body></html>"),
        ),
        None => ("404 Not Found", "not found".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(response.as_bytes()).await?;
    Ok(()) // Connection: close, the stream is dropped: the client reads EOF
}

/// A response as the client parsed it.
struct Response {
    status: u16,
    body: String,
}

/// The client: `GET path` with `Connection: close`, then read to EOF and parse.
async fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    let conn = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: ferroloop-crawler\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    (&conn).read_to_end(&mut raw).await?;

    let text = String::from_utf8(raw).map_err(|_| other("response is not UTF-8"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| other("no end of the response head"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    if parts.next() != Some("HTTP/1.1") {
        return Err(other(format!("bad status line {status_line:?}")));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| other(format!("bad status line {status_line:?}")))?;
    let length: Option<usize> = lines
        .filter_map(|line| line.split_once(": "))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok());
    if length != Some(body.len()) {
        return Err(other(format!(
            "Content-Length {length:?}, body of {} bytes",
            body.len()
        )));
    }
    Ok(Response {
        status,
        body: body.to_string(),
    })
}

/// The seed's `download(session, url)`, behind the semaphore.
async fn download(addr: SocketAddr, limit: Rc<Semaphore>, n: usize) -> std::io::Result<String> {
    let _permit = limit.acquire().await; // async with semaphore:
    let response = get(addr, &format!("/page/{n}")).await?;
    if response.status != 200 {
        return Err(other(format!("/page/{n}: status {}", response.status)));
    }
    Ok(response.body)
}

fn main() {
    let in_flight = Rc::new(InFlight::default());
    let (pages, crawl_time, missing) = ferroloop::run({
        let in_flight = in_flight.clone();
        async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("address");
            let server = ferroloop::spawn(async move {
                loop {
                    let (conn, _) = listener.accept().await.expect("accept");
                    let in_flight = in_flight.clone();
                    ferroloop::spawn(
                        async move { serve_one(conn, in_flight).await.expect("serve") },
                    )
                    .detach();
                }
            });

            let limit = Rc::new(Semaphore::new(LIMIT));
            let t0 = Instant::now();
            let pages = ferroloop::gather((0..PAGES).map(|n| download(addr, limit.clone(), n)))
                .await
                .expect("every page downloaded");
            let crawl_time = t0.elapsed();
            let missing = get(addr, "/nowhere").await.expect("a response");
            assert!(server.cancel());
            (pages, crawl_time, missing)
        }
    });

    for (n, body) in pages.iter().enumerate() {
        assert_eq!(
            body,
            &format!("<html><title>page {n}</title><body>this is page {n}</body></html>")
        );
    }
    assert_eq!((missing.status, missing.body.as_str()), (404, "not found"));
    assert_eq!(
        in_flight.peak.get(),
        LIMIT,
        "peak of requests in flight on the server"
    );
    let waves = PAGES.div_ceil(LIMIT) as u32;
    assert!(crawl_time >= DELAY * waves, "{crawl_time:?}");
    let sequential = DELAY * PAGES as u32;
    assert!(
        crawl_time < sequential / 3,
        "the fetches did not overlap: {crawl_time:?} (one at a time: {sequential:?})"
    );
    println!(
        "crawler: {PAGES} pages (server delay {} ms each) in {:.0} ms, at most {LIMIT} in flight; one at a time would take {} ms",
        DELAY.as_millis(),
        crawl_time.as_secs_f64() * 1e3,
        sequential.as_millis()
    );
}
