//! Datagram batches on Linux: `recvmmsg` into a [`RecvBatch`], `sendmmsg` of a list
//! ([`send_batch`]), with the engine's [`BATCH`] and [`DATAGRAM_ROOM`].
//!
//! Threading: any thread; the caller owns the descriptor's lifetime. A `RecvBatch` is
//! plain memory owned by one thread at a time.

use std::io;
use std::os::unix::io::RawFd;

use crate::engine::datagram::{Outgoing, BATCH, DATAGRAM_ROOM};

const ADDR_ROOM: usize = std::mem::size_of::<libc::sockaddr_storage>();

/// Receive buffers for up to [`BATCH`] datagrams and their sender addresses.
///
/// The data area is [`BATCH`] × [`DATAGRAM_ROOM`] bytes of zero-filled memory obtained from
/// the allocator at once; the kernel only touches the pages a datagram lands in, so the
/// resident cost is a few pages per slot actually used.
pub struct RecvBatch {
    data: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    /// Per received datagram: (data length, address length).
    got: Vec<(usize, usize)>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    /// Empty buffers for one batch.
    pub fn new() -> Self {
        // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
        let zero: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        RecvBatch {
            data: vec![0; BATCH * DATAGRAM_ROOM],
            addrs: vec![zero; BATCH],
            got: Vec::with_capacity(BATCH),
        }
    }

    /// One `recvmmsg(MSG_DONTWAIT)` of up to `max` (at most [`BATCH`]) datagrams; returns
    /// how many arrived (then read them with [`RecvBatch::get`]). `WouldBlock` when none
    /// was queued; an error is the first datagram's (a later one's is reported by the next
    /// call, as `recvmmsg` does).
    pub fn recv(&mut self, fd: RawFd, max: usize) -> io::Result<usize> {
        let max = max.clamp(1, BATCH);
        self.got.clear();
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: mmsghdr is plain data; zeroed is a valid empty header.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let base = self.data.as_mut_ptr();
        for i in 0..max {
            // SAFETY: slot i lies inside data (BATCH * DATAGRAM_ROOM bytes).
            iov[i] = libc::iovec {
                iov_base: unsafe { base.add(i * DATAGRAM_ROOM) }.cast(),
                iov_len: DATAGRAM_ROOM,
            };
            let h = &mut msgs[i].msg_hdr;
            h.msg_iov = &mut iov[i];
            h.msg_iovlen = 1;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = ADDR_ROOM as libc::socklen_t;
        }
        let n = loop {
            // SAFETY: msgs holds `max` headers, each pointing at one iovec over its own
            // slot of `data` and at its own sockaddr_storage; all live for the call.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    msgs.as_mut_ptr(),
                    max as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                break n as usize;
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINTR) {
                return Err(err);
            }
        };
        for m in &msgs[..n] {
            self.got.push((
                (m.msg_len as usize).min(DATAGRAM_ROOM),
                (m.msg_hdr.msg_namelen as usize).min(ADDR_ROOM),
            ));
        }
        Ok(n)
    }

    /// Datagram `i` of the last [`RecvBatch::recv`]: its bytes and its sender's raw
    /// `sockaddr` (empty when the sender has no address, as an unbound Unix socket).
    pub fn get(&self, i: usize) -> (&[u8], &[u8]) {
        let (len, alen) = self.got[i];
        let data = &self.data[i * DATAGRAM_ROOM..i * DATAGRAM_ROOM + len];
        // SAFETY: addrs[i] is a live sockaddr_storage of ADDR_ROOM >= alen bytes.
        let addr = unsafe {
            std::slice::from_raw_parts(
                (&self.addrs[i] as *const libc::sockaddr_storage).cast::<u8>(),
                alen,
            )
        };
        (data, addr)
    }
}

/// `sendmmsg` of up to [`BATCH`] datagrams with `MSG_NOSIGNAL`: returns how many the
/// kernel took (the rest, from the first refused, are the caller's to retry or report).
/// An error is the first datagram's.
pub fn send_batch(fd: RawFd, out: &[Outgoing<'_>]) -> io::Result<usize> {
    let n = out.len().min(BATCH);
    if n == 0 {
        return Ok(0);
    }
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; BATCH];
    // SAFETY: mmsghdr is plain data; zeroed is a valid empty header.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (i, o) in out[..n].iter().enumerate() {
        iov[i] = libc::iovec {
            iov_base: o.data.as_ptr() as *mut libc::c_void,
            iov_len: o.data.len(),
        };
        let h = &mut msgs[i].msg_hdr;
        h.msg_iov = &mut iov[i];
        h.msg_iovlen = 1;
        if !o.addr.is_empty() {
            h.msg_name = o.addr.as_ptr() as *mut libc::c_void;
            h.msg_namelen = o.addr.len() as libc::socklen_t;
        }
    }
    loop {
        // SAFETY: msgs holds n headers over live, readable slices of `out` (data and
        // address), which the kernel only reads.
        let r =
            unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}
