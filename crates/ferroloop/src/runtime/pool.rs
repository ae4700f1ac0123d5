//! [`LoopPool`]: one loop per thread, N threads (the core count by default): the seeds'
//! answer to several cores (several loops), for Rust programs.
//!
//! Decision: no work stealing. A task stays on the loop it was spawned on, as an asyncio task
//! stays on its loop, so tasks may be `!Send` once there ([`spawn_with`](LoopPool::spawn_with))
//! and a loop's sockets, timers and `Rc`s never cross threads. A `Send` future goes to the
//! loop with the fewest unfinished pool tasks (ties: round robin). A server uses every core
//! with one `SO_REUSEPORT` listener per loop ([`serve_tcp`](LoopPool::serve_tcp)): the kernel
//! spreads the connections, and each connection lives on one loop.
//!
//! Shutdown is graceful: [`shutdown`](LoopPool::shutdown) first resolves every
//! [`shutdown_signal`](LoopPool::shutdown_signal) (servers stop accepting and finish their
//! connections), waits up to a grace period for the pool's tasks to end, then stops each
//! loop, which drops (cancels) what is left on its own thread, and joins the threads.
//!
//! Threading: `LoopPool` is `Send + Sync`; spawn from any thread, including the pool's own.
//! [`shutdown`](LoopPool::shutdown) and dropping the pool block until the threads have ended,
//! so they must not run on one of the pool's threads (they panic there).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use super::event_loop::Loop;
use super::handle::{LoopHandle, RemoteTask};
use super::oneshot;
use crate::net::{TcpListener, TcpSocket};
use crate::sync::watch;

/// One loop thread of the pool.
struct Worker {
    handle: LoopHandle,
    /// Unfinished pool tasks on this loop.
    load: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    id: ThreadId,
}

