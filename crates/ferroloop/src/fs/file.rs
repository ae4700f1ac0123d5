//! [`File`]: an open file whose reads, writes and seeks run on the blocking pool, with one
//! operation in flight at a time; and [`OpenOptions`].
//!
//! Decision: a file cannot be read in place from the loop, so each operation moves a buffer
//! (at most [`MAX_BUF`]) to a pool thread and back. Reads fill the buffer with up to the
//! caller's length and serve it out; a write copies the caller's bytes into the buffer and
//! reports them written at once, while the pool writes them (as an OS write cache would):
//! the next operation waits for it, an error it met is returned by the next write or by
//! [`flush`](File::flush), and [`sync_all`](File::sync_all) waits for it first. An operation
//! whose future was dropped still completes, and the next one waits for it, so the file
//! position is never lost. Read-ahead bytes not yet handed out are given back (a seek
//! backwards) before a write, a seek or `set_len`, so the position seen is the caller's.
//!
//! Threading: `!Sync` use from one task at a time (`&mut self`); the `std::fs::File` is
//! shared with the pool thread running the operation through an `Arc`.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::{asyncify, Metadata, Permissions};
use crate::runtime::blocking::BlockingTask;

/// The largest buffer one operation moves to the pool (as tokio's).
const MAX_BUF: usize = 2 * 1024 * 1024;

/// Bytes read ahead (`data[pos..]` not yet handed out) or waiting to be written.
#[derive(Default)]
struct Buf {
    data: Vec<u8>,
    pos: usize,
}

impl Buf {
    fn unread(&self) -> usize {
        self.data.len() - self.pos
    }

    fn copy_to(&mut self, dst: &mut [u8]) -> usize {
        let n = self.unread().min(dst.len());
        dst[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        n
    }

    fn clear(&mut self) {
        self.data.clear();
        self.pos = 0;
    }
}

/// What a finished pool operation reports.
enum Done {
    Read(io::Result<()>),
    Write(io::Result<()>),
    Seek(io::Result<u64>),
}

enum State {
    Idle(Buf),
    Busy(BlockingTask<(Done, Buf)>),
}

/// An open file (asyncio's `run_in_executor` around `open()`), implementing `futures-io`'s
/// `AsyncRead`, `AsyncWrite` and `AsyncSeek`.
///
/// ```
/// use ferroloop::fs::File;
/// use std::io::SeekFrom;
///
/// ferroloop::run(async {
///     let path = std::env::temp_dir().join(format!("ferroloop-file-doc-{}", std::process::id()));
///     let mut f = File::create(&path).await?;
///     f.write_all(b"hello, file").await?;
///     f.sync_all().await?; // written and on disk
///     let mut f = File::open(&path).await?;
///     f.seek(SeekFrom::Start(7)).await?;
///     let mut rest = String::new();
///     f.read_to_string(&mut rest).await?;
///     assert_eq!(rest, "file");
///     ferroloop::fs::remove_file(&path).await
/// })
/// .unwrap();
/// ```
pub struct File {
    std: Arc<std::fs::File>,
    state: State,
    /// An error of a write reported done before it ran, for the next write or flush.
    write_error: Option<io::Error>,
}

fn read_into(mut file: &std::fs::File, buf: &mut Buf, len: usize) -> io::Result<()> {
    buf.clear();
    buf.data.resize(len, 0);
    loop {
        match file.read(&mut buf.data) {
            Ok(n) => {
                buf.data.truncate(n);
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                buf.data.clear();
                return Err(e);
            }
        }
    }
}

fn pool_error(e: crate::JoinError) -> io::Error {
    io::Error::other(format!("blocking file operation failed: {e}"))
}

impl File {
    /// Open a file for reading.
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Create a file for writing, truncating it if it exists.
    pub async fn create(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .await
    }

    /// Create a new file for writing; `AlreadyExists` if the path exists.
    pub async fn create_new(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .await
    }

    /// Options for opening a file.
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// Use an open `std` file.
    pub fn from_std(std: std::fs::File) -> File {
        File {
            std: Arc::new(std),
            state: State::Idle(Buf::default()),
            write_error: None,
        }
    }

    /// Wait for the operation in flight; give back read-ahead bytes (seek back) so the OS
    /// position is the caller's. A write error met on the way is returned.
    async fn settle(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_idle(cx)).await?;
        if let Some(e) = self.write_error.take() {
            return Err(e);
        }
        let State::Idle(buf) = &mut self.state else {
            unreachable!("poll_idle returned")
        };
        let unread = buf.unread() as i64;
        buf.clear();
        if unread > 0 {
            let std = self.std.clone();
            asyncify(move || (&*std).seek(SeekFrom::Current(-unread))).await?;
        }
        Ok(())
    }

