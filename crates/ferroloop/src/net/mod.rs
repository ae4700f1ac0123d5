//! Networking on the loop's reactor: TCP, UDP and Unix sockets for Rust futures, with
//! tokio's names and asyncio's behaviour.
//!
//! | type | asyncio counterpart |
//! |------|---------------------|
//! | [`TcpListener`] | `loop.create_server` socket: `SO_REUSEADDR`, backlog 1,024 (asyncio: 100), `sock_accept` |
//! | [`TcpStream`] | `open_connection` / `sock_connect`, `sock_recv`, `sock_sendall`, `write_eof`; `TCP_NODELAY` on |
//! | [`UdpSocket`] | `create_datagram_endpoint`'s socket, `sock_sendto` / `sock_recvfrom` |
//! | [`UnixListener`], [`UnixStream`], [`UnixDatagram`] | `create_unix_server`, `open_unix_connection` |
//! | [`TcpSocket`], [`UnixSocket`] | a socket made by hand before `bind`/`listen`/`connect`: `SO_REUSEADDR`, `SO_REUSEPORT` (`reuse_port=True`), buffer sizes, the backlog, binding before connecting |
//! | [`lookup_host`] | `loop.getaddrinfo`: numeric hosts at once, names on the blocking pool |
//!
//! Every socket is non-blocking and registered edge-triggered with the loop running on the
//! thread that made it (see `runtime/io.rs`): an operation tries its syscall first and
//! waits for readiness only after `EWOULDBLOCK`. Errors are the kernel's (`raw_os_error`
//! gives the errno asyncio would put in its `OSError`): a refused connect is
//! `ConnectionRefused`, an oversize datagram `EMSGSIZE`. Writes never raise `SIGPIPE`
//! (`MSG_NOSIGNAL`): a closed peer is an `EPIPE`/`ECONNRESET` error.
//!
//! Streams implement `futures_io::AsyncRead` and `AsyncWrite` (also through `&TcpStream`,
//! so one task may read while another writes); `poll_close` half-closes, like asyncio's
//! `write_eof`. Only one task at a time may wait on each direction of one socket.
//!
//! Threading: all these types are `!Send` and `!Sync`; they belong to the loop thread that
//! created them and must be used, and dropped, there. Creating one outside a running loop
//! (`ferroloop::run`, `Loop::block_on`, `Loop::enter`) is an error.
//!
//! ```
//! use ferroloop::net::{TcpListener, TcpStream};
//!
//! ferroloop::run(async {
//!     let listener = TcpListener::bind("127.0.0.1:0").await?;
//!     let addr = listener.local_addr()?;
//!     let server = ferroloop::spawn(async move {
//!         let (conn, _peer) = listener.accept().await?;
//!         let mut buf = [0u8; 64];
//!         let n = conn.read(&mut buf).await?;
//!         conn.write_all(&buf[..n]).await
//!     });
//!     let client = TcpStream::connect(addr).await?;
//!     client.write_all(b"ping").await?;
//!     let mut buf = [0u8; 4];
//!     let n = client.read(&mut buf).await?;
//!     assert_eq!(&buf[..n], b"ping");
//!     server.await.map_err(|e| std::io::Error::other(e.to_string()))?
//! })
//! .unwrap();
//! ```

mod dns;
pub(crate) mod socket;
mod split;
mod tcp;
mod tcp_socket;
mod udp;
mod unix;
mod unix_socket;

pub use dns::{lookup_host, ToSocketAddrs};
pub use split::{split, ReadHalf, ReuniteError, WriteHalf};
pub use tcp::{TcpListener, TcpStream};
pub use tcp_socket::TcpSocket;
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixListener, UnixStream};
pub use unix_socket::UnixSocket;
