"""``concurrent.futures`` on gopool's Go core: :class:`ProcessPoolExecutor`.

The executor keeps the contract of ``concurrent.futures.ProcessPoolExecutor``
(Python 3.9-3.14: ``submit``, ``map`` with ``chunksize`` and 3.14's lazy
``buffersize``, ``shutdown(wait, cancel_futures)``, ``terminate_workers()``,
``kill_workers()``, the context manager), and its futures are real
``concurrent.futures.Future`` objects, so ``as_completed``, ``wait``,
``asyncio.wrap_future`` and ``loop.run_in_executor`` work unchanged. It runs
on the same core as :class:`gopool.Pool` and does better where the stdlib's
breaks:

- a worker that dies (a signal, ``os._exit``, the OOM killer) fails only the
  future of the task it ran, with :class:`ExecutorWorkerLostError` (both a
  :class:`gopool.WorkerLostError` and a ``BrokenProcessPool``); the worker
  is replaced and the executor goes on;
- lambdas, closures and functions defined in ``__main__`` or a notebook
  travel by value (cloudpickle);
- ``task_timeout=``, ``soft_timeout=`` and ``max_memory_per_child=`` as on
  :class:`gopool.Pool`;
- ``Future.cancel()`` is exact: it succeeds if and only if the task has not
  begun (a task already handed to a worker is revoked, not raced), and
  ``future.cancel(running=True)`` also stops a task that runs (its worker
  is killed and replaced);
- ``shutdown(wait=False, cancel_futures=True)`` leaves no process behind:
  the workers exit as soon as the tasks already running end.

Where gopool differs from the stdlib's executor, on purpose:

- futures stay PENDING until their result arrives (the stdlib marks a
  future RUNNING when it queues it for a worker, whether or not it has
  begun); ``running()`` asks the core whether a worker holds the task, and
  ``shutdown(cancel_futures=True)`` lets the tasks workers hold run, as the
  stdlib lets the calls it queued for its workers run;
- an initializer that raises breaks the executor as in the stdlib, but the
  futures' ``BrokenProcessPool`` (:class:`ExecutorBrokenError`) carries the
  initializer's exception as ``__cause__``;
- ``mp_context`` is accepted and ignored (workers are always fresh
  interpreters, forked from a zygote that never runs user code), so
  ``max_tasks_per_child`` is accepted with any context;
- a task that raises ``SystemExit`` ends its worker, which fails its future
  with :class:`ExecutorWorkerLostError` (as ``Pool`` does); a result that
  cannot be pickled fails with ``multiprocessing.pool.MaybeEncodingError``,
  and one that cannot be unpickled in the parent with a ``RuntimeError``:
  only that future fails, where the stdlib breaks the whole pool;
- workers start at the first submission, all of them at once.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import itertools
import os
import threading
import time
import weakref
from collections import deque
from concurrent.futures import Executor
from concurrent.futures._base import CANCELLED, FINISHED, PENDING
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Set,
    Tuple,
    TypeVar,
)

from gopool._binding import deadline_of, slice_ms
from gopool._errors import (
    BrokenPoolError,
    CancelledError,
    PoolTerminatedError,
    RemoteTraceback,
    WorkerLostError,
)

if TYPE_CHECKING:
    from typing_extensions import ParamSpec  # typing's from Python 3.10

    from gopool._backend import TimeLimits
    from gopool._process_backend import ProcessBackend
    from gopool.pool import WorkerInfo, _Progress, _ProgressSpec

__all__ = [
    "ProcessPoolExecutor",
    "Future",
    "ExecutorWorkerLostError",
    "ExecutorBrokenError",
    "ExecutorTerminatedError",
    "BrokenProcessPool",
]

_T = TypeVar("_T")
if TYPE_CHECKING:
    _P = ParamSpec("_P")

BrokenProcessPool = concurrent.futures.process.BrokenProcessPool


class ExecutorWorkerLostError(WorkerLostError, BrokenProcessPool):
    """The worker running the task died before it could report a result.

    Both a :class:`gopool.WorkerLostError` (``pid``, ``exitcode``) and a
    ``concurrent.futures.process.BrokenProcessPool``, so that code written for
    the stdlib's executor still catches it. Unlike the stdlib's, only this
    task's future fails: the worker is replaced and the executor goes on.
    """


class ExecutorBrokenError(BrokenPoolError, BrokenProcessPool):
    """The executor cannot run tasks: a worker's initializer raised (the
    exception is the ``__cause__``) or workers cannot be started. Every
    pending future fails with it, and so does ``submit()`` from then on."""


class ExecutorTerminatedError(PoolTerminatedError, BrokenProcessPool):
    """The task was running when ``terminate_workers()`` or
    ``kill_workers()`` stopped the workers."""


class _InitializerFailed(Exception):
    """Carries the exception of a worker's initializer to the parent."""


