//! The seeds' echo server: a TCP server that sends back every line it receives, and
//! several clients talking to it concurrently, all on one loop. Checks every reply and that
//! the server closes each connection when its client is done.

use std::rc::Rc;

use ferroloop::{TcpListener, TcpStream};

const CLIENTS: usize = 8;
const LINES: usize = 20;

async fn handle(conn: TcpStream) -> std::io::Result<usize> {
    let mut buf = vec![0u8; 4096];
    let mut echoed = 0;
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(echoed); // the client half-closed: done
        }
        conn.write_all(&buf[..n]).await?;
        echoed += n;
    }
}

async fn client(addr: std::net::SocketAddr, id: usize) -> std::io::Result<()> {
    let conn = TcpStream::connect(addr).await?;
    let mut reply = Vec::new();
    let mut buf = vec![0u8; 4096];
    for line in 0..LINES {
        let msg = format!("client {id} line {line}\n");
        conn.write_all(msg.as_bytes()).await?;
        reply.clear();
        while reply.len() < msg.len() {
            let n = conn.read(&mut buf).await?;
            assert!(n > 0, "server closed early");
            reply.extend_from_slice(&buf[..n]);
        }
        assert_eq!(reply, msg.as_bytes(), "echo of {msg:?}");
    }
    conn.shutdown_write()?;
    assert_eq!(conn.read(&mut buf).await?, 0, "the server closes after our EOF");
    Ok(())
}

fn main() {
    let echoed = ferroloop::run(async {
        let listener = Rc::new(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
        let addr = listener.local_addr().expect("address");
        let server = ferroloop::spawn({
            let listener = listener.clone();
            async move {
                let mut handlers = Vec::new();
                for _ in 0..CLIENTS {
                    let (conn, _peer) = listener.accept().await.expect("accept");
                    handlers.push(ferroloop::spawn(handle(conn)));
                }
                let mut total = 0;
                for h in handlers {
                    total += h.await.expect("handler").expect("handler I/O");
                }
                total
            }
        });
        ferroloop::gather((0..CLIENTS).map(|id| client(addr, id))).await.expect("clients");
        server.await.expect("server")
    });
    let expected: usize = (0..CLIENTS).map(|id| (0..LINES).map(|l| format!("client {id} line {l}\n").len()).sum::<usize>()).sum();
    assert_eq!(echoed, expected);
    println!("echo_server: {CLIENTS} concurrent clients x {LINES} lines, {echoed} bytes echoed");
}
