//! [`split`]: a stream as a read half and a write half, for two tasks (asyncio's
//! `StreamReader`/`StreamWriter` pair over one transport).
//!
//! The halves share the stream through an `Rc`: reading and writing only need `&stream`
//! (the stream's readiness is kept per direction), so each half polls its own direction and
//! parks its own waker. [`ReadHalf::reunite`] gives the stream back.
//!
//! Threading: `!Send`, like the stream: both halves stay on the stream's loop thread.

use std::fmt;
use std::io;
use std::ops::Deref;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};

/// The reading half of a stream split by [`split`].
pub struct ReadHalf<S> {
    stream: Rc<S>,
}

/// The writing half of a stream split by [`split`]; closing it half-closes the stream.
pub struct WriteHalf<S> {
    stream: Rc<S>,
}

/// Split `stream` (a [`crate::TcpStream`] or [`crate::UnixStream`]) into halves that two
/// tasks can own, one reading while the other writes.
///
/// ```
/// use futures::io::{AsyncReadExt, AsyncWriteExt};
/// ferroloop::run(async {
///     let (a, b) = ferroloop::UnixStream::pair().unwrap();
///     let (mut rd, mut wr) = ferroloop::net::split(a);
///     let writer = ferroloop::spawn(async move { wr.write_all(b"ping").await.unwrap() });
///     b.write_all(b"pong").await.unwrap();
///     let mut got = [0u8; 4];
///     rd.read_exact(&mut got).await.unwrap();
///     assert_eq!(&got, b"pong");
///     writer.await.unwrap();
/// });
/// ```
pub fn split<S>(stream: S) -> (ReadHalf<S>, WriteHalf<S>) {
    let stream = Rc::new(stream);
    (
        ReadHalf {
            stream: stream.clone(),
        },
        WriteHalf { stream },
    )
}

/// [`ReadHalf::reunite`] was given the write half of another stream.
pub struct ReuniteError<S>(pub ReadHalf<S>, pub WriteHalf<S>);

impl<S> fmt::Debug for ReuniteError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReuniteError")
    }
}

impl<S> fmt::Display for ReuniteError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the halves belong to different streams")
    }
}

impl<S> std::error::Error for ReuniteError<S> {}

impl<S> ReadHalf<S> {
    /// The stream again, from both of its halves.
    pub fn reunite(self, write: WriteHalf<S>) -> Result<S, ReuniteError<S>> {
        if !Rc::ptr_eq(&self.stream, &write.stream) {
            return Err(ReuniteError(self, write));
        }
        drop(write);
        Rc::try_unwrap(self.stream).map_err(|stream| {
            // unreachable: only the two halves held the stream
            let (r, w) = (
                ReadHalf {
                    stream: stream.clone(),
                },
                WriteHalf { stream },
            );
            ReuniteError(r, w)
        })
    }
}

impl<S> Deref for ReadHalf<S> {
    type Target = S;

    /// The stream, for its addresses and options (read through this half only).
    fn deref(&self) -> &S {
        &self.stream
    }
}

impl<S> Deref for WriteHalf<S> {
    type Target = S;

    /// The stream, for its addresses and options (write through this half only).
    fn deref(&self) -> &S {
        &self.stream
    }
}

impl<S> AsyncRead for ReadHalf<S>
where
    for<'a> &'a S: AsyncRead,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.stream).poll_read(cx, buf)
    }
}

impl<S> AsyncWrite for WriteHalf<S>
where
    for<'a> &'a S: AsyncWrite,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.stream).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.stream).poll_flush(cx)
    }

    /// Half-close the stream (end-of-stream to the peer); the read half goes on reading.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.stream).poll_close(cx)
    }
}

impl<S> fmt::Debug for ReadHalf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadHalf")
    }
}

impl<S> fmt::Debug for WriteHalf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WriteHalf")
    }
}
