//! Files and directories for Rust futures: each call runs `std::fs`'s on the blocking pool
//! ([`spawn_blocking`](crate::spawn_blocking)), as asyncio programs do file I/O through
//! `run_in_executor` (and aiofiles does), so the loop keeps running meanwhile.
//!
//! ```
//! ferroloop::run(async {
//!     let dir = std::env::temp_dir().join(format!("ferroloop-fs-doc-{}", std::process::id()));
//!     ferroloop::fs::create_dir_all(&dir).await?;
//!     let path = dir.join("greeting.txt");
//!     ferroloop::fs::write(&path, "hello").await?;
//!     assert_eq!(ferroloop::fs::read_to_string(&path).await?, "hello");
//!     let mut entries = ferroloop::fs::read_dir(&dir).await?;
//!     while let Some(entry) = entries.next_entry().await? {
//!         assert_eq!(entry.file_name(), "greeting.txt");
//!     }
//!     ferroloop::fs::remove_dir_all(&dir).await
//! })
//! .unwrap();
//! ```
//!
//! Decision: regular files cannot be watched by epoll (they are always "ready"), and
//! `io_uring` is not available everywhere; a pool thread per call is what every portable
//! runtime does. Paths are copied into the call (owned), results come back through the
//! pool's oneshot channel. [`File`] keeps one operation in flight and a buffer (see
//! `file.rs`); [`ReadDir`] fetches entries in batches.
//!
//! Threading: the functions' futures are `!Send` only through the loop they run on (they
//! may be awaited anywhere); the `std::fs` calls run on pool threads.

mod file;
mod read_dir;

use std::io;
use std::path::{Path, PathBuf};

pub use file::{File, OpenOptions};
pub use read_dir::{read_dir, DirEntry, ReadDir};
pub use std::fs::{FileType, Metadata, Permissions};

/// Run a blocking `std::fs` call on the pool; a panic in it becomes an error.
pub(crate) async fn asyncify<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    match crate::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(io::Error::other(format!(
            "blocking file operation failed: {e}"
        ))),
    }
}

/// The whole contents of a file.
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let path = path.as_ref().to_owned();
    asyncify(move || std::fs::read(path)).await
}

/// The whole contents of a file, which must be UTF-8 (`InvalidData` otherwise).
pub async fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    let path = path.as_ref().to_owned();
    asyncify(move || std::fs::read_to_string(path)).await
}

/// Create or truncate a file and write `contents` to it.
pub async fn write(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    let contents = contents.as_ref().to_owned();
    asyncify(move || std::fs::write(path, contents)).await
}

/// Copy a file's contents and permissions: the number of bytes copied.
pub async fn copy(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<u64> {
    let (from, to) = (from.as_ref().to_owned(), to.as_ref().to_owned());
    asyncify(move || std::fs::copy(from, to)).await
}

/// Rename a file or directory, replacing `to` if it is a file.
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let (from, to) = (from.as_ref().to_owned(), to.as_ref().to_owned());
    asyncify(move || std::fs::rename(from, to)).await
}

/// Make a hard link `link` to `original`.
pub async fn hard_link(original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
    let (original, link) = (original.as_ref().to_owned(), link.as_ref().to_owned());
    asyncify(move || std::fs::hard_link(original, link)).await
}

/// Make a symbolic link `link` pointing at `original`.
pub async fn symlink(original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
    let (original, link) = (original.as_ref().to_owned(), link.as_ref().to_owned());
    asyncify(move || std::os::unix::fs::symlink(original, link)).await
}

/// Run a one-path `std::fs` call on the pool.
async fn on_path<T: Send + 'static>(path: &Path, f: fn(&Path) -> io::Result<T>) -> io::Result<T> {
    let path: PathBuf = path.to_owned();
    asyncify(move || f(&path)).await
}

/// Remove a file (or symbolic link).
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    on_path(path.as_ref(), |p| std::fs::remove_file(p)).await
}

/// Remove an empty directory.
pub async fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    on_path(path.as_ref(), |p| std::fs::remove_dir(p)).await
}

/// Remove a directory and everything in it.
pub async fn remove_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    on_path(path.as_ref(), |p| std::fs::remove_dir_all(p)).await
}

/// Create a directory (its parent must exist).
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    on_path(path.as_ref(), |p| std::fs::create_dir(p)).await
}

/// Create a directory and any missing parents.
pub async fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    on_path(path.as_ref(), |p| std::fs::create_dir_all(p)).await
}

/// The metadata of a path, following symbolic links.
pub async fn metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    on_path(path.as_ref(), |p| std::fs::metadata(p)).await
}

/// The metadata of a path itself (a symbolic link is not followed).
pub async fn symlink_metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    on_path(path.as_ref(), |p| std::fs::symlink_metadata(p)).await
}

/// The absolute path with every symbolic link and `..` resolved.
pub async fn canonicalize(path: impl AsRef<Path>) -> io::Result<PathBuf> {
    on_path(path.as_ref(), |p| std::fs::canonicalize(p)).await
}

/// Where a symbolic link points.
pub async fn read_link(path: impl AsRef<Path>) -> io::Result<PathBuf> {
    on_path(path.as_ref(), |p| std::fs::read_link(p)).await
}

/// Whether a path exists (`Ok(false)` when it does not, an error when that cannot be told,
/// e.g. for lack of permission).
pub async fn try_exists(path: impl AsRef<Path>) -> io::Result<bool> {
    on_path(path.as_ref(), |p| p.try_exists()).await
}

/// Set a path's permissions.
pub async fn set_permissions(path: impl AsRef<Path>, perm: Permissions) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    asyncify(move || std::fs::set_permissions(path, perm)).await
}
