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
import threading
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from multiprocessing.dummy import DummyProcess

from gopool import _serialize as ser
from gopool._backend import NO_LIMITS, Entry, TimeLimits, WorkerRow
from gopool._binding import SLICE_MS
from gopool._errors import WorkerLostError
from gopool._jobs import CLOSE, TERMINATE, PythonJobs, Stored, cancelled, terminated

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


class ThreadBackend(PythonJobs):
    """Tasks run by worker threads; an outcome is stored as (ok, value)."""

    RUN_WAIT_MS = SLICE_MS

    def __init__(self, threads: int, initializer: Optional[Callable[..., Any]], initargs: Sequence[Any]):
        super().__init__()
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
                failure = self._failure
                self._fail_queued_locked(lambda: failure)
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
                self._finish_locked(job, index, outcome)
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

    # -- the backend interface ---------------------------------------------

    def _failed(self, error: BaseException) -> Tuple[bool, Any]:
        return (False, error)

    def _entries(self, lent: List[Stored]) -> List[Entry]:
        return [(index, ok, value) for index, (ok, value) in lent]

    def encode(self, func: Callable[..., Any], args: Any, kwds: Any, mode: int) -> Task:
        return (func, args, kwds, mode)

    def iter_encode(self, func: Callable[..., Any], arg_list: Iterable[Any], mode: int) -> Iterator[Task]:
        return ((func, args, None, mode) for args in arg_list)

    def submit(self, job_id: int, tasks: Sequence[Any], *, seal: bool, notify: bool = False,
               limits: TimeLimits = NO_LIMITS) -> int:
        if limits != NO_LIMITS:
            raise ValueError(
                "ThreadPool does not support per-task time limits: a thread cannot be "
                "stopped reliably; use Pool"
            )
        return super().submit(job_id, tasks, seal=seal, notify=notify)

    def cancel(self, job_id: int) -> int:
        """Cancel a job: its queued tasks never run; a running one that
        executes Python code is interrupted (see terminate() for the rule)."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                return 0
            count = self._cancel_queued_locked(job_id, cancelled)
            interrupted = []
            for thread, (running_job, index, _) in list(self._running.items()):
                if running_job == job_id:
                    del self._running[thread]
                    self._finish_locked(job_id, index, self._failed(cancelled()))
                    _raise_in_thread(thread, _Cancel)
                    interrupted.append(thread)
                    count += 1
            self._seal_locked(job_id, job)
        _withdraw_later(interrupted)
        return count

    def terminate(self) -> None:
        with self._cond:
            if self._state == TERMINATE:
                return
            self._state = TERMINATE
            self._fail_queued_locked(terminated)
            interrupted = list(self._running)
            for thread, (job_id, index, _) in self._running.items():
                self._finish_locked(job_id, index, self._failed(terminated()))
                _raise_in_thread(thread, _Stop)
            self._running.clear()
            self._seal_all_locked()
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

def _lost_to(exc: BaseException) -> WorkerLostError:
    exitcode = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else None
    lost = WorkerLostError(f"the task raised {exc!r} in its worker thread", None, exitcode)
    lost.__cause__ = exc
    return lost


def _raise_in_thread(thread: threading.Thread, exc_type: type) -> None:
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type))


def _withdraw_later(threads: List[threading.Thread]) -> None:
    if threads:
        withdraw = threading.Timer(INTERRUPT_GRACE, _withdraw_interrupts, (threads,))
        withdraw.daemon = True
        withdraw.start()


def _withdraw_interrupts(threads: List[threading.Thread]) -> None:
    """Cancel the interruption of threads still blocked in a C call."""
    for thread in threads:
        if thread.is_alive() and thread.ident is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), None)