class _Initializer:
    """The user's initializer, run in each worker: an exception it raises
    comes back as :class:`_InitializerFailed`, which breaks the executor."""

    def __init__(self, fn: Callable[..., object]):
        self.fn = fn

    def __call__(self, *args: Any) -> None:
        try:
            self.fn(*args)
        except Exception as exc:
            raise _InitializerFailed(exc) from exc


def _initializer_error(failed: _InitializerFailed) -> ExecutorBrokenError:
    cause = failed.args[0] if failed.args else failed
    error = ExecutorBrokenError(f"a worker's initializer raised {cause!r}: the executor cannot run tasks")
    if isinstance(cause, BaseException):
        cause.__cause__ = _remote_traceback(failed.__cause__)
        error.__cause__ = cause
    return error


def _remote_traceback(cause: Optional[BaseException]) -> Optional[BaseException]:
    if isinstance(cause, RemoteTraceback) and type(cause) is RemoteTraceback:
        # typeshed declares its argument a TracebackType; the stdlib passes the text, as here
        remote: BaseException = concurrent.futures.process._RemoteTraceback(cause.tb)  # type: ignore[arg-type]
        return remote
    return cause


def _for_executor(exc: BaseException) -> BaseException:
    """A task's failure in the executor's idiom: the core's errors become
    ``BrokenProcessPool`` subclasses and a worker's traceback becomes the
    stdlib executor's ``_RemoteTraceback``."""
    if isinstance(exc, _InitializerFailed):
        return _initializer_error(exc)
    if isinstance(exc, WorkerLostError) and not isinstance(exc, ExecutorWorkerLostError):
        return ExecutorWorkerLostError(str(exc), exc.pid, exc.exitcode)
    if isinstance(exc, PoolTerminatedError) and not isinstance(exc, ExecutorTerminatedError):
        return ExecutorTerminatedError("the workers were terminated before the task finished")
    if isinstance(exc, BrokenPoolError) and not isinstance(exc, ExecutorBrokenError):
        return ExecutorBrokenError(str(exc))
    if type(exc.__cause__) is RemoteTraceback:
        exc.__cause__ = _remote_traceback(exc.__cause__)
    return exc


# --------------------------------------------------------------------------
# Futures


