//! The seeds' crawler: fetch 25 pages concurrently (at most 10 at a time, with a
//! semaphore, as the seeds' aiohttp crawler limits itself) from a local HTTP server running
//! on the same loop. The server answers `GET /page/N` after 50 ms with a body naming N; the
//! client speaks HTTP/1.1 with `Connection: close` over `TcpStream`. Checks every status and
//! body and that the fetches overlapped (25 x 50 ms one after another would take 1.25 s).

use std::rc::Rc;
use std::time::{Duration, Instant};

use ferroloop::sync::Semaphore;
use ferroloop::{TcpListener, TcpStream};

const PAGES: usize = 25;

async fn read_to_end(conn: &TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

async fn serve_one(conn: TcpStream) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = vec![0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&request);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    ferroloop::sleep(Duration::from_millis(50)).await; // a slow page
    let response = match path.strip_prefix("/page/") {
        Some(n) => {
            let body = format!("<html><title>page {n}</title></html>");
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
        }
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
    };
    conn.write_all(response.as_bytes()).await?;
    conn.shutdown_write()
}

async fn fetch(addr: std::net::SocketAddr, limit: Rc<Semaphore>, n: usize) -> std::io::Result<(u16, String)> {
    let _permit = limit.acquire().await;
    let conn = TcpStream::connect(addr).await?;
    let request = format!("GET /page/{n} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await?;
    let raw = read_to_end(&conn).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| std::io::Error::other("no header end"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    Ok((status, body.to_string()))
}

fn main() {
    let t0 = Instant::now();
    let pages = ferroloop::run(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = ferroloop::spawn(async move {
            loop {
                let (conn, _) = listener.accept().await.expect("accept");
                ferroloop::spawn(async move { serve_one(conn).await.expect("serve") }).detach();
            }
        });
        let limit = Rc::new(Semaphore::new(10));
        let pages = ferroloop::gather((0..PAGES).map(|n| fetch(addr, limit.clone(), n))).await.expect("all pages");
        server.cancel();
        pages
    });
    let took = t0.elapsed();
    for (n, (status, body)) in pages.iter().enumerate() {
        assert_eq!(*status, 200);
        assert_eq!(body, &format!("<html><title>page {n}</title></html>"));
    }
    // three waves of at most 10 (50 ms each), not 25 sequential fetches
    assert!(took < Duration::from_millis(600), "fetches did not overlap: {took:?}");
    println!("crawler: {PAGES} pages, at most 10 at a time, in {:.0} ms", took.as_secs_f64() * 1e3);
}
