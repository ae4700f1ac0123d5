//! hyper 1.x on ferroloop (feature `hyper`): an HTTP/1.1 server and its clients on one loop,
//! with no adapter between hyper and ferroloop's sockets (`ferroloop::hyper` implements
//! hyper's `rt` traits for them, and its `Timer` drives the header-read timeout).
//!
//! The server answers `GET /hello/<name>` with `hello, <name>` and anything else with 404.
//! Four client connections, kept alive, send 250 requests each, concurrently.
//!
//! Checks: every answer's status and body; run with
//! `cargo run -p ferroloop --features hyper --example hyper_hello`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferroloop::{JoinSet, TcpListener, TcpStream};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{server::conn::http1, service::service_fn, Request, Response, StatusCode};

const CONNECTIONS: usize = 4;
const REQUESTS: usize = 250;

async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match req.uri().path().strip_prefix("/hello/") {
        Some(name) => Response::new(Full::new(Bytes::from(format!("hello, {name}")))),
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"not found")))
            .unwrap(),
    })
}

async fn server(listener: TcpListener) {
    loop {
        let (conn, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        ferroloop::spawn(async move {
            let served = http1::Builder::new()
                .timer(ferroloop::hyper::Timer)
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(conn, service_fn(hello))
                .await;
            if let Err(e) = served {
                eprintln!("connection: {e}");
            }
        });
    }
}

async fn client(addr: SocketAddr, id: usize) -> usize {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(stream)
        .await
        .expect("handshake");
    ferroloop::spawn(conn);
    let mut ok = 0;
    for i in 0..REQUESTS {
        let (path, want_status, want_body) = if i % 50 == 49 {
            (
                "/missing".to_owned(),
                StatusCode::NOT_FOUND,
                "not found".to_owned(),
            )
        } else {
            let name = format!("c{id}r{i}");
            (
                format!("/hello/{name}"),
                StatusCode::OK,
                format!("hello, {name}"),
            )
        };
        let req = Request::get(path)
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.expect("request");
        assert_eq!(resp.status(), want_status);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body, want_body.as_bytes());
        ok += 1;
    }
    ok
}

fn main() {
    let (answered, elapsed) = ferroloop::run(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        ferroloop::spawn(server(listener));
        let start = Instant::now();
        let mut clients = JoinSet::new();
        for id in 0..CONNECTIONS {
            clients.spawn(client(addr, id));
        }
        let mut answered = 0;
        while let Some(done) = clients.join_next().await {
            answered += done.expect("client task");
        }
        (answered, start.elapsed())
    });
    assert_eq!(answered, CONNECTIONS * REQUESTS);
    println!(
        "hyper_hello: {answered} requests on {CONNECTIONS} kept-alive connections answered and checked in {:.0} ms",
        elapsed.as_secs_f64() * 1e3
    );
}
