//! `TcpSocket` and `UnixSocket`: `SO_REUSEPORT` sharing, bind before connect, the backlog,
//! buffer sizes, made outside a loop, and their errors.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use ferroloop::net::{TcpSocket, TcpStream, UnixSocket};

fn run_limited<F: std::future::Future>(body: F) -> F::Output {
    ferroloop::run(ferroloop::timeout(Duration::from_secs(10), body)).expect("test body timed out")
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn reuseport_listeners_share_a_port_and_both_accept() {
    run_limited(async {
        let a = TcpSocket::new_v4().unwrap();
        a.set_reuseport(true).unwrap();
        assert!(a.reuseport().unwrap());
        a.bind(localhost()).unwrap();
        let addr = a.local_addr().unwrap();
        // without SO_REUSEPORT the port is taken
        let plain = TcpSocket::new_v4().unwrap();
        assert_eq!(plain.bind(addr).unwrap_err().kind(), ErrorKind::AddrInUse);
        let b = TcpSocket::new_v4().unwrap();
        b.set_reuseport(true).unwrap();
        b.bind(addr).unwrap();
        let listeners = [
            Rc::new(a.listen(1024).unwrap()),
            Rc::new(b.listen(1024).unwrap()),
        ];
        let accepted = Rc::new(std::cell::RefCell::new([0usize; 2]));
        for (i, l) in listeners.iter().enumerate() {
            let (l, accepted) = (l.clone(), accepted.clone());
            ferroloop::spawn(async move {
                loop {
                    let (conn, _) = l.accept().await.unwrap();
                    accepted.borrow_mut()[i] += 1;
                    drop(conn);
                }
            });
        }
        // the kernel hashes each connection's 4-tuple onto one listener: many distinct
        // source ports reach both
        let mut clients = Vec::new();
        for _ in 0..64 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        while accepted.borrow().iter().sum::<usize>() < 64 {
            ferroloop::sleep(Duration::from_millis(1)).await;
        }
        let counts = *accepted.borrow();
        assert!(
            counts[0] > 0 && counts[1] > 0,
            "one listener got all: {counts:?}"
        );
    });
}

#[test]
fn bind_before_connect_sets_the_source_address() {
    run_limited(async {
        let listener = ferroloop::net::TcpListener::bind(localhost())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpSocket::new_v4().unwrap();
        client.set_reuseaddr(true).unwrap();
        client.bind(localhost()).unwrap();
        let source = client.local_addr().unwrap();
        assert_ne!(source.port(), 0);
        let stream = client.connect(addr).await.unwrap();
        let (_conn, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, source);
        assert_eq!(stream.local_addr().unwrap(), source);
        assert!(
            stream.nodelay().unwrap(),
            "TCP_NODELAY is on, as for connect()"
        );
    });
}

#[test]
fn options_and_backlog() {
    // made outside any loop, and on another thread (the builder is Send)
    let socket = std::thread::spawn(|| {
        let s = TcpSocket::new_v4().unwrap();
        s.set_recv_buffer_size(1 << 16).unwrap();
        s.set_send_buffer_size(1 << 16).unwrap();
        s
    })
    .join()
    .unwrap();
    assert!(socket.recv_buffer_size().unwrap() >= 1 << 16);
    assert!(socket.send_buffer_size().unwrap() >= 1 << 16);
    assert!(!socket.reuseaddr().unwrap());
    // listen outside a loop: the error names the missing loop
    let err = socket.listen(8).unwrap_err();
    assert!(err.to_string().contains("no ferroloop loop"), "{err}");
    run_limited(async {
        // an unbound socket listens on a free port; a backlog of 1 still accepts in turn
        let listener = TcpSocket::new_v4().unwrap().listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        for _ in 0..3 {
            let c = TcpStream::connect(addr).await.unwrap();
            let (s, _) = listener.accept().await.unwrap();
            c.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
        }
    });
}

#[test]
fn ipv6_socket_and_refused_connect() {
    run_limited(async {
        let addr = {
            let l = ferroloop::net::TcpListener::bind(localhost())
                .await
                .unwrap();
            l.local_addr().unwrap()
        };
        let err = TcpSocket::new_v4()
            .unwrap()
            .connect(addr)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
        if let Ok(s) = TcpSocket::new_v6() {
            s.set_only_v6(true).unwrap();
            if s.bind("[::1]:0".parse().unwrap()).is_ok() {
                assert!(s.local_addr().unwrap().is_ipv6());
            }
        }
    });
}

#[test]
fn unix_socket_stream_datagram_and_kind_errors() {
    let dir = std::env::temp_dir().join(format!("ferroloop-builders-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let _ = std::fs::remove_file(&path);
    run_limited(async {
        let server = UnixSocket::new_stream().unwrap();
        server.bind(&path).unwrap();
        let listener = server.listen(4).unwrap();
        let mut seen = HashSet::new();
        for i in 0..3u8 {
            let client = UnixSocket::new_stream()
                .unwrap()
                .connect(&path)
                .await
                .unwrap();
            let (conn, _) = listener.accept().await.unwrap();
            client.write_all(&[i]).await.unwrap();
            let mut b = [0u8; 1];
            conn.read_exact(&mut b).await.unwrap();
            seen.insert(b[0]);
        }
        assert_eq!(seen.len(), 3);
        // datagram: bound to a path, and unbound
        let dpath = dir.join("d.sock");
        let _ = std::fs::remove_file(&dpath);
        let d = UnixSocket::new_datagram().unwrap();
        d.bind(&dpath).unwrap();
        let d = d.datagram().unwrap();
        let sender = UnixSocket::new_datagram().unwrap().datagram().unwrap();
        sender.send_to(b"dgram", &dpath).await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(d.recv(&mut buf).await.unwrap(), 5);
        // the wrong kind is a clear InvalidInput error
        let err = UnixSocket::new_datagram().unwrap().listen(1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("stream socket"), "{err}");
        let err = UnixSocket::new_stream().unwrap().datagram().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        // binding an existing path
        let taken = UnixSocket::new_stream().unwrap();
        assert_eq!(taken.bind(&path).unwrap_err().kind(), ErrorKind::AddrInUse);
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
