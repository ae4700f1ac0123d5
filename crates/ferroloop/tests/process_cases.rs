//! The process cases shared by `process.rs` (pidfd) and `process_thread_watch.rs`.
#![allow(dead_code)]

use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ferroloop::process::{Command, Stdio};

/// One case at a time: the descriptor count is process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn run_limited<F: std::future::Future>(body: F) -> F::Output {
    ferroloop::run(ferroloop::timeout(Duration::from_secs(20), body)).expect("test timed out")
}

/// Whether `pid` is gone entirely (reaped), not merely exited.
fn reaped(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

pub fn output_and_status() {
    let _serial = serial();
    run_limited(async {
        let out = Command::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .output()
            .await
            .unwrap();
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status.code(), Some(3));
        let status = Command::new("true").status().await.unwrap();
        assert!(status.success());
        // output() empties stdin unless told otherwise: cat ends at once
        let out = Command::new("cat").output().await.unwrap();
        assert!(out.status.success() && out.stdout.is_empty());
        // a stream the caller set is not piped by output()
        let out = Command::new("sh")
            .args(["-c", "echo quiet"])
            .stdout(Stdio::null())
            .output()
            .await
            .unwrap();
        assert!(out.stdout.is_empty());
    });
}

pub fn piped_stdin_and_stdout_do_not_deadlock() {
    let _serial = serial();
    run_limited(async {
        // 4 MiB through cat: far more than both pipe buffers, so writing and reading must
        // overlap
        let data: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let expected = data.clone();
        let writer = ferroloop::spawn(async move {
            stdin.write_all(&data).await.unwrap();
            drop(stdin); // end of file for cat
        });
        let mut got = Vec::new();
        stdout.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert!(child.wait().await.unwrap().success());
        assert_eq!(got.len(), expected.len());
        assert!(got == expected);
    });
}

pub fn kill_and_try_wait() {
    let _serial = serial();
    run_limited(async {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id().unwrap();
        assert!(child.try_wait().unwrap().is_none());
        child.kill().await.unwrap();
        let status = child.try_wait().unwrap().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(child.id(), None);
        assert!(reaped(pid));
        // killing an exited child is fine; wait gives the same status again
        child.start_kill().unwrap();
        assert_eq!(child.wait().await.unwrap(), status);
    });
}

pub fn dropped_children_are_reaped() {
    let _serial = serial();
    run_limited(async {
        // kill_on_drop: killed at once, and reaped
        let child = Command::new("sleep")
            .arg("30")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let killed = child.id().unwrap();
        drop(child);
        // not killed: runs to its end, then reaped by the background reaper
        let child = Command::new("sleep").arg("0.1").spawn().unwrap();
        let ran_on = child.id().unwrap();
        drop(child);
        let start = Instant::now();
        while !(reaped(killed) && reaped(ran_on)) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "a dropped child was not reaped"
            );
            ferroloop::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(50),
            "the second child ran on"
        );
    });
    // dropped outside the loop that spawned it: reaped by a thread
    let mut keep = None;
    run_limited(async {
        keep = Some(Command::new("sleep").arg("0.05").spawn().unwrap());
    });
    let child = keep.take().unwrap();
    let pid = child.id().unwrap();
    drop(child);
    let start = Instant::now();
    while !reaped(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "not reaped outside the loop"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn cancelled_wait_keeps_the_child() {
    let _serial = serial();
    run_limited(async {
        let mut child = Command::new("sleep").arg("0.2").spawn().unwrap();
        let early = ferroloop::timeout(Duration::from_millis(20), child.wait()).await;
        assert!(early.is_err(), "sleep 0.2 finished within 20 ms");
        assert!(child.id().is_some());
        assert!(child.wait().await.unwrap().success());
    });
}

pub fn errors() {
    let _serial = serial();
    run_limited(async {
        let err = Command::new("/nonexistent/ferroloop-no-such-program")
            .spawn()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        // a child that closed its stdin: writing is a BrokenPipe error, not a signal
        let mut child = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        child.wait().await.unwrap();
        let big = vec![0u8; 1 << 20];
        let err = stdin.write_all(&big).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    });
    // outside a running loop
    let err = Command::new("true").spawn().unwrap_err();
    assert!(err.to_string().contains("no ferroloop loop"), "{err}");
}

pub fn many_children_leave_no_descriptor() {
    let _serial = serial();
    let before = open_fds();
    run_limited(async {
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                ferroloop::spawn(async move {
                    let out = Command::new("sh")
                        .args(["-c", &format!("echo {i}")])
                        .output()
                        .await
                        .unwrap();
                    assert_eq!(out.stdout, format!("{i}\n").into_bytes());
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let after = open_fds();
    assert!(
        after <= before + 2,
        "descriptors: {before} before, {after} after"
    );
}
