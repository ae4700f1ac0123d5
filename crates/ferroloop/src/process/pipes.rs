//! The pipes to a child's standard streams: [`ChildStdin`] (`AsyncWrite`), [`ChildStdout`]
//! and [`ChildStderr`] (`AsyncRead`), each an [`Async`] over the parent's end of the pipe.
//!
//! Decision: only the parent's end is made non-blocking (the child's end is another open
//! file description), and [`ChildStdout::into_stdio`] makes it blocking again before it is
//! handed to the next child of a pipeline, whose reads would otherwise fail with `EAGAIN`.
//!
//! Threading: `!Send`; used and dropped on the loop thread that spawned the child.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::io::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};

use crate::io::Async;

/// Clear `O_NONBLOCK` on `fd`.
fn set_blocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl with F_GETFL/F_SETFL takes no pointers; fd is owned by the caller.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Register the parent's end of a pipe with the running loop.
pub(super) fn register(fd: OwnedFd) -> io::Result<Async<File>> {
    Async::new(File::from(fd))
}

macro_rules! pipe_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            pipe: Async<File>,
        }

        impl $name {
            pub(super) fn new(pipe: Async<File>) -> $name {
                $name { pipe }
            }

            /// Leave the loop: the parent's end of the pipe, blocking again, as a `Stdio` for
            /// another child (a pipeline: this child's output becomes the next one's input).
            pub fn into_stdio(self) -> io::Result<Stdio> {
                Ok(Stdio::from(self.into_owned_fd()?))
            }

            /// Leave the loop: the parent's end of the pipe, blocking again.
            pub fn into_owned_fd(self) -> io::Result<OwnedFd> {
                let file = self.pipe.into_inner();
                set_blocking(file.as_raw_fd())?;
                Ok(OwnedFd::from(file))
            }
        }

        impl AsRawFd for $name {
            fn as_raw_fd(&self) -> RawFd {
                self.pipe.as_raw_fd()
            }
        }
    };
}

pipe_type!(
    /// The write end of a child's standard input. Dropping it closes the pipe: the child
    /// reads end of file.
    ChildStdin
);
pipe_type!(
    /// The read end of a child's standard output.
    ChildStdout
);
pipe_type!(
    /// The read end of a child's standard error.
    ChildStderr
);

impl ChildStdin {
    /// Write from `buf`, waiting until the pipe takes at least one byte: how many it took.
    /// A child that closed its end is a `BrokenPipe` error (`SIGPIPE` is ignored by Rust
    /// programs).
    pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.pipe.write_with(|mut f| f.write(buf)).await
    }

    /// Write all of `buf`, waiting for room as often as needed.
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write(buf).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => buf = &buf[n..],
            }
        }
        Ok(())
    }
}

impl futures_io::AsyncWrite for ChildStdin {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.pipe).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_close(cx)
    }
}

macro_rules! reader {
    ($name:ident) => {
        impl $name {
            /// Read into `buf`, waiting for data: the number of bytes read, 0 at end of file
            /// (the child closed its end or exited).
            pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
                self.pipe.read_with(|mut f| f.read(buf)).await
            }

            /// Read until end of file, appending to `out`: how many bytes were read.
            pub async fn read_to_end(&self, out: &mut Vec<u8>) -> io::Result<usize> {
                let start = out.len();
                let mut chunk = [0u8; 16 * 1024];
                loop {
                    match self.read(&mut chunk).await? {
                        0 => return Ok(out.len() - start),
                        n => out.extend_from_slice(&chunk[..n]),
                    }
                }
            }
        }

        impl futures_io::AsyncRead for $name {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.pipe).poll_read(cx, buf)
            }
        }
    };
}

reader!(ChildStdout);
reader!(ChildStderr);
