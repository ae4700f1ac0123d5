//! `ferroloop::fs`: the path functions, `read_dir` (in batches, and as a `Stream`), and
//! `File`: buffered reads, writes reported done before they run (and their errors), seeks,
//! a cancelled read whose read-ahead is given back, `sync_all`, `set_len`, `into_std`.

use std::io::{ErrorKind, Seek, SeekFrom};
use std::path::PathBuf;
use std::pin::pin;
use std::time::Duration;

use ferroloop::fs::{self, File, OpenOptions};
use futures::{poll, StreamExt};

fn run_limited<F: std::future::Future>(body: F) -> F::Output {
    ferroloop::run(ferroloop::timeout(Duration::from_secs(20), body)).expect("test timed out")
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferroloop-fs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn path_functions_round_trip() {
    let dir = scratch("paths");
    run_limited(async {
        let a = dir.join("a.txt");
        fs::write(&a, b"contents").await.unwrap();
        assert_eq!(fs::read(&a).await.unwrap(), b"contents");
        assert_eq!(fs::metadata(&a).await.unwrap().len(), 8);
        let b = dir.join("b.txt");
        assert_eq!(fs::copy(&a, &b).await.unwrap(), 8);
        fs::rename(&b, dir.join("c.txt")).await.unwrap();
        assert!(!fs::try_exists(&b).await.unwrap());
        fs::symlink(&a, dir.join("link")).await.unwrap();
        assert_eq!(fs::read_link(dir.join("link")).await.unwrap(), a);
        assert!(fs::symlink_metadata(dir.join("link"))
            .await
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            fs::canonicalize(dir.join("link")).await.unwrap(),
            fs::canonicalize(&a).await.unwrap()
        );
        fs::create_dir_all(dir.join("x/y/z")).await.unwrap();
        fs::create_dir(dir.join("x/y/z/w")).await.unwrap();
        fs::remove_dir(dir.join("x/y/z/w")).await.unwrap();
        fs::remove_file(dir.join("c.txt")).await.unwrap();
        // errors are std's
        let err = fs::read(dir.join("missing")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        fs::write(dir.join("bad"), [0xff, 0xfe]).await.unwrap();
        let err = fs::read_to_string(dir.join("bad")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        fs::remove_dir_all(&dir).await.unwrap();
        assert!(!fs::try_exists(&dir).await.unwrap());
    });
}

#[test]
fn read_dir_in_batches_and_as_a_stream() {
    let dir = scratch("readdir");
    for i in 0..100 {
        std::fs::write(dir.join(format!("f{i:03}")), [i as u8]).unwrap();
    }
    run_limited(async {
        let mut names = Vec::new();
        let mut entries = fs::read_dir(&dir).await.unwrap();
        while let Some(e) = entries.next_entry().await.unwrap() {
            assert!(e.file_type().await.unwrap().is_file());
            assert_eq!(e.metadata().await.unwrap().len(), 1);
            assert_eq!(e.path(), dir.join(e.file_name()));
            names.push(e.file_name().into_string().unwrap());
        }
        // after the end, still the end
        assert!(entries.next_entry().await.unwrap().is_none());
        names.sort();
        let expected: Vec<_> = (0..100).map(|i| format!("f{i:03}")).collect();
        assert_eq!(names, expected);
        let counted = fs::read_dir(&dir).await.unwrap().count().await;
        assert_eq!(counted, 100);
        let err = fs::read_dir(dir.join("nope")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn file_write_then_read_seek_and_metadata() {
    let dir = scratch("file");
    run_limited(async {
        let path = dir.join("data");
        let mut f = File::create(&path).await.unwrap();
        for i in 0..1000u32 {
            f.write_all(format!("{i:04}\n").as_bytes()).await.unwrap();
        }
        // metadata waits for the writes in flight
        assert_eq!(f.metadata().await.unwrap().len(), 5000);
        // a write larger than one pool buffer (2 MiB) goes in pieces
        let big = vec![b'z'; 5 << 20];
        f.write_all(&big).await.unwrap();
        f.sync_all().await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 5000 + (5 << 20));
        let mut f = File::open(&path).await.unwrap();
        let mut line = [0u8; 5];
        let n = f.read(&mut line).await.unwrap();
        assert_eq!(&line[..n], b"0000\n");
        assert_eq!(f.seek(SeekFrom::Start(5 * 500)).await.unwrap(), 2500);
        f.read(&mut line).await.unwrap();
        assert_eq!(&line, b"0500\n");
        assert_eq!(f.seek(SeekFrom::Current(-5)).await.unwrap(), 2500);
        let mut all = Vec::new();
        f.read_to_end(&mut all).await.unwrap();
        assert_eq!(all.len(), 2500 + (5 << 20));
        assert_eq!(f.read(&mut line).await.unwrap(), 0, "end of file");
        // set_len needs a file open for writing
        assert_eq!(
            f.set_len(10).await.unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
        let mut f = OpenOptions::new().write(true).open(&path).await.unwrap();
        f.set_len(10).await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 10);
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cancelled_read_gives_back_its_read_ahead() {
    let dir = scratch("cancel");
    let path = dir.join("digits");
    std::fs::write(&path, b"0123456789").unwrap();
    run_limited(async {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .await
            .unwrap();
        let mut small = [0u8; 2];
        assert_eq!(f.read(&mut small).await.unwrap(), 2); // position 2
                                                          // start a read of 8 bytes on the pool and abandon it before it is done; a pool
                                                          // thread may finish it before the first poll returns: then it counts as read, and
                                                          // the try starts again from position 2
        let mut abandoned = false;
        for _ in 0..1000 {
            let mut big = [0u8; 8];
            {
                let mut reading = pin!(f.read(&mut big));
                if poll!(reading.as_mut()).is_pending() {
                    abandoned = true;
                }
            }
            if abandoned {
                break;
            }
            assert_eq!(f.seek(SeekFrom::Start(2)).await.unwrap(), 2);
        }
        assert!(
            abandoned,
            "every read finished before its first poll returned"
        );
        // the write lands where the caller is (2), not where the pool's read left the OS (10)
        f.write_all(b"XY").await.unwrap();
        f.flush().await.unwrap();
        let mut std = f.into_std().await.unwrap();
        assert_eq!(std.stream_position().unwrap(), 4);
    });
    assert_eq!(std::fs::read(&path).unwrap(), b"01XY456789");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn write_errors_show_at_flush_and_open_errors() {
    let dir = scratch("errors");
    let path = dir.join("ro");
    std::fs::write(&path, b"read only").unwrap();
    run_limited(async {
        // opened for reading: the write is taken, its EBADF shows at flush
        let mut f = File::open(&path).await.unwrap();
        assert_eq!(f.write(b"x").await.unwrap(), 1);
        let err = f.flush().await.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        // reported once
        f.flush().await.unwrap();
        let err = File::create_new(&path).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        let err = File::open(dir.join("missing")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let mut appender = OpenOptions::new().append(true).open(&path).await.unwrap();
        appender.write_all(b"!").await.unwrap();
        appender.flush().await.unwrap();
    });
    assert_eq!(std::fs::read(&path).unwrap(), b"read only!");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn files_leave_no_descriptor() {
    let dir = scratch("fds");
    let count = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let before = count();
    run_limited(async {
        for i in 0..300 {
            let mut f = File::create(dir.join(format!("{i}"))).await.unwrap();
            f.write_all(b"x").await.unwrap();
            f.flush().await.unwrap();
        }
    });
    // other tests of this binary run beside this one: a margin, not zero
    assert!(count() < before + 20, "{before} -> {}", count());
    std::fs::remove_dir_all(&dir).unwrap();
}
