//! A pipeline of child processes, as a shell's `generate | sort -n -r | head -n 5`, with the
//! loop feeding the first one and reading the last: `ferroloop::process` (asyncio's
//! `create_subprocess_exec`) with pipes between the children.
//!
//! The program writes 20,000 numbers into `sort`'s stdin from one task while `head`'s output
//! is read by another, so neither side waits for the other to finish; `sort`'s stdout goes
//! straight into `head` (`ChildStdout::into_stdio`). Beside it, `sh -c 'exit 3'` shows an
//! exit status, and a `sleep` killed by `kill_on_drop`.
//!
//! Checks: the five largest numbers, each child's exit status.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use ferroloop::process::{Command, Stdio};

const COUNT: u64 = 20_000;

/// The numbers fed to sort: a permutation of 0..COUNT scrambled by a multiplier prime to it.
fn numbers() -> impl Iterator<Item = u64> {
    (0..COUNT).map(|i| (i * 7_919) % COUNT)
}

fn main() {
    let (top, codes, elapsed) = ferroloop::run(async {
        let start = Instant::now();
        let mut sort = Command::new("sort")
            .args(["-n", "-r"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sort");
        let sorted = sort.stdout.take().unwrap().into_stdio().expect("pipe");
        let mut head = Command::new("head")
            .args(["-n", "5"])
            .stdin(sorted)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn head");
        let stdin = sort.stdin.take().unwrap();
        let feeder = ferroloop::spawn(async move {
            let mut text = String::new();
            for n in numbers() {
                text.push_str(&format!("{n}\n"));
            }
            stdin.write_all(text.as_bytes()).await.expect("feed sort");
            // dropping stdin closes it: sort sees the end of its input
        });
        let out = head.stdout.take().unwrap();
        let mut top = Vec::new();
        out.read_to_end(&mut top).await.expect("read head");
        feeder.await.expect("feeder");
        let sort_status = sort.wait().await.expect("wait sort");
        let head_status = head.wait().await.expect("wait head");

        let exit3 = Command::new("sh")
            .args(["-c", "exit 3"])
            .status()
            .await
            .expect("sh");
        // a child nobody waits for, killed when dropped
        let sleeper = Command::new("sleep")
            .arg("60")
            .kill_on_drop(true)
            .spawn()
            .expect("sleep");
        drop(sleeper);
        ferroloop::sleep(Duration::from_millis(1)).await;

        let top: Vec<u64> = String::from_utf8(top)
            .expect("utf-8")
            .lines()
            .map(|l| l.parse().expect("a number"))
            .collect();
        // sort may end by SIGPIPE once head has its five lines and exits: either is fine
        let sort_ok = sort_status.success() || sort_status.signal() == Some(libc::SIGPIPE);
        (
            top,
            (sort_ok, head_status.success(), exit3.code()),
            start.elapsed(),
        )
    });
    let mut expected: Vec<u64> = numbers().collect();
    expected.sort_unstable_by(|a, b| b.cmp(a));
    expected.truncate(5);
    assert_eq!(top, expected);
    assert_eq!(codes, (true, true, Some(3)));
    println!(
        "subprocess_pipeline: {COUNT} numbers through sort | head -n 5 -> {top:?}, statuses checked, in {:.0} ms",
        elapsed.as_secs_f64() * 1e3
    );
}
