//! UDP: [`UdpSocket`], the socket of asyncio's `create_datagram_endpoint`, with the
//! `sock_sendto`/`sock_recvfrom` style of calls.
//!
//! Decision: std's `UdpSocket` owns the descriptor and makes the syscalls (non-blocking);
//! the [`Registration`], declared first, parks the task on `EWOULDBLOCK`. A datagram is
//! sent whole or not at all: an oversize one is the kernel's `EMSGSIZE`, returned as is. On
//! a connected socket, an ICMP "port unreachable" for an earlier datagram is reported by a
//! later call (`ECONNREFUSED`), as asyncio's `error_received` reports it.
//!
//! Threading: `!Send`, `!Sync`; use and drop on the loop thread that created the socket.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::io::{AsRawFd, RawFd};
use std::task::{Context, Poll};

use super::dns::{resolve, ToSocketAddrs};
use crate::runtime::io::Registration;

/// A UDP socket registered with the loop of this thread.
///
/// ```
/// ferroloop::run(async {
///     let a = ferroloop::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
///     let b = ferroloop::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
///     a.send_to(b"hi", b.local_addr().unwrap()).await.unwrap();
///     let mut buf = [0u8; 16];
///     let (n, from) = b.recv_from(&mut buf).await.unwrap();
///     assert_eq!((&buf[..n], from), (&b"hi"[..], a.local_addr().unwrap()));
/// });
/// ```
pub struct UdpSocket {
    // declared first: deregistered before `std` closes the descriptor
    reg: Registration,
    std: std::net::UdpSocket,
}

impl UdpSocket {
    /// Bind a socket to `addr` (the first resolved address that binds; port 0 picks one).
    pub async fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        let addrs = resolve(addr).await?;
        // std tries each address in turn and reports the last error; it creates the socket
        // close-on-exec
        let std = std::net::UdpSocket::bind(&addrs[..])?;
        UdpSocket::from_std(std)
    }

    /// Adopt a std socket (made non-blocking here) into the running loop.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        socket.set_nonblocking(true)?;
        let reg = Registration::new(socket.as_raw_fd())?;
        Ok(UdpSocket { reg, std: socket })
    }

    /// Leave the loop and give back the std socket (still non-blocking).
    pub fn into_std(self) -> std::net::UdpSocket {
        let UdpSocket { reg, std } = self;
        drop(reg);
        std
    }

    /// Set the default peer: [`send`](Self::send) goes there and only its datagrams are
    /// received. Tries each resolved address in turn; the last error if none works.
    pub async fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        let addrs = resolve(addr).await?;
        // connecting a datagram socket never blocks
        self.std.connect(&addrs[..])
    }

    /// Send one datagram to `target` (its first resolved address), waiting for room in the
    /// send buffer. Returns the bytes sent (all of them). An oversize datagram is
    /// `EMSGSIZE`.
    pub async fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], target: A) -> io::Result<usize> {
        let addrs = resolve(target).await?;
        // `resolve` never returns an empty list
        let to = addrs[0];
        self.reg.write_io(|| self.std.send_to(buf, to)).await
    }

    /// Receive one datagram into `buf` (the excess of a longer one is discarded) and the
    /// sender's address.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.reg.read_io(|| self.std.recv_from(buf)).await
    }

    /// Send one datagram to the connected peer.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.reg.write_io(|| self.std.send(buf)).await
    }

    /// Receive one datagram from the connected peer. After sending to a port where nothing
    /// listens, this reports `ECONNREFUSED` (`ConnectionRefused`) once.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.reg.read_io(|| self.std.recv(buf)).await
    }

    /// Look at the next datagram without taking it off the queue.
    pub async fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.reg.read_io(|| self.std.peek_from(buf)).await
    }

    /// Poll form of [`recv_from`](Self::recv_from), for hand-written futures.
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        self.reg.poll_read_io(cx, || self.std.recv_from(buf))
    }

    /// Poll form of `send_to` with a resolved address, for hand-written futures.
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.reg.poll_write_io(cx, || self.std.send_to(buf, target))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std.local_addr()
    }

    /// The connected peer's address (`NotConnected` if none).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.std.peer_addr()
    }

    /// Set `SO_BROADCAST` (asyncio's `allow_broadcast`).
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.std.set_broadcast(on)
    }

    /// Whether `SO_BROADCAST` is set.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.std.broadcast()
    }

    /// Set `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.std.set_ttl(ttl)
    }

    /// Join an IPv4 multicast group on the interface `interface` (`0.0.0.0`: any).
    pub fn join_multicast_v4(&self, group: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        self.std.join_multicast_v4(&group, &interface)
    }

    /// Join an IPv6 multicast group on interface index `interface` (0: any).
    pub fn join_multicast_v6(&self, group: Ipv6Addr, interface: u32) -> io::Result<()> {
        self.std.join_multicast_v6(&group, interface)
    }

    /// The pending socket error (`SO_ERROR`), cleared by reading it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.std.take_error()
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.reg.fd()
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("fd", &self.reg.fd())
            .field("local", &self.std.local_addr().ok())
            .finish()
    }
}
