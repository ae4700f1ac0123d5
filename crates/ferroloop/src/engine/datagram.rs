//! Many datagrams per system call: `recvmmsg` into a reusable batch, `sendmmsg` of a list
//! (the calls are the OS backend's, `crate::sys`).
//!
//! A datagram server under load finds several datagrams queued per readiness event and
//! answers each with one; one `recvfrom` and one `sendto` per datagram make the system-call
//! entry a visible share of the cost (about 180 ns each on the reference machine, against
//! about 5 µs of server CPU per echoed datagram). These helpers move a whole batch with one
//! call each way. Addresses are raw `sockaddr` bytes, decoded by [`peer_addr`]; making
//! Python objects of them is the caller's business.
//!
//! Threading: any thread; the caller owns the descriptor's lifetime. A `RecvBatch` is
//! plain memory owned by one thread at a time.

use std::net::{SocketAddrV4, SocketAddrV6};

/// The room for one datagram in a batch: asyncio reads datagrams with
/// `recvfrom(256 * 1024)`, so a longer one is cut at the same length.
pub const DATAGRAM_ROOM: usize = 256 * 1024;

/// Datagrams per batch, at most.
pub const BATCH: usize = 16;

/// One datagram to send: its bytes and its destination as a raw `sockaddr` (empty on a
/// connected socket).
pub struct Outgoing<'a> {
    /// The datagram.
    pub data: &'a [u8],
    /// The destination's raw `sockaddr`, or empty for the connected peer.
    pub addr: &'a [u8],
}

pub use crate::sys::datagram::{send_batch, RecvBatch};

/// A datagram's sender, decoded from the raw `sockaddr` of [`RecvBatch::get`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAddr<'a> {
    /// An IPv4 sender.
    V4(SocketAddrV4),
    /// An IPv6 sender; the flow label in host byte order, as the socket module reports it.
    V6(SocketAddrV6),
    /// A Unix socket's sender: the bytes of its `sun_path` as received, up to the
    /// address's length (a leading NUL byte names an abstract address; an unbound sender
    /// gives no bytes or NULs).
    Unix(&'a [u8]),
    /// A Unix socket's sender with no address at all (the kernel wrote none).
    Unnamed,
}

/// Decode the raw `sockaddr` of a datagram received on a socket of address family
/// `family` (`AF_INET`, `AF_INET6`, `AF_UNIX`); `None` for another family or an address
/// too short for its family.
pub fn peer_addr(family: i32, raw: &[u8]) -> Option<PeerAddr<'_>> {
    crate::sys::addr::peer_addr(family, raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn udp_pair() -> (std::net::UdpSocket, std::net::UdpSocket) {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    fn raw_addr(a: &std::net::SocketAddr) -> Vec<u8> {
        let std::net::SocketAddr::V4(v4) = a else {
            panic!("v4 only")
        };
        // SAFETY: sockaddr_in is plain data.
        let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = v4.port().to_be();
        sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
        // SAFETY: reading the bytes of a plain struct.
        unsafe {
            std::slice::from_raw_parts(
                (&sin as *const libc::sockaddr_in).cast::<u8>(),
                std::mem::size_of_val(&sin),
            )
        }
        .to_vec()
    }

    #[test]
    fn a_batch_goes_out_and_comes_back_in_order() {
        use std::os::unix::io::AsRawFd;
        let (a, b) = udp_pair();
        let to = raw_addr(&b.local_addr().unwrap());
        let words: Vec<Vec<u8>> = (0..5)
            .map(|i| format!("datagram {i}").into_bytes())
            .collect();
        let out: Vec<Outgoing<'_>> = words
            .iter()
            .map(|w| Outgoing { data: w, addr: &to })
            .collect();
        assert_eq!(send_batch(a.as_raw_fd(), &out).unwrap(), 5);
        let mut batch = RecvBatch::new();
        let mut seen = Vec::new();
        while seen.len() < 5 {
            match batch.recv(b.as_raw_fd(), BATCH) {
                Ok(n) => (0..n).for_each(|i| {
                    let (d, addr) = batch.get(i);
                    assert_eq!(addr, &raw_addr(&a.local_addr().unwrap())[..]);
                    seen.push(d.to_vec());
                }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(seen, words);
        assert_eq!(
            batch.recv(b.as_raw_fd(), BATCH).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn recv_takes_no_more_than_asked() {
        use std::os::unix::io::AsRawFd;
        let (a, b) = udp_pair();
        a.connect(b.local_addr().unwrap()).unwrap();
        for i in 0..3u8 {
            a.send(&[i]).unwrap();
        }
        let mut batch = RecvBatch::new();
        let mut first = 0;
        while first == 0 {
            match batch.recv(b.as_raw_fd(), 1) {
                Ok(n) => first = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(first, 1);
        assert_eq!(batch.get(0).0, &[0]);
    }
}
