"""Pools of workers with the API of ``multiprocessing.pool``.

``Pool`` runs tasks in worker processes started and supervised by gopool's Go
core; ``ThreadPool`` runs them in threads. Both follow the stdlib's contract
(see the project's SEMANTICS.md) except where the stdlib hangs or loses
work; there they do better, and say so:

- a worker that dies while running a task (a signal, ``os._exit``,
  ``SystemExit``) fails that task with :class:`WorkerLostError` naming the
  worker's pid and exit status, and is replaced; nothing hangs;
- ``terminate()`` fails every unfinished task with :class:`PoolTerminatedError`;
- a callback that raises is reported through ``threading.excepthook`` and the
  pool goes on; the result still becomes ready;
- an initializer that raises fails every task with that exception instead of
  respawning workers forever;
- ``chunksize < 1`` raises ``ValueError`` for every method.

Compatibility surface: ``Pool`` is a ``multiprocessing.pool.Pool`` and
``ThreadPool`` a ``multiprocessing.pool.ThreadPool`` for ``isinstance``
checks (neither runs the stdlib's ``__init__``, queues or threads);
``pool._pool`` is a list of read-only views of the live workers, and
``MapResult._number_left`` the number of chunks not finished yet, as
libraries such as dask and parmap read them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
import types
import warnings
import weakref
from collections import deque
from multiprocessing import pool as _mp_pool
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Deque,
    Dict,
    Generator,
    Generic,
    Iterable,
    Iterator,
    List,
    Mapping,
    NoReturn,
    Optional,
    Protocol,
    Sized,
    Tuple,
    Type,
    TypeVar,
    Union,
    cast,
)

from gopool import _binding as core
from gopool import _serialize as ser
from gopool._backend import Backend, Entry, TimeLimits
from gopool._errors import (
    CancelledError,
    SoftTimeLimitExceeded,
    MaybeEncodingError,
    PoolTerminatedError,
    RemoteTraceback,
    TimeoutError,
    WorkerLostError,
)

if TYPE_CHECKING:
    from typing_extensions import Self

    from gopool.cluster import Dask
    from gopool.futures import Future

__all__ = [
    "Pool",
    "ThreadPool",
    "AsyncResult",
    "ApplyResult",
    "MapResult",
    "IMapIterator",
    "IMapUnorderedIterator",
    "MaybeEncodingError",
    "RemoteTraceback",
    "CancelledError",
    "SoftTimeLimitExceeded",
    "TimeoutError",
    "WorkerInfo",
    "INIT",
    "RUN",
    "CLOSE",
    "TERMINATE",
]

INIT = "INIT"
RUN = "RUN"
CLOSE = "CLOSE"
TERMINATE = "TERMINATE"

_S = TypeVar("_S")
_T = TypeVar("_T")


def _check_time_limit(value: Optional[float], name: str) -> None:
    if value is not None and (not isinstance(value, (int, float)) or value <= 0):
        raise ValueError(f"{name} must be a positive number of seconds or None")


# With a soft time limit and no hard one, a task is stopped this long after
# its soft limit.
SOFT_LIMIT_GRACE = 1.0


def _time_limits(hard: Optional[float], soft: Optional[float], hard_name: str, soft_name: str) -> TimeLimits:
    _check_time_limit(hard, hard_name)
    _check_time_limit(soft, soft_name)
    if soft is not None:
        if hard is None:
            hard = soft + SOFT_LIMIT_GRACE
        elif soft >= hard:
            raise ValueError(f"{soft_name} must be below {hard_name}")
    return TimeLimits(hard, soft)


def _report_callback_error(exc: BaseException) -> None:
    """Report an exception raised by a user callback the way an exception
    escaping a thread is reported, without stopping anything."""
    args = threading.ExceptHookArgs([type(exc), exc, exc.__traceback__, threading.current_thread()])
    threading.excepthook(args)


class WorkerInfo:
    """What one worker is doing.

    ``pid`` (a thread ident in a ThreadPool), ``host`` (None locally; the host
    name on a cluster), ``tasks_done``, ``busy``; for a
    busy worker, ``function`` (the task's function name), ``index`` (the
    task's position in its submission: the item of an imap, the chunk of a
    map, 0 for apply) and ``result`` (the AsyncResult or imap iterator it
    works for, if still referenced).
    """

    __slots__ = ("pid", "tasks_done", "busy", "function", "index", "result", "host")

    def __init__(self, pid: int, tasks_done: int, busy: bool, function: Optional[str] = None,
                 index: Optional[int] = None, result: Union[_Submission, Future[Any], None] = None,
                 host: Optional[str] = None):
        self.pid = pid
        self.host = host
        self.tasks_done = tasks_done
        self.busy = busy
        self.function = function
        self.index = index
        self.result = result

    def __repr__(self) -> str:
        state = f"busy with {self.function}[{self.index}]" if self.busy else "idle"
        where = f" host={self.host}" if self.host else ""
        return f"<WorkerInfo pid={self.pid}{where} {state} tasks_done={self.tasks_done}>"


def _function_name(func: Callable[..., Any]) -> str:
    name: Optional[str] = getattr(func, "__qualname__", None)
    return name or repr(func)


# --------------------------------------------------------------------------
# Progress


class _ProgressBar(Protocol):
    """A progress bar of the caller's for ``progress=``: ``update(n)`` adds
    n results (a tqdm bar is one); ``close()``, if it has one, is called at
    the end."""

    def update(self, n: int, /) -> object: ...


# What ``progress=`` takes: True (a tqdm bar), a bar, ``progress(n)``, or None/False.
_ProgressSpec = Union[bool, _ProgressBar, Callable[[int], object], None]


class _Progress:
    """A progress bar fed with numbers of results: ``progress=True`` makes a
    ``tqdm.auto`` bar (a widget in Jupyter, text in a terminal); an object
    with ``update(n)`` (a tqdm bar of the caller's) is used as it is, and
    closed at the end if it has ``close()``; another callable is called as
    ``progress(n)``."""

    def __init__(self, spec: object, total: Optional[int]):
        self._update: Callable[[int], object]
        self._close: Optional[Callable[[], object]] = None
        if spec is True:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                raise ImportError(
                    "progress=True draws a tqdm bar: install it with `pip install gopool[progress]` "
                    "(or `pip install tqdm`)"
                ) from None
            bar = tqdm(total=total)
            self._update, self._close = bar.update, bar.close
        elif hasattr(spec, "update"):
            self._update, self._close = spec.update, getattr(spec, "close", None)
        elif callable(spec):
            self._update = spec
        else:
            raise TypeError("progress must be True, a bar with update(n), or a callable")
        self._closed = False

    @staticmethod
    def make(spec: _ProgressSpec, total: Optional[int]) -> Optional["_Progress"]:
        return None if spec is None or spec is False else _Progress(spec, total)

    def update(self, n: int) -> None:
        try:
            self._update(n)
        except Exception as exc:
            _report_callback_error(exc)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._close is not None:
                try:
                    self._close()
                except Exception as exc:
                    _report_callback_error(exc)


# --------------------------------------------------------------------------
# Results
#
# A result object collects its job's results from the backend (see
# gopool._backend: results are lent, then acknowledged by the number of
# them handled so far, so that an interruption loses none; a result handled
# twice must come out the same). Two ways: a result with a callback is
# delivered by the pool's callback thread (_CallbackPump), which runs the
# callbacks off the caller's thread as the stdlib does; any other result
# is collected by the thread that waits for it.


class ApplyResult(Generic[_T]):
    """The result of ``apply_async`` (also known as ``AsyncResult``)."""

    def __init__(self, pool: "Pool", callback: Optional[Callable[[_T], object]],
                 error_callback: Optional[Callable[[BaseException], object]]):
        self._pool: Optional[Pool] = pool  # kept alive until the result is set, as in the stdlib
        self._backend: Backend = pool._backend
        self._callback = callback
        self._error_callback = error_callback
        self._done = False
        self._cancelled = False
        self._function = "?"
        # Delivered by the callback thread: waiters wait on an event. Else
        # the waiting thread collects, one at a time.
        self._by_pump = callback is not None or error_callback is not None
        self._event = threading.Event() if self._by_pump else None
        self._collecting = threading.Lock()
        self._job: Optional[int] = None
        self._handled = 0  # results handled, for the backend's acknowledgement
        self._success: Optional[bool] = None
        self._value: Any = None  # the result (a _T) if _success, else the exception
        self._hooks: List[Callable[[], None]] = []  # run once complete (asyncio waiters)
        self._progress: Optional[_Progress] = None

    def __class_getitem__(cls, item: Any, /) -> types.GenericAlias:
        """``AsyncResult[int]``, as the stdlib's (a ``types.GenericAlias``)."""
        return types.GenericAlias(cls, item)

    def __await__(self) -> Generator[Any, None, _T]:
        """``await result``: the value, or the task's exception, without
        blocking the event loop. Cancelling the awaiting task cancels the
        call (see cancel())."""
        return self._await().__await__()

    async def _await(self) -> _T:
        if not self._done:
            loop = asyncio.get_running_loop()
            done = loop.create_future()
            self._on_complete(lambda: _resolve_from_thread(loop, done))
            try:
                await done
            except asyncio.CancelledError:
                self.cancel()
                raise
        return self.get(0)

    def _on_complete(self, hook: Callable[[], None]) -> None:
        """Run hook once the result is complete (now if it is), delivered by
        the pool's callback thread from now on."""
        to_run: Optional[Callable[[], None]] = hook
        with _hooks_lock:
            if not self._done:
                self._hooks.append(hook)
                to_run = None
        if to_run is not None:
            to_run()
            return
        if not self._by_pump and self._pool is not None:
            job = self._started_job()
            self._by_pump = True
            self._event = threading.Event()
            self._pool._pump.watch(job, self)
            try:
                self._backend.notify(job, self._handled)
            except KeyError:
                pass  # every result was handled: the thread that did completes it

    def _start(self, job: int) -> None:
        self._job = job
        if self._pool is not None:
            self._pool._submissions[job] = self

    def _started_job(self) -> int:
        """The job, once submitted (results are collected only after)."""
        job = self._job
        assert job is not None, "the result's job was not submitted"
        return job

    def ready(self) -> bool:
        """Whether the call has completed."""
        if not self._done and not self._by_pump:
            self._collect(deadline=time.monotonic())
        return self._done

    def successful(self) -> bool:
        """Whether the call completed without raising; ValueError if not ready."""
        if not self.ready():
            raise ValueError("{0!r} not ready".format(self))
        return bool(self._success)

    def wait(self, timeout: Optional[float] = None) -> None:
        """Wait until the result is available or until timeout seconds pass."""
        if self._done:
            return
        deadline = core.deadline_of(timeout)
        if self._event is not None:
            while not self._event.wait(core.slice_ms(deadline) / 1000):
                if deadline is not None and time.monotonic() >= deadline:
                    return
            return
        self._collect(deadline)

    def get(self, timeout: Optional[float] = None) -> _T:
        """Return the result when it arrives; raise the task's exception if it
        failed, :class:`TimeoutError` if it is not ready within timeout."""
        self.wait(timeout)
        if not self._done:
            raise TimeoutError
        if self._success:
            return cast(_T, self._value)
        raise self._value

    def cancel(self) -> bool:
        """Cancel the call: if it has not started it never will; if it is
        running, its worker is killed and replaced (in a ThreadPool, a task
        running Python code is interrupted). ``get()`` then raises
        :class:`CancelledError` (a ``concurrent.futures.CancelledError``).
        Returns False if the call had already completed."""
        if self._done or self._job is None:
            return False
        try:
            cancelled = self._backend.cancel(self._job) > 0
        except KeyError:  # the job finished and was collected meanwhile
            return False
        self._cancelled = self._cancelled or cancelled
        return cancelled

    def cancelled(self) -> bool:
        """Whether cancel() stopped the call."""
        return self._cancelled

    def _collect(self, deadline: Optional[float]) -> None:
        """Collect this result's outcomes from the backend until it is
        complete or the deadline passes. One thread collects at a time."""
        wait_s = -1 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._collecting.acquire(timeout=wait_s):
            return
        try:
            job = self._started_job()
            while not self._done:
                try:
                    entries, done = self._backend.collect(job, self._handled, core.slice_ms(deadline))
                except KeyError:
                    # Forgotten: every result was handled and acknowledged
                    # by a collect that an interruption cut short.
                    done, entries = True, []
                for index, ok, value in entries:
                    self._set(index, ok, value)
                self._handled += len(entries)
                if done:
                    self._backend.ack(job, self._handled)
                    self._complete()
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    return
        finally:
            self._collecting.release()

    def _set(self, index: int, ok: bool, value: Any) -> None:
        self._success, self._value = ok, value

    def _complete(self) -> None:
        """All outcomes are in: run the callback, then wake waiters (the
        stdlib's order: get() returns after the callback has run)."""
        if self._done:
            return
        callback: Optional[Callable[[Any], object]] = self._callback if self._success else self._error_callback
        if callback is not None:
            try:
                callback(self._value)
            except BaseException as exc:
                _report_callback_error(exc)
        with _hooks_lock:
            self._done = True
            hooks, self._hooks = self._hooks, []
        if self._event is not None:
            self._event.set()
        if self._progress is not None:
            self._progress.close()
        self._pool = None
        for hook in hooks:
            hook()

    def __del__(self) -> None:
        if self._job is not None and not self._done and not self._by_pump:
            try:
                self._backend.discard(self._job)
            except Exception:
                pass


AsyncResult = ApplyResult

# Guards the hooks of every result: taken briefly, rarely contended.
_hooks_lock = threading.Lock()


def _resolve(future: "asyncio.Future[None]") -> None:
    if not future.done():
        future.set_result(None)


def _resolve_from_thread(loop: asyncio.AbstractEventLoop, future: "asyncio.Future[None]") -> None:
    try:
        loop.call_soon_threadsafe(_resolve, future)
    except RuntimeError:
        pass  # the loop is closed: nobody awaits any more


class MapResult(ApplyResult[List[_T]]):
    """The result of ``map_async``/``starmap_async``: the chunks' values in
    input order; the first failing chunk (in arrival order) fails the whole."""

    def __init__(self, pool: "Pool", chunksize: int, length: int, callback: Optional[Callable[[List[_T]], object]],
                 error_callback: Optional[Callable[[BaseException], object]], progress: _ProgressSpec = None):
        super().__init__(pool, callback, error_callback)
        self._success = True
        self._value = [None] * length
        self._chunksize = chunksize
        self._failed_index: Optional[int] = None
        self._progress = _Progress.make(progress, length)
        chunks = -(-length // chunksize) if chunksize > 0 else 0
        self._chunks_left = chunks
        self._arrived = bytearray(chunks)  # 1 for each chunk that has reported
        if chunksize <= 0:  # an empty input: complete now (the callback gets [])
            self._complete()

    @property
    def _number_left(self) -> int:
        """The number of chunks not finished yet, counting down to 0 (the
        stdlib's attribute, read by progress bars: compatibility surface)."""
        if not self._done and not self._by_pump:
            self._collect(deadline=time.monotonic())
        return 0 if self._done else self._chunks_left

    def _set(self, index: int, ok: bool, value: Any) -> None:
        first = index < len(self._arrived) and not self._arrived[index]  # a chunk lent again counts once
        if first:
            self._arrived[index] = 1
            self._chunks_left -= 1
        if not self._success:
            if index == self._failed_index:  # the same failure, lent again
                self._value = value
            return
        if ok:
            start = index * self._chunksize
            self._value[start : start + len(value)] = value
            if first and self._progress is not None:
                self._progress.update(len(value))
        else:
            self._success, self._value, self._failed_index = False, value, index


# What a task came to: (True, its value) or (False, its exception).
_Outcome = Tuple[bool, Any]


class IMapIterator(Generic[_T]):
    """The iterator of ``imap``: results in input order, each item's
    exception raised at its position, with ``next(timeout)``."""

    _ordered = True

    def __init__(self, pool: "Pool", func: Callable[..., Any], iterable: Iterable[Any], chunksize: int,
                 mode: int, buffersize: Optional[int], progress: _ProgressSpec = None):
        self._length: Optional[int] = len(cast(Sized, iterable)) if hasattr(iterable, "__len__") else None
        self._progress = _Progress.make(progress, self._length)
        self._chunk: Deque[_T] = deque()  # the rest of a chunk's results (chunksize > 1)
        self._pool: Optional[Pool] = pool
        self._backend: Backend = pool._backend
        self._lock = threading.Lock()
        self._job = self._backend.submit(0, (), seal=False, limits=pool._limits)
        self._function = _function_name(func)
        pool._submissions[self._job] = self
        self._pending: Dict[int, _Outcome] = {}
        self._arrived: Deque[_Outcome] = deque()  # unordered: arrival order
        self._next_index = 0
        self._stored = 0  # results kept (see _store)
        self._handled = 0  # results handled, for the backend's acknowledgement
        self._done = False  # backend reported every result
        self._finished = False  # iteration is over
        self._sized = hasattr(iterable, "__len__")
        self._input = iter(iterable)
        self._func = func
        self._chunksize = chunksize
        self._mode = mode
        self._fed = 0  # tasks submitted
        self._feeding = True
        self._input_exhausted = False  # the input ended (or raised), not cut short
        self._input_error: Optional[BaseException] = None
        self._buffersize = buffersize
        if buffersize is None:
            self._feeder = threading.Thread(target=self._feed_all, name="gopool imap feeder", daemon=True)
            self._feeder.start()
        else:
            self._feed(buffersize)

    # -- feeding -------------------------------------------------------------

    def _next_task(self) -> Optional[Any]:
        """Encode the next task from the input, or return None at its end."""
        try:
            if self._chunksize == 1:
                item = next(self._input)
                return self._backend.encode(self._func, (item,), {}, ser.MODE_APPLY)
            chunk = tuple(itertools.islice(self._input, self._chunksize))
            if not chunk:
                return None
            return self._backend.encode(self._func, chunk, None, self._mode)
        except StopIteration:
            return None

    def _read_tasks(self, limit: int) -> List[Any]:
        """Encode up to limit more tasks from the input. At its end, or when
        it raises (the error is kept for the consumer), the input is
        exhausted."""
        tasks: List[Any] = []
        while len(tasks) < limit:
            try:
                task = self._next_task()
            except Exception as exc:
                self._input_error = exc
                task = None
            if task is None:
                self._input_exhausted = True
                break
            tasks.append(task)
        return tasks

    def _submit_tasks(self, tasks: List[Any], seal: bool) -> None:
        if tasks or seal:
            self._backend.submit(self._job, tasks, seal=seal)
            self._fed += len(tasks)

    def _feed(self, count: int) -> None:
        """Submit up to count more tasks (buffersize mode, caller's thread)."""
        tasks = self._read_tasks(count)
        if self._input_exhausted:
            self._feeding = False
        self._submit_tasks(tasks, seal=self._input_exhausted)

    def _feed_all(self) -> None:
        """Submit the whole input from a thread of its own. Items of a
        generator go one at a time (it may block between items, and no task
        may wait on the next); a sized input (list, range...) cannot block,
        so it goes in batches."""
        batch_size = 64 if self._sized else 1
        sealed = False
        try:
            while not self._input_exhausted:
                tasks = self._read_tasks(batch_size)
                self._submit_tasks(tasks, seal=self._input_exhausted)
                sealed = self._input_exhausted
        except Exception:
            # The pool was terminated or the iterator dropped: stop feeding.
            pass
        finally:
            self._feeding = False
            if not sealed:
                try:
                    self._backend.submit(self._job, (), seal=True)
                except Exception:
                    pass

    # -- consuming -----------------------------------------------------------

    def __iter__(self) -> "IMapIterator[_T]":
        return self

    def __next__(self) -> _T:
        return self.next()

    def __len__(self) -> int:
        """The number of results, for a sized input (so that tqdm(pool.imap(f,
        items)) shows a total); TypeError for an input without a length."""
        if self._length is None:
            raise TypeError("the input of this imap has no length")
        return self._length

    def next(self, timeout: Optional[float] = None) -> _T:
        """Return the next result, waiting up to timeout seconds."""
        with self._lock:
            while not self._chunk:
                item = self._take()
                if item is None:
                    item = self._wait_for_next(timeout)
                if self._buffersize is not None and self._feeding:
                    self._feed(1)
                ok, value = item
                if not ok:
                    if self._chunksize > 1:
                        self._stop()  # as the stdlib's: a failing chunk ends the iteration
                    raise value
                if self._chunksize == 1:
                    self._count(1)
                    return cast(_T, value)
                self._chunk.extend(value)
            self._count(1)
            return self._chunk.popleft()

    def _count(self, n: int) -> None:
        if self._progress is not None:
            self._progress.update(n)

    def _stop(self) -> None:
        """End the iteration here."""
        self._finished = True
        self._pool = None
        if self._progress is not None:
            self._progress.close()
        if not self._done:
            try:
                self._backend.discard(self._job)
            except Exception:
                pass
            self._done = True

    def __aiter__(self) -> "IMapIterator[_T]":
        return self

    async def __anext__(self) -> _T:
        """``async for r in pool.imap(...)``: the next result, waited for on a
        thread so that the event loop goes on. Cancelling the iterating task
        cancels what is left of the imap."""
        loop = asyncio.get_running_loop()
        try:
            ok, value = await loop.run_in_executor(None, self._next_outcome)
        except asyncio.CancelledError:
            try:
                self._backend.cancel(self._job)
            except Exception:
                pass
            raise
        if ok:
            return cast(_T, value)
        raise value

    def _next_outcome(self) -> _Outcome:
        """next(), as (ok, value), with StopAsyncIteration for the end (a
        StopIteration must not cross a future)."""
        try:
            return True, self.next()
        except StopIteration:
            return False, StopAsyncIteration()
        except BaseException as exc:
            return False, exc

    def _wait_for_next(self, timeout: Optional[float]) -> _Outcome:
        """Collect results until the next one to hand out has arrived."""
        deadline = core.deadline_of(timeout)
        while True:
            if self._done:
                self._finish()
            try:
                entries, done = self._backend.collect(self._job, self._handled, core.slice_ms(deadline))
            except KeyError:  # forgotten once every result was handled
                entries, done = [], True
            self._store(entries)
            self._handled = self._stored
            if done:
                self._backend.ack(self._job, self._handled)
                self._done = True
            item = self._take()
            if item is not None:
                return item
            if not entries and not done and deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError from None

    def _store(self, entries: List[Entry]) -> None:
        """Keep entries until they are handed out. Entries lent again after
        an interruption (the first ones, up to what was stored already) are
        not kept twice."""
        for index, ok, value in entries[self._stored - self._handled :]:
            if self._ordered:
                self._pending[index] = (ok, value)
            else:
                self._arrived.append((ok, value))
            self._stored += 1

    def _take(self) -> Optional[_Outcome]:
        """The next result to hand out, or None if it has not arrived."""
        if self._ordered:
            item = self._pending.pop(self._next_index, None)
        else:
            item = self._arrived.popleft() if self._arrived else None
        if item is not None:
            self._next_index += 1
        return item

    def _finish(self) -> None:
        """Every submitted task's result has been handed out: end iteration,
        raising first what stopped the input early."""
        if self._finished:
            raise StopIteration
        self._finished = True
        self._pool = None
        if self._progress is not None:
            self._progress.close()
        if self._input_error is not None:
            raise self._input_error
        if not self._input_exhausted:
            raise PoolTerminatedError("the pool was terminated before every item was processed")
        raise StopIteration

    def __del__(self) -> None:
        if not self._done:
            try:
                self._backend.discard(self._job)
            except Exception:
                pass


class IMapUnorderedIterator(IMapIterator[_T]):
    """The iterator of ``imap_unordered``: results as they finish."""

    _ordered = False


# What a job was submitted for: the object that collects its results.
_Submission = Union[ApplyResult[Any], IMapIterator[Any]]


# --------------------------------------------------------------------------
# Callbacks


class _CallbackPump:
    """Delivers the results that have callbacks, on a thread of its own, so
    that callbacks run as in the stdlib: in the parent, off the caller's
    thread. The thread exists only while such results are pending, and
    survives anything a callback or a result does."""

    def __init__(self, backend: Backend):
        self._backend = backend
        self._lock = threading.Lock()
        self._waiting: Dict[int, ApplyResult[Any]] = {}
        # Results of jobs not yet watched: the submitting thread registers
        # a job after the backend has accepted it, and it may finish first.
        self._early: Dict[int, List[Tuple[List[Entry], bool]]] = {}
        self._ack = False  # the last batches were handled: acknowledge them
        self._thread: Optional[threading.Thread] = None

    def watch(self, job: int, result: ApplyResult[Any]) -> None:
        """Deliver job's results to result."""
        with self._lock:
            early = self._early.pop(job, None)
            self._waiting[job] = result
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="gopool callbacks", daemon=True)
                self._thread.start()
        for entries, done in early or ():
            self._deliver(job, entries, done)

    def _run(self) -> None:
        while True:
            try:
                batches = self._backend.collect_notified(self._ack, core.SLICE_MS)
            except Exception:
                self._fail_all()
                batches = []
            for job, entries, done in batches:
                try:
                    self._deliver(job, entries, done)
                except BaseException as exc:  # the thread must go on
                    _report_callback_error(exc)
            self._ack = True
            with self._lock:
                if not self._waiting:
                    self._thread = None
                    return

    def _deliver(self, job: int, entries: List[Entry], done: bool) -> None:
        with self._lock:
            result = self._waiting.get(job)
            if result is None:
                self._early.setdefault(job, []).append((entries, done))
                return
            if done:
                del self._waiting[job]
        for index, ok, value in entries:
            result._set(index, ok, value)
        if done:
            result._complete()

    def join(self) -> None:
        """Wait until no result with a callback is pending. Only for a pool
        that accepts no more tasks: the thread then ends for good."""
        while True:
            with self._lock:
                thread = self._thread
            if thread is None:
                return
            thread.join(core.SLICE_MS / 1000)

    def _fail_all(self) -> None:
        """The backend is gone: nothing pending can complete any more."""
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for result in waiting.values():
            result._set(0, False, PoolTerminatedError("the pool was released before the task finished"))
            result._complete()


# --------------------------------------------------------------------------
# Pools


_live_pools: "weakref.WeakSet[Pool]" = weakref.WeakSet()


class _WorkerView:
    """One worker as ``pool._pool`` lists it (the stdlib lists its worker
    Process objects there): read-only, with the attributes of a Process
    that libraries read. ``pid`` is a thread's ident in a ThreadPool."""

    __slots__ = ("_pid", "_pool_ref")

    daemon = True

    def __init__(self, pool: "Pool", pid: int):
        self._pid = pid
        self._pool_ref = weakref.ref(pool)

    @property
    def pid(self) -> int:
        return self._pid

    ident = pid

    @property
    def name(self) -> str:
        return f"PoolWorker-{self._pid}"

    def is_alive(self) -> bool:
        """Whether the worker is still one of its pool's live workers."""
        pool = self._pool_ref()
        try:
            return pool is not None and any(row[0] == self._pid for row in pool._backend.workers())
        except Exception:  # the pool was released
            return False

    def __repr__(self) -> str:
        return f"<{self.name} {'alive' if self.is_alive() else 'gone'}>"


class Pool(_mp_pool.Pool):
    """A pool of worker processes, with the API of ``multiprocessing.Pool``.

    Workers are started by gopool's Go core with fork+exec of this
    interpreter (never a bare fork), so functions and arguments travel by
    pickle; what pickle cannot send by reference (lambdas, closures,
    functions defined in ``__main__`` or a notebook) travels by value with
    cloudpickle. ``context`` is accepted for compatibility and ignored.

    ``cluster`` (default: the ``GOPOOL_CLUSTER`` environment variable) runs
    the tasks on a Dask cluster instead, with the same semantics; see
    :mod:`gopool.cluster`.

    A ``multiprocessing.pool.Pool`` for ``isinstance`` checks; none of the
    stdlib class's code runs (see the module's documentation).
    """

    # Set by __init__ once its arguments are checked: a pool whose __init__
    # raised has neither (see terminate(), _pool and __del__).
    _backend: Backend
    _pump: _CallbackPump

    def __init__(
        self,
        processes: Optional[int] = None,
        initializer: Optional[Callable[..., Any]] = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: Optional[int] = None,
        context: Any = None,
        *,
        task_timeout: Optional[float] = None,
        soft_timeout: Optional[float] = None,
        max_memory_per_child: Optional[int] = None,
        cluster: Any = None,
    ):
        self._state = INIT
        self._cluster = self._resolve_cluster(cluster)  # see gopool.cluster
        if processes is None and self._cluster is None:
            processes = os.cpu_count() or 1
        if processes is not None and processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None and (
            not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0
        ):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._limits = _time_limits(task_timeout, soft_timeout, "task_timeout", "soft_timeout")
        if max_memory_per_child is not None and (
            not isinstance(max_memory_per_child, int) or max_memory_per_child <= 0
        ):
            raise ValueError("max_memory_per_child must be a positive int (bytes) or None")
        self._processes = processes
        # What each job was submitted for, while someone holds its result:
        # lets workers() say what a busy worker is running.
        self._submissions: "weakref.WeakValueDictionary[int, _Submission]" = weakref.WeakValueDictionary()
        self._backend = self._make_backend(
            processes, initializer, tuple(initargs), maxtasksperchild, max_memory_per_child
        )
        self._processes = getattr(self._backend, "processes", processes)
        self._pump = _CallbackPump(self._backend)
        self._state = RUN
        _live_pools.add(self)

    @staticmethod
    def _resolve_cluster(cluster: Any) -> Optional[Dask]:
        from gopool.cluster import resolve

        return resolve(cluster)

    def _make_backend(self, processes: Optional[int], initializer: Optional[Callable[..., Any]],
                      initargs: Tuple[Any, ...], maxtasksperchild: Optional[int],
                      max_memory_per_child: Optional[int]) -> Backend:
        """The backend; processes is None only on a cluster (its own size)."""
        if self._cluster is not None:
            from gopool._dask_backend import DaskBackend

            return DaskBackend(self._cluster, processes, initializer, initargs, maxtasksperchild,
                               max_memory_per_child)
        from gopool._process_backend import ProcessBackend

        assert processes is not None
        return ProcessBackend(processes, initializer, initargs, maxtasksperchild, max_memory_per_child)

    def __repr__(self) -> str:
        cls = type(self)
        return f"<{cls.__module__}.{cls.__qualname__} state={self._state} pool_size={self._processes}>"

    def __reduce__(self) -> NoReturn:
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def _check_running(self) -> None:
        if self._state != RUN:
            raise ValueError("Pool not running")

    # -- one task --------------------------------------------------------------

    def apply(self, func: Callable[..., _T], args: Iterable[Any] = (), kwds: Mapping[str, Any] = {}) -> _T:
        """Call ``func(*args, **kwds)`` in a worker and return its result."""
        self._check_running()
        task = self._backend.encode(func, args, kwds, ser.MODE_APPLY)
        result: ApplyResult[_T] = ApplyResult(self, None, None)
        result._function = _function_name(func)
        job, entries, done = self._backend.run(task, self._limits)
        result._start(job)
        for index, ok, value in entries:
            result._set(index, ok, value)
        result._handled = len(entries)
        if done:
            self._backend.ack(job, result._handled)
            result._complete()
        return result.get()

    # The results are gopool's, not the stdlib's ApplyResult and IMapIterator
    # that the stdlib Pool's methods are declared to return: hence the
    # [override]s below.
    def apply_async(  # type: ignore[override]
        self,
        func: Callable[..., _T],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] = {},
        callback: Optional[Callable[[_T], object]] = None,
        error_callback: Optional[Callable[[BaseException], object]] = None,
        *,
        timeout: Optional[float] = None,
        soft_timeout: Optional[float] = None,
    ) -> ApplyResult[_T]:
        """Submit ``func(*args, **kwds)``; return its :class:`AsyncResult`.

        ``timeout`` (seconds; default: the pool's ``task_timeout``) limits how
        long the task may run: past it the worker is killed and replaced, and
        ``get()`` raises :class:`TimeoutError`. ``soft_timeout`` (default: the
        pool's) is a softer limit: past it :class:`SoftTimeLimitExceeded` is
        raised inside the task, which may clean up and return or raise; a
        task with a soft limit and no hard one is stopped SOFT_LIMIT_GRACE
        seconds after its soft limit.
        """
        self._check_running()
        if timeout is None and soft_timeout is None:
            limits = self._limits
        else:
            limits = _time_limits(timeout if timeout is not None else self._limits.hard,
                                  soft_timeout if soft_timeout is not None else self._limits.soft,
                                  "timeout", "soft_timeout")
        result: ApplyResult[_T] = ApplyResult(self, callback, error_callback)
        result._function = _function_name(func)
        task = self._backend.encode(func, args, kwds, ser.MODE_APPLY)
        self._start(result, self._backend.submit(0, (task,), seal=True, notify=result._by_pump, limits=limits))
        return result

    def _start(self, result: ApplyResult[Any], job: int) -> None:
        result._start(job)
        if result._by_pump:
            self._pump.watch(job, result)

    def _submit_stream(self, result: ApplyResult[Any], tasks: Iterator[Any]) -> None:
        """Submit tasks produced one by one (pickling chunks takes time) in
        growing batches, so that workers start on the first chunk while the
        rest is still being pickled, with few calls into the core."""
        job, batch_size = 0, 1
        while True:
            batch = list(itertools.islice(tasks, batch_size))
            last = len(batch) < batch_size
            submitted = self._backend.submit(job, batch, seal=last, notify=result._by_pump, limits=self._limits)
            if job == 0:
                job = submitted
                self._start(result, job)
            if last:
                return
            batch_size = min(batch_size * 2, 64)

    # -- map -----------------------------------------------------------------

    def map(self, func: Callable[[_S], _T], iterable: Iterable[_S], chunksize: Optional[int] = None, *,
            progress: _ProgressSpec = None) -> List[_T]:
        """Apply func to every item, in parallel; return the list of results.
        ``progress=True`` draws a tqdm bar (see :class:`_Progress`)."""
        return self._map_async(func, iterable, ser.MODE_MAP, chunksize, progress=progress).get()

    def starmap(self, func: Callable[..., _T], iterable: Iterable[Iterable[Any]], chunksize: Optional[int] = None,
                *, progress: _ProgressSpec = None) -> List[_T]:
        """Like map, but each item is unpacked as ``func(*item)``."""
        return self._map_async(func, iterable, ser.MODE_STARMAP, chunksize, progress=progress).get()

    def map_async(  # type: ignore[override]
        self,
        func: Callable[[_S], _T],
        iterable: Iterable[_S],
        chunksize: Optional[int] = None,
        callback: Optional[Callable[[List[_T]], object]] = None,
        error_callback: Optional[Callable[[BaseException], object]] = None,
        *,
        progress: _ProgressSpec = None,
    ) -> MapResult[_T]:
        """Asynchronous map; returns a :class:`MapResult`."""
        return self._map_async(func, iterable, ser.MODE_MAP, chunksize, callback, error_callback, progress)

    def starmap_async(  # type: ignore[override]
        self,
        func: Callable[..., _T],
        iterable: Iterable[Iterable[Any]],
        chunksize: Optional[int] = None,
        callback: Optional[Callable[[List[_T]], object]] = None,
        error_callback: Optional[Callable[[BaseException], object]] = None,
        *,
        progress: _ProgressSpec = None,
    ) -> MapResult[_T]:
        """Asynchronous starmap; returns a :class:`MapResult`."""
        return self._map_async(func, iterable, ser.MODE_STARMAP, chunksize, callback, error_callback, progress)

    def _map_async(self, func: Callable[..., _T], iterable: Iterable[Any], mode: int,
                   chunksize: Optional[int] = None, callback: Optional[Callable[[List[_T]], object]] = None,
                   error_callback: Optional[Callable[[BaseException], object]] = None,
                   progress: _ProgressSpec = None) -> MapResult[_T]:
        self._check_running()
        if not hasattr(iterable, "__len__"):
            iterable = list(iterable)
        length = len(cast(Sized, iterable))  # it has __len__ now, as the stdlib's test says
        if chunksize is None:
            processes = self._processes
            assert processes is not None  # known once the backend runs (on a cluster, its size)
            chunksize, extra = divmod(length, processes * 4)
            if extra:
                chunksize += 1
        elif chunksize < 1:
            raise ValueError("Chunksize must be 1+, not {0!r}".format(chunksize))
        if length == 0:
            chunksize = 0
        result: MapResult[_T] = MapResult(self, chunksize, length, callback, error_callback, progress)
        result._function = _function_name(func)
        if chunksize:
            items = iter(iterable)
            chunks = iter(lambda: tuple(itertools.islice(items, chunksize)), ())
            self._submit_stream(result, self._backend.iter_encode(func, chunks, mode))
        return result

    # -- imap ----------------------------------------------------------------

    def imap(self, func: Callable[[_S], _T], iterable: Iterable[_S],  # type: ignore[override]
             chunksize: int = 1, *, buffersize: Optional[int] = None,
             progress: _ProgressSpec = None) -> IMapIterator[_T]:
        """Lazy map: results in input order.

        ``buffersize`` bounds how many tasks are submitted ahead of the
        results consumed (back-pressure): the input is then read lazily, in
        the consuming thread. Without it the input is read eagerly by a
        background thread, as in the stdlib. The iterator has a ``len()``
        for a sized input, supports ``async for``, and ``progress=True``
        draws a tqdm bar.
        """
        return self._imap(IMapIterator, func, iterable, chunksize, buffersize, "{0:n}", progress)

    def imap_unordered(self, func: Callable[[_S], _T], iterable: Iterable[_S],  # type: ignore[override]
                       chunksize: int = 1, *, buffersize: Optional[int] = None,
                       progress: _ProgressSpec = None) -> IMapIterator[_T]:
        """Like imap, but results come in the order they finish."""
        return self._imap(IMapUnorderedIterator, func, iterable, chunksize, buffersize, "{0!r}", progress)

    def _imap(self, cls: Type[IMapIterator[_T]], func: Callable[..., _T], iterable: Iterable[Any], chunksize: int,
              buffersize: Optional[int], chunk_format: str, progress: _ProgressSpec) -> IMapIterator[_T]:
        self._check_running()
        if chunksize < 1:
            raise ValueError(("Chunksize must be 1+, not " + chunk_format).format(chunksize))
        if buffersize is not None:
            if not isinstance(buffersize, int):
                raise TypeError("buffersize must be an integer or None")
            if buffersize < 1:
                raise ValueError("buffersize must be None or > 0")
        return cls(self, func, iterable, chunksize, ser.MODE_MAP, buffersize, progress)

    # -- life cycle ------------------------------------------------------------

    def close(self) -> None:
        """No more tasks; workers exit once the outstanding ones are done."""
        if self._state == RUN:
            self._state = CLOSE
            self._backend.close()

    def terminate(self) -> None:
        """Stop the workers now. Unfinished tasks fail with
        :class:`PoolTerminatedError`."""
        if self._state == TERMINATE or getattr(self, "_backend", None) is None:
            return
        self._state = TERMINATE
        self._backend.terminate()

    def join(self) -> None:
        """Wait for the workers to exit; call close() or terminate() first."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state not in (CLOSE, TERMINATE):
            raise ValueError("In unknown state")
        while not self._backend.join(core.SLICE_MS):
            pass
        # As in the stdlib, join() returns once every callback has run.
        self._pump.join()

    def __enter__(self) -> Self:
        self._check_running()
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc_val: Optional[BaseException],
                 exc_tb: Optional[types.TracebackType]) -> None:
        self.terminate()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if getattr(self, "_backend", None) is None:
            return
        if core.in_forked_child():
            return
        if self._state == RUN:
            _warn(f"unclosed running multiprocessing pool {self!r}", ResourceWarning, source=self)
        try:
            self._backend.release()
        except Exception:
            pass

    # -- introspection -------------------------------------------------------

    def workers(self) -> List[WorkerInfo]:
        """Describe each live worker: its pid, tasks done, and what it runs."""
        infos: List[WorkerInfo] = []
        for pid, done, job, index, *host in self._backend.workers():
            if job == 0:
                infos.append(WorkerInfo(pid, done, False, host=host[0] if host else None))
                continue
            result = self._submissions.get(job)
            function = getattr(result, "_function", None) if result is not None else None
            infos.append(WorkerInfo(pid, done, True, function, index, result, host[0] if host else None))
        return infos

    def queued(self) -> int:
        """How many submitted tasks wait for a worker."""
        return self._backend.queued()

    @property
    def _pool(self) -> List[_WorkerView]:
        """Read-only views of the live workers (the stdlib's list of worker
        processes, whose length libraries read: compatibility surface)."""
        if getattr(self, "_backend", None) is None:
            return []
        return [_WorkerView(self, row[0]) for row in self._backend.workers()]


class ThreadPool(Pool, _mp_pool.ThreadPool):
    """A pool of worker threads with the Pool API (``multiprocessing.pool.ThreadPool``).

    Arguments and results are not pickled. ``terminate()`` does more than the
    stdlib's: queued tasks never start and a task running Python code is
    interrupted; a task blocked in a single C call stops when that call returns.
    """

    def __init__(self, processes: Optional[int] = None, initializer: Optional[Callable[..., Any]] = None,
                 initargs: Iterable[Any] = (), *, cluster: Any = None):
        if cluster is not None:
            raise ValueError("ThreadPool runs in this process and cannot use a cluster: use Pool(cluster=...)")
        super().__init__(processes, initializer, initargs)

    @staticmethod
    def _resolve_cluster(cluster: Any) -> Optional[Dask]:
        return None  # GOPOOL_CLUSTER is for process pools only

    def _make_backend(self, processes: Optional[int], initializer: Optional[Callable[..., Any]],
                      initargs: Tuple[Any, ...], maxtasksperchild: Optional[int],
                      max_memory_per_child: Optional[int]) -> Backend:
        from gopool._thread_backend import ThreadBackend

        assert processes is not None
        return ThreadBackend(processes, initializer, initargs)


def _terminate_live_pools() -> None:
    """At interpreter exit, stop every pool still running, as the stdlib's
    finalizers do."""
    if core.in_forked_child():
        return
    for pool in list(_live_pools):
        try:
            pool.terminate()
        except Exception:
            pass


import atexit  # noqa: E402

atexit.register(_terminate_live_pools)

