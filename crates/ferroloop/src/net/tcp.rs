//! TCP: [`TcpListener`] (asyncio's `create_server` socket) and [`TcpStream`].
//!
//! Decision: the sockets are std's types (`std::net::TcpListener`/`TcpStream`), which own and
//! close the descriptor, beside a [`Registration`] declared first so that it is dropped
//! (and the descriptor leaves the reactor) before std closes it. Reads and writes are the
//! plain `recv`/`send` syscalls of `crate::engine::sock` with no buffering of our own: a
//! `write` returns as soon as the kernel took some bytes, `write_all` waits for room as
//! needed.
//!
//! As asyncio: listeners set `SO_REUSEADDR` (and `IPV6_V6ONLY` for IPv6) and listen with a
//! backlog of 1,024; every stream, connected or accepted, has `TCP_NODELAY` set; `connect`
//! tries each resolved address in turn and reports the error of the attempts when all fail.
//!
//! Threading: `!Send`, `!Sync` (the registration is tied to the loop of the thread that made
//! the socket); use and drop on that thread.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::unix::io::{AsRawFd, OwnedFd, RawFd};
use std::task::{Context, Poll};

use super::dns::{resolve, ToSocketAddrs};
use super::socket;
use super::TcpSocket;
use crate::runtime::io::Registration;

/// A TCP socket listening for connections (asyncio's server socket).
///
/// ```
/// ferroloop::run(async {
///     let listener = ferroloop::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
///     assert_ne!(listener.local_addr().unwrap().port(), 0);
/// });
/// ```
pub struct TcpListener {
    // declared first: deregistered before `std` closes the descriptor
    reg: Registration,
    std: std::net::TcpListener,
}

/// A connected TCP stream.
///
/// Reading and writing take `&self`, so one task may read while another writes (through an
/// `Rc<TcpStream>` or `&TcpStream`); only one task at a time should wait in each direction.
pub struct TcpStream {
    // declared first: deregistered before `std` closes the descriptor
    reg: Registration,
    std: std::net::TcpStream,
}

/// Combine the errors of several failed attempts as asyncio's `create_connection` does: the
/// error itself when there is one (or all are the same), else "Multiple exceptions: ...".
fn combine_errors(mut errors: Vec<(SocketAddr, io::Error)>) -> io::Error {
    let Some((_, last)) = errors.pop() else {
        return io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        );
    };
    let same = errors
        .iter()
        .all(|(_, e)| e.kind() == last.kind() && e.raw_os_error() == last.raw_os_error());
    if same {
        return last;
    }
    let mut msg = String::from("Multiple exceptions: ");
    for (addr, e) in &errors {
        msg.push_str(&format!("{addr}: {e}, "));
    }
    msg.push_str(&last.to_string());
    io::Error::new(last.kind(), msg)
}

impl TcpListener {
    /// Bind a listening socket to `addr` (the first resolved address that binds), with
    /// `SO_REUSEADDR`, `IPV6_V6ONLY` for IPv6, as asyncio's `create_server`, and a backlog of
    /// 1,024 (asyncio: 100). Port 0 picks a free port ([`local_addr`](Self::local_addr) tells
    /// which).
    ///
    /// Errors: the resolver's, or the last `bind`/`listen` error (`AddrInUse`, ...); an
    /// error also outside a running loop.
    pub async fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        let addrs = resolve(addr).await?;
        let mut last = None;
        for a in addrs {
            match Self::bind_one(&a) {
                Ok(l) => return Ok(l),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "could not resolve to any addresses",
            )
        }))
    }

    fn bind_one(addr: &SocketAddr) -> io::Result<TcpListener> {
        let socket = TcpSocket::new_for(addr)?;
        socket.set_reuseaddr(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.bind(*addr)?;
        socket.listen(socket::LISTEN_BACKLOG as u32)
    }

    /// Register a listening, non-blocking descriptor (from [`TcpSocket::listen`]).
    pub(super) fn from_listening(fd: OwnedFd) -> io::Result<TcpListener> {
        let std = std::net::TcpListener::from(fd);
        let reg = Registration::new(std.as_raw_fd())?;
        Ok(TcpListener { reg, std })
    }

    /// Adopt a listening std socket (made non-blocking here) into the running loop.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        let reg = Registration::new(listener.as_raw_fd())?;
        Ok(TcpListener { reg, std: listener })
    }

    /// Leave the loop and give back the std socket (still non-blocking).
    pub fn into_std(self) -> std::net::TcpListener {
        let TcpListener { reg, std } = self;
        drop(reg);
        std
    }

    /// Wait for a connection and accept it: the stream (non-blocking, `TCP_NODELAY` set,
    /// registered with this loop) and the peer's address.
    ///
    /// Errors are the kernel's (`EMFILE` when out of descriptors, ...); the listener stays
    /// usable after one.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// The poll form of [`accept`](Self::accept), for hand-written futures.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let fd = self.reg.fd();
        let (new_fd, storage, len) = match self.reg.poll_read_io(cx, || socket::accept(fd)) {
            Poll::Ready(Ok(v)) => v,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let stream = std::net::TcpStream::from(new_fd);
        Poll::Ready(socket::socket_addr_from(&storage, len).and_then(|peer| {
            let stream = TcpStream::from_nonblocking(stream)?;
            Ok((stream, peer))
        }))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std.local_addr()
    }

    /// Set `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.std.set_ttl(ttl)
    }

    /// The pending socket error (`SO_ERROR`), cleared by reading it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.std.take_error()
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.reg.fd()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("fd", &self.reg.fd())
            .field("local", &self.std.local_addr().ok())
            .finish()
    }
}