    /// Finish the operation in flight, if any: `None` when there was none, else what it
    /// reported (its buffer is back in the idle state).
    fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Done>>> {
        let State::Busy(task) = &mut self.state else {
            return Poll::Ready(Ok(None));
        };
        match Pin::new(task).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok((done, buf))) => {
                self.state = State::Idle(buf);
                Poll::Ready(Ok(Some(done)))
            }
            Poll::Ready(Err(e)) => {
                self.state = State::Idle(Buf::default());
                Poll::Ready(Err(pool_error(e)))
            }
        }
    }

    /// Ready when no operation is in flight; a finished read or seek is dropped, a finished
    /// write's error kept in `write_error`.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.poll_done(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(done)) => {
                if let Some(Done::Write(Err(e))) = done {
                    self.write_error = Some(e);
                }
                Poll::Ready(Ok(()))
            }
        }
    }

    fn buf(&mut self) -> &mut Buf {
        match &mut self.state {
            State::Idle(buf) => buf,
            State::Busy(_) => unreachable!("only called when idle"),
        }
    }

    fn start(&mut self, op: impl FnOnce(&std::fs::File, &mut Buf) -> Done + Send + 'static) {
        let mut buf = std::mem::take(self.buf());
        let std = self.std.clone();
        self.state = State::Busy(crate::spawn_blocking(move || {
            let done = op(&std, &mut buf);
            (done, buf)
        }));
    }

    /// The `AsyncRead` step.
    fn poll_read_inner(&mut self, cx: &mut Context<'_>, dst: &mut [u8]) -> Poll<io::Result<usize>> {
        if dst.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            match self.poll_done(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) | Poll::Ready(Ok(Some(Done::Read(Err(e))))) => {
                    return Poll::Ready(Err(e))
                }
                Poll::Ready(Ok(Some(Done::Read(Ok(()))))) => {
                    return Poll::Ready(Ok(self.buf().copy_to(dst)))
                }
                Poll::Ready(Ok(Some(Done::Write(Err(e))))) => self.write_error = Some(e),
                Poll::Ready(Ok(_)) => {}
            }
            let buf = self.buf();
            if buf.unread() > 0 {
                return Poll::Ready(Ok(buf.copy_to(dst)));
            }
            let len = dst.len().min(MAX_BUF);
            self.start(move |f, buf| Done::Read(read_into(f, buf, len)));
        }
    }

    /// The `AsyncWrite::poll_write` step: the bytes are taken at once, written by the pool.
    fn poll_write_inner(&mut self, cx: &mut Context<'_>, src: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(e) = self.write_error.take() {
            return Poll::Ready(Err(e));
        }
        match self.poll_idle(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {}
        }
        if let Some(e) = self.write_error.take() {
            return Poll::Ready(Err(e));
        }
        if src.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let buf = self.buf();
        let unread = buf.unread() as i64;
        buf.clear();
        let n = src.len().min(MAX_BUF);
        buf.data.extend_from_slice(&src[..n]);
        self.start(move |mut f, buf| {
            let r = (|| {
                if unread > 0 {
                    f.seek(SeekFrom::Current(-unread))?;
                }
                f.write_all(&buf.data)
            })();
            buf.clear();
            Done::Write(r)
        });
        Poll::Ready(Ok(n))
    }

    /// The `AsyncWrite::poll_flush` step: waits for the write in flight.
    fn poll_flush_inner(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.poll_idle(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(self.write_error.take().map_or(Ok(()), Err)),
            other => other,
        }
    }

    /// The `AsyncSeek` step.
    fn poll_seek_inner(&mut self, cx: &mut Context<'_>, pos: SeekFrom) -> Poll<io::Result<u64>> {
        loop {
            match self.poll_done(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(Some(Done::Seek(r)))) => return Poll::Ready(r),
                Poll::Ready(Err(e)) | Poll::Ready(Ok(Some(Done::Write(Err(e))))) => {
                    return Poll::Ready(Err(e))
                }
                Poll::Ready(Ok(_)) => {}
            }
            if let Some(e) = self.write_error.take() {
                return Poll::Ready(Err(e));
            }
            let buf = self.buf();
            let unread = buf.unread() as i64;
            buf.clear();
            let pos = match pos {
                SeekFrom::Current(n) => SeekFrom::Current(n - unread),
                other => other,
            };
            self.start(move |mut f, _| Done::Seek(f.seek(pos)));
        }
    }

    /// Read into `buf`: the number of bytes read, 0 at end of file.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read_inner(cx, buf)).await
    }

    /// Read to end of file, appending to `out`: how many bytes were read.
    pub async fn read_to_end(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        let start = out.len();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match self.read(&mut chunk).await? {
                0 => return Ok(out.len() - start),
                n => out.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Read to end of file as UTF-8 (`InvalidData` otherwise), appending to `out`.
    pub async fn read_to_string(&mut self, out: &mut String) -> io::Result<usize> {
        let mut bytes = Vec::new();
        let n = self.read_to_end(&mut bytes).await?;
        let text =
            String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        out.push_str(&text);
        Ok(n)
    }

    /// Write from `buf`: taken at once (up to 2 MiB), written by the pool (see the type's
    /// docs for where its error shows).
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_write_inner(cx, buf)).await
    }

    /// Write all of `buf`.
    pub async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write(buf).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => buf = &buf[n..],
            }
        }
        Ok(())
    }

    /// Wait until every write has reached the OS (not the disk: see
    /// [`sync_all`](Self::sync_all)); a write's error is returned here.
    pub async fn flush(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_flush_inner(cx)).await
    }

    /// Move the position: the new position from the start.
    pub async fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        poll_fn(|cx| self.poll_seek_inner(cx, pos)).await
    }

    /// Flush, then `fsync`: data and metadata on disk.
    pub async fn sync_all(&mut self) -> io::Result<()> {
        self.settle().await?;
        let std = self.std.clone();
        asyncify(move || std.sync_all()).await
    }

    /// Flush, then `fdatasync`: data on disk.
    pub async fn sync_data(&mut self) -> io::Result<()> {
        self.settle().await?;
        let std = self.std.clone();
        asyncify(move || std.sync_data()).await
    }

    /// Truncate or extend the file to `size` bytes (the position does not move).
    pub async fn set_len(&mut self, size: u64) -> io::Result<()> {
        self.settle().await?;
        let std = self.std.clone();
        asyncify(move || std.set_len(size)).await
    }

    /// The file's metadata (after the writes in flight).
    pub async fn metadata(&mut self) -> io::Result<Metadata> {
        self.settle().await?;
        let std = self.std.clone();
        asyncify(move || std.metadata()).await
    }

    /// Set the file's permissions.
    pub async fn set_permissions(&mut self, perm: Permissions) -> io::Result<()> {
        self.settle().await?;
        let std = self.std.clone();
        asyncify(move || std.set_permissions(perm)).await
    }

    /// The `std` file, after the operation in flight, at the position the caller has read
    /// or written to.
    pub async fn into_std(mut self) -> io::Result<std::fs::File> {
        self.settle().await?;
        let std = self.std.clone();
        drop(self);
        Arc::try_unwrap(std).or_else(|shared| shared.try_clone())
    }
}

