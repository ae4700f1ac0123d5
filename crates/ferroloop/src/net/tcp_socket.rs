//! [`TcpSocket`]: a TCP socket not yet listening or connected, to set options first
//! (`SO_REUSEADDR`, `SO_REUSEPORT`, buffer sizes, `IPV6_V6ONLY`), bind before connecting, or
//! listen with a backlog of one's choosing. [`TcpListener::bind`] and [`TcpStream::connect`]
//! are built on it.
//!
//! Decision: the socket is only a descriptor (non-blocking and close-on-exec from its
//! creation) until [`listen`](TcpSocket::listen) or [`connect`](TcpSocket::connect) turns it
//! into a listener or stream registered with the running loop; so it may be made and
//! configured outside a loop, on any thread.
//!
//! Threading: `Send`; the listener or stream it becomes belongs to the loop thread that
//! called `listen` or `connect`.

use std::io;
use std::net::SocketAddr;
use std::os::unix::io::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};

use super::socket;
use super::{TcpListener, TcpStream};

/// A TCP socket before `listen` or `connect`.
///
/// ```
/// use ferroloop::net::TcpSocket;
///
/// ferroloop::run(async {
///     // two listeners sharing one port, as each loop of a pool would bind it
///     let a = TcpSocket::new_v4()?;
///     a.set_reuseport(true)?;
///     a.bind("127.0.0.1:0".parse().unwrap())?;
///     let port = a.local_addr()?;
///     let b = TcpSocket::new_v4()?;
///     b.set_reuseport(true)?;
///     b.bind(port)?;
///     let (_a, _b) = (a.listen(1024)?, b.listen(1024)?);
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
#[derive(Debug)]
pub struct TcpSocket {
    fd: OwnedFd,
}

impl TcpSocket {
    /// A new IPv4 socket.
    pub fn new_v4() -> io::Result<TcpSocket> {
        Self::new_in(libc::AF_INET)
    }

    /// A new IPv6 socket.
    pub fn new_v6() -> io::Result<TcpSocket> {
        Self::new_in(libc::AF_INET6)
    }

    /// A new socket of `addr`'s family.
    pub fn new_for(addr: &SocketAddr) -> io::Result<TcpSocket> {
        Self::new_in(socket::domain_of(addr))
    }

    fn new_in(domain: libc::c_int) -> io::Result<TcpSocket> {
        Ok(TcpSocket {
            fd: socket::new_socket(domain, libc::SOCK_STREAM)?,
        })
    }

    fn set(&self, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
        socket::set_int_opt(self.fd.as_raw_fd(), level, name, value)
    }

    fn get(&self, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
        socket::get_int_opt(self.fd.as_raw_fd(), level, name)
    }

    /// Set `SO_REUSEADDR`: bind a port whose previous connections are in `TIME_WAIT`
    /// (listeners made by [`TcpListener::bind`] have it, as asyncio's servers).
    pub fn set_reuseaddr(&self, on: bool) -> io::Result<()> {
        self.set(libc::SOL_SOCKET, libc::SO_REUSEADDR, on.into())
    }

    /// Whether `SO_REUSEADDR` is set.
    pub fn reuseaddr(&self) -> io::Result<bool> {
        Ok(self.get(libc::SOL_SOCKET, libc::SO_REUSEADDR)? != 0)
    }

    /// Set `SO_REUSEPORT` (asyncio's `reuse_port=True`): several sockets, each with it set
    /// before `bind`, share one address and the kernel spreads connections over them.
    pub fn set_reuseport(&self, on: bool) -> io::Result<()> {
        self.set(libc::SOL_SOCKET, libc::SO_REUSEPORT, on.into())
    }

    /// Whether `SO_REUSEPORT` is set.
    pub fn reuseport(&self) -> io::Result<bool> {
        Ok(self.get(libc::SOL_SOCKET, libc::SO_REUSEPORT)? != 0)
    }

    /// Set `IPV6_V6ONLY` on an IPv6 socket (listeners made by [`TcpListener::bind`] have it).
    pub fn set_only_v6(&self, on: bool) -> io::Result<()> {
        self.set(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, on.into())
    }

    /// Set `SO_SNDBUF` (the kernel doubles the value and applies its limits).
    pub fn set_send_buffer_size(&self, size: u32) -> io::Result<()> {
        self.set(libc::SOL_SOCKET, libc::SO_SNDBUF, clamp(size))
    }

    /// `SO_SNDBUF` as the kernel reports it.
    pub fn send_buffer_size(&self) -> io::Result<u32> {
        Ok(self.get(libc::SOL_SOCKET, libc::SO_SNDBUF)? as u32)
    }

    /// Set `SO_RCVBUF` (the kernel doubles the value and applies its limits).
    pub fn set_recv_buffer_size(&self, size: u32) -> io::Result<()> {
        self.set(libc::SOL_SOCKET, libc::SO_RCVBUF, clamp(size))
    }

    /// `SO_RCVBUF` as the kernel reports it.
    pub fn recv_buffer_size(&self) -> io::Result<u32> {
        Ok(self.get(libc::SOL_SOCKET, libc::SO_RCVBUF)? as u32)
    }

    /// Bind to `addr` (port 0: a free port, see [`local_addr`](Self::local_addr)).
    pub fn bind(&self, addr: SocketAddr) -> io::Result<()> {
        let (storage, len) = socket::sockaddr_of(&addr);
        // SAFETY: storage holds an address of len bytes and lives across the call.
        unsafe {
            socket::bind_raw(
                self.fd.as_raw_fd(),
                (&storage as *const libc::sockaddr_storage).cast(),
                len,
            )
        }
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        socket::local_addr(self.fd.as_raw_fd())
    }

    /// Listen with `backlog` pending connections at most (the kernel caps it at
    /// `net.core.somaxconn`) and register the listener with the running loop. An unbound
    /// socket gets a free port.
    pub fn listen(self, backlog: u32) -> io::Result<TcpListener> {
        socket::listen(self.fd.as_raw_fd(), clamp(backlog))?;
        TcpListener::from_listening(self.fd)
    }

    /// Listen without registering with a loop (the pool registers each listener on its own
    /// loop's thread, after every socket of the group listens).
    pub(crate) fn listen_unregistered(
        self,
        backlog: libc::c_int,
    ) -> io::Result<std::net::TcpListener> {
        socket::listen(self.fd.as_raw_fd(), backlog)?;
        Ok(std::net::TcpListener::from(self.fd))
    }

    /// Connect to `addr` from this socket (bound first if [`bind`](Self::bind) was called),
    /// registered with the running loop, `TCP_NODELAY` set.
    pub async fn connect(self, addr: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect_from(self.fd, addr).await
    }
}

fn clamp(value: u32) -> libc::c_int {
    value.min(libc::c_int::MAX as u32) as libc::c_int
}

impl AsRawFd for TcpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for TcpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl IntoRawFd for TcpSocket {
    fn into_raw_fd(self) -> RawFd {
        self.fd.into_raw_fd()
    }
}

impl From<TcpSocket> for OwnedFd {
    fn from(s: TcpSocket) -> OwnedFd {
        s.fd
    }
}
