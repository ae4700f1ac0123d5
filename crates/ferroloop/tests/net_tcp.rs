//! TCP on the Rust runtime: echo with concurrent clients, a large transfer through full
//! socket buffers, half-close, refused connects, address forms, and the futures-io traits.

use std::io::ErrorKind;
use std::rc::Rc;
use std::time::Duration;

use ferroloop::net::{TcpListener, TcpStream};
use ferroloop::{run, spawn, timeout};
use futures::io::{AsyncReadExt, AsyncWriteExt};

/// Run `body` on a new loop, failing the test instead of hanging if it takes over 10 s.
fn run_limited<F: std::future::Future>(body: F) -> F::Output {
    match run(timeout(Duration::from_secs(10), body)) {
        Ok(v) => v,
        Err(_) => panic!("test body timed out"),
    }
}

/// Accept forever, echoing each connection until its EOF, then closing it.
async fn echo_server(listener: TcpListener) {
    loop {
        let (conn, _) = listener.accept().await.expect("accept");
        spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = conn.read(&mut buf).await.expect("server read");
                if n == 0 {
                    break;
                }
                conn.write_all(&buf[..n]).await.expect("server write");
            }
        });
    }
}

#[test]
fn echo_with_concurrent_clients() {
    run_limited(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _server = spawn(echo_server(listener));
        let clients: Vec<_> = (0..20)
            .map(|i| {
                spawn(async move {
                    let s = TcpStream::connect(addr).await.unwrap();
                    assert_eq!(s.peer_addr().unwrap(), addr);
                    for round in 0..10 {
                        let msg = format!("client {i} round {round}");
                        s.write_all(msg.as_bytes()).await.unwrap();
                        let mut got = vec![0u8; msg.len()];
                        s.read_exact(&mut got).await.unwrap();
                        assert_eq!(got, msg.as_bytes());
                    }
                    i
                })
            })
            .collect();
        for (i, c) in clients.into_iter().enumerate() {
            assert_eq!(c.await.unwrap(), i);
        }
    });
}

#[test]
fn large_transfer_both_ways_through_full_buffers() {
    const TOTAL: usize = 8 << 20;
    run_limited(async {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _server = spawn(echo_server(listener));
        let s = Rc::new(TcpStream::connect(addr).await.unwrap());
        let data: Rc<Vec<u8>> = Rc::new((0..TOTAL).map(|i| (i * 7 + i / 4096) as u8).collect());
        let (ws, wd) = (s.clone(), data.clone());
        // the writer runs ahead of the reader: both the client's and the server's sends
        // meet full buffers (EWOULDBLOCK) many times
        let writer = spawn(async move {
            ws.write_all(&wd).await.unwrap();
            ws.shutdown_write().unwrap();
        });
        let mut got = Vec::with_capacity(TOTAL);
        let mut buf = vec![0u8; 100_000];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        writer.await.unwrap();
        assert_eq!(got.len(), TOTAL);
        assert!(got == *data, "echoed bytes differ");
    });
}

#[test]
fn half_close_peer_reads_eof_and_can_still_answer() {
    run_limited(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn(async move {
            let (conn, peer) = listener.accept().await.unwrap();
            assert_eq!(conn.peer_addr().unwrap(), peer);
            let mut all = Vec::new();
            let mut buf = [0u8; 16];
            loop {
                match conn.read(&mut buf).await.unwrap() {
                    0 => break,
                    n => all.extend_from_slice(&buf[..n]),
                }
            }
            conn.write_all(b"got ").await.unwrap();
            conn.write_all(&all).await.unwrap();
        });
        let s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"hello").await.unwrap();
        s.shutdown_write().unwrap();
        let mut reply = Vec::new();
        let mut buf = [0u8; 16];
        loop {
            match s.read(&mut buf).await.unwrap() {
                0 => break,
                n => reply.extend_from_slice(&buf[..n]),
            }
        }
        assert_eq!(reply, b"got hello");
        server.await.unwrap();
    });
}

#[test]
fn connect_to_closed_port_is_refused() {
    run_limited(async {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let err = TcpStream::connect(("127.0.0.1", port)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
        assert_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED));
    });
}

#[test]
fn bind_to_a_busy_port_is_addr_in_use() {
    run_limited(async {
        let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
        // SO_REUSEADDR does not let two listeners share a port on Linux
        let err = TcpListener::bind(a.local_addr().unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse);
    });
}

