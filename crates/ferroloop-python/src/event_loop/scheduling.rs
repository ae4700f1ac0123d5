//! asyncio's scheduling API: `call_soon`, `call_later`, `call_at`,
//! `call_soon_threadsafe` (through the engine's inbox from other threads), `time`,
//! `create_future`, `create_task`, and the handles they make.
//!
//! Threading: `call_soon_threadsafe` and `_write_to_self` from any thread; the rest on the
//! loop thread, under the GIL.

use super::*;

impl EventLoop {
    pub(super) fn make_handle(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        when: Option<Bound<'_, PyAny>>,
        oneshot: bool,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let (context, snapshot_context) = match context {
            Some(c) if !c.is_none() => (c.unbind(), false),
            _ => {
                let (ctx, dropped) = {
                    let mut snap = slf.get().snapshot.borrow_mut(py)?;
                    crate::context::snapshot(py, &mut snap)?
                };
                // after the borrow (a context's weakref callbacks may run), as a `Bound`: a
                // plain decref, no TLS lookup
                drop(dropped.map(|o| o.into_bound(py)));
                (ctx, true)
            }
        };
        let tb = if slf.get().is_debug() {
            Some(py_helpers::source_traceback(py)?)
        } else {
            None
        };
        if when.is_none() && oneshot && tb.is_none() {
            let spare = slf.get().spare_handles.borrow_mut(py)?.pop();
            if let Some(h) = spare {
                h.get().refill(
                    py,
                    callback.unbind(),
                    args.unbind(),
                    context,
                    slf.clone().into_any().unbind(),
                    snapshot_context,
                )?;
                return Ok(h);
            }
        }
        let base = Handle::new_inner(
            callback.unbind(),
            args.unbind(),
            context,
            slf.clone().into_any().unbind(),
            tb,
            oneshot,
            snapshot_context,
        );
        let h = match when {
            None => Bound::new(py, base)?,
            Some(when) => {
                let init = PyClassInitializer::from(base).add_subclass(TimerHandle {
                    when: when.unbind(),
                });
                Bound::new(py, init)?.into_super()
            }
        };
        Ok(h.unbind())
    }

    /// Schedule a timer: `when` is kept by the handle, `key` (`deadline_key(when)`) orders it.
    pub(super) fn schedule_at(
        slf: &Bound<'_, Self>,
        when: Bound<'_, PyAny>,
        key: f64,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        method: &str,
    ) -> PyResult<Py<Handle>> {
        let me = slf.get();
        me.check_closed()?;
        if me.is_debug() {
            me.check_thread()?;
        }
        me.check_callback(&callback, method)?;
        let h = Self::make_handle(slf, callback, args, context, Some(when), true)?;
        h.get().scheduled.store(true, Ordering::Relaxed);
        let py = slf.py();
        me.sched(py)
            .push_timer(key, PyEntry(h.clone_ref(py)))
            .map_err(sched_err)?;
        Ok(h)
    }
}

#[pymethods]
impl EventLoop {
    /// asyncio's `get_debug` (a C `Future` asks for it on every creation: native, no
    /// Python frame).
    fn get_debug(&self) -> bool {
        self.is_debug()
    }

