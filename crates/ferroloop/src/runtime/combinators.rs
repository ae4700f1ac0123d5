//! Composition: [`gather`] (asyncio's `gather` with TaskGroup's error rule) and [`select`].
//!
//! Decision: `gather` polls only the futures whose wakers fired (each child gets its own
//! waker that records its index), so gathering n futures costs O(n) polls in all, not
//! O(n²). The children live in one pinned boxed slice and are dropped in place as they
//! finish; on the first error every other child is dropped at once (cancelled).
//!
//! Threading: the futures run where they are polled; the child wakers are `Send + Sync`
//! (a child may be woken from another thread).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

struct WakeList {
    inner: Mutex<(Vec<usize>, Option<Waker>)>,
}

impl WakeList {
    fn lock(&self) -> MutexGuard<'_, (Vec<usize>, Option<Waker>)> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

struct ChildWaker {
    index: usize,
    queued: AtomicBool,
    list: Arc<WakeList>,
}

impl Wake for ChildWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let parent = {
            let mut g = self.list.lock();
            g.0.push(self.index);
            g.1.clone()
        };
        if let Some(p) = parent {
            p.wake();
        }
    }
}

/// The future of [`gather`].
pub struct Gather<F, T> {
    children: Pin<Box<[Option<F>]>>,
    wakers: Vec<Arc<ChildWaker>>,
    results: Vec<Option<T>>,
    pending: usize,
    list: Arc<WakeList>,
}

/// Run every future concurrently and collect their values in order (asyncio's `gather`).
/// The first error wins: the other futures are dropped (cancelled) at once and the error
/// returned, as an asyncio `TaskGroup` does. Spawned [`crate::Task`]s can be gathered too.
///
/// ```
/// use std::time::Duration;
/// let v = ferroloop::run(ferroloop::gather((1..=3u64).map(|i| async move {
///     ferroloop::sleep(Duration::from_millis(4 - i)).await;
///     Ok::<_, std::io::Error>(i * 10)
/// })));
/// assert_eq!(v.unwrap(), vec![10, 20, 30]);
/// ```
pub fn gather<I, F, T, E>(futures: I) -> Gather<F, T>
where
    I: IntoIterator<Item = F>,
    F: Future<Output = Result<T, E>>,
{
    let children: Vec<Option<F>> = futures.into_iter().map(Some).collect();
    let n = children.len();
    let list = Arc::new(WakeList {
        inner: Mutex::new(((0..n).collect(), None)),
    });
    let wakers = (0..n)
        .map(|index| {
            Arc::new(ChildWaker {
                index,
                queued: AtomicBool::new(true),
                list: list.clone(),
            })
        })
        .collect();
    Gather {
        children: Box::into_pin(children.into_boxed_slice()),
        wakers,
        results: (0..n).map(|_| None).collect(),
        pending: n,
        list,
    }
}

impl<F, T, E> Future for Gather<F, T>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<Vec<T>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: we never move the children out of their pinned slice (they are dropped in
        // place); the other fields are not structurally pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let woken = {
            let mut g = this.list.lock();
            match &g.1 {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => g.1 = Some(cx.waker().clone()),
            }
            std::mem::take(&mut g.0)
        };
        for i in woken {
            this.wakers[i].queued.store(false, Ordering::Release);
            // SAFETY: pinned in place, see above.
            let slot = unsafe { &mut this.children.as_mut().get_unchecked_mut()[i] };
            let Some(fut) = slot.as_mut() else { continue };
            // SAFETY: the future stays at this address until dropped in place.
            let fut = unsafe { Pin::new_unchecked(fut) };
            let waker = Waker::from(this.wakers[i].clone());
            match fut.poll(&mut Context::from_waker(&waker)) {
                Poll::Pending => {}
                Poll::Ready(Ok(v)) => {
                    *slot = None;
                    this.results[i] = Some(v);
                    this.pending -= 1;
                }
                Poll::Ready(Err(e)) => {
                    // cancel the rest, in order
                    // SAFETY: dropping in place.
                    let all = unsafe { this.children.as_mut().get_unchecked_mut() };
                    for c in all.iter_mut() {
                        *c = None;
                    }
                    this.pending = 0;
                    this.results.clear();
                    return Poll::Ready(Err(e));
                }
            }
        }
        if this.pending == 0 {
            let out = this
                .results
                .drain(..)
                .map(|r| r.expect("gather: every child finished"))
                .collect();
            return Poll::Ready(Ok(out));
        }
        Poll::Pending
    }
}