class Future(concurrent.futures.Future[_T]):
    """A ``concurrent.futures.Future`` of a task run by gopool.

    ``cancel()`` keeps its documented meaning and makes it exact: it
    succeeds if and only if the task has not begun. ``cancel(running=True)``
    also stops a task that has begun: its worker is killed and replaced.
    """

    _job: Optional[int] = None
    _function = "?"

    def __init__(self) -> None:
        super().__init__()
        self._core: Optional[_Core] = None
        # While set, nobody but a caller of result(), exception() or done()
        # collects the outcome: that caller reads it from the core itself,
        # saving the hand-off through the results thread. Whatever else
        # takes an interest (a callback, wait(), as_completed(), asyncio,
        # shutdown) hands the future over to that thread first.
        self._lazy: Optional[_Delivery] = None
        self._collecting = threading.Lock()
        self._handled = 0  # outcomes collected, for the core's acknowledgement
        self._waiters: List[Any] = _Waiters(self)

    def result(self, timeout: Optional[float] = None) -> _T:
        deadline = deadline_of(timeout)
        self._collect_lazily(deadline)
        return super().result(_time_left(deadline))

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        deadline = deadline_of(timeout)
        self._collect_lazily(deadline)
        return super().exception(_time_left(deadline))

    def done(self) -> bool:
        if not super().done():
            self._collect_lazily(time.monotonic())
        return super().done()

    def add_done_callback(self, fn: Callable[["concurrent.futures.Future[_T]"], object]) -> None:
        self._hand_over()
        super().add_done_callback(fn)

    def _hand_over(self) -> None:
        delivery = self._lazy
        if delivery is not None:
            delivery.adopt(self)

    def _collect_lazily(self, deadline: Optional[float]) -> None:
        """Collect the outcome from the core until it is in, the future is
        handed over, or the deadline passes. One thread collects at a time."""
        if self._lazy is None:
            return
        wait_s = -1 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._collecting.acquire(timeout=wait_s):
            return
        try:
            while True:
                delivery, core, job = self._lazy, self._core, self._job
                if delivery is None or core is None or job is None:
                    return
                try:
                    entries, done = core.backend.collect(job, self._handled, slice_ms(deadline))
                except KeyError:
                    return  # handed over, and the results thread took it
                self._handled += len(entries)
                if done:
                    core.backend.ack(job, self._handled)
                    delivery.forget(self)
                    _, ok, value = entries[-1]
                    self._deliver(ok, value)
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    return
        finally:
            self._collecting.release()

    def cancel(self, *, running: bool = False) -> bool:
        """Cancel the task if it has not begun and return True; return False
        if it has begun or completed (``running=False``, the stdlib's
        meaning).

        With ``running=True`` a task that runs is stopped too (its worker is
        killed and replaced) and True is returned; False then means the
        task had already completed. A cancelled future's ``result()``
        raises ``concurrent.futures.CancelledError``.
        """
        with self._condition:
            if self._state != PENDING:
                return self._state != FINISHED
        core, job = self._core, self._job
        if core is None or job is None:  # its outcome is being set
            return self.cancelled()
        try:
            if running:
                stopped = core.backend.cancel(job)
            else:
                stopped = core.backend.cancel_pending(job)
        except KeyError:  # completed: its result is on its way
            stopped = 0
        if stopped == 0:
            return self.cancelled()
        self._mark_cancelled()
        delivery = self._lazy
        if delivery is not None and delivery.forget(self):
            core.backend.discard(job)  # nobody will read its outcome now
        return True

    def running(self) -> bool:
        """Whether a worker holds the task now (it runs, or is about to
        begin). gopool's futures stay PENDING until their result arrives."""
        if concurrent.futures.Future.running(self):
            return True
        core, job = self._core, self._job
        if self._state != PENDING or core is None or job is None or not core.started:
            return False
        try:
            return any(row[2] == job for row in core.backend.workers())
        except Exception:
            return False

    def _mark_cancelled(self) -> None:
        if concurrent.futures.Future.cancel(self):
            with self._condition:
                if self._state == CANCELLED:
                    # Wake wait() and as_completed(), as an executor must.
                    self.set_running_or_notify_cancel()

    def _deliver(self, ok: bool, value: Any) -> None:
        """Set the task's outcome, unless the future was cancelled."""
        core = self._core
        if not ok and isinstance(value, CancelledError):
            self._mark_cancelled()
        else:
            if not ok:
                value = _for_executor(value)
                if isinstance(value, ExecutorBrokenError) and core is not None:
                    core.broken = str(value)
            try:
                if ok:
                    self.set_result(value)
                else:
                    self.set_exception(value)
            except concurrent.futures.InvalidStateError:
                pass  # cancelled meanwhile
        self._core = None


class _Waiters(list):  # type: ignore[type-arg]
    """A future's waiter list: ``wait()`` and ``as_completed()`` add theirs
    to it, which hands a lazily collected future over to the results
    thread, since those callers never call result()."""

    def __init__(self, future: Future[Any]) -> None:
        super().__init__()
        self._future = weakref.ref(future)

    def append(self, waiter: Any) -> None:
        super().append(waiter)
        future = self._future()
        if future is not None:
            future._hand_over()


def _time_left(deadline: Optional[float]) -> Optional[float]:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _failed_future(exc: BaseException) -> "Future[Any]":
    future: Future[Any] = Future()
    future.set_exception(exc)
    return future


