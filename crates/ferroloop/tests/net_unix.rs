//! Unix domain sockets on the Rust runtime: echo through a socket file, path errors,
//! socket pairs, datagrams, the abstract namespace and the futures-io traits.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ferroloop::net::{UnixDatagram, UnixListener, UnixStream};
use ferroloop::{run, spawn, timeout};
use futures::io::{AsyncReadExt, AsyncWriteExt};

/// Run `body` on a new loop, failing the test instead of hanging if it takes over 10 s.
fn run_limited<F: std::future::Future>(body: F) -> F::Output {
    match run(timeout(Duration::from_secs(10), body)) {
        Ok(v) => v,
        Err(_) => panic!("test body timed out"),
    }
}

/// A fresh temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ferroloop-net-unix-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("could not remove {}: {e}", self.0.display());
        }
    }
}

#[test]
fn echo_through_a_socket_file_with_concurrent_clients() {
    let dir = TempDir::new();
    let path = dir.path("echo.sock");
    run_limited(async {
        let listener = UnixListener::bind(&path).unwrap();
        assert_eq!(
            listener.local_addr().unwrap().as_pathname(),
            Some(path.as_path())
        );
        let _server = spawn(async move {
            loop {
                let (conn, _) = listener.accept().await.unwrap();
                spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = conn.read(&mut buf).await.unwrap();
                        if n == 0 {
                            break;
                        }
                        conn.write_all(&buf[..n]).await.unwrap();
                    }
                });
            }
        });
        let clients: Vec<_> = (0..10)
            .map(|i| {
                let path = path.clone();
                spawn(async move {
                    let s = UnixStream::connect(&path).await.unwrap();
                    assert_eq!(s.peer_addr().unwrap().as_pathname(), Some(path.as_path()));
                    // big enough to fill the socket buffers both ways
                    let data: Vec<u8> = (0..1_000_000u32).map(|x| (x + i) as u8).collect();
                    let mut back = vec![0u8; data.len()];
                    let (w, r) = (&s, &s);
                    let write = async {
                        w.write_all(&data).await.unwrap();
                        w.shutdown_write().unwrap();
                    };
                    let read = r.read_exact(&mut back);
                    let (_, read) = futures::join!(write, read);
                    read.unwrap();
                    assert!(back == data);
                    let mut end = [0u8; 1];
                    assert_eq!(s.read(&mut end).await.unwrap(), 0);
                })
            })
            .collect();
        for c in clients {
            c.await.unwrap();
        }
    });
}

#[test]
fn path_errors_are_the_kernels() {
    let dir = TempDir::new();
    run_limited(async {
        let missing = UnixStream::connect(dir.path("nobody")).await.unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        let taken = dir.path("taken");
        let _l = UnixListener::bind(&taken).unwrap();
        assert_eq!(
            UnixListener::bind(&taken).unwrap_err().kind(),
            ErrorKind::AddrInUse
        );
        // a file that is not a listening socket
        let plain = dir.path("plain");
        std::fs::write(&plain, b"").unwrap();
        assert_eq!(
            UnixStream::connect(&plain).await.unwrap_err().kind(),
            ErrorKind::ConnectionRefused
        );
        let long = dir.path(&"x".repeat(200));
        assert_eq!(
            UnixListener::bind(long).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    });
}

#[test]
fn bind_needs_a_running_loop() {
    let dir = TempDir::new();
    let err = UnixListener::bind(dir.path("s")).unwrap_err();
    assert!(err.to_string().contains("no ferroloop loop"), "{err}");
}

#[test]
fn abstract_namespace_and_futures_io() {
    run_limited(async {
        let name = format!("\0ferroloop-test-{}", std::process::id());
        let listener = UnixListener::bind(&name).unwrap();
        let server = spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut got = String::new();
            conn.read_to_string(&mut got).await.unwrap();
            conn.write_all(got.to_uppercase().as_bytes()).await.unwrap();
            conn.close().await.unwrap();
        });
        let mut s = UnixStream::connect(&name).await.unwrap();
        s.write_all(b"abstract").await.unwrap();
        s.close().await.unwrap();
        let mut back = Vec::new();
        AsyncReadExt::read_to_end(&mut s, &mut back).await.unwrap();
        assert_eq!(back, b"ABSTRACT");
        server.await.unwrap();
    });
}

#[test]
fn stream_pair_half_close() {
    run_limited(async {
        let (a, b) = UnixStream::pair().unwrap();
        a.write_all(b"one way").await.unwrap();
        a.shutdown_write().unwrap();
        let mut buf = [0u8; 16];
        let n = b.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"one way");
        assert_eq!(b.read(&mut buf).await.unwrap(), 0);
        b.write_all(b"and back").await.unwrap();
        let n = a.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"and back");
    });
}

#[test]
fn datagrams_by_path_and_by_pair() {
    let dir = TempDir::new();
    run_limited(async {
        let server_path = dir.path("dgram");
        let server = UnixDatagram::bind(&server_path).unwrap();
        let client = UnixDatagram::bind(dir.path("client")).unwrap();
        client.send_to(b"hello", &server_path).await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = server.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        let from = from.as_pathname().unwrap().to_path_buf();
        server.send_to(b"hi", from).await.unwrap();
        let n = client.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hi");

        let (a, b) = UnixDatagram::pair().unwrap();
        a.send(b"paired").await.unwrap();
        let n = b.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"paired");
    });
}
