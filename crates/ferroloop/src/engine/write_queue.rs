//! `WriteQueue`: a stream transport's outgoing bytes, sent with vectored `sendmsg`.
//!
//! Chunks are either shared (an immutable buffer the queue holds a reference to, such as a
//! Python `bytes`: no copy) or owned copies (mutable sources, and small writes coalesced
//! into the tail so a burst of tiny writes does not become a burst of iovecs). A small
//! shared write into an empty queue stays shared until a second write comes to coalesce
//! with it: the common case, one response per turn, is sent with no copy and no allocation.
//! An owned chunk's allocation is kept for the next copy once it has been sent. `flush`
//! sends as much as the kernel takes in one `sendmsg` of up to `sock::MAX_IOVECS` chunks and
//! drops what left; the byte count is what asyncio's `get_write_buffer_size` reports.
//!
//! Threading: owned by one transport on the loop thread; `B` decides whether touching a
//! chunk needs a lock (the Python side keeps `bytes` that are only read under the GIL).

use std::collections::VecDeque;
use std::io;
use std::os::unix::io::RawFd;

use crate::engine::sock;

/// Writes up to this size are copied into the tail chunk instead of queued on their own.
pub const COALESCE_LIMIT: usize = 4096;

enum Chunk<B> {
    Shared(B),
    Owned(Vec<u8>),
}

impl<B: AsRef<[u8]>> Chunk<B> {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Shared(b) => b.as_ref(),
            Chunk::Owned(v) => v,
        }
    }
}

/// Outgoing bytes in order, with the offset already sent of the first chunk.
pub struct WriteQueue<B> {
    chunks: VecDeque<Chunk<B>>,
    /// Bytes of the front chunk already sent.
    head: usize,
    len: usize,
    /// The allocation of the last owned chunk sent, emptied, for the next copy.
    spare: Vec<u8>,
}

/// Owned chunks up to this capacity are kept for reuse once sent.
const SPARE_LIMIT: usize = 64 * 1024;

impl<B> Default for WriteQueue<B> {
    fn default() -> Self {
        WriteQueue {
            chunks: VecDeque::new(),
            head: 0,
            len: 0,
            spare: Vec::new(),
        }
    }
}