    /// asyncio's `create_future`: `asyncio.futures.Future(loop=self)`, the class looked up
    /// per call as asyncio does.
    fn create_future<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        static FUTURES: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
        let module =
            FUTURES.get_or_try_init(py, || py.import("asyncio.futures").map(Bound::unbind))?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item(pyo3::intern!(py, "loop"), slf)?;
        module
            .bind(py)
            .getattr(pyo3::intern!(py, "Future"))?
            .call((), Some(&kwargs))
    }

    /// asyncio's `create_task` without its Python frames per task when no task factory is
    /// set: `asyncio.tasks.Task` (looked up per call, as asyncio does), with `name`,
    /// `context` and any other keyword (3.12's `eager_start`) passed on. With a task factory,
    /// the running version's own `BaseEventLoop.create_task` (its factory call and naming
    /// differ between versions), or, when keywords other than `name` and `context` are
    /// given, `factory(loop, coro, **kwargs)` as 3.14 does.
    #[pyo3(signature = (coro, *, name=None, context=None, **kwargs))]
    fn create_task<'py>(
        slf: &Bound<'py, Self>,
        coro: Bound<'py, PyAny>,
        name: Option<Bound<'py, PyAny>>,
        context: Option<Bound<'py, PyAny>>,
        kwargs: Option<Bound<'py, pyo3::types::PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let me = slf.get();
        me.check_closed()?;
        let name = name.filter(|n| !n.is_none());
        let context = context.filter(|c| !c.is_none());
        let extra = kwargs.filter(|k| !k.is_empty());
        let factory = slf.getattr(pyo3::intern!(py, "_task_factory"))?;
        if !factory.is_none() && extra.is_none() {
            static BASE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            let base = BASE.get_or_try_init(py, || {
                let cls = py.import("asyncio.base_events")?.getattr("BaseEventLoop")?;
                Ok::<_, PyErr>(cls.getattr("create_task")?.unbind())
            })?;
            let kw = pyo3::types::PyDict::new(py);
            kw.set_item(pyo3::intern!(py, "name"), &name)?;
            kw.set_item(pyo3::intern!(py, "context"), &context)?;
            return base.bind(py).call((slf, coro), Some(&kw));
        }
        // `name` and `context` only when given: `None` is the Task's default for both,
        // and each dict entry cost about 200 instructions per task
        let kw = extra.unwrap_or_else(|| pyo3::types::PyDict::new(py));
        if let Some(name) = &name {
            kw.set_item(pyo3::intern!(py, "name"), name)?;
        }
        if let Some(context) = &context {
            kw.set_item(pyo3::intern!(py, "context"), context)?;
        }
        if !factory.is_none() {
            return factory.call((slf, coro), Some(&kw));
        }
        kw.set_item(pyo3::intern!(py, "loop"), slf)?;
        static TASKS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
        let tasks = TASKS
            .get_or_try_init(py, || py.import("asyncio.tasks").map(Bound::unbind))?
            .bind(py);
        // (asyncio then drops the last entry of a debug-mode `_source_traceback`: its own
        // `create_task` frame; here there is no such frame, the last entry is already the
        // caller's)
        tasks
            .getattr(pyo3::intern!(py, "Task"))?
            .call((coro,), Some(&kw))
    }

    fn time(&self) -> f64 {
        clock::monotonic()
    }

    #[pyo3(signature = (callback, *args, context=None))]
    pub(crate) fn call_soon(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let me = slf.get();
        me.check_closed()?;
        if me.is_debug() {
            me.check_thread()?;
        }
        me.check_callback(&callback, "call_soon")?;
        let h = Self::make_handle(slf, callback, args, context, None, true)?;
        let py = slf.py();
        me.sched(py)
            .push(PyEntry(h.clone_ref(py)))
            .map_err(sched_err)?;
        Ok(h)
    }

    #[pyo3(signature = (delay, callback, *args, context=None))]
    pub(crate) fn call_later(
        slf: &Bound<'_, Self>,
        delay: Option<&Bound<'_, PyAny>>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let delay = match delay {
            Some(d) if !d.is_none() => d,
            _ => return Err(PyTypeError::new_err("delay must not be None")),
        };
        // asyncio: `self.call_at(self.time() + delay, ...)`, with Python's `+` (its errors:
        // `10**400` overflows, a `str` is unsupported); a plain float or int is added here
        let (when, key) = match Self::python_clock(slf)? {
            Some(time) => {
                let when = time.call0()?.add(delay)?;
                let key = deadline_key(&when)?;
                (when, key)
            }
            None => match plain_number(delay)? {
                Some(delay) => {
                    let when = clock::monotonic() + delay;
                    (PyFloat::new(py, when).into_any(), float_deadline_key(when))
                }
                None => {
                    let when = PyFloat::new(py, clock::monotonic()).add(delay)?;
                    let key = deadline_key(&when)?;
                    (when, key)
                }
            },
        };
        // asyncio's call_later goes through call_at, and its messages name call_at
        Self::schedule_at(slf, when, key, callback, args, context, "call_at")
    }

    #[pyo3(signature = (when, callback, *args, context=None))]
    pub(crate) fn call_at(
        slf: &Bound<'_, Self>,
        when: Option<&Bound<'_, PyAny>>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let when = match when {
            Some(w) if !w.is_none() => w,
            _ => return Err(PyTypeError::new_err("when cannot be None")),
        };
        let key = deadline_key(when)?;
        Self::schedule_at(slf, when.clone(), key, callback, args, context, "call_at")
    }

    #[pyo3(signature = (callback, *args, context=None))]
    pub(crate) fn call_soon_threadsafe(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let me = slf.get();
        me.check_closed()?;
        me.check_callback(&callback, "call_soon_threadsafe")?;
        let h = Self::make_handle(slf, callback, args, context, None, true)?;
        let py = slf.py();
        let running_on = me.thread_id.load(Ordering::Relaxed);
        if running_on == 0 || running_on == current_thread_ident() {
            // from the loop's own thread, or while no thread runs it: the ready queue, in
            // call order with call_soon, as asyncio's _ready
            me.sched(py)
                .push(PyEntry(h.clone_ref(py)))
                .map_err(sched_err)?;
        } else if let Err(refused) = me.inbox.push(PyEntry(h.clone_ref(py))) {
            // closed meanwhile (check_closed above saw it open)
            drop(refused);
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        Ok(h)
    }

    /// The scheduling methods as builtin functions bound to this loop, `[(name, function)]`
    /// (see `fastcall.rs`).
    fn _fast_methods<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<Vec<(&'static str, Bound<'py, PyAny>)>> {
        super::fastcall::bind_fast_methods(slf)
    }

    /// Wake the loop from any thread (asyncio's self-pipe write).
    fn _write_to_self(&self) {
        self.inbox.waker().wake();
    }

    fn _timer_handle_cancelled(&self, py: Python<'_>, handle: &Bound<'_, Handle>) -> PyResult<()> {
        self.timer_cancelled(py, handle.get())
    }
}