#[test]
fn address_forms_and_socket_options() {
    run_limited(async {
        let listener = TcpListener::bind("localhost:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = spawn(async move { listener.accept().await.map(|(s, _)| s.nodelay()) });
        let s = TcpStream::connect(format!("localhost:{port}"))
            .await
            .unwrap();
        assert!(
            s.nodelay().unwrap(),
            "TCP_NODELAY is on by default, as asyncio"
        );
        assert!(
            accept.await.unwrap().unwrap().unwrap(),
            "accepted streams too"
        );
        s.set_nodelay(false).unwrap();
        assert!(!s.nodelay().unwrap());
        assert_eq!(s.local_addr().unwrap().ip(), s.peer_addr().unwrap().ip());
        let bad = TcpStream::connect("localhost:notaport").await.unwrap_err();
        assert_eq!(bad.kind(), ErrorKind::InvalidInput);
    });
}

#[test]
fn futures_io_traits_work_on_streams_and_references() {
    run_limited(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            AsyncReadExt::read_to_end(&mut conn, &mut got)
                .await
                .unwrap();
            // through &TcpStream
            let mut r = &conn;
            AsyncWriteExt::write_all(&mut r, &got).await.unwrap();
            AsyncWriteExt::close(&mut r).await.unwrap();
            got.len()
        });
        let mut s = TcpStream::connect(addr).await.unwrap();
        AsyncWriteExt::write_all(&mut s, b"futures ").await.unwrap();
        let bufs = [
            std::io::IoSlice::new(b"io "),
            std::io::IoSlice::new(b"traits"),
        ];
        let n = AsyncWriteExt::write_vectored(&mut s, &bufs).await.unwrap();
        assert_eq!(n, 9);
        AsyncWriteExt::close(&mut s).await.unwrap();
        let mut back = String::new();
        AsyncReadExt::read_to_string(&mut s, &mut back)
            .await
            .unwrap();
        assert_eq!(back, "futures io traits");
        assert_eq!(server.await.unwrap(), 17);
    });
}

#[test]
fn a_cancelled_accept_or_read_leaves_the_socket_usable() {
    run_limited(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(timeout(Duration::from_millis(10), listener.accept())
            .await
            .is_err());
        let client = spawn(async move { TcpStream::connect(addr).await.unwrap() });
        let (conn, _) = listener.accept().await.unwrap();
        let client = client.await.unwrap();
        let mut buf = [0u8; 4];
        assert!(timeout(Duration::from_millis(10), conn.read(&mut buf))
            .await
            .is_err());
        client.write_all(b"late").await.unwrap();
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"late");
    });
}

#[test]
fn peer_gone_is_an_error_not_a_signal() {
    run_limited(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (conn, _) = listener.accept().await.unwrap();
        drop(conn);
        let chunk = vec![0u8; 64 * 1024];
        let mut err = None;
        for _ in 0..100 {
            if let Err(e) = client.write_all(&chunk).await {
                err = Some(e);
                break;
            }
        }
        let err = err.expect("writing to a closed peer fails");
        assert!(
            matches!(
                err.kind(),
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
            ),
            "{err}"
        );
    });
}

#[test]
fn std_sockets_round_trip_and_need_a_loop() {
    // outside a loop: an error, not a panic
    match TcpListener::from_std(std::net::TcpListener::bind("127.0.0.1:0").unwrap()) {
        Ok(_) => panic!("registered without a loop"),
        Err(e) => assert!(e.to_string().contains("no ferroloop loop"), "{e}"),
    }
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    run_limited(async move {
        let listener = TcpListener::from_std(std_listener).unwrap();
        let client = spawn(async move {
            let s = TcpStream::from_std(std::net::TcpStream::connect(addr).unwrap()).unwrap();
            s.write_all(b"x").await.unwrap();
            s.into_std()
        });
        let (conn, _) = listener.accept().await.unwrap();
        let mut b = [0u8; 1];
        conn.read_exact(&mut b).await.unwrap();
        let std_client = client.await.unwrap();
        assert_eq!(std_client.peer_addr().unwrap(), addr);
        let _back = listener.into_std();
    });
}

#[test]
fn split_halves_read_and_write_from_two_tasks() {
    use ferroloop::net::split;
    run_limited(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // the server: one task reads lines, another writes them back upper-cased
        let server = spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            let (mut rd, mut wr) = split(conn);
            let (tx, rx) = ferroloop::oneshot::channel::<Vec<u8>>();
            let writer = spawn(async move {
                let data = rx.await.unwrap();
                wr.write_all(&data.to_ascii_uppercase()).await.unwrap();
                wr.close().await.unwrap(); // half-close
                wr
            });
            let mut all = Vec::new();
            rd.read_to_end(&mut all).await.unwrap();
            tx.send(all).unwrap();
            let wr = writer.await.unwrap();
            rd.reunite(wr).expect("same stream")
        });
        let client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"split me").await.unwrap();
        client.shutdown_write().unwrap();
        let mut back = Vec::new();
        (&client).read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"SPLIT ME");
        // the reunited stream is the accepted one (both directions are shut down by now, so
        // only its local address is still there to compare)
        let stream = server.await.unwrap();
        assert_eq!(stream.local_addr().unwrap(), addr);
    });
}

#[test]
fn reunite_refuses_halves_of_different_streams() {
    use ferroloop::net::split;
    run_limited(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let a = TcpStream::connect(addr).await.unwrap();
        let b = TcpStream::connect(addr).await.unwrap();
        let (ra, _wa) = split(a);
        let (_rb, wb) = split(b);
        assert!(ra.reunite(wb).is_err());
    });
}

#[test]
fn six_hundred_connects_at_once_all_reach_the_listener_queue() {
    // with asyncio's backlog of 100 the kernel drops the SYNs past the queue and those
    // clients wait a second to retry; with 1,024 every one completes at once
    let connected = run_limited(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connected = ferroloop::spawn_blocking(move || {
            // stop at the first refused or timed-out connect: a regression fails fast
            let streams: Vec<_> = (0..600)
                .map_while(|_| {
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()
                })
                .collect();
            streams.len()
        })
        .await
        .unwrap();
        drop(listener);
        connected
    });
    assert_eq!(connected, 600);
}