# --------------------------------------------------------------------------
# The core and the delivery thread


class _Core:
    """The executor's process backend, started at the first submission.

    It lives as long as anything may still need it (the executor, its
    delivery thread, map iterators); then the core's pool is released.
    """

    def __init__(self, processes: int, initializer: Optional[Callable[..., Any]], initargs: Tuple[Any, ...],
                 max_tasks_per_child: Optional[int], max_memory_per_child: Optional[int]):
        from gopool._process_backend import ProcessBackend

        self.backend: ProcessBackend = ProcessBackend(
            processes, initializer, initargs, max_tasks_per_child, max_memory_per_child
        )
        self.started = True
        self.broken: Optional[str] = None  # why no task can run any more
        weakref.finalize(self, self.backend.release)


class _Delivery:
    """Sets the futures' outcomes on a thread of its own, as the results of
    their jobs (notify jobs) arrive from the core. The thread runs while
    futures are pending and lingers a little after, so that a burst of
    submissions does not start a thread each."""

    _LINGER_SLICES = 5  # idle slices of the core's wait before the thread ends
    # At most this many futures wait for their caller to collect them (a
    # caller that never does leaves their results in the core); the others
    # go through the thread from the start.
    LAZY_LIMIT = 64

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting: Dict[int, Future[Any]] = {}
        self.lazy: Dict[int, Future[Any]] = {}  # collected by their callers
        self._core: Optional[_Core] = None
        self._thread: Optional[threading.Thread] = None
        self._ack = False
        self._closed = False
        self._idle = threading.Condition(self.lock)

    def watch_locked(self, core: _Core, job: int, future: "Future[Any]") -> None:
        """Deliver job's result to future (the caller holds ``lock``)."""
        self.waiting[job] = future
        self._core = core
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gopool executor results", daemon=True)
            self._thread.start()

    def watch_lazily_locked(self, core: _Core, job: int, future: "Future[Any]") -> None:
        """Leave job's result to whoever calls future's result(), until
        something else takes an interest (the caller holds ``lock``)."""
        self.lazy[job] = future
        future._lazy = self

    def adopt(self, future: "Future[Any]") -> None:
        """Take over a lazily collected future: its result comes through the
        thread from now on."""
        with self.lock:
            job, core = future._job, future._core
            if future._lazy is None or job is None or core is None:
                return
            del self.lazy[job]
            future._lazy = None
            self.watch_locked(core, job, future)
            try:
                core.backend.notify(job, future._handled)
            except KeyError:  # its caller has collected it all: it delivers it
                del self.waiting[job]

    def forget(self, future: "Future[Any]") -> bool:
        """A lazily collected future is complete; False if it was handed
        over meanwhile."""
        with self.lock:
            if future._lazy is None or future._job is None:
                return False
            del self.lazy[future._job]
            future._lazy = None
            if not self.waiting and not self.lazy:
                self._idle.notify_all()
            return True

    def adopt_all(self) -> None:
        """Hand every lazily collected future over to the thread."""
        with self.lock:
            futures = list(self.lazy.values())
        for future in futures:
            self.adopt(future)

    def close(self) -> None:
        """No more futures: the thread ends once none is pending."""
        with self.lock:
            self._closed = True

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Wait until no future is pending. The lazily collected ones are
        collected by this thread: at interpreter exit (the executors'
        shutdown handler) Python 3.12+ refuses to start the results thread."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            lazy = list(self.lazy.values())
        for future in lazy:
            future._collect_lazily(deadline)
        self.adopt_all()  # those the deadline left
        with self.lock:
            return self._idle.wait_for(lambda: not self.waiting, timeout)

    def pending(self) -> List["Future[Any]"]:
        with self.lock:
            return [*self.waiting.values(), *self.lazy.values()]

    def by_job(self) -> Dict[int, "Future[Any]"]:
        with self.lock:
            return {**self.waiting, **self.lazy}

    def _run(self) -> None:
        idle = 0
        while True:
            with self.lock:
                core = self._core
            if core is None:
                return
            try:
                batches = core.backend.collect_notified(self._ack, 100)
            except Exception as exc:
                self._fail_all(exc)
                return
            self._ack = False
            outcomes: List[Tuple[Future[Any], bool, Any]] = []
            with self.lock:
                for job, entries, done in batches:
                    future = self.waiting.pop(job, None) if done else self.waiting.get(job)
                    if future is not None and entries:
                        index, ok, value = entries[-1]
                        outcomes.append((future, ok, value))
            for future, ok, value in outcomes:
                future._deliver(ok, value)
            delivered = bool(batches)
            outcomes, batches = [], []
            future = value = None
            self._ack = True
            with self.lock:
                if self.waiting:
                    idle = 0
                    continue
                self._idle.notify_all()
                idle = 0 if delivered else idle + 1  # only slices with nothing to deliver count
                if self._closed or idle >= self._LINGER_SLICES:
                    self._thread = None
                    self._core = None
                    return

    def _fail_all(self, exc: BaseException) -> None:
        with self.lock:
            waiting, self.waiting = self.waiting, {}
            self._thread = None
            self._core = None
            self._idle.notify_all()
        for future in waiting.values():
            error = ExecutorTerminatedError(f"the executor's core is gone: {exc!r}")
            future._deliver(False, error)


