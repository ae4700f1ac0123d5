//! Name resolution: [`lookup_host`] and the [`ToSocketAddrs`] trait the `bind`/`connect`
//! functions take.
//!
//! Decision: as asyncio's `_ensure_resolved`, a numeric host (`"127.0.0.1"`, `"::1"`) is
//! answered at once, with no thread; any other name goes to the C resolver
//! (`getaddrinfo`, through `std::net::ToSocketAddrs`) on the blocking pool
//! ([`crate::spawn_blocking`]), asyncio's `run_in_executor(None, getaddrinfo)`. Cost: a
//! thread hand-off per named lookup; none for numeric addresses.
//!
//! Threading: the lookup future may be awaited on any loop; only the pool's thread blocks.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Resolve `host` and `port` to socket addresses (asyncio's `loop.getaddrinfo`, reduced to
/// the addresses).
///
/// A numeric IPv4 or IPv6 address (brackets allowed: `"[::1]"`) is returned at once;
/// anything else is looked up with `getaddrinfo` on the blocking pool, in the order the
/// resolver gives (duplicates from several socket types removed).
///
/// ```
/// let addrs = ferroloop::run(async { ferroloop::net::lookup_host("127.0.0.1", 80).await }).unwrap();
/// assert_eq!(addrs, vec!["127.0.0.1:80".parse().unwrap()]);
/// ```
pub async fn lookup_host(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Some(ip) = parse_numeric(host) {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let owned = host.to_owned();
    let found = crate::spawn_blocking(move || {
        std::net::ToSocketAddrs::to_socket_addrs(&(owned.as_str(), port))
            .map(|it| it.collect::<Vec<_>>())
    })
    .await
    .map_err(|e| io::Error::other(format!("name lookup of {host:?} failed: {e:?}")))??;
    let mut addrs: Vec<SocketAddr> = Vec::with_capacity(found.len());
    for a in found {
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    Ok(addrs)
}

/// `host` as an IP address if it is written as one (IPv6 possibly in brackets).
fn parse_numeric(host: &str) -> Option<IpAddr> {
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    inner.parse().ok()
}

/// Resolve any [`ToSocketAddrs`] value.
pub(crate) async fn resolve<A: ToSocketAddrs>(addr: A) -> io::Result<Vec<SocketAddr>> {
    let addrs = match addr.to_addrs() {
        sealed::Addrs::Ready(r) => r?,
        sealed::Addrs::Lookup(host, port) => lookup_host(&host, port).await?,
    };
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        ));
    }
    Ok(addrs)
}

/// What `bind` and `connect` accept as an address: a [`SocketAddr`] (or its V4/V6 forms),
/// `(IpAddr, u16)`, `(&str, u16)` / `(String, u16)` with a host name or numeric host, a
/// `"host:port"` string (`"[::1]:80"` for IPv6), or a slice of `SocketAddr`s.
///
/// Names are resolved with [`lookup_host`] (numeric ones without a thread). The trait is
/// sealed: it is implemented for these types only, as tokio's `ToSocketAddrs` is.
pub trait ToSocketAddrs: sealed::ToSocketAddrsPriv {}

pub(crate) mod sealed {
    use std::io;
    use std::net::SocketAddr;

    /// An address ready to use, or a host name still to look up.
    pub enum Addrs {
        /// Numeric addresses (or the error of parsing them).
        Ready(io::Result<Vec<SocketAddr>>),
        /// A host and port for the resolver.
        Lookup(String, u16),
    }

    /// The private half of [`super::ToSocketAddrs`].
    pub trait ToSocketAddrsPriv {
        /// The addresses, or the name to resolve.
        fn to_addrs(&self) -> Addrs;
    }
}

use sealed::{Addrs, ToSocketAddrsPriv};

macro_rules! ready_addr {
    ($($ty:ty),*) => {$(
        impl ToSocketAddrs for $ty {}
        impl ToSocketAddrsPriv for $ty {
            fn to_addrs(&self) -> Addrs {
                Addrs::Ready(Ok(vec![SocketAddr::from(*self)]))
            }
        }
    )*};
}

ready_addr!(
    SocketAddr,
    SocketAddrV4,
    SocketAddrV6,
    (IpAddr, u16),
    (Ipv4Addr, u16),
    (Ipv6Addr, u16)
);

impl ToSocketAddrs for (&str, u16) {}
impl ToSocketAddrsPriv for (&str, u16) {
    fn to_addrs(&self) -> Addrs {
        match parse_numeric(self.0) {
            Some(ip) => Addrs::Ready(Ok(vec![SocketAddr::new(ip, self.1)])),
            None => Addrs::Lookup(self.0.to_owned(), self.1),
        }
    }
}

impl ToSocketAddrs for (String, u16) {}
impl ToSocketAddrsPriv for (String, u16) {
    fn to_addrs(&self) -> Addrs {
        (self.0.as_str(), self.1).to_addrs()
    }
}

impl ToSocketAddrs for str {}
impl ToSocketAddrsPriv for str {
    fn to_addrs(&self) -> Addrs {
        if let Ok(addr) = self.parse::<SocketAddr>() {
            return Addrs::Ready(Ok(vec![addr]));
        }
        // as std: split at the last colon, the port must be a number
        let Some((host, port)) = self.rsplit_once(':') else {
            return Addrs::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid socket address",
            )));
        };
        match port.parse::<u16>() {
            Ok(port) => (host, port).to_addrs(),
            Err(_) => Addrs::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid port value",
            ))),
        }
    }
}

impl ToSocketAddrs for String {}
impl ToSocketAddrsPriv for String {
    fn to_addrs(&self) -> Addrs {
        self.as_str().to_addrs()
    }
}

impl ToSocketAddrs for [SocketAddr] {}
impl ToSocketAddrsPriv for [SocketAddr] {
    fn to_addrs(&self) -> Addrs {
        Addrs::Ready(Ok(self.to_vec()))
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}
impl<T: ToSocketAddrsPriv + ?Sized> ToSocketAddrsPriv for &T {
    fn to_addrs(&self) -> Addrs {
        (**self).to_addrs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(a: impl ToSocketAddrs) -> Option<Vec<SocketAddr>> {
        match a.to_addrs() {
            Addrs::Ready(r) => r.ok(),
            Addrs::Lookup(..) => None,
        }
    }

    #[test]
    fn numeric_forms_need_no_lookup() {
        let v4: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 80));
        let v6: SocketAddr = SocketAddr::from((Ipv6Addr::LOCALHOST, 80));
        assert_eq!(ready("127.0.0.1:80"), Some(vec![v4]));
        assert_eq!(ready("[::1]:80"), Some(vec![v6]));
        assert_eq!(ready(("::1", 80)), Some(vec![v6]));
        assert_eq!(ready(("[::1]", 80)), Some(vec![v6]));
        assert_eq!(ready(v4), Some(vec![v4]));
        assert_eq!(ready(&[v4, v6][..]), Some(vec![v4, v6]));
        assert_eq!(ready((Ipv4Addr::LOCALHOST, 80)), Some(vec![v4]));
    }

    #[test]
    fn names_are_looked_up_and_bad_ports_refused() {
        assert!(matches!("localhost:80".to_addrs(), Addrs::Lookup(h, 80) if h == "localhost"));
        assert!(matches!("localhost:x".to_addrs(), Addrs::Ready(Err(_))));
        assert!(matches!("localhost".to_addrs(), Addrs::Ready(Err(_))));
    }
}
