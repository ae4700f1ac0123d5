//! Mirrors the seeds' echo server (seed 003_424c6018414abe8e, 高并发服务器):
//! `asyncio.start_server(handle_client, '127.0.0.1', ...)` + `serve_forever()`, where
//! `handle_client` loops on `reader.read(100)`, answers `f"服务器收到: {message}"` ("server
//! received: ...") and closes when the client does. The seed has no client; here
//! `CLIENTS` clients talk to it concurrently, all on the same loop, and the server task is
//! cancelled at the end (what leaving `async with server` does).
//!
//! Checks: every reply, that the server saw each client's address and end of stream, the
//! byte counts on both sides, and that the clients' conversations interleaved.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use ferroloop::{TcpListener, TcpStream};

const CLIENTS: usize = 10;
const MESSAGES: usize = 20;
const PREFIX: &str = "服务器收到: ";

/// What the server's handlers report: (peer address, bytes received) per closed connection.
type Closed = Rc<RefCell<Vec<(SocketAddr, usize)>>>;

/// The seed's `handle_client(reader, writer)`.
async fn handle_client(conn: TcpStream, peer: SocketAddr, closed: Closed) -> std::io::Result<()> {
    let mut buf = [0u8; 100]; // reader.read(100)
    let mut received = 0;
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            break; // the client closed its side
        }
        received += n;
        let message = std::str::from_utf8(&buf[..n]).expect("the clients send UTF-8");
        conn.write_all(format!("{PREFIX}{message}").as_bytes())
            .await?; // writer.write + drain
    }
    closed.borrow_mut().push((peer, received));
    Ok(()) // writer.close(): the stream is dropped
}

/// The seed's `serve_forever()`: accept, and run each client in its own task.
async fn serve_forever(listener: TcpListener, closed: Closed) {
    loop {
        let (conn, peer) = listener.accept().await.expect("accept");
        let closed = closed.clone();
        ferroloop::spawn(async move {
            handle_client(conn, peer, closed)
                .await
                .expect("handler I/O")
        })
        .detach();
    }
}

/// A client: sends its messages one at a time, checking each reply, then closes.
async fn client(
    addr: SocketAddr,
    id: usize,
    turns: Rc<RefCell<Vec<usize>>>,
) -> std::io::Result<(SocketAddr, usize)> {
    let conn = TcpStream::connect(addr).await?;
    let mut sent = 0;
    let mut buf = [0u8; 256];
    for m in 0..MESSAGES {
        let message = format!("hello from client {id}, message {m}");
        assert!(message.len() <= 100, "one read(100) per message");
        conn.write_all(message.as_bytes()).await?;
        sent += message.len();
        let expected = format!("{PREFIX}{message}");
        let mut reply = Vec::new();
        while reply.len() < expected.len() {
            let n = conn.read(&mut buf).await?;
            assert!(n > 0, "client {id}: the server closed early");
            reply.extend_from_slice(&buf[..n]);
        }
        assert_eq!(
            String::from_utf8_lossy(&reply),
            expected,
            "client {id}'s reply to message {m}"
        );
        turns.borrow_mut().push(id);
    }
    let local = conn.local_addr()?;
    conn.shutdown_write()?; // EOF for the server's read()
    assert_eq!(
        conn.read(&mut buf).await?,
        0,
        "client {id}: the server closes after our EOF"
    );
    Ok((local, sent))
}

fn main() {
    let closed: Closed = Rc::default();
    let turns = Rc::new(RefCell::new(Vec::new()));
    let mut clients = ferroloop::run({
        let (closed, turns) = (closed.clone(), turns.clone());
        async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("address");
            let server = ferroloop::spawn(serve_forever(listener, closed.clone()));
            let clients = ferroloop::gather((0..CLIENTS).map(|id| client(addr, id, turns.clone())))
                .await
                .expect("every client finished");
            // the handlers record their end right after the clients saw EOF: let them run
            ferroloop::timeout(Duration::from_secs(1), async {
                while closed.borrow().len() < CLIENTS {
                    ferroloop::yield_now().await;
                }
            })
            .await
            .expect("every handler saw its client's EOF");
            assert!(server.cancel(), "serve_forever runs until cancelled");
            clients
        }
    });

    let mut server_side = closed.borrow().clone();
    server_side.sort_unstable();
    clients.sort_unstable();
    assert_eq!(
        server_side, clients,
        "the server saw every client's address and every byte"
    );
    // concurrency: the clients' turns interleave instead of running one after another
    let turns = turns.borrow();
    let switches = turns.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        switches > CLIENTS * 2,
        "the clients ran one after another ({switches} switches)"
    );
    let bytes: usize = clients.iter().map(|&(_, n)| n).sum();
    println!(
        "echo_server: {CLIENTS} concurrent clients x {MESSAGES} messages, {bytes} bytes, every reply checked; \
         {switches} switches between clients"
    );
}
