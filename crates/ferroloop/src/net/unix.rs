//! Unix domain sockets: [`UnixListener`] and [`UnixStream`] (asyncio's
//! `create_unix_server` / `open_unix_connection`), and [`UnixDatagram`].
//!
//! Decision: as for TCP, std's types own the descriptors and a [`Registration`] declared
//! before them parks tasks on `EWOULDBLOCK`. Binding never removes an existing file: a
//! path that exists is `AddrInUse`, as std reports it (asyncio's `create_unix_server`
//! removes a stale socket file first; do that yourself if you want it). A path starting
//! with a NUL byte is an address in Linux's abstract namespace.
//!
//! A non-blocking `connect` on a Unix stream socket completes at once or fails when the
//! listener's backlog is full (`EAGAIN` on Linux); no readiness event announces room in the
//! backlog, so `connect` then retries after a short sleep (1 ms doubling to 50 ms), waiting
//! as a blocking `connect` would.
//!
//! Threading: `!Send`, `!Sync`; use and drop on the loop thread that created the socket.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::unix::io::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::task::{Context, Poll};
use std::time::Duration;

use super::socket;
use super::UnixSocket;
use crate::runtime::io::Registration;

/// A Unix stream socket listening for connections.
pub struct UnixListener {
    // declared first: deregistered before `std` closes the descriptor
    reg: Registration,
    std: std::os::unix::net::UnixListener,
}

/// A connected Unix stream socket. Reads and writes take `&self`, as for
/// [`TcpStream`](super::TcpStream).
pub struct UnixStream {
    // declared first: deregistered before `std` closes the descriptor
    reg: Registration,
    std: std::os::unix::net::UnixStream,
}

/// A Unix datagram socket.
pub struct UnixDatagram {
    // declared first: deregistered before `std` closes the descriptor
    reg: Registration,
    std: std::os::unix::net::UnixDatagram,
}

impl UnixListener {
    /// Bind a listening socket at `path` (backlog 1,024; asyncio: 100). The path must not exist
    /// (`AddrInUse` otherwise); the socket file stays after the listener is dropped.
    ///
    /// Must be called inside a running loop.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        let socket = UnixSocket::new_stream()?;
        socket.bind(path)?;
        socket.listen(socket::LISTEN_BACKLOG as u32)
    }

    /// Register a listening, non-blocking descriptor (from [`UnixSocket::listen`]).
    pub(super) fn from_listening(fd: OwnedFd) -> io::Result<UnixListener> {
        let std = std::os::unix::net::UnixListener::from(fd);
        let reg = Registration::new(std.as_raw_fd())?;
        Ok(UnixListener { reg, std })
    }

    /// Adopt a listening std socket (made non-blocking here) into the running loop.
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        listener.set_nonblocking(true)?;
        let reg = Registration::new(listener.as_raw_fd())?;
        Ok(UnixListener { reg, std: listener })
    }

    /// Leave the loop and give back the std socket (still non-blocking).
    pub fn into_std(self) -> std::os::unix::net::UnixListener {
        let UnixListener { reg, std } = self;
        drop(reg);
        std
    }

    /// Wait for a connection and accept it: the stream (registered with this loop) and the
    /// peer's address (usually unnamed).
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// The poll form of [`accept`](Self::accept), for hand-written futures.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(UnixStream, SocketAddr)>> {
        let fd = self.reg.fd();
        let new_fd = match self.reg.poll_read_io(cx, || socket::accept(fd)) {
            Poll::Ready(Ok((new_fd, _, _))) => new_fd,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let std = std::os::unix::net::UnixStream::from(new_fd);
        Poll::Ready(
            std.peer_addr()
                .and_then(|peer| Ok((UnixStream::from_nonblocking(std)?, peer))),
        )
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std.local_addr()
    }

    /// The pending socket error (`SO_ERROR`), cleared by reading it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.std.take_error()
    }
}