# --------------------------------------------------------------------------
# map


class _MapIterator(Iterator[_T]):
    """The iterator of ``ProcessPoolExecutor.map``: one job of the core whose
    tasks are the chunks, collected by the iterating thread, results in
    input order. Like the stdlib's: the whole input is submitted at once
    (with ``buffersize``, that many chunks ahead of the consumer); the first
    failing chunk raises at its position and ends the iteration; closing a
    started iterator (or dropping it) cancels the chunks not yet begun.
    A progress bar advances as results are handed out and closes when the
    iteration ends, whichever way."""

    def __init__(self, executor: "ProcessPoolExecutor", fn: Callable[..., _T], iterables: Tuple[Iterable[Any], ...],
                 timeout: Optional[float], chunksize: int, buffersize: Optional[int],
                 progress: Optional["_Progress"] = None):
        self._end = None if timeout is None else time.monotonic() + timeout
        self._executor_ref = weakref.ref(executor)
        core = executor._ensure_core()
        self._core: Optional[_Core] = core
        self._backend = core.backend
        self._fn = fn
        args = zip(*iterables)
        self._chunks: Iterator[Tuple[Any, ...]] = iter(lambda: tuple(itertools.islice(args, chunksize)), ())
        self._buffersize = buffersize
        self._job = self._backend.submit(0, (), seal=False, limits=executor._limits)
        self._fed = 0  # chunks submitted
        self._sealed = False
        self._input_error: Optional[BaseException] = None  # raised at the position of the chunk it stopped
        self._outcomes: Dict[int, Tuple[bool, Any]] = {}
        self._handled = 0
        self._collected = 0  # distinct results stored
        self._next = 0  # the next chunk to hand out
        self._items: Deque[_T] = deque()
        self._started = False
        self._finished = False
        self._done = False  # the core has given every result
        self._progress = progress
        executor._maps.add(self)
        try:
            self._feed(buffersize)
        except BaseException:
            self._cancel()
            raise

    # -- feeding ----------------------------------------------------------

    def _feed(self, limit: Optional[int]) -> None:
        """Submit up to limit more chunks (all for None), sealing the job at
        the end of the input. A chunk that cannot be pickled ends the
        input: its error is raised at its position."""
        batch: List[Any] = []
        count = 0
        encode = self._backend.encode
        while limit is None or count < limit:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._submit(batch, seal=True)
                return
            try:
                batch.append(encode(self._fn, chunk, None, _MODE_STARMAP))
            except Exception as exc:
                self._input_error = exc
                self._submit(batch, seal=True)
                return
            count += 1
            if len(batch) >= 64:
                self._submit(batch, seal=False)
                batch = []
        self._submit(batch, seal=False)

    def _submit(self, tasks: List[Any], seal: bool) -> None:
        if self._sealed or (not tasks and not seal):
            return
        self._backend.submit(self._job, tasks, seal=seal)
        self._fed += len(tasks)
        self._sealed = seal

    def _seal(self) -> None:
        """The executor shuts down: no more chunks (the next one due raises
        RuntimeError, as the stdlib's submit() would)."""
        if not self._sealed:
            try:
                self._submit([], seal=True)
            except Exception:
                pass
            self._input_error = self._input_error or RuntimeError("cannot schedule new futures after shutdown")

    # -- consuming ----------------------------------------------------------

    def __iter__(self) -> "_MapIterator[_T]":
        return self

    def __next__(self) -> _T:
        self._started = True
        if self._items:
            return self._items.popleft()
        if self._finished:
            raise StopIteration
        try:
            if self._buffersize is not None and not self._sealed:
                executor = self._executor_ref()
                if executor is None or executor._shutdown:
                    self._seal()
                else:
                    self._feed(1)
                executor = None
            if self._next >= self._fed:
                if self._input_error is not None:
                    error, self._input_error = self._input_error, None
                    raise error
                self._finish()
                raise StopIteration
            ok, value = self._wait_for(self._next)
        except StopIteration:
            raise
        except BaseException:
            self.close()
            raise
        self._next += 1
        if not ok:
            self.close()
            raise value
        self._items.extend(value)
        if self._progress is not None:
            self._progress.update(len(value))
        value = None
        if not self._items:  # an empty chunk cannot happen, but stay safe
            return self.__next__()
        return self._items.popleft()

    def _wait_for(self, index: int) -> Tuple[bool, Any]:
        """Collect until chunk index's outcome is in; TimeoutError (the
        stdlib's) past the map's timeout."""
        while True:
            outcome = self._outcomes.pop(index, None)
            if outcome is not None:
                ok, value = outcome
                return ok, (value if ok else _for_executor(value))
            if self._done:
                raise ExecutorTerminatedError("the result of a map's chunk was lost")
            from gopool import _binding as core

            wait_ms = core.slice_ms(self._end)
            try:
                entries, done = self._backend.collect(self._job, self._handled, wait_ms)
            except KeyError:
                entries, done = [], True
            for i, ok, value in entries[self._collected - self._handled:]:
                if not ok and isinstance(value, _InitializerFailed):
                    value = _initializer_error(value)
                    if self._core is not None:
                        self._core.broken = str(value)
                self._outcomes[i] = (ok, value)
                self._collected += 1
            self._handled = self._collected
            if done:
                self._backend.ack(self._job, self._handled)
                self._done = True
            if (not entries and not done and self._end is not None and time.monotonic() >= self._end
                    and index not in self._outcomes):
                raise concurrent.futures.TimeoutError()

    def _finish(self) -> None:
        self._finished = True
        self._core = None
        if self._progress is not None:
            self._progress.close()

    def close(self) -> None:
        """End the iteration: chunks not begun are cancelled, those running
        finish; their results are dropped."""
        if self._finished:
            return
        self._finish()
        self._items.clear()
        self._cancel()

    def _cancel(self) -> None:
        try:
            if not self._done:
                self._backend.cancel_pending(self._job)
                self._backend.discard(self._job)
                self._done = True
        except Exception:
            pass

    def __del__(self) -> None:
        if self._progress is not None:
            self._progress.close()
        if self._finished or self._done:
            return
        if self._started:
            self._cancel()  # as the stdlib's: a started iteration cancels the rest
        else:
            try:  # never iterated: the tasks run, nobody reads their results
                self._seal()
                self._backend.discard(self._job)
            except Exception:
                pass