impl<B: AsRef<[u8]>> WriteQueue<B> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes queued and not yet sent.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is waiting to be sent.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queue a shared buffer (not copied). A small one is copied into the tail instead,
    /// unless the queue is empty: then it waits shared, and is copied only if another
    /// write comes before it is sent.
    pub fn push_shared(&mut self, buf: B) {
        let n = buf.as_ref().len();
        if n == 0 {
            return;
        }
        if n <= COALESCE_LIMIT && !self.chunks.is_empty() {
            self.push_copy(buf.as_ref());
            return;
        }
        self.len += n;
        self.chunks.push_back(Chunk::Shared(buf));
    }

    /// Queue a copy of `data`, appended to an owned tail chunk when that stays small.
    pub fn push_copy(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        // the front chunk may be partly sent; appending to it, or replacing it by an owned
        // copy of all its bytes, is still right (head counts from its start)
        match self.chunks.back_mut() {
            Some(Chunk::Owned(tail)) => {
                tail.extend_from_slice(data);
                return;
            }
            Some(Chunk::Shared(small)) if small.as_ref().len() <= COALESCE_LIMIT => {
                let mut owned = std::mem::take(&mut self.spare);
                owned.extend_from_slice(small.as_ref());
                owned.extend_from_slice(data);
                if let Some(tail) = self.chunks.back_mut() {
                    *tail = Chunk::Owned(owned);
                }
                return;
            }
            _ => {}
        }
        let mut owned = std::mem::take(&mut self.spare);
        owned.extend_from_slice(data);
        self.chunks.push_back(Chunk::Owned(owned));
    }

    /// Send what the kernel takes in one `sendmsg`; returns the bytes sent. `WouldBlock`
    /// is not an error here (0 bytes sent); other errors leave the queue unchanged.
    pub fn flush(&mut self, fd: RawFd) -> io::Result<usize> {
        if self.len == 0 {
            return Ok(0);
        }
        let mut bufs: [&[u8]; sock::MAX_IOVECS] = [&[]; sock::MAX_IOVECS];
        let mut count = 0;
        for (i, c) in self.chunks.iter().take(sock::MAX_IOVECS).enumerate() {
            bufs[i] = if i == 0 {
                &c.bytes()[self.head..]
            } else {
                c.bytes()
            };
            count += 1;
        }
        let sent = match sock::send_vectored(fd, &bufs[..count]) {
            Ok(n) => n,
            Err(e) if sock::would_block(&e) => return Ok(0),
            Err(e) => return Err(e),
        };
        self.consume(sent);
        Ok(sent)
    }

    /// Drop `n` sent bytes from the front.
    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.bytes().len() - self.head;
            if n < left {
                self.head += n;
                return;
            }
            n -= left;
            self.head = 0;
            if let Some(Chunk::Owned(mut done)) = self.chunks.pop_front() {
                if done.capacity() <= SPARE_LIMIT && done.capacity() > self.spare.capacity() {
                    done.clear();
                    self.spare = done;
                }
            }
        }
    }

    /// Drop everything (abort, fatal error).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.head = 0;
        self.len = 0;
    }

    /// The shared buffers still queued (for a garbage collector's traversal).
    pub fn shared(&self) -> impl Iterator<Item = &B> {
        self.chunks.iter().filter_map(|c| match c {
            Chunk::Shared(b) => Some(b),
            Chunk::Owned(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sock::tests::pair;

    fn drain(fd: RawFd) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = sock::recv(fd, &mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn small_writes_coalesce_and_arrive_in_order() {
        let (a, b) = pair();
        let mut q: WriteQueue<Vec<u8>> = WriteQueue::new();
        q.push_copy(b"ab");
        q.push_shared(b"cd".to_vec());
        q.push_shared(vec![b'e'; 10_000]);
        q.push_copy(b"fg");
        assert_eq!(q.len(), 2 + 2 + 10_000 + 2);
        assert_eq!(q.chunks.len(), 3);
        let sent = q.flush(a).unwrap();
        assert_eq!(sent, 10_006);
        assert!(q.is_empty());
        let got = drain(b);
        let mut want = b"abcd".to_vec();
        want.extend(vec![b'e'; 10_000]);
        want.extend_from_slice(b"fg");
        assert_eq!(got, want);
        // SAFETY: closing the test's own descriptors once.
        unsafe {
            libc::close(a);
            libc::close(b);
        }
    }

    #[test]
    fn a_lone_small_write_stays_shared_until_another_comes() {
        let (a, b) = pair();
        let mut q: WriteQueue<Vec<u8>> = WriteQueue::new();
        q.push_shared(b"hello".to_vec());
        assert!(matches!(q.chunks.back(), Some(Chunk::Shared(_))));
        assert_eq!(q.flush(a).unwrap(), 5);
        assert_eq!(drain(b), b"hello");
        // a second small write turns the shared tail into one owned chunk, in order
        q.push_shared(b"ab".to_vec());
        q.push_shared(b"cd".to_vec());
        q.push_copy(b"ef");
        assert_eq!(q.chunks.len(), 1);
        assert!(matches!(q.chunks.back(), Some(Chunk::Owned(_))));
        assert_eq!(q.flush(a).unwrap(), 6);
        assert_eq!(drain(b), b"abcdef");
        // the owned chunk's allocation is kept for the next copy
        assert!(q.spare.capacity() >= 6);
        q.push_copy(b"gh");
        assert!(q.spare.capacity() == 0);
        assert_eq!(q.flush(a).unwrap(), 2);
        assert_eq!(drain(b), b"gh");
        // SAFETY: closing the test's own descriptors once.
        unsafe {
            libc::close(a);
            libc::close(b);
        }
    }

    #[test]
    fn partial_sends_keep_the_rest_and_a_full_socket_is_not_an_error() {
        let (a, b) = pair();
        let mut q: WriteQueue<Vec<u8>> = WriteQueue::new();
        let big: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
        q.push_shared(big.clone());
        let mut received = Vec::new();
        let mut stalls = 0;
        while !q.is_empty() {
            let n = q.flush(a).unwrap();
            if n == 0 {
                stalls += 1;
            }
            received.extend(drain(b));
        }
        received.extend(drain(b));
        assert!(stalls > 0 || received.len() == big.len());
        assert_eq!(received, big);
        // SAFETY: closing the test's own descriptors once.
        unsafe {
            libc::close(a);
            libc::close(b);
        }
    }

    #[test]
    fn errors_leave_the_queue_and_clear_empties_it() {
        let (a, b) = pair();
        // SAFETY: closing the peer to provoke EPIPE.
        unsafe { libc::close(b) };
        let mut q: WriteQueue<Vec<u8>> = WriteQueue::new();
        q.push_copy(b"xyz");
        let err = q.flush(a).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
        assert_eq!(q.len(), 3);
        q.clear();
        assert!(q.is_empty());
        // SAFETY: closing the test's own descriptor once.
        unsafe { libc::close(a) };
    }
}
