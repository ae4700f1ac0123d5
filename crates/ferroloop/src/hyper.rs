//! hyper 1.x on ferroloop (feature `hyper`): the `rt` traits hyper asks of a runtime.
//!
//! - [`Timer`]: `hyper::rt::Timer`, with [`SendSleep`] as hyper's `Send + Sync` sleep (header
//!   and keep-alive timeouts);
//! - [`Executor`]: `hyper::rt::Executor`, spawning onto the running loop (`!Send` futures
//!   welcome);
//! - `hyper::rt::Read`/`Write` for [`TcpStream`](crate::net::TcpStream) and
//!   [`UnixStream`](crate::net::UnixStream) directly (reads go straight into hyper's
//!   uninitialised buffer), and [`Io`] for any other `futures-io` stream (a TLS stream...).
//!
//! ```
//! use ferroloop::net::{TcpListener, TcpStream};
//! use http_body_util::{BodyExt, Empty, Full};
//! use hyper::body::Bytes;
//! use hyper::{server::conn::http1, service::service_fn, Request, Response};
//!
//! ferroloop::run(async {
//!     let listener = TcpListener::bind("127.0.0.1:0").await?;
//!     let addr = listener.local_addr()?;
//!     ferroloop::spawn(async move {
//!         let (conn, _) = listener.accept().await.unwrap();
//!         let hello = service_fn(|_req: Request<hyper::body::Incoming>| async {
//!             Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("hello"))))
//!         });
//!         http1::Builder::new()
//!             .timer(ferroloop::hyper::Timer)
//!             .serve_connection(conn, hello)
//!             .await
//!             .unwrap();
//!     });
//!     let stream = TcpStream::connect(addr).await?;
//!     let (mut sender, conn) = hyper::client::conn::http1::handshake(stream).await.unwrap();
//!     ferroloop::spawn(conn);
//!     let req = Request::get("/").header("host", "local").body(Empty::<Bytes>::new()).unwrap();
//!     let body = sender.send_request(req).await.unwrap().into_body().collect().await.unwrap();
//!     assert_eq!(body.to_bytes(), "hello");
//!     Ok::<_, std::io::Error>(())
//! })
//! .unwrap();
//! ```
//!
//! Decision: the traits are implemented by ferroloop's own types rather than through a
//! wrapper like hyper-util's `TokioIo`, so a server needs no adapter; `Io` exists for the
//! streams ferroloop does not own. hyper's HTTP/2 needs an executor for `Send` futures only
//! when the connection itself is moved between threads, which a loop never does: `Executor`
//! spawns on the current loop.
//!
//! Threading: `Timer` and `Executor` are `Send + Sync` unit types; what they create belongs
//! to the loop running on the calling thread.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{ReadBufCursor, Sleep};

use crate::SendSleep;

impl Sleep for SendSleep {}

/// `hyper::rt::Timer` for ferroloop: [`SendSleep`]s on the loop that polls them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timer;

impl hyper::rt::Timer for Timer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(SendSleep::new(duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(SendSleep::until(deadline))
    }

    /// Move the deadline of a sleep made here in place (no new allocation).
    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<SendSleep>() {
            Some(ours) => ours.get_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// `hyper::rt::Executor` for ferroloop: runs each future as a task of the running loop.
#[derive(Clone, Copy, Debug, Default)]
pub struct Executor;

impl<F> hyper::rt::Executor<F> for Executor
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        crate::spawn(async move {
            fut.await;
        })
        .detach();
    }
}

/// Any `futures-io` stream as hyper's `rt::Read`/`rt::Write` (reads zero hyper's buffer
/// first; ferroloop's sockets implement the traits themselves and need no wrapper).
#[derive(Debug)]
pub struct Io<T> {
    inner: T,
}

impl<T> Io<T> {
    /// Wrap a stream.
    pub fn new(inner: T) -> Io<T> {
        Io { inner }
    }

    /// The stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The stream, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Unwrap the stream.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: futures_io::AsyncRead + Unpin> hyper::rt::Read for Io<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // SAFETY: every byte is initialised (zeroed) before the slice is made, and the
        // cursor is advanced only by what the reader reports it wrote.
        let n = unsafe {
            let raw = buf.as_mut();
            for b in raw.iter_mut() {
                b.write(0);
            }
            let init = std::slice::from_raw_parts_mut(raw.as_mut_ptr().cast::<u8>(), raw.len());
            match Pin::new(&mut self.inner).poll_read(cx, init) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        };
        // SAFETY: the reader wrote (initialised) n bytes at the start of the region.
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl<T: futures_io::AsyncWrite + Unpin> hyper::rt::Write for Io<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// `hyper::rt::Read` and `Write` for a stream type with a `reg: Registration` field whose
/// `&stream` implements `futures-io`'s `AsyncWrite`: reads go straight into hyper's
/// uninitialised buffer, writes take the `AsyncWrite` steps.
macro_rules! impl_hyper_io {
    ($ty:ty) => {
        impl hyper::rt::Read for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                mut buf: hyper::rt::ReadBufCursor<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let reg = &self.reg;
                let fd = reg.fd();
                // SAFETY: the region is only handed to recv(2), which writes initialised
                // bytes; the cursor advances by what it reports written.
                let raw = unsafe { buf.as_mut() };
                let (ptr, len) = (raw.as_mut_ptr().cast::<u8>(), raw.len());
                // SAFETY: ptr/len describe the cursor's writable region, alive for the call.
                let polled = reg.poll_read_io(cx, || unsafe {
                    $crate::engine::sock::recv_raw(fd, ptr, len)
                });
                match polled {
                    std::task::Poll::Ready(Ok(n)) => {
                        if n > 0 && n < len {
                            reg.clear_read_ready();
                        }
                        // SAFETY: recv wrote n bytes at the start of the region.
                        unsafe { buf.advance(n) };
                        std::task::Poll::Ready(Ok(()))
                    }
                    std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
                    std::task::Poll::Pending => std::task::Poll::Pending,
                }
            }
        }

        /// The same steps as the stream's `futures-io` `AsyncWrite` (through `&stream`).
        impl hyper::rt::Write for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                futures_io::AsyncWrite::poll_write(std::pin::Pin::new(&mut &*self), cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                futures_io::AsyncWrite::poll_write_vectored(
                    std::pin::Pin::new(&mut &*self),
                    cx,
                    bufs,
                )
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                futures_io::AsyncWrite::poll_flush(std::pin::Pin::new(&mut &*self), cx)
            }

            /// Half-close (`shutdown(SHUT_WR)`), as `AsyncWrite::poll_close`.
            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                futures_io::AsyncWrite::poll_close(std::pin::Pin::new(&mut &*self), cx)
            }
        }
    };
}

pub(crate) use impl_hyper_io;