impl TcpStream {
    /// Connect to `addr`, trying each resolved address in turn (asyncio's
    /// `create_connection`), with `TCP_NODELAY` set.
    ///
    /// Errors: a port nobody listens on is `ErrorKind::ConnectionRefused` (`ECONNREFUSED`);
    /// when every address fails with the same error that error is returned, otherwise an
    /// error listing each ("Multiple exceptions: ...") with the last one's kind.
    pub async fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        let addrs = resolve(addr).await?;
        let mut errors = Vec::new();
        for a in addrs {
            match Self::connect_one(a).await {
                Ok(s) => return Ok(s),
                Err(e) => errors.push((a, e)),
            }
        }
        Err(combine_errors(errors))
    }

    async fn connect_one(addr: SocketAddr) -> io::Result<TcpStream> {
        TcpSocket::new_for(&addr)?.connect(addr).await
    }

    /// Connect the non-blocking socket `fd` (from [`TcpSocket::connect`]) to `addr`.
    pub(super) async fn connect_from(fd: OwnedFd, addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = TcpStream::from_nonblocking(std::net::TcpStream::from(fd))?;
        let raw = stream.reg.fd();
        if !socket::connect_inet(raw, &addr)? {
            // in progress: `connect_finished` says WouldBlock until the socket is writable
            stream
                .reg
                .write_io(|| socket::connect_finished(raw))
                .await?;
        }
        Ok(stream)
    }

    /// Wrap a non-blocking, connected (or connecting) std stream: set `TCP_NODELAY`, register.
    fn from_nonblocking(std: std::net::TcpStream) -> io::Result<TcpStream> {
        set_nodelay_quiet(&std);
        let reg = Registration::new(std.as_raw_fd())?;
        Ok(TcpStream { reg, std })
    }

    /// Adopt a connected std stream (made non-blocking here, `TCP_NODELAY` set) into the
    /// running loop.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        TcpStream::from_nonblocking(stream)
    }

    /// Leave the loop and give back the std stream (still non-blocking).
    pub fn into_std(self) -> std::net::TcpStream {
        let TcpStream { reg, std } = self;
        drop(reg);
        std
    }

    /// Read into `buf`, waiting until some data (or end of stream) is there: the number of
    /// bytes read, 0 at end of stream (the peer half-closed or closed).
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

    /// Write all of `buf` (asyncio's `sock_sendall`), waiting for room as often as needed.
    /// A peer that went away is an `EPIPE` (`BrokenPipe`) or `ECONNRESET` error, never a
    /// signal.
    pub async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        socket::write_all(&self.reg, buf).await
    }

    /// Half-close: send end-of-stream to the peer (asyncio's `write_eof`, `shutdown(SHUT_WR)`)
    /// and keep reading what it sends back.
    pub fn shutdown_write(&self) -> io::Result<()> {
        crate::engine::sock::shutdown_write(self.reg.fd())
    }

    /// Shut down one or both directions (`shutdown(2)`).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.std.shutdown(how)
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.std.peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std.local_addr()
    }

    /// Set `TCP_NODELAY` (on by default, as asyncio does for its TCP transports).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.std.set_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.std.nodelay()
    }

    /// Set `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.std.set_ttl(ttl)
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

/// `TCP_NODELAY` on, as asyncio's `_set_nodelay`: best effort (a socket already reset by the
/// peer refuses options; the error shows at the first read or write instead).
fn set_nodelay_quiet(stream: &std::net::TcpStream) {
    if stream.set_nodelay(true).is_err() {
        // nothing to do: see above
    }
}

socket::impl_async_io!(TcpStream);
#[cfg(feature = "hyper")]
crate::hyper::impl_hyper_io!(TcpStream);

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.reg.fd()
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("fd", &self.reg.fd())
            .field("local", &self.std.local_addr().ok())
            .field("peer", &self.std.peer_addr().ok())
            .finish()
    }
}