impl<F, T> fmt::Debug for Gather<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gather")
            .field("pending", &self.pending)
            .finish()
    }
}

/// Which of the two futures of [`select`] finished first, with its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Either<A, B> {
    /// The first future finished first.
    Left(A),
    /// The second future finished first.
    Right(B),
}

/// The future of [`select`].
pub struct Select<A, B> {
    a: A,
    b: B,
}

/// Wait for the first of two futures; the other is dropped (cancelled) with the `Select`.
/// When both are ready in the same poll, the first wins.
///
/// ```
/// use std::time::Duration;
/// use ferroloop::{select, sleep, Either};
/// let r = ferroloop::run(async {
///     select(sleep(Duration::from_millis(1)), sleep(Duration::from_secs(5))).await
/// });
/// assert!(matches!(r, Either::Left(())));
/// ```
pub fn select<A: Future, B: Future>(a: A, b: B) -> Select<A, B> {
    Select { a, b }
}

impl<A: Future, B: Future> Future for Select<A, B> {
    type Output = Either<A::Output, B::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of both fields: they are never moved out of `self`.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above.
        if let Poll::Ready(v) = unsafe { Pin::new_unchecked(&mut this.a) }.poll(cx) {
            return Poll::Ready(Either::Left(v));
        }
        // SAFETY: as above.
        if let Poll::Ready(v) = unsafe { Pin::new_unchecked(&mut this.b) }.poll(cx) {
            return Poll::Ready(Either::Right(v));
        }
        Poll::Pending
    }
}

/// A future and then its output: what `join!` and `try_join!` keep per future (hidden; the
/// macros' support, not an API).
#[doc(hidden)]
pub enum MaybeDone<F: Future> {
    /// Still running.
    Future(F),
    /// Finished; the output waits to be taken.
    Done(F::Output),
    /// The output was taken.
    Gone,
}

impl<F: Future> MaybeDone<F> {
    /// Wrap a future.
    pub fn new(future: F) -> Self {
        MaybeDone::Future(future)
    }

    /// Poll the future if it is still running; true once its output is there.
    pub fn poll_done(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        // SAFETY: the future is pinned structurally: it is never moved out of `self`, only
        // dropped in place when `self` is overwritten below.
        let this = unsafe { self.get_unchecked_mut() };
        match this {
            MaybeDone::Future(f) => {
                // SAFETY: as above.
                match unsafe { Pin::new_unchecked(f) }.poll(cx) {
                    Poll::Ready(v) => {
                        *this = MaybeDone::Done(v);
                        true
                    }
                    Poll::Pending => false,
                }
            }
            MaybeDone::Done(_) => true,
            MaybeDone::Gone => false,
        }
    }

    /// The output, once done.
    ///
    /// # Panics
    /// If the future has not finished, or its output was taken.
    pub fn output(self: Pin<&mut Self>) -> &F::Output {
        // SAFETY: only the output is reached, and it is not pinned (never structurally).
        match unsafe { self.get_unchecked_mut() } {
            MaybeDone::Done(v) => v,
            _ => panic!("MaybeDone::output before the future finished"),
        }
    }

    /// Take the output, once done.
    ///
    /// # Panics
    /// If the future has not finished, or its output was taken.
    pub fn take(self: Pin<&mut Self>) -> F::Output {
        // SAFETY: `self` is replaced only once it holds an output (checked first), never
        // while it holds the pinned future, so nothing pinned is moved.
        let this = unsafe { self.get_unchecked_mut() };
        assert!(
            matches!(this, MaybeDone::Done(_)),
            "MaybeDone::take before the future finished"
        );
        match std::mem::replace(this, MaybeDone::Gone) {
            MaybeDone::Done(v) => v,
            _ => unreachable!("checked above"),
        }
    }
}