impl futures_io::AsyncRead for File {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_read_inner(cx, buf)
    }
}

impl futures_io::AsyncWrite for File {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_inner(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_inner(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_inner(cx)
    }
}

impl futures_io::AsyncSeek for File {
    fn poll_seek(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        pos: SeekFrom,
    ) -> Poll<io::Result<u64>> {
        self.get_mut().poll_seek_inner(cx, pos)
    }
}

impl AsRawFd for File {
    fn as_raw_fd(&self) -> RawFd {
        self.std.as_raw_fd()
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("fd", &self.std.as_raw_fd())
            .field("busy", &matches!(self.state, State::Busy(_)))
            .finish()
    }
}

/// How to open a file: `std`'s options, opening on the pool.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    std: std::fs::OpenOptions,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions::new()
    }
}

impl OpenOptions {
    /// No access, no creation: set what is wanted.
    pub fn new() -> OpenOptions {
        OpenOptions {
            std: std::fs::OpenOptions::new(),
        }
    }

    /// Open for reading.
    pub fn read(&mut self, on: bool) -> &mut OpenOptions {
        self.std.read(on);
        self
    }

    /// Open for writing.
    pub fn write(&mut self, on: bool) -> &mut OpenOptions {
        self.std.write(on);
        self
    }

    /// Every write goes to the end of the file.
    pub fn append(&mut self, on: bool) -> &mut OpenOptions {
        self.std.append(on);
        self
    }

    /// Truncate to length 0 when opened (with `write`).
    pub fn truncate(&mut self, on: bool) -> &mut OpenOptions {
        self.std.truncate(on);
        self
    }

    /// Create the file if missing (with `write` or `append`).
    pub fn create(&mut self, on: bool) -> &mut OpenOptions {
        self.std.create(on);
        self
    }

    /// Create the file, failing with `AlreadyExists` if it exists.
    pub fn create_new(&mut self, on: bool) -> &mut OpenOptions {
        self.std.create_new(on);
        self
    }

    /// The permission bits of a created file (before the umask).
    pub fn mode(&mut self, mode: u32) -> &mut OpenOptions {
        self.std.mode(mode);
        self
    }

    /// Extra `open(2)` flags (`O_NOFOLLOW`, `O_DIRECT`...).
    pub fn custom_flags(&mut self, flags: i32) -> &mut OpenOptions {
        self.std.custom_flags(flags);
        self
    }

    /// Open `path` with these options.
    pub async fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
        let (options, path) = (self.std.clone(), path.as_ref().to_owned());
        let std = asyncify(move || options.open(path)).await?;
        Ok(File::from_std(std))
    }
}
