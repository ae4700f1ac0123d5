//! One loop turn assembled from the engine's parts, as the Python loop does it: timers
//! become due in order, a cross-thread push wakes a blocking poll, a readable descriptor is
//! reported until drained (level-triggered).

use std::sync::Arc;
use std::time::Duration;

use ferroloop::engine::timers::Cancellable;
use ferroloop::engine::{clock, Inbox, Interest, Reactor, TimerHeap, Waker};

#[derive(Debug, PartialEq)]
struct Job(&'static str, bool);

impl Cancellable for Job {
    fn is_cancelled(&self) -> bool {
        self.1
    }
}

fn turn(
    reactor: &mut Reactor,
    timers: &mut TimerHeap<Job>,
    inbox: &Inbox<&'static str>,
) -> Vec<String> {
    let mut dropped = Vec::new();
    timers.purge_cancelled(&mut dropped);
    let timeout = timers
        .next_deadline()
        .map(|w| (w - clock::monotonic()).max(0.0));
    reactor.poll(timeout).unwrap();
    let mut ran = Vec::new();
    if reactor.take_woken() {
        let mut items = Vec::new();
        inbox.drain_into(&mut items);
        ran.extend(items.into_iter().map(String::from));
    }
    let mut due = Vec::new();
    timers.pop_due(clock::monotonic() + clock::resolution(), &mut due);
    ran.extend(due.into_iter().filter(|j| !j.1).map(|j| j.0.to_string()));
    ran
}

#[test]
fn timers_fire_in_deadline_order_across_turns() {
    let mut reactor = Reactor::new().unwrap();
    let waker = Arc::new(Waker::new().unwrap());
    reactor.register_waker(&waker).unwrap();
    let inbox = Inbox::new(waker);
    let mut timers = TimerHeap::new();
    let now = clock::monotonic();
    timers.push(now + 0.030, Job("c", false));
    timers.push(now + 0.010, Job("a", false));
    timers.push(now + 0.020, Job("b", false));
    timers.push(now + 0.015, Job("cancelled", true));
    timers.note_cancelled();
    let mut ran = Vec::new();
    while ran.len() < 3 {
        ran.extend(turn(&mut reactor, &mut timers, &inbox));
    }
    assert_eq!(ran, vec!["a", "b", "c"]);
    assert!(clock::monotonic() - now >= 0.029);
}

#[test]
fn remote_push_wakes_an_infinite_poll() {
    let mut reactor = Reactor::new().unwrap();
    let waker = Arc::new(Waker::new().unwrap());
    reactor.register_waker(&waker).unwrap();
    let inbox = Arc::new(Inbox::new(waker));
    let mut timers = TimerHeap::new();
    let remote = inbox.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        remote.push("from another thread").unwrap();
    });
    let ran = turn(&mut reactor, &mut timers, &inbox);
    t.join().unwrap();
    assert_eq!(ran, vec!["from another thread"]);
}

#[test]
fn closed_waker_is_silent() {
    let waker = Waker::new().unwrap();
    waker.close();
    waker.wake();
    waker.reset();
    assert_eq!(waker.as_raw_fd(), -1);
}

#[test]
fn readable_until_drained() {
    let mut reactor = Reactor::new().unwrap();
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    use std::io::{Read, Write};
    use std::os::unix::io::AsRawFd;
    a.set_nonblocking(true).unwrap();
    reactor
        .set_interest(
            a.as_raw_fd(),
            Interest {
                read: true,
                write: false,
            },
        )
        .unwrap();
    (&b).write_all(b"hello").unwrap();
    assert_eq!(reactor.poll(Some(1.0)).unwrap().len(), 1);
    assert_eq!(
        reactor.poll(Some(1.0)).unwrap().len(),
        1,
        "level-triggered: still readable"
    );
    let mut buf = [0u8; 16];
    assert_eq!((&a).read(&mut buf).unwrap(), 5);
    assert!(reactor.poll(Some(0.0)).unwrap().is_empty());
}
