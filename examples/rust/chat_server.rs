//! A chat server on `sync::broadcast`: every line a client sends reaches every other client,
//! prefixed with the sender's number. The seeds' servers answer one client at a time; this
//! one relays between them, the case a broadcast channel is for.
//!
//! The server accepts with a `JoinSet` of handlers. Each handler subscribes to the room,
//! greets its client (`welcome N`), then runs two halves on one `Rc<TcpStream>`: its reader
//! sends each line to the room, its writer relays the room's lines from the others. The
//! clients wait at a `Barrier` until everyone is greeted (so nobody misses a line), send
//! their lines, and read until they have every other client's.
//!
//! Checks: each client gets exactly the other clients' lines, each sender's in the order sent,
//! and the server's handlers all end when their clients leave.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use ferroloop::sync::broadcast::{self, RecvError};
use ferroloop::sync::Barrier;
use ferroloop::{JoinSet, TcpListener, TcpStream};

const CLIENTS: usize = 6;
const LINES: usize = 25;

type Room = broadcast::Sender<(usize, String)>;

/// Read one `\n`-terminated line (without the `\n`), keeping what follows in `pending`;
/// `None` at the end of the stream.
async fn read_line(conn: &TcpStream, pending: &mut Vec<u8>) -> std::io::Result<Option<String>> {
    loop {
        if let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            return Ok(Some(String::from_utf8_lossy(&line[..pos]).into_owned()));
        }
        let mut chunk = [0u8; 1024];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// One client's handler: greet, then relay both ways until the client leaves.
async fn handle(conn: TcpStream, id: usize, room: Room) -> std::io::Result<usize> {
    let conn = Rc::new(conn);
    let mut rx = room.subscribe(); // before the greeting: every later line reaches us
    conn.write_all(format!("welcome {id}\n").as_bytes()).await?;
    let writer = {
        let conn = conn.clone();
        ferroloop::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok((from, _)) if from == id => {}
                    Ok((from, line)) => {
                        conn.write_all(format!("{from}: {line}\n").as_bytes())
                            .await?
                    }
                    Err(RecvError::Lagged(_)) => panic!("the room keeps every line of this chat"),
                    Err(RecvError::Closed) => return Ok::<_, std::io::Error>(()),
                }
            }
        })
    };
    let mut pending = Vec::new();
    let mut said = 0;
    while let Some(line) = read_line(&conn, &mut pending).await? {
        room.send((id, line))
            .expect("this handler's own receiver is alive");
        said += 1;
    }
    writer.cancel();
    Ok(said)
}

async fn client(
    addr: SocketAddr,
    id: usize,
    everyone_in: Rc<Barrier>,
) -> std::io::Result<Vec<String>> {
    let conn = TcpStream::connect(addr).await?;
    let mut pending = Vec::new();
    let greeting = read_line(&conn, &mut pending).await?.expect("a greeting");
    assert!(greeting.starts_with("welcome "), "{greeting}");
    everyone_in.wait().await;
    for n in 0..LINES {
        conn.write_all(format!("line {n} from {id}\n").as_bytes())
            .await?;
        if n % 5 == 0 {
            ferroloop::yield_now().await; // let the others interleave
        }
    }
    let mut heard = Vec::new();
    while heard.len() < (CLIENTS - 1) * LINES {
        heard.push(
            read_line(&conn, &mut pending)
                .await?
                .expect("the room's lines"),
        );
    }
    conn.shutdown_write()?;
    Ok(heard)
}

fn main() {
    let (heard, said) = ferroloop::run(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (room, _) = broadcast::channel(CLIENTS * LINES);
        let server = ferroloop::spawn(async move {
            let mut handlers = JoinSet::new();
            for id in 0..CLIENTS {
                let (conn, _) = listener.accept().await.expect("accept");
                handlers.spawn(handle(conn, id, room.clone()));
            }
            let mut said = Vec::new();
            while let Some(r) = handlers.join_next().await {
                said.push(r.expect("handler task").expect("handler I/O"));
            }
            said
        });
        let everyone_in = Rc::new(Barrier::new(CLIENTS));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|id| ferroloop::spawn(client(addr, id, everyone_in.clone())))
            .collect();
        let heard = ferroloop::gather(clients.into_iter().map(|t| async move {
            t.await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        }))
        .await
        .expect("every client finished");
        let said = ferroloop::timeout(Duration::from_secs(5), server)
            .await
            .expect("the handlers end when their clients leave")
            .expect("server task");
        (heard, said)
    });

    assert_eq!(
        said,
        vec![LINES; CLIENTS],
        "each handler relayed its client's lines"
    );
    for (id, lines) in heard.iter().enumerate() {
        for from in (0..CLIENTS).filter(|f| *f != id) {
            let got: Vec<&String> = lines
                .iter()
                .filter(|l| l.starts_with(&format!("{from}: ")))
                .collect();
            let want: Vec<String> = (0..LINES)
                .map(|n| format!("{from}: line {n} from {from}"))
                .collect();
            assert_eq!(
                got,
                want.iter().collect::<Vec<_>>(),
                "client {id} heard {from} in order"
            );
        }
        assert!(
            !lines.iter().any(|l| l.starts_with(&format!("{id}: "))),
            "no echo of one's own lines"
        );
    }
    println!(
        "chat_server: {CLIENTS} clients, {} lines relayed to each, every sender in order",
        (CLIENTS - 1) * LINES
    );
}