/// Counts a pool task as unfinished from its spawn until its future completes or is dropped.
struct LoadGuard(Arc<AtomicUsize>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A pool of loops, one per thread. See the module docs of `runtime/pool.rs`.
///
/// ```
/// use ferroloop::LoopPool;
///
/// let pool = LoopPool::with_threads(2).unwrap();
/// // Send futures, spread over the loops
/// let tasks: Vec<_> = (0..8u64).map(|i| pool.spawn(async move { i * i })).collect();
/// let sum: u64 = tasks.into_iter().map(|t| t.join().unwrap()).sum();
/// assert_eq!(sum, 140);
/// // !Send futures, built on the loop that runs them
/// let local = pool.spawn_with(|| async {
///     let shared = std::rc::Rc::new(5);
///     ferroloop::sleep(std::time::Duration::from_millis(1)).await;
///     *shared
/// });
/// assert_eq!(local.join().unwrap(), 5);
/// pool.shutdown(std::time::Duration::from_secs(1));
/// ```
pub struct LoopPool {
    workers: Vec<Worker>,
    next: AtomicUsize,
    shutdown_tx: watch::Sender<bool>,
}

impl LoopPool {
    /// A pool with one loop per core (`std::thread::available_parallelism`).
    pub fn new() -> io::Result<LoopPool> {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        LoopPool::with_threads(n)
    }

    /// A pool of `threads` loops (at least 1).
    pub fn with_threads(threads: usize) -> io::Result<LoopPool> {
        let (shutdown_tx, _) = watch::channel(false);
        let mut pool = LoopPool {
            workers: Vec::with_capacity(threads.max(1)),
            next: AtomicUsize::new(0),
            shutdown_tx,
        };
        for i in 0..threads.max(1) {
            // on an error the loops made so far are stopped by `pool`'s drop
            pool.workers.push(start_worker(i)?);
        }
        Ok(pool)
    }

    /// The number of loops.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Never true: a pool has at least one loop.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// The handle of loop `index` (`0..len()`), to call or spawn on that loop.
    pub fn handle(&self, index: usize) -> &LoopHandle {
        &self.workers[index].handle
    }

    /// The unfinished pool tasks of each loop (those spawned through the pool).
    pub fn loads(&self) -> Vec<usize> {
        self.workers
            .iter()
            .map(|w| w.load.load(Ordering::Acquire))
            .collect()
    }

    /// The least-loaded loop; ties go round robin.
    fn pick(&self) -> usize {
        let n = self.workers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best = start;
        let mut best_load = usize::MAX;
        for k in 0..n {
            let i = (start + k) % n;
            let load = self.workers[i].load.load(Ordering::Acquire);
            if load < best_load {
                best = i;
                best_load = load;
                if load == 0 {
                    break;
                }
            }
        }
        best
    }

    /// Spawn a `Send` future on the least-loaded loop.
    pub fn spawn<F>(&self, future: F) -> RemoteTask<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_with(move || future)
    }

    /// Build a future with `make` on the least-loaded loop's thread and run it there (the
    /// future may be `!Send`: sockets, `Rc`s, ferroloop's timers).
    pub fn spawn_with<M, F>(&self, make: M) -> RemoteTask<F::Output>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_with_on(self.pick(), make)
    }

    /// As [`spawn_with`](Self::spawn_with), on loop `index`.
    pub fn spawn_with_on<M, F>(&self, index: usize, make: M) -> RemoteTask<F::Output>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future + 'static,
        F::Output: Send + 'static,
    {
        let worker = &self.workers[index];
        worker.load.fetch_add(1, Ordering::AcqRel);
        let guard = LoadGuard(worker.load.clone());
        worker.handle.spawn_with(move || {
            let future = make();
            async move {
                let _counted = guard;
                future.await
            }
        })
    }

    /// Run `make()`'s future on every loop (one task each), in loop order.
    pub fn spawn_on_each<M, F>(&self, make: M) -> Vec<RemoteTask<F::Output>>
    where
        M: Fn() -> F + Send + Sync + Clone + 'static,
        F: Future + 'static,
        F::Output: Send + 'static,
    {
        (0..self.workers.len())
            .map(|i| self.spawn_with_on(i, make.clone()))
            .collect()
    }

    /// Serve TCP on every loop: one listener per loop, all bound to `addr` with
    /// `SO_REUSEPORT` (port 0: one free port, shared), listening before this returns; then
    /// `serve(listener)` runs on each loop. The kernel spreads incoming connections over the
    /// listeners. Returns the bound address and the serving tasks.
    ///
    /// ```
    /// use ferroloop::{LoopPool, TcpStream};
    ///
    /// let pool = LoopPool::with_threads(2).unwrap();
    /// let stop = pool.shutdown_signal();
    /// let (addr, _servers) = pool
    ///     .serve_tcp("127.0.0.1:0".parse().unwrap(), move |listener| {
    ///         let stop = stop.clone();
    ///         async move {
    ///             let accept = async {
    ///                 loop {
    ///                     let (conn, _) = listener.accept().await.unwrap();
    ///                     ferroloop::spawn(async move { conn.write_all(b"hi").await });
    ///                 }
    ///             };
    ///             ferroloop::select(Box::pin(accept), Box::pin(stop.wait())).await;
    ///         }
    ///     })
    ///     .unwrap();
    /// let reply = ferroloop::run(async move {
    ///     let c = TcpStream::connect(addr).await.unwrap();
    ///     let mut buf = [0u8; 2];
    ///     c.read_exact(&mut buf).await.unwrap();
    ///     buf
    /// });
    /// assert_eq!(&reply, b"hi");
    /// assert_eq!(pool.shutdown(std::time::Duration::from_secs(5)), 0);
    /// ```
    pub fn serve_tcp<S, F>(
        &self,
        addr: SocketAddr,
        serve: S,
    ) -> io::Result<(SocketAddr, Vec<RemoteTask<F::Output>>)>
    where
        S: Fn(TcpListener) -> F + Send + Sync + Clone + 'static,
        F: Future + 'static,
        F::Output: Send + 'static,
    {
        let mut bound = addr;
        let mut listeners = Vec::with_capacity(self.workers.len());
        for _ in 0..self.workers.len() {
            let socket = TcpSocket::new_for(&addr)?;
            socket.set_reuseaddr(true)?;
            socket.set_reuseport(true)?;
            if addr.is_ipv6() {
                socket.set_only_v6(true)?;
            }
            socket.bind(bound)?;
            bound = socket.local_addr()?;
            listeners.push(socket.listen_unregistered(crate::net::socket::LISTEN_BACKLOG)?);
        }
        let tasks = listeners
            .into_iter()
            .enumerate()
            .map(|(i, std)| {
                let serve = serve.clone();
                self.spawn_with_on(i, move || async move {
                    let listener =
                        TcpListener::from_std(std).expect("registering a listener with its loop");
                    serve(listener).await
                })
            })
            .collect();
        Ok((bound, tasks))
    }

    /// A future that completes when [`shutdown`](Self::shutdown) begins (`Send`, cloneable):
    /// what servers select on to stop accepting.
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            rx: self.shutdown_tx.subscribe(),
        }
    }

    /// Stop the pool gracefully: resolve the shutdown signals, wait until the pool's tasks
    /// have finished or `grace` has passed, then stop every loop (dropping what is left on
    /// its own thread) and join the threads. Returns how many pool tasks were still running
    /// and were cancelled.
    ///
    /// Panics if called on one of the pool's threads (it would wait for itself).
    pub fn shutdown(mut self, grace: Duration) -> usize {
        self.stop(grace)
    }

    fn stop(&mut self, grace: Duration) -> usize {
        let me = std::thread::current().id();
        assert!(
            self.workers.iter().all(|w| w.id != me),
            "LoopPool::shutdown (or drop) on one of the pool's own threads would wait for itself"
        );
        self.shutdown_tx.send_replace(true);
        let deadline = Instant::now() + grace;
        let pending = || {
            self.workers
                .iter()
                .map(|w| w.load.load(Ordering::Acquire))
                .sum()
        };
        let mut left: usize = pending();
        while left > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            left = pending();
        }
        for w in &mut self.workers {
            if let Some(stop) = w.stop.take() {
                if stop.send(()).is_err() {
                    // the loop thread has ended already
                }
            }
        }
        for w in &mut self.workers {
            if let Some(thread) = w.thread.take() {
                if thread.join().is_err() {
                    // a loop thread panicked outside a task: nothing is left to stop there
                }
            }
        }
        left
    }
}

