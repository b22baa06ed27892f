"""The thread backend of ThreadPool (see ``_backend``): the same jobs and
results as the process backend, with worker threads and no pickling.

terminate() does what threads allow: queued tasks never start, and a task
running Python code is interrupted by an exception raised in its thread at
the next bytecode boundary. A task blocked inside a C call (``time.sleep``,
a socket read) cannot be interrupted: if its thread has not stopped within
INTERRUPT_GRACE seconds the pending interruption is withdrawn and the task
runs to its end; ``join()`` waits for it, as the stdlib's does.
"""

from __future__ import annotations

import ctypes
import itertools
import threading
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from multiprocessing.dummy import DummyProcess

from gopool import _serialize as ser
from gopool._backend import NO_LIMITS, Entry, JobEntries, TimeLimits, WorkerRow
from gopool._binding import SLICE_MS
from gopool._errors import CancelledError, PoolTerminatedError, WorkerLostError

RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"

INTERRUPT_GRACE = 0.1

# A task as the thread backend keeps it: (function, arguments, keywords, mode).
Task = Tuple[Callable[..., Any], Any, Any, int]

# A task in the queue or running: (job, index in the job, task).
_Queued = Tuple[int, int, Task]


class _Stop(BaseException):
    """Raised inside a worker thread by terminate(); never seen by users."""


class _Cancel(BaseException):
    """Raised inside a worker thread to stop a cancelled task; the thread
    goes on with the next task."""


class _Job:
    __slots__ = ("notify", "sealed", "submitted", "finished", "ready", "lent", "acked", "announced")

    def __init__(self, notify: bool):
        self.notify = notify
        self.sealed = False
        self.submitted = 0
        self.finished = 0
        self.ready: List[Entry] = []  # finished, not yet acknowledged
        self.lent = 0  # the first lent of ready were lent by collect
        self.acked = 0  # results acknowledged so far
        self.announced = False  # in the notified list

    def complete(self) -> bool:
        return self.sealed and self.finished == self.submitted