def _held_jobs(core: "_Core") -> Set[int]:
    """The jobs (one per future) whose task a worker holds now."""
    if not core.started:
        return set()
    try:
        return {row[2] for row in core.backend.workers()}
    except Exception:
        return set()


def _shortest_length(iterables: Tuple[Iterable[Any], ...]) -> Optional[int]:
    """How many items ``zip(*iterables)`` gives, if every input is sized."""
    try:
        return min((len(it) for it in iterables), default=0)  # type: ignore[arg-type]  # sized or TypeError
    except TypeError:
        return None


_MODE_STARMAP = 2  # gopool._serialize.MODE_STARMAP, without importing the serializer early


# --------------------------------------------------------------------------
# The executor

_live_executors: "weakref.WeakSet[ProcessPoolExecutor]" = weakref.WeakSet()
_global_shutdown = False


class ProcessPoolExecutor(Executor):
    """``concurrent.futures.ProcessPoolExecutor`` on gopool's Go core.

    ``max_workers`` (default: the number of CPUs), ``initializer``,
    ``initargs`` and ``max_tasks_per_child`` as in the stdlib; ``mp_context``
    is accepted and ignored. Beyond the stdlib:

    ``task_timeout`` (seconds) stops a task that runs longer (its worker is
    killed and replaced; the future fails with :class:`gopool.TimeoutError`);
    ``soft_timeout`` raises :class:`gopool.SoftTimeLimitExceeded` inside the
    task first; ``max_memory_per_child`` (bytes) limits each worker's address
    space, and a task that goes over fails with a ``MemoryError``.
    """

    def __init__(
        self,
        max_workers: Optional[int] = None,
        mp_context: Any = None,
        initializer: Optional[Callable[..., object]] = None,
        initargs: Tuple[Any, ...] = (),
        *,
        max_tasks_per_child: Optional[int] = None,
        task_timeout: Optional[float] = None,
        soft_timeout: Optional[float] = None,
        max_memory_per_child: Optional[int] = None,
    ) -> None:
        from gopool.pool import _time_limits

        if max_workers is None:
            self._max_workers = os.cpu_count() or 1
        else:
            if max_workers <= 0:
                raise ValueError("max_workers must be greater than 0")
            self._max_workers = max_workers
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            if max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
        if max_memory_per_child is not None and (
            not isinstance(max_memory_per_child, int) or max_memory_per_child <= 0
        ):
            raise ValueError("max_memory_per_child must be a positive int (bytes) or None")
        self._limits: TimeLimits = _time_limits(task_timeout, soft_timeout, "task_timeout", "soft_timeout")
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._max_tasks_per_child = max_tasks_per_child
        self._max_memory_per_child = max_memory_per_child
        self._shutdown_lock = threading.Lock()
        self._shutdown = False
        self._core: Optional[_Core] = None
        self._delivery = _Delivery()
        self._maps: "weakref.WeakSet[_MapIterator[Any]]" = weakref.WeakSet()
        _live_executors.add(self)

    def _ensure_core(self) -> _Core:
        core = self._core
        if core is None:
            with self._shutdown_lock:
                core = self._core
                if core is None:
                    self._check_open()
                    initializer = None if self._initializer is None else _Initializer(self._initializer)
                    core = self._core = _Core(self._max_workers, initializer, self._initargs,
                                              self._max_tasks_per_child, self._max_memory_per_child)
        return core

    def _check_open(self) -> None:
        core = self._core
        if core is not None and core.broken:
            raise ExecutorBrokenError(core.broken)
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if _global_shutdown:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    # -- submitting ------------------------------------------------------------

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        """Schedule ``fn(*args, **kwargs)`` in a worker; return its
        :class:`Future`. Arguments that cannot be pickled fail the future,
        as in the stdlib."""
        self._check_open()
        core = self._ensure_core()
        try:
            task = core.backend.encode(fn, args, kwargs, 0)
        except Exception as exc:
            return _failed_future(exc)
        future: Future[_T] = Future()
        future._function = getattr(fn, "__qualname__", None) or repr(fn)
        delivery = self._delivery
        with self._shutdown_lock:
            self._check_open()
            with delivery.lock:
                lazy = len(delivery.lazy) < delivery.LAZY_LIMIT
                job = core.backend.submit(0, (task,), seal=True, notify=not lazy, limits=self._limits)
                future._job, future._core = job, core
                if lazy:
                    delivery.watch_lazily_locked(core, job, future)
                else:
                    delivery.watch_locked(core, job, future)
        return future

    def map(
        self,
        fn: Callable[..., _T],
        *iterables: Iterable[Any],
        timeout: Optional[float] = None,
        chunksize: int = 1,
        buffersize: Optional[int] = None,
        progress: _ProgressSpec = None,
    ) -> Iterator[_T]:
        """Like ``map(fn, *iterables)``, run in the workers ``chunksize``
        items at a time; results in input order.

        ``timeout`` (seconds from this call) bounds the wait for each
        result (``TimeoutError``). Without ``buffersize`` the whole input is
        read and submitted now, as in the stdlib; with it (Python 3.14's
        option, offered on every version) at most that many chunks are
        submitted ahead of the results consumed. An item's exception is
        raised at its position and ends the iteration.

        ``progress=True`` draws a ``tqdm.auto`` bar that advances as results
        are handed out (its total is the shortest input's length when every
        input has one); a bar of the caller's (``update(n)``) or a callable
        ``progress(n)`` is accepted too, as on ``Pool.map``.
        """
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if buffersize is not None and not isinstance(buffersize, int):
            raise TypeError("buffersize must be an integer or None")
        if buffersize is not None and buffersize < 1:
            raise ValueError("buffersize must be None or > 0")
        self._check_open()
        from gopool.pool import _Progress

        bar = _Progress.make(progress, _shortest_length(iterables))
        try:
            return _MapIterator(self, fn, iterables, timeout, chunksize, buffersize, bar)
        except BaseException:
            if bar is not None:
                bar.close()
            raise

    # -- shutting down ---------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Accept no more tasks. ``cancel_futures`` cancels the tasks that
        no worker holds yet (futures and map chunks that have not begun);
        tasks running, or handed to a worker that is about to begin them,
        finish (the stdlib's executor likewise lets the calls it has queued
        for its workers run). ``wait`` waits for the pending futures and the
        workers' exit. Either way the workers exit once their work is done."""
        with self._shutdown_lock:
            self._shutdown = True
            core = self._core
        self._delivery.close()
        if core is None:
            return
        if cancel_futures:
            held = _held_jobs(core)
            for future in self._delivery.pending():
                if future._job not in held:
                    future.cancel()
            for it in list(self._maps):
                try:
                    core.backend.cancel_pending(it._job)
                except Exception:
                    pass
        for it in list(self._maps):
            it._seal()
        core.backend.close()
        if wait:
            self._delivery.wait_idle()
            while not core.backend.join(100):
                pass

    def terminate_workers(self) -> None:
        """Shut down, cancel what has not begun, and stop the workers now:
        a running task's future fails with :class:`ExecutorTerminatedError`
        (a ``BrokenProcessPool``). The core sends SIGTERM, then SIGKILL to a
        worker still alive 250 ms later."""
        self.shutdown(wait=False, cancel_futures=True)
        core = self._core
        if core is not None:
            core.backend.terminate()

    def kill_workers(self) -> None:
        """The same as :meth:`terminate_workers` (gopool's workers do not
        handle SIGTERM, so it stops them at once)."""
        self.terminate_workers()

    # -- introspection -----------------------------------------------------------

    def workers(self) -> List["WorkerInfo"]:
        """Describe each live worker: its pid, tasks done, and for a busy one
        the function it runs and the future (``result``) it works for."""
        from gopool.pool import WorkerInfo

        core = self._core
        if core is None:
            return []
        futures = self._delivery.by_job()
        infos = []
        for pid, done, job, index in core.backend.workers():
            if job == 0:
                infos.append(WorkerInfo(pid, done, False))
                continue
            future = futures.get(job)
            function = future._function if future is not None else None
            infos.append(WorkerInfo(pid, done, True, function, index, future))
        return infos

    def __reduce__(self) -> Any:
        raise NotImplementedError("executor objects cannot be passed between processes or pickled")

    def __del__(self) -> None:
        core = getattr(self, "_core", None)
        if core is None or getattr(self, "_shutdown", True):
            return
        try:  # as the stdlib's: pending work completes, then workers exit
            self._delivery.close()
            core.backend.close()
        except Exception:
            pass


def _python_exit() -> None:
    """At interpreter exit, as the stdlib does: no more submissions, and the
    work pending in every executor completes before the workers go."""
    global _global_shutdown
    _global_shutdown = True
    for executor in list(_live_executors):
        try:
            executor.shutdown(wait=True)
        except Exception:
            pass


def _register_exit() -> None:
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(_python_exit)  # like the stdlib's executors: before threads are joined
            return
        except RuntimeError:  # already shutting down
            pass
    import atexit

    atexit.register(_python_exit)


_register_exit()
