//! [`read_dir`]: a directory's entries, fetched from the blocking pool in batches of
//! [`BATCH`] so that a large directory costs one pool round trip per batch, not per entry.
//!
//! Threading: [`ReadDir`] is polled on one task at a time; the `std::fs::ReadDir` it owns
//! moves to a pool thread for each batch and back.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::future::poll_fn;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::{asyncify, FileType, Metadata};
use crate::runtime::blocking::BlockingTask;

/// Entries fetched per pool call.
const BATCH: usize = 32;

type Batch = (Option<std::fs::ReadDir>, VecDeque<io::Result<DirEntry>>);

enum State {
    /// `None`: the end was reached.
    Idle(Option<std::fs::ReadDir>),
    Busy(BlockingTask<Batch>),
}

/// The entries of a directory ([`read_dir`]), in the order the OS gives them, without `.`
/// and `..`. Also a `Stream` of `io::Result<DirEntry>`.
pub struct ReadDir {
    buffered: VecDeque<io::Result<DirEntry>>,
    state: State,
}

/// Open a directory to list its entries.
pub async fn read_dir(path: impl AsRef<Path>) -> io::Result<ReadDir> {
    let path = path.as_ref().to_owned();
    let std = asyncify(move || std::fs::read_dir(path)).await?;
    Ok(ReadDir {
        buffered: VecDeque::new(),
        state: State::Idle(Some(std)),
    })
}

fn next_batch(mut std: std::fs::ReadDir) -> Batch {
    let mut batch = VecDeque::with_capacity(BATCH);
    for _ in 0..BATCH {
        match std.next() {
            Some(entry) => batch.push_back(entry.map(|e| DirEntry { std: Arc::new(e) })),
            None => return (None, batch),
        }
    }
    (Some(std), batch)
}

impl ReadDir {
    /// The next entry, or `None` after the last one.
    pub async fn next_entry(&mut self) -> io::Result<Option<DirEntry>> {
        poll_fn(|cx| self.poll_next_entry(cx)).await
    }

    /// The poll form of [`next_entry`](Self::next_entry).
    pub fn poll_next_entry(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<DirEntry>>> {
        loop {
            if let Some(entry) = self.buffered.pop_front() {
                return Poll::Ready(entry.map(Some));
            }
            match &mut self.state {
                State::Idle(std) => match std.take() {
                    None => return Poll::Ready(Ok(None)),
                    Some(std) => {
                        self.state = State::Busy(crate::spawn_blocking(move || next_batch(std)));
                    }
                },
                State::Busy(task) => {
                    let (std, batch) = match Pin::new(task).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(done)) => done,
                        Poll::Ready(Err(e)) => {
                            self.state = State::Idle(None);
                            return Poll::Ready(Err(io::Error::other(format!(
                                "reading the directory failed: {e}"
                            ))));
                        }
                    };
                    self.buffered = batch;
                    self.state = State::Idle(std);
                }
            }
        }
    }
}

impl futures_core::Stream for ReadDir {
    type Item = io::Result<DirEntry>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_entry(cx).map(|r| r.transpose())
    }
}

impl fmt::Debug for ReadDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadDir")
            .field("buffered", &self.buffered.len())
            .finish()
    }
}

/// One entry of a directory.
#[derive(Clone)]
pub struct DirEntry {
    std: Arc<std::fs::DirEntry>,
}

impl DirEntry {
    /// The entry's full path (the directory's path joined with its name).
    pub fn path(&self) -> PathBuf {
        self.std.path()
    }

    /// The entry's name within its directory.
    pub fn file_name(&self) -> OsString {
        self.std.file_name()
    }

    /// The entry's metadata (not following a symbolic link), from the pool.
    pub async fn metadata(&self) -> io::Result<Metadata> {
        let std = self.std.clone();
        asyncify(move || std.metadata()).await
    }

    /// The entry's type (not following a symbolic link), on the pool: usually known from the
    /// listing itself, else asked of the file system.
    pub async fn file_type(&self) -> io::Result<FileType> {
        let std = self.std.clone();
        asyncify(move || std.file_type()).await
    }
}

impl fmt::Debug for DirEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DirEntry").field(&self.std.path()).finish()
    }
}
