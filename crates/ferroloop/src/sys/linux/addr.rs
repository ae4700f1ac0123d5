//! Socket addresses on Linux: [`SocketAddr`] and Unix paths to and from their C layout
//! (`sockaddr_in`/`sockaddr_in6` without a length field, `sockaddr_un` with a 108-byte
//! path and Linux's abstract namespace), and the decoding of a received datagram's raw
//! sender address ([`peer_addr`]).
//!
//! Threading: plain functions on plain data.

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::engine::datagram::PeerAddr;

/// `addr` in its C layout, with the length to pass along with it.
pub(crate) fn sockaddr_of(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid (unspecified) address.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and at least as aligned as sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_in6 is plain data; zeroed fills the fields set below and
            // any private padding libc may declare.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            // SAFETY: sockaddr_storage is larger than and at least as aligned as sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// The `SocketAddr` the kernel wrote into `storage` (an IPv4 or IPv6 address).
pub(crate) fn socket_addr_from(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> io::Result<SocketAddr> {
    let len = len as usize;
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and the storage is
            // aligned for it.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6, and the storage is
            // aligned for it.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an IPv4 or IPv6 socket address",
        )),
    }
}

/// `path` as a `sockaddr_un`. A path starting with a NUL byte names an address in Linux's
/// abstract namespace (no file); any other path must fit `sun_path` with its terminator.
pub(crate) fn sockaddr_un_of(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all zeroes is an empty path.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    let abstract_name = bytes.first() == Some(&0);
    if bytes.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty Unix socket path",
        ));
    }
    if !abstract_name && bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "Unix socket path contains a NUL byte",
        ));
    }
    // a filesystem path keeps one byte for its terminating NUL (already zero)
    let room = sun.sun_path.len() - usize::from(!abstract_name);
    if bytes.len() > room {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "Unix socket path is longer than sun_path (108 bytes)",
        ));
    }
    for (dst, src) in sun.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let base = std::mem::offset_of!(libc::sockaddr_un, sun_path);
    let len = base + bytes.len() + usize::from(!abstract_name);
    Ok((sun, len as libc::socklen_t))
}

/// The sender of a datagram received on a socket of `family`, from the raw `sockaddr` the
/// kernel wrote (see [`crate::engine::datagram::peer_addr`]).
pub(crate) fn peer_addr(family: i32, raw: &[u8]) -> Option<PeerAddr<'_>> {
    match family {
        libc::AF_INET if raw.len() >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the length check above; read_unaligned copes with any alignment.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read_unaligned(raw.as_ptr() as *const _) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(PeerAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if raw.len() >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the length check above.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read_unaligned(raw.as_ptr() as *const _) };
            Some(PeerAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )))
        }
        libc::AF_UNIX if raw.is_empty() => Some(PeerAddr::Unnamed),
        libc::AF_UNIX => {
            let off = std::mem::offset_of!(libc::sockaddr_un, sun_path);
            Some(PeerAddr::Unix(raw.get(off..).unwrap_or(&[])))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet_addresses_round_trip_through_the_c_layout() {
        for text in ["127.0.0.1:8080", "[::1]:443", "[fe80::1%3]:9", "0.0.0.0:0"] {
            let addr: SocketAddr = match text.parse() {
                Ok(a) => a,
                Err(e) => panic!("{text}: {e}"),
            };
            let (storage, len) = sockaddr_of(&addr);
            assert_eq!(socket_addr_from(&storage, len).ok(), Some(addr));
        }
    }

    #[test]
    fn unix_paths_are_checked_for_length_and_nul() {
        assert!(sockaddr_un_of(Path::new("/tmp/x.sock")).is_ok());
        assert!(sockaddr_un_of(Path::new("")).is_err());
        assert!(sockaddr_un_of(Path::new(&"a".repeat(108))).is_err());
        assert!(sockaddr_un_of(Path::new(&"a".repeat(107))).is_ok());
        let (_, len) = match sockaddr_un_of(Path::new("\0abstract")) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            len as usize,
            std::mem::offset_of!(libc::sockaddr_un, sun_path) + 9
        );
    }

    fn bytes_of<T>(value: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain C struct.
        unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
            .to_vec()
    }

    #[test]
    fn peer_addresses_decode_as_the_socket_module_reports_them() {
        let v4: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let (storage, len) = sockaddr_of(&v4);
        let raw = &bytes_of(&storage)[..len as usize];
        assert_eq!(
            peer_addr(libc::AF_INET, raw),
            Some(PeerAddr::V4("127.0.0.1:8080".parse().unwrap()))
        );
        assert_eq!(peer_addr(libc::AF_INET, &raw[..4]), None);
        assert_eq!(peer_addr(libc::AF_PACKET, raw), None);

        // SAFETY: sockaddr_in6 is plain data.
        let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sin6.sin6_port = 443u16.to_be();
        sin6.sin6_flowinfo = 0x1234u32.to_be();
        sin6.sin6_addr.s6_addr[15] = 1;
        sin6.sin6_scope_id = 3;
        assert_eq!(
            peer_addr(libc::AF_INET6, &bytes_of(&sin6)),
            Some(PeerAddr::V6(SocketAddrV6::new(
                Ipv6Addr::LOCALHOST,
                443,
                0x1234,
                3
            )))
        );

        let (sun, len) = sockaddr_un_of(Path::new("/tmp/x.sock")).unwrap();
        let raw = &bytes_of(&sun)[..len as usize];
        assert_eq!(
            peer_addr(libc::AF_UNIX, raw),
            Some(PeerAddr::Unix(b"/tmp/x.sock\0"))
        );
        assert_eq!(peer_addr(libc::AF_UNIX, &[]), Some(PeerAddr::Unnamed));
    }
}
