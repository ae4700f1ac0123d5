//! hyper 1.x on ferroloop (feature `hyper`): HTTP/1 server and client on ferroloop's own
//! sockets, keep-alive, concurrent clients, a streamed body, the header-read timeout through
//! `ferroloop::hyper::Timer`, `Io` over another `futures-io` stream; and tokio-based code
//! through `async-compat` (and the panic without it).
#![cfg(feature = "hyper")]

use std::convert::Infallible;
use std::time::{Duration, Instant};

use ferroloop::net::{TcpListener, TcpStream, UnixStream};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};

fn run_limited<F: std::future::Future>(body: F) -> F::Output {
    ferroloop::run(ferroloop::timeout(Duration::from_secs(30), body)).expect("test timed out")
}

/// Echo POST bodies, answer GET with the path.
async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = if req.method() == Method::POST {
        req.into_body().collect().await.unwrap().to_bytes()
    } else {
        Bytes::from(req.uri().path().to_owned())
    };
    Ok(Response::new(Full::new(reply)))
}

async fn serve(listener: TcpListener) {
    loop {
        let (conn, _) = listener.accept().await.unwrap();
        ferroloop::spawn(async move {
            let served = http1::Builder::new()
                .timer(ferroloop::hyper::Timer)
                .serve_connection(conn, service_fn(handle))
                .await;
            if let Err(e) = served {
                assert!(e.is_incomplete_message() || e.is_closed(), "{e}");
            }
        });
    }
}

async fn client(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(stream).await.unwrap();
    ferroloop::spawn(conn);
    sender
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "local")
        .body(Full::default())
        .unwrap()
}

#[test]
fn keep_alive_and_concurrent_clients() {
    run_limited(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        ferroloop::spawn(serve(listener));
        // 100 requests on one kept-alive connection
        let mut sender = client(addr).await;
        for i in 0..100 {
            let resp = sender.send_request(get(&format!("/r{i}"))).await.unwrap();
            assert!(resp.status().is_success());
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, format!("/r{i}"));
        }
        // 20 clients at once
        let mut set = ferroloop::JoinSet::new();
        for c in 0..20 {
            set.spawn(async move {
                let mut sender = client(addr).await;
                for i in 0..10 {
                    let path = format!("/c{c}/{i}");
                    let resp = sender.send_request(get(&path)).await.unwrap();
                    let body = resp.into_body().collect().await.unwrap().to_bytes();
                    assert_eq!(body, path);
                }
            });
        }
        let mut done = 0;
        while let Some(r) = set.join_next().await {
            r.unwrap();
            done += 1;
        }
        assert_eq!(done, 20);
    });
}

#[test]
fn large_body_streams_both_ways() {
    run_limited(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        ferroloop::spawn(serve(listener));
        let mut sender = client(addr).await;
        let payload: Vec<u8> = (0..4 << 20).map(|i| (i % 253) as u8).collect();
        let req = Request::post("/echo")
            .header("host", "local")
            .body(Full::new(Bytes::from(payload.clone())))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(body == payload, "the echoed body differs");
    });
}

#[test]
fn header_read_timeout_uses_the_timer() {
    run_limited(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = ferroloop::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            let start = Instant::now();
            let served = http1::Builder::new()
                .timer(ferroloop::hyper::Timer)
                .header_read_timeout(Duration::from_millis(100))
                .serve_connection(conn, service_fn(handle))
                .await;
            (start.elapsed(), served.is_err())
        });
        // connect, send half a request line, then nothing
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET / HT").await.unwrap();
        let (elapsed, failed) = server.await.unwrap();
        assert!(failed, "the connection ended without an error");
        assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        drop(stream);
    });
}

#[test]
fn io_wraps_any_futures_io_stream() {
    run_limited(async {
        let (a, b) = UnixStream::pair().unwrap();
        // served through the generic wrapper, client on the direct impl
        ferroloop::spawn(async move {
            http1::Builder::new()
                .serve_connection(ferroloop::hyper::Io::new(a), service_fn(handle))
                .await
                .unwrap();
        });
        let (mut sender, conn) = hyper::client::conn::http1::handshake(b).await.unwrap();
        ferroloop::spawn(conn);
        let req = Request::get("/unix")
            .header("host", "local")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let body = sender
            .send_request(req)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap();
        assert_eq!(body.to_bytes(), "/unix");
    });
}

/// tokio-based code needs tokio's reactor and timer: without `async-compat` it panics with
/// "there is no reactor running"; inside `Compat` it runs on ferroloop's loop, its I/O
/// driven by a tokio runtime on a background thread.
#[test]
fn tokio_code_through_async_compat() {
    run_limited(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        ferroloop::spawn(serve(listener));
        let bare = ferroloop::spawn(async move {
            let _ = tokio::net::TcpStream::connect(addr).await;
        });
        let panic = bare.await.unwrap_err().into_panic();
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(msg.contains("reactor"), "{msg}");
        let body = async_compat::Compat::new(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            tokio::time::sleep(Duration::from_millis(5)).await;
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /compat HTTP/1.1\r\nhost: local\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            String::from_utf8(out).unwrap()
        })
        .await;
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        assert!(body.ends_with("/compat"), "{body}");
    });
}

/// reqwest (a tokio-based HTTP client) on ferroloop through `async-compat`, against a hyper
/// server on the same loop: the documented way, with reqwest's own timeout (a tokio timer).
#[test]
fn reqwest_through_async_compat() {
    run_limited(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        ferroloop::spawn(serve(listener));
        let (first, second) = async_compat::Compat::new(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let first = client
                .get(format!("http://{addr}/reqwest"))
                .send()
                .await
                .unwrap();
            assert!(first.status().is_success());
            let first = first.text().await.unwrap();
            let second = client
                .post(format!("http://{addr}/echo"))
                .body("posted body")
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            (first, second)
        })
        .await;
        assert_eq!(first, "/reqwest");
        assert_eq!(second, "posted body");
    });
}
