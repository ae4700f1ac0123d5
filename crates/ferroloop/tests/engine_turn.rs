//! The engine's turn, on the real [`Scheduler`] with a test host: asyncio's `_run_once`
//! order (what other threads queued, then I/O watchers, then due timers, in deadline
//! order), callbacks queued during a run phase wait for the next turn, Rust tasks take
//! their place in the same ready queue, an error ends the phase without losing the rest,
//! a cross-thread push wakes a blocking poll; and the reactor's own level-triggered rule.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use ferroloop::engine::scheduler::{Error, Host, HostEntry, Scheduler};
use ferroloop::engine::{clock, Interest, Reactor, Waker};

type Log = Rc<RefCell<Vec<String>>>;

/// A host entry: a name, and a cancelled flag shared with the test.
struct Job {
    name: String,
    cancelled: Rc<Cell<bool>>,
}

// SAFETY: a `Job` crosses threads only through the host inbox (which needs `Send`), and the
// jobs sent there are made by the sending thread with `Rc`s no one else owns: the move hands
// over sole ownership, so no count is ever touched by two threads.
unsafe impl Send for Job {}

impl Job {
    fn new(name: &str) -> Job {
        Job {
            name: name.to_string(),
            cancelled: Rc::new(Cell::new(false)),
        }
    }
}

impl HostEntry for Job {
    fn is_cancelled(&self) -> bool {
        self.cancelled.get()
    }
    fn share(&self) -> Self {
        Job {
            name: self.name.clone(),
            cancelled: self.cancelled.clone(),
        }
    }
}

/// Records what runs; a job named `push:X` queues `X` while it runs; `fail` fails.
struct TestHost {
    sched: Rc<Scheduler<Job>>,
    log: Log,
    phases: usize,
    stopping: bool,
}

impl Host<Job> for TestHost {
    type Error = Error;
    fn now(&mut self) -> Result<f64, Error> {
        Ok(clock::monotonic())
    }
    fn stopping(&self) -> bool {
        self.stopping
    }
    fn run(&mut self, job: Job) -> Result<(), Error> {
        self.log.borrow_mut().push(job.name.clone());
        if let Some(next) = job.name.strip_prefix("push:") {
            self.sched.push(Job::new(next))?;
        }
        if job.name == "fail" {
            return Err(Error::Io(std::io::Error::other("failed")));
        }
        Ok(())
    }
    fn phase_end(&mut self) -> Result<(), Error> {
        self.phases += 1;
        Ok(())
    }
}

fn setup() -> (Rc<Scheduler<Job>>, TestHost) {
    let sched = Scheduler::new(1).unwrap();
    let host = TestHost {
        sched: sched.clone(),
        log: Rc::new(RefCell::new(Vec::new())),
        phases: 0,
        stopping: false,
    };
    (sched, host)
}

fn take(host: &TestHost) -> Vec<String> {
    std::mem::take(&mut *host.log.borrow_mut())
}

#[test]
fn timers_fire_in_deadline_order_and_cancelled_ones_never() {
    let (sched, mut host) = setup();
    let now = clock::monotonic();
    sched.push_timer(now + 0.030, Job::new("c")).unwrap();
    sched.push_timer(now + 0.010, Job::new("a")).unwrap();
    sched.push_timer(now + 0.020, Job::new("b")).unwrap();
    let gone = Job::new("cancelled");
    gone.cancelled.set(true);
    sched.push_timer(now + 0.015, gone).unwrap();
    sched.note_timer_cancelled().unwrap();
    let mut ran = Vec::new();
    while ran.len() < 3 {
        sched.turn(&mut host, true).unwrap();
        ran.extend(take(&host));
    }
    assert_eq!(ran, vec!["a", "b", "c"]);
    assert!(clock::monotonic() - now >= 0.029);
    assert_eq!(sched.timer_cancelled_count().unwrap(), 0, "purged");
}

#[test]
fn what_a_callback_queues_runs_next_turn() {
    let (sched, mut host) = setup();
    sched.push(Job::new("push:second")).unwrap();
    sched.push(Job::new("first-turn")).unwrap();
    sched.turn(&mut host, true).unwrap();
    assert_eq!(take(&host), vec!["push:second", "first-turn"]);
    assert_eq!(sched.ready_len(), 1);
    sched.turn(&mut host, true).unwrap();
    assert_eq!(take(&host), vec!["second"]);
    assert_eq!(host.phases, 2);
}