impl UnixStream {
    /// Connect to the listener at `path`.
    ///
    /// Errors: `NotFound` (`ENOENT`) when no file is there, `ConnectionRefused` when the file
    /// is not a listening socket.
    pub async fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        UnixSocket::new_stream()?.connect(path).await
    }

    /// Connect the non-blocking stream socket `fd` (from [`UnixSocket::connect`]) to `path`.
    pub(super) async fn connect_from(fd: OwnedFd, path: &Path) -> io::Result<UnixStream> {
        let (sun, len) = socket::sockaddr_un_of(path)?;
        let stream = UnixStream::from_nonblocking(std::os::unix::net::UnixStream::from(fd))?;
        let raw = stream.reg.fd();
        let mut backoff = Duration::from_millis(1);
        loop {
            // SAFETY: sun holds an address of len bytes and lives across the call.
            let started =
                unsafe { socket::connect_raw(raw, (&sun as *const libc::sockaddr_un).cast(), len) };
            match started {
                Ok(true) => return Ok(stream),
                Ok(false) => {
                    stream
                        .reg
                        .write_io(|| socket::connect_finished(raw))
                        .await?;
                    return Ok(stream);
                }
                Err(e) if socket::unix_backlog_full(&e) => {
                    // the listener's backlog is full (see the module docs)
                    crate::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A connected pair of streams (`socketpair`), both registered with this loop.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        Ok((UnixStream::from_std(a)?, UnixStream::from_std(b)?))
    }

    fn from_nonblocking(std: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        let reg = Registration::new(std.as_raw_fd())?;
        Ok(UnixStream { reg, std })
    }

    /// Adopt a connected std stream (made non-blocking here) into the running loop.
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        stream.set_nonblocking(true)?;
        UnixStream::from_nonblocking(stream)
    }

    /// Leave the loop and give back the std stream (still non-blocking).
    pub fn into_std(self) -> std::os::unix::net::UnixStream {
        let UnixStream { reg, std } = self;
        drop(reg);
        std
    }

    /// Read into `buf`, waiting until some data (or end of stream) is there; 0 at end of
    /// stream.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        socket::read(&self.reg, buf).await
    }

    /// Fill `buf` completely; `UnexpectedEof` if the stream ends first.
    pub async fn read_exact(&self, buf: &mut [u8]) -> io::Result<()> {
        socket::read_exact(&self.reg, buf).await
    }

    /// Write from `buf`, waiting until the kernel takes at least one byte: how many it took.
    pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        socket::write(&self.reg, buf).await
    }

    /// Write all of `buf`, waiting for room as often as needed (`EPIPE` if the peer is gone).
    pub async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        socket::write_all(&self.reg, buf).await
    }

    /// Half-close: send end-of-stream (`shutdown(SHUT_WR)`), keep reading.
    pub fn shutdown_write(&self) -> io::Result<()> {
        crate::engine::sock::shutdown_write(self.reg.fd())
    }

    /// Shut down one or both directions (`shutdown(2)`).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.std.shutdown(how)
    }

    /// The local address (unnamed for a connecting socket).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std.local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.std.peer_addr()
    }

    /// The pending socket error (`SO_ERROR`), cleared by reading it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.std.take_error()
    }

    /// Poll form of [`read`](Self::read) (what `AsyncRead` uses), for hand-written futures.
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        socket::poll_read(&self.reg, cx, buf)
    }

    /// Poll form of [`write`](Self::write) (what `AsyncWrite` uses), for hand-written futures.
    pub fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        socket::poll_write(&self.reg, cx, buf)
    }
}

socket::impl_async_io!(UnixStream);
#[cfg(feature = "hyper")]
crate::hyper::impl_hyper_io!(UnixStream);

impl UnixDatagram {
    /// A datagram socket bound at `path` (which must not exist).
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixDatagram> {
        UnixDatagram::from_std(std::os::unix::net::UnixDatagram::bind(path)?)
    }

    /// A datagram socket bound to no address (it can still send, and connect).
    pub fn unbound() -> io::Result<UnixDatagram> {
        UnixDatagram::from_std(std::os::unix::net::UnixDatagram::unbound()?)
    }

    /// A connected pair of datagram sockets (`socketpair`).
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = std::os::unix::net::UnixDatagram::pair()?;
        Ok((UnixDatagram::from_std(a)?, UnixDatagram::from_std(b)?))
    }

    /// Adopt a std socket (made non-blocking here) into the running loop.
    pub fn from_std(socket: std::os::unix::net::UnixDatagram) -> io::Result<UnixDatagram> {
        socket.set_nonblocking(true)?;
        let reg = Registration::new(socket.as_raw_fd())?;
        Ok(UnixDatagram { reg, std: socket })
    }

    /// Leave the loop and give back the std socket (still non-blocking).
    pub fn into_std(self) -> std::os::unix::net::UnixDatagram {
        let UnixDatagram { reg, std } = self;
        drop(reg);
        std
    }

    /// Set the default peer to the socket at `path` (never blocks).
    pub fn connect<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.std.connect(path)
    }

    /// Send one datagram to the socket at `path`, waiting while the receiver's queue is full.
    pub async fn send_to<P: AsRef<Path>>(&self, buf: &[u8], path: P) -> io::Result<usize> {
        let path = path.as_ref();
        self.reg.write_io(|| self.std.send_to(buf, path)).await
    }

    /// Receive one datagram and its sender's address.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.reg.read_io(|| self.std.recv_from(buf)).await
    }

    /// Send one datagram to the connected peer.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.reg.write_io(|| self.std.send(buf)).await
    }

    /// Receive one datagram from the connected peer.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.reg.read_io(|| self.std.recv(buf)).await
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std.local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.std.peer_addr()
    }

    /// The pending socket error (`SO_ERROR`), cleared by reading it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.std.take_error()
    }
}

macro_rules! fd_and_debug {
    ($($ty:ident),*) => {$(
        impl AsRawFd for $ty {
            fn as_raw_fd(&self) -> RawFd {
                self.reg.fd()
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("fd", &self.reg.fd())
                    .field("local", &self.std.local_addr().ok())
                    .finish()
            }
        }
    )*};
}

fd_and_debug!(UnixListener, UnixStream, UnixDatagram);
