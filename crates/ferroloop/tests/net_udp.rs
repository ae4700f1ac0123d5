//! UDP on the Rust runtime: echo, connected sockets and ICMP errors, oversize datagrams,
//! socket options.

use std::io::ErrorKind;
use std::time::Duration;

use ferroloop::net::UdpSocket;
use ferroloop::{run, spawn, timeout};

/// Run `body` on a new loop, failing the test instead of hanging if it takes over 10 s.
fn run_limited<F: std::future::Future>(body: F) -> F::Output {
    match run(timeout(Duration::from_secs(10), body)) {
        Ok(v) => v,
        Err(_) => panic!("test body timed out"),
    }
}

#[test]
fn echo_between_two_sockets() {
    run_limited(async {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap();
        let echo = spawn(async move {
            let mut buf = [0u8; 1500];
            for _ in 0..50 {
                let (n, from) = server.recv_from(&mut buf).await.unwrap();
                server.send_to(&buf[..n], from).await.unwrap();
            }
        });
        let client = UdpSocket::bind(("127.0.0.1", 0)).await.unwrap();
        let mut buf = [0u8; 1500];
        for i in 0..50 {
            let msg = format!("datagram {i}");
            assert_eq!(
                client.send_to(msg.as_bytes(), server_addr).await.unwrap(),
                msg.len()
            );
            let (n, from) = client.recv_from(&mut buf).await.unwrap();
            assert_eq!(from, server_addr);
            assert_eq!(&buf[..n], msg.as_bytes());
        }
        echo.await.unwrap();
    });
}

#[test]
fn connected_socket_send_recv_and_peer_addr() {
    run_limited(async {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert_eq!(a.peer_addr().unwrap_err().kind(), ErrorKind::NotConnected);
        a.connect(b.local_addr().unwrap()).await.unwrap();
        b.connect(format!("127.0.0.1:{}", a.local_addr().unwrap().port()))
            .await
            .unwrap();
        assert_eq!(a.peer_addr().unwrap(), b.local_addr().unwrap());
        a.send(b"ping").await.unwrap();
        let mut buf = [0u8; 8];
        let n = b.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ping");
        b.send(b"pong").await.unwrap();
        let n = a.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"pong");
    });
}

#[test]
fn send_to_a_closed_port_is_refused_at_the_next_recv() {
    run_limited(async {
        let port = {
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            s.local_addr().unwrap().port()
        };
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.connect(("127.0.0.1", port)).await.unwrap();
        s.send(b"anyone?").await.unwrap();
        let mut buf = [0u8; 16];
        let err = timeout(Duration::from_secs(2), s.recv(&mut buf))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
        // the error is reported once; the socket still works
        assert!(timeout(Duration::from_millis(10), s.recv(&mut buf))
            .await
            .is_err());
    });
}

#[test]
fn oversize_datagram_is_emsgsize() {
    run_limited(async {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let big = vec![0u8; 70_000];
        let err = s.send_to(&big, s.local_addr().unwrap()).await.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EMSGSIZE), "{err}");
    });
}

#[test]
fn truncated_receive_and_broadcast_option() {
    run_limited(async {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert!(!s.broadcast().unwrap());
        s.set_broadcast(true).unwrap();
        assert!(s.broadcast().unwrap());
        s.send_to(b"0123456789", s.local_addr().unwrap())
            .await
            .unwrap();
        let mut small = [0u8; 4];
        let (n, _) = s.peek_from(&mut small).await.unwrap();
        assert_eq!(&small[..n], b"0123");
        let (n, _) = s.recv_from(&mut small).await.unwrap();
        assert_eq!(&small[..n], b"0123");
        // the rest of the datagram was discarded
        assert!(timeout(Duration::from_millis(10), s.recv_from(&mut small))
            .await
            .is_err());
    });
}

#[test]
fn ipv6_loopback_when_available() {
    run_limited(async {
        let Ok(s) = UdpSocket::bind("[::1]:0").await else {
            return; // no IPv6 on this machine
        };
        let addr = s.local_addr().unwrap();
        assert!(addr.is_ipv6());
        s.send_to(b"six", addr).await.unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = s.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"six"[..], addr));
    });
}