class ThreadBackend:
    def __init__(self, threads: int, initializer: Optional[Callable[..., Any]], initargs: Sequence[Any]):
        self._cond = threading.Condition()
        self._queue: Deque[_Queued] = deque()
        self._jobs: Dict[int, _Job] = {}
        self._job_ids = itertools.count(1)
        self._notified: List[int] = []  # notify jobs with news
        self._lent_notified: List[int] = []
        self._state = RUN
        self._open = 0
        self._failure: Optional[BaseException] = None
        self._running: Dict[threading.Thread, _Queued] = {}
        self._initializer = initializer
        self._initargs = tuple(initargs)
        # DummyProcess, like the stdlib's ThreadPool workers: code that lists
        # threads sees the same kind of object.
        self._threads = [DummyProcess(target=self._work) for _ in range(threads)]
        for t in self._threads:
            t.daemon = True
            t.start()

    # -- worker threads ------------------------------------------------------

    def _work(self) -> None:
        try:
            if self._initializer is not None:
                self._initializer(*self._initargs)
        except Exception as exc:
            with self._cond:
                if self._failure is None:
                    self._failure = exc
                self._fail_queued_locked(False, exc)
                self._cond.notify_all()
            return
        me = threading.current_thread()
        while True:
            try:
                if not self._run_one(me):
                    return
            except _Cancel:
                # Meant for a task that finished just before it landed.
                self._recover_from_interrupt(me)
            except _Stop:
                self._recover_from_interrupt(me)
                return

    def _run_one(self, me: threading.Thread) -> bool:
        """Run one task; False when there is no more work for this thread."""
        item = self._next_task(me)
        if item is None:
            return False
        job, index, (func, args, kwds, mode) = item
        try:
            outcome = (True, ser.call_task(func, args, kwds, mode))
        except Exception as exc:
            outcome = (False, exc)
        except (_Cancel, _Stop):
            raise
        except BaseException as exc:
            # SystemExit or KeyboardInterrupt from a task: in a process pool
            # the worker would die; here the task fails and the thread goes on.
            outcome = (False, _lost_to(exc))
        with self._cond:
            # Not in _running any more means cancel() or terminate() has
            # already recorded this task's outcome.
            if self._running.pop(me, None) is not None:
                self._finish_locked(job, index, *outcome)
        return True

    def _recover_from_interrupt(self, me: threading.Thread) -> None:
        """After an interruption landed: never leave the lock held, and give
        back a task this thread had taken but not yet started."""
        while self._cond._is_owned():  # type: ignore[attr-defined]  # private to threading.Condition
            self._cond.release()
        with self._cond:
            item = self._running.pop(me, None)
            if item is not None and self._state != TERMINATE:
                self._queue.appendleft(item)
                self._cond.notify_all()

    def _next_task(self, me: threading.Thread) -> Optional[_Queued]:
        with self._cond:
            while True:
                if self._state == TERMINATE or self._failure is not None:
                    return None
                if self._queue:
                    item = self._queue.popleft()
                    self._running[me] = item
                    return item
                if self._state == CLOSE and self._open == 0:
                    return None
                self._cond.wait()

    def _finish_locked(self, job_id: int, index: int, ok: bool, value: Any) -> None:
        job = self._jobs.get(job_id)
        if job is None:
            return  # discarded, or already failed by terminate()
        job.finished += 1
        job.ready.append((index, ok, value))
        self._progressed_locked(job_id, job)

    def _progressed_locked(self, job_id: int, job: _Job) -> None:
        if job.notify and not job.announced and (job.ready or job.complete()):
            job.announced = True
            self._notified.append(job_id)
        self._cond.notify_all()

    def _fail_queued_locked(self, ok: bool, value: Any) -> None:
        while self._queue:
            job, index, _ = self._queue.popleft()
            self._finish_locked(job, index, ok, value)

    # -- the backend interface ---------------------------------------------

    def encode(self, func: Callable[..., Any], args: Any, kwds: Any, mode: int) -> Task:
        return (func, args, kwds, mode)

    def iter_encode(self, func: Callable[..., Any], arg_list: Iterable[Any], mode: int) -> Iterator[Task]:
        return ((func, args, None, mode) for args in arg_list)

    def submit(self, job_id: int, tasks: Sequence[Task], *, seal: bool, notify: bool = False,
               limits: TimeLimits = NO_LIMITS) -> int:
        if limits != NO_LIMITS:
            raise ValueError(
                "ThreadPool does not support per-task time limits: a thread cannot be "
                "stopped reliably; use Pool"
            )
        with self._cond:
            if job_id == 0:
                job_id = next(self._job_ids)
                self._jobs[job_id] = _Job(notify)
                self._open += 1
            job = self._jobs.get(job_id)
            if job is None or job.sealed:
                raise ValueError(f"job {job_id} is sealed or unknown")
            for task in tasks:
                index = job.submitted
                job.submitted += 1
                if self._state == TERMINATE:
                    self._finish_locked(job_id, index, False, _terminated())
                elif self._failure is not None:
                    self._finish_locked(job_id, index, False, self._failure)
                else:
                    self._queue.append((job_id, index, task))
            if seal:
                self._seal_locked(job_id, job)
            self._cond.notify_all()
            return job_id

    def _seal_locked(self, job_id: int, job: _Job) -> None:
        if not job.sealed:
            job.sealed = True
            self._open -= 1
            self._progressed_locked(job_id, job)

    def run(self, task: Task, limits: TimeLimits = NO_LIMITS) -> Tuple[int, List[Entry], bool]:
        job_id = self.submit(0, (task,), seal=True, limits=limits)
        entries, done = self.collect(job_id, 0, SLICE_MS)
        return job_id, entries, done

    def collect(self, job_id: int, handled: int, timeout_ms: int) -> Tuple[List[Entry], bool]:
        with self._cond:
            job = self._jobs.get(job_id)
            if job is not None:
                self._ack_locked(job_id, job, handled)
            job = self._jobs.get(job_id)
            if job is None:
                raise KeyError(f"unknown job {job_id}")
            if not job.ready and not job.complete() and timeout_ms > 0:
                self._cond.wait(timeout_ms / 1000)
            return self._lend_locked(job_id, job)

    def _lend_locked(self, job_id: int, job: _Job) -> Tuple[List[Entry], bool]:
        job.lent = len(job.ready)
        done = job.complete()
        if done and not job.ready:
            del self._jobs[job_id]
        return list(job.ready), done

    def _ack_locked(self, job_id: int, job: _Job, handled: int) -> None:
        n = max(0, min(handled - job.acked, job.lent))
        del job.ready[:n]
        job.acked += n
        job.lent -= n
        # A job with news announced (sealed since its results were lent)
        # is forgotten once the callback thread has collected that news.
        if not job.ready and job.complete() and not job.announced:
            self._jobs.pop(job_id, None)

    def ack(self, job_id: int, handled: int) -> None:
        with self._cond:
            job = self._jobs.get(job_id)
            if job is not None:
                self._ack_locked(job_id, job, handled)

    def collect_notified(self, ack: bool, timeout_ms: int) -> List[JobEntries]:
        with self._cond:
            for job_id in self._lent_notified:
                job = self._jobs.get(job_id)
                if job is not None:
                    if ack:
                        self._ack_locked(job_id, job, job.acked + job.lent)
                    job.lent = 0
            self._lent_notified = []
            if not self._notified and timeout_ms > 0:
                self._cond.wait(timeout_ms / 1000)
            out = []
            for job_id in self._notified:
                job = self._jobs.get(job_id)
                if job is None:
                    continue
                job.announced = False
                entries, done = self._lend_locked(job_id, job)
                out.append((job_id, entries, done))
                self._lent_notified.append(job_id)
            self._notified = []
            return out

    def notify(self, job_id: int, handled: int) -> None:
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                raise KeyError(f"unknown job {job_id}")
            self._ack_locked(job_id, job, handled)
            if job_id in self._jobs:  # else every result was handled: it completes where it was
                job.lent = 0
                job.notify = True
                self._progressed_locked(job_id, job)

    def cancel(self, job_id: int) -> int:
        """Cancel a job: its queued tasks never run; a running one that
        executes Python code is interrupted (see terminate() for the rule)."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                return 0
            cancelled = 0
            for item in [item for item in self._queue if item[0] == job_id]:
                self._queue.remove(item)
                self._finish_locked(job_id, item[1], False, _cancelled())
                cancelled += 1
            interrupted = []
            for thread, (running_job, index, _) in list(self._running.items()):
                if running_job == job_id:
                    del self._running[thread]
                    self._finish_locked(job_id, index, False, _cancelled())
                    _raise_in_thread(thread, _Cancel)
                    interrupted.append(thread)
                    cancelled += 1
            self._seal_locked(job_id, job)
        _withdraw_later(interrupted)
        return cancelled

    def discard(self, job_id: int) -> None:
        with self._cond:
            job = self._jobs.pop(job_id, None)
            if job is not None and not job.sealed:
                job.sealed = True
                self._open -= 1
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            if self._state == RUN:
                self._state = CLOSE
            self._cond.notify_all()

    def terminate(self) -> None:
        with self._cond:
            if self._state == TERMINATE:
                return
            self._state = TERMINATE
            self._fail_queued_locked(False, _terminated())
            interrupted = list(self._running)
            for thread, (job_id, index, _) in self._running.items():
                self._finish_locked(job_id, index, False, _terminated())
                _raise_in_thread(thread, _Stop)
            self._running.clear()
            for job_id, job in list(self._jobs.items()):
                self._seal_locked(job_id, job)
            self._cond.notify_all()
        _withdraw_later(interrupted)

    def join(self, timeout_ms: int) -> bool:
        """Wait for the threads to end: after terminate(), a task blocked in
        a C call is waited for, as the stdlib's join() joins its worker
        threads."""
        for thread in self._threads:
            thread.join(timeout_ms / 1000)
            if thread.is_alive():
                return False
        return True

    def release(self) -> None:
        self.terminate()

    def workers(self) -> List[WorkerRow]:
        with self._cond:
            running = {t: (job, index) for t, (job, index, _) in self._running.items()}
        return [
            (t.ident or 0, 0, *running.get(t, (0, 0)))
            for t in self._threads
            if t.is_alive()
        ]

    def queued(self) -> int:
        with self._cond:
            return len(self._queue)


def _lost_to(exc: BaseException) -> WorkerLostError:
    exitcode = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else None
    lost = WorkerLostError(f"the task raised {exc!r} in its worker thread", None, exitcode)
    lost.__cause__ = exc
    return lost


def _terminated() -> PoolTerminatedError:
    return PoolTerminatedError("the pool was terminated before the task finished")


def _raise_in_thread(thread: threading.Thread, exc_type: type) -> None:
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type))


def _withdraw_later(threads: List[threading.Thread]) -> None:
    if threads:
        withdraw = threading.Timer(INTERRUPT_GRACE, _withdraw_interrupts, (threads,))
        withdraw.daemon = True
        withdraw.start()


def _cancelled() -> CancelledError:
    return CancelledError("the task was cancelled")


def _withdraw_interrupts(threads: List[threading.Thread]) -> None:
    """Cancel the interruption of threads still blocked in a C call."""
    for thread in threads:
        if thread.is_alive() and thread.ident is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), None)
