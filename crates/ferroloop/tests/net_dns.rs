//! Name resolution: numeric hosts without a thread, names through the blocking pool, and the
//! address forms `bind`/`connect` accept.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ferroloop::net::{lookup_host, TcpListener, TcpStream};
use ferroloop::{run, timeout};

/// Run `body` on a new loop, failing the test instead of hanging if it takes over 10 s.
fn run_limited<F: std::future::Future>(body: F) -> F::Output {
    match run(timeout(Duration::from_secs(10), body)) {
        Ok(v) => v,
        Err(_) => panic!("test body timed out"),
    }
}

#[test]
fn numeric_hosts_are_answered_at_once() {
    run_limited(async {
        assert_eq!(
            lookup_host("127.0.0.1", 80).await.unwrap(),
            vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 80)]
        );
        let v6 = vec![SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 443)];
        assert_eq!(lookup_host("::1", 443).await.unwrap(), v6);
        assert_eq!(lookup_host("[::1]", 443).await.unwrap(), v6);
    });
    // no thread and no loop needed: the future is ready at its first poll
    let ready = futures::executor::block_on(lookup_host("10.1.2.3", 9)).unwrap();
    assert_eq!(ready, vec![SocketAddr::from(([10, 1, 2, 3], 9))]);
}

#[test]
fn localhost_resolves_to_a_loopback_address() {
    run_limited(async {
        let addrs = lookup_host("localhost", 8080).await.unwrap();
        assert!(!addrs.is_empty());
        for a in &addrs {
            assert!(a.ip().is_loopback(), "{a}");
            assert_eq!(a.port(), 8080);
        }
        let mut dedup = addrs.clone();
        dedup.dedup();
        assert_eq!(dedup, addrs, "one entry per address");
    });
}

#[test]
fn named_hosts_work_for_bind_and_connect() {
    run_limited(async {
        let listener = TcpListener::bind(("localhost".to_string(), 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = ferroloop::spawn(async move { listener.accept().await.map(|_| ()) });
        let _s = TcpStream::connect(("localhost", port)).await.unwrap();
        accept.await.unwrap().unwrap();
    });
}

#[test]
fn malformed_addresses_are_invalid_input() {
    run_limited(async {
        for bad in ["127.0.0.1", "127.0.0.1:99999", "no-port-here"] {
            let err = TcpListener::bind(bad).await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{bad}: {err}");
        }
        let empty: &[SocketAddr] = &[];
        assert_eq!(
            TcpStream::connect(empty).await.unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
    });
}