#[test]
fn a_turn_orders_ready_then_remote_then_io_then_timers() {
    let (sched, mut host) = setup();
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    sched
        .watch(a.as_raw_fd(), false, Job::new("reader"), false)
        .unwrap();
    (&b).write_all(b"x").unwrap();
    sched
        .push_timer(clock::monotonic() - 1.0, Job::new("timer"))
        .unwrap();
    sched.push(Job::new("ready")).unwrap();
    let remote = sched.host_inbox().clone();
    std::thread::spawn(move || remote.push(Job::new("remote")).map_err(|_| ()).unwrap())
        .join()
        .unwrap();
    sched.turn(&mut host, true).unwrap();
    assert_eq!(take(&host), vec!["ready", "remote", "reader", "timer"]);
    // level-triggered: queued again while unread; not once unwatched
    sched.turn(&mut host, true).unwrap();
    assert_eq!(take(&host), vec!["reader"]);
    let old = sched.unwatch(a.as_raw_fd(), false).unwrap();
    assert_eq!(old.map(|j| j.name), Some("reader".to_string()));
    host.stopping = true; // must not block with nothing to do
    sched.turn(&mut host, true).unwrap();
    assert!(take(&host).is_empty());
}

#[test]
fn rust_tasks_share_the_ready_queue_in_order() {
    let (sched, mut host) = setup();
    let log = host.log.clone();
    sched.push(Job::new("host-1")).unwrap();
    let task = sched.spawn(async move {
        log.borrow_mut().push("task".to_string());
        ferroloop::yield_now().await;
        log.borrow_mut().push("task-again".to_string());
        7
    });
    sched.push(Job::new("host-2")).unwrap();
    sched.turn(&mut host, true).unwrap();
    assert_eq!(take(&host), vec!["host-1", "task", "host-2"]);
    sched.turn(&mut host, true).unwrap();
    assert_eq!(take(&host), vec!["task-again"]);
    assert_eq!(sched.task_count(), 0);
    drop(task);
}

#[test]
fn a_rust_sleep_and_a_host_timer_share_one_poll() {
    let (sched, mut host) = setup();
    let log = host.log.clone();
    let start = clock::monotonic();
    sched
        .spawn(async move {
            ferroloop::sleep(Duration::from_millis(20)).await;
            log.borrow_mut().push("slept".to_string());
        })
        .detach();
    sched.push_timer(start + 0.010, Job::new("timer")).unwrap();
    let mut ran = Vec::new();
    while ran.len() < 2 {
        sched.turn(&mut host, true).unwrap();
        ran.extend(take(&host));
    }
    assert_eq!(ran, vec!["timer", "slept"]);
    let took = clock::monotonic() - start;
    assert!((0.019..0.5).contains(&took), "{took}");
}

#[test]
fn an_error_ends_the_phase_and_keeps_the_rest() {
    let (sched, mut host) = setup();
    for name in ["a", "fail", "b"] {
        sched.push(Job::new(name)).unwrap();
    }
    assert!(sched.turn(&mut host, true).is_err());
    assert_eq!(take(&host), vec!["a", "fail"]);
    assert_eq!(host.phases, 1, "the phase's end ran all the same");
    sched.turn(&mut host, true).unwrap();
    assert_eq!(take(&host), vec!["b"]);
}

#[test]
fn remote_push_wakes_an_infinite_poll() {
    let (sched, mut host) = setup();
    let remote = sched.host_inbox().clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        remote
            .push(Job::new("from another thread"))
            .map_err(|_| ())
            .unwrap();
    });
    while host.log.borrow().is_empty() {
        sched.turn(&mut host, true).unwrap();
    }
    t.join().unwrap();
    assert_eq!(take(&host), vec!["from another thread"]);
}

#[test]
fn closing_hands_back_the_entries_and_cancels_the_tasks() {
    let (sched, mut host) = setup();
    sched.push(Job::new("ready")).unwrap();
    sched
        .push_timer(clock::monotonic() + 60.0, Job::new("timer"))
        .unwrap();
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    sched
        .watch(a.as_raw_fd(), true, Job::new("writer"), false)
        .unwrap();
    let task = sched.spawn(std::future::pending::<()>());
    let closed = sched.close();
    let names = |v: &[Job]| v.iter().map(|j| j.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&closed.ready), vec!["ready"]);
    assert_eq!(names(&closed.timers), vec!["timer"]);
    assert_eq!(names(&closed.watchers), vec!["writer"]);
    assert!(sched.is_closed());
    assert!(matches!(sched.turn(&mut host, true), Err(Error::Closed)));
    assert!(matches!(sched.push(Job::new("late")), Err(Error::Closed)));
    assert!(matches!(
        sched.push_timer(0.0, Job::new("late")),
        Err(Error::Closed)
    ));
    assert!(matches!(
        sched.watch(a.as_raw_fd(), false, Job::new("late"), false),
        Err(Error::Closed)
    ));
    let joined = ferroloop::run(task);
    assert!(joined.unwrap_err().is_cancelled());
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
    use std::io::Read;
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
