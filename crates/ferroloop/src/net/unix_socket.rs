//! [`UnixSocket`]: a Unix stream or datagram socket before it listens, connects or is used,
//! to bind before connecting, choose the listen backlog or set buffer sizes.
//! [`UnixListener::bind`] and [`UnixStream::connect`] are built on it.
//!
//! Decision: as [`TcpSocket`](super::TcpSocket), only a descriptor (non-blocking and
//! close-on-exec) until `listen`, `connect` or `datagram` registers what it becomes with the
//! running loop.
//!
//! Threading: `Send`; what it becomes belongs to the loop thread that made it so.

use std::io;
use std::os::unix::io::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::socket;
use super::{UnixDatagram, UnixListener, UnixStream};

/// A Unix socket before `listen`, `connect` or [`datagram`](UnixSocket::datagram).
///
/// ```
/// use ferroloop::net::UnixSocket;
///
/// ferroloop::run(async {
///     let dir = std::env::temp_dir().join(format!("ferroloop-doc-{}", std::process::id()));
///     std::fs::create_dir_all(&dir)?;
///     let path = dir.join("server.sock");
///     let _ = std::fs::remove_file(&path);
///     let server = UnixSocket::new_stream()?;
///     server.bind(&path)?;
///     let listener = server.listen(16)?;
///     let client = UnixSocket::new_stream()?.connect(&path).await?;
///     let (conn, _) = listener.accept().await?;
///     client.write_all(b"hi").await?;
///     let mut buf = [0u8; 2];
///     conn.read_exact(&mut buf).await?;
///     std::fs::remove_dir_all(&dir)
/// })
/// .unwrap();
/// ```
#[derive(Debug)]
pub struct UnixSocket {
    fd: OwnedFd,
    datagram: bool,
}

impl UnixSocket {
    /// A new stream socket (`SOCK_STREAM`).
    pub fn new_stream() -> io::Result<UnixSocket> {
        Self::new(false)
    }

    /// A new datagram socket (`SOCK_DGRAM`).
    pub fn new_datagram() -> io::Result<UnixSocket> {
        Self::new(true)
    }

    fn new(datagram: bool) -> io::Result<UnixSocket> {
        let ty = if datagram {
            libc::SOCK_DGRAM
        } else {
            libc::SOCK_STREAM
        };
        Ok(UnixSocket {
            fd: socket::new_socket(libc::AF_UNIX, ty)?,
            datagram,
        })
    }

    fn expect(&self, datagram: bool, what: &str) -> io::Result<()> {
        if self.datagram == datagram {
            return Ok(());
        }
        let name = |d: bool| if d { "datagram" } else { "stream" };
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{what} needs a {} socket, not a {} socket",
                name(datagram),
                name(self.datagram)
            ),
        ))
    }

    /// Bind to `path` (which must not exist: `AddrInUse` otherwise; a leading NUL byte names
    /// an address in Linux's abstract namespace).
    pub fn bind<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        let (sun, len) = socket::sockaddr_un_of(path.as_ref())?;
        // SAFETY: sun holds an address of len bytes and lives across the call.
        unsafe {
            socket::bind_raw(
                self.fd.as_raw_fd(),
                (&sun as *const libc::sockaddr_un).cast(),
                len,
            )
        }
    }

    /// Set `SO_SNDBUF`.
    pub fn set_send_buffer_size(&self, size: u32) -> io::Result<()> {
        let size = size.min(libc::c_int::MAX as u32) as libc::c_int;
        socket::set_int_opt(self.fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, size)
    }

    /// Set `SO_RCVBUF`.
    pub fn set_recv_buffer_size(&self, size: u32) -> io::Result<()> {
        let size = size.min(libc::c_int::MAX as u32) as libc::c_int;
        socket::set_int_opt(self.fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, size)
    }

    /// Listen (a stream socket, bound first) with `backlog` pending connections at most, and
    /// register the listener with the running loop.
    pub fn listen(self, backlog: u32) -> io::Result<UnixListener> {
        self.expect(false, "listen")?;
        let backlog = backlog.min(libc::c_int::MAX as u32) as libc::c_int;
        socket::listen(self.fd.as_raw_fd(), backlog)?;
        UnixListener::from_listening(self.fd)
    }

    /// Connect (a stream socket) to the listener at `path`, registered with the running loop.
    pub async fn connect<P: AsRef<Path>>(self, path: P) -> io::Result<UnixStream> {
        self.expect(false, "connect")?;
        UnixStream::connect_from(self.fd, path.as_ref()).await
    }

    /// The datagram socket (registered with the running loop), bound or not.
    pub fn datagram(self) -> io::Result<UnixDatagram> {
        self.expect(true, "datagram")?;
        UnixDatagram::from_std(std::os::unix::net::UnixDatagram::from(self.fd))
    }
}

impl AsRawFd for UnixSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for UnixSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl IntoRawFd for UnixSocket {
    fn into_raw_fd(self) -> RawFd {
        self.fd.into_raw_fd()
    }
}

impl From<UnixSocket> for OwnedFd {
    fn from(s: UnixSocket) -> OwnedFd {
        s.fd
    }
}
