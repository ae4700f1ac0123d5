//! A websocket echo server and client on ferroloop with `async-tungstenite` (which takes any
//! `futures-io` stream: ferroloop's `TcpStream` as it is, no adapter).
//!
//! Three clients connect at once; each sends 100 messages (text and binary, up to 64 KiB),
//! then closes. The server echoes every data message and answers the close.
//!
//! Checks: every echo equals what was sent, in order, and each client sees the server's
//! close frame.

use std::net::SocketAddr;

use async_tungstenite::tungstenite::Message;
use ferroloop::{JoinSet, TcpListener, TcpStream};
use futures::StreamExt;

const CLIENTS: usize = 3;
const MESSAGES: usize = 100;

async fn server(listener: TcpListener) {
    loop {
        let (conn, _) = listener.accept().await.expect("accept");
        ferroloop::spawn(async move {
            let mut ws = async_tungstenite::accept_async(conn)
                .await
                .expect("handshake");
            while let Some(msg) = ws.next().await {
                match msg.expect("server read") {
                    m @ (Message::Text(_) | Message::Binary(_)) => {
                        ws.send(m).await.expect("echo");
                    }
                    Message::Close(_) => break, // tungstenite answers the close
                    _ => {}
                }
            }
        });
    }
}

fn message(client: usize, i: usize) -> Message {
    match i % 2 {
        0 => Message::text(format!("client {client} message {i}")),
        _ => {
            let len = (i * 661) % (64 * 1024);
            Message::binary((0..len).map(|b| (b + client) as u8).collect::<Vec<u8>>())
        }
    }
}

async fn client(addr: SocketAddr, id: usize) -> usize {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut ws, _) = async_tungstenite::client_async(format!("ws://{addr}/echo"), stream)
        .await
        .expect("client handshake");
    for i in 0..MESSAGES {
        let sent = message(id, i);
        ws.send(sent.clone()).await.expect("send");
        let echoed = ws.next().await.expect("echo").expect("client read");
        assert_eq!(echoed, sent, "client {id} message {i}");
    }
    ws.close(None).await.expect("close");
    // the server's close frame, then the end
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Close(_)) => {}
            Ok(other) => panic!("after close: {other:?}"),
            Err(_) => break,
        }
    }
    MESSAGES
}

fn main() {
    let echoed = ferroloop::run(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        ferroloop::spawn(server(listener));
        let mut clients = JoinSet::new();
        for id in 0..CLIENTS {
            clients.spawn(client(addr, id));
        }
        let mut echoed = 0;
        while let Some(n) = clients.join_next().await {
            echoed += n.expect("client task");
        }
        echoed
    });
    assert_eq!(echoed, CLIENTS * MESSAGES);
    println!("websocket_echo: {echoed} messages from {CLIENTS} clients echoed and checked");
}