/// Start loop thread `index`: it makes its loop, sends back its handle, and runs until told
/// to stop; the loop (and the tasks still in it) is dropped on that thread.
fn start_worker(index: usize) -> io::Result<Worker> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("ferroloop-pool-{index}"))
        .spawn(move || {
            let lp = match Loop::new() {
                Ok(lp) => lp,
                Err(e) => {
                    if ready_tx.send(Err(e)).is_err() {
                        // the pool gave up waiting
                    }
                    return;
                }
            };
            if ready_tx.send(Ok(lp.handle())).is_err() {
                return;
            }
            // until the pool says stop (or is gone without saying)
            if lp.block_on(stop_rx).is_err() {
                // the sender was dropped: stop all the same
            }
        })?;
    let id = thread.thread().id();
    let handle = match ready_rx.recv() {
        Ok(Ok(handle)) => handle,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(io::Error::other("a pool loop thread ended while starting")),
    };
    Ok(Worker {
        handle,
        load: Arc::new(AtomicUsize::new(0)),
        stop: Some(stop),
        thread: Some(thread),
        id,
    })
}

impl Drop for LoopPool {
    /// Stops the loops at once (no grace) and joins their threads.
    fn drop(&mut self) {
        if self.workers.iter().any(|w| w.thread.is_some()) {
            self.stop(Duration::ZERO);
        }
    }
}

impl fmt::Debug for LoopPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopPool")
            .field("loops", &self.workers.len())
            .field("loads", &self.loads())
            .finish()
    }
}

/// Completes when its [`LoopPool`]'s shutdown begins (see [`LoopPool::shutdown_signal`]).
#[derive(Clone, Debug)]
pub struct ShutdownSignal {
    rx: watch::Receiver<bool>,
}

impl ShutdownSignal {
    /// Whether shutdown has begun.
    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow()
    }

    /// Wait until shutdown begins (at once if it has; also when the pool is dropped).
    pub async fn wait(mut self) {
        while !*self.rx.borrow_and_update() {
            if self.rx.changed().await.is_err() {
                return; // the pool is gone
            }
        }
    }
}
