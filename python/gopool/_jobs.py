"""Jobs and their results kept in Python, for the backends whose tasks do
not go through the Go core: ThreadPool's threads and a Dask cluster.

The Go core keeps this bookkeeping for the process backend; here it is the
same contract (``_backend.Backend``): a job collects the results of the
tasks submitted to it, ``collect`` lends the results not yet acknowledged
(they are lent again until a later call acknowledges them, so that nothing
is lost if the caller raises while handling them), and notify jobs announce
their news to ``collect_notified`` (the callback thread). A subclass keeps
the tasks' queue and runs them; it stores each task's outcome in the form
it likes and turns the lent outcomes into entries in ``_entries``.

``_cond`` guards everything here and the subclass's own state.
"""

from __future__ import annotations

import itertools
import threading
from abc import ABC, abstractmethod
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

from gopool._backend import NO_LIMITS, Entry, JobEntries, TimeLimits
from gopool._errors import CancelledError, PoolTerminatedError

RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"

# A result as stored: (index in the job, the outcome in the subclass's form).
Stored = Tuple[int, Any]


class _Job:
    __slots__ = ("notify", "sealed", "submitted", "finished", "ready", "lent", "acked", "announced")

    def __init__(self, notify: bool):
        self.notify = notify
        self.sealed = False
        self.submitted = 0
        self.finished = 0
        self.ready: List[Stored] = []  # finished, not yet acknowledged
        self.lent = 0  # the first lent of ready were lent by collect
        self.acked = 0  # results acknowledged so far
        self.announced = False  # in the notified list

    def complete(self) -> bool:
        return self.sealed and self.finished == self.submitted


class PythonJobs(ABC):
    """The jobs of a backend, and the queue of its tasks not yet started
    (items whose first two fields are the job and the index in it)."""

    # How long run() waits for a quick result before handing the job back.
    RUN_WAIT_MS = 100

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: Deque[Tuple[Any, ...]] = deque()
        self._jobs: Dict[int, _Job] = {}
        self._job_ids = itertools.count(1)
        self._notified: List[int] = []  # notify jobs with news
        self._lent_notified: List[int] = []
        self._state = RUN
        self._open = 0  # jobs not sealed
        # Once set, the outcome of every task submitted (a failed
        # initializer, a broken cluster).
        self._failure: Optional[BaseException] = None

    # -- what a subclass provides --------------------------------------------

    @abstractmethod
    def _failed(self, error: BaseException) -> Any:
        """The stored outcome of a task that fails with error."""

    @abstractmethod
    def _entries(self, lent: List[Stored]) -> List[Entry]:
        """Entries (index, ok, value) of lent outcomes; called without the lock."""

    def _queue_item(self, job_id: int, index: int, task: Any, limits: TimeLimits) -> Tuple[Any, ...]:
        return (job_id, index, task)

    # -- bookkeeping, with _cond held ------------------------------------------

    def _finish_locked(self, job_id: int, index: int, outcome: Any) -> None:
        job = self._jobs.get(job_id)
        if job is None:
            return  # discarded, or already failed by terminate()
        job.finished += 1
        job.ready.append((index, outcome))
        self._progressed_locked(job_id, job)

    def _progressed_locked(self, job_id: int, job: _Job) -> None:
        if job.notify and not job.announced and (job.ready or job.complete()):
            job.announced = True
            self._notified.append(job_id)
        self._cond.notify_all()

    def _seal_locked(self, job_id: int, job: _Job) -> None:
        if not job.sealed:
            job.sealed = True
            self._open -= 1
            self._progressed_locked(job_id, job)

    def _seal_all_locked(self) -> None:
        """Seal every job (terminate: no task will be added)."""
        for job_id, job in list(self._jobs.items()):
            self._seal_locked(job_id, job)

    def _fail_queued_locked(self, error: Callable[[], BaseException]) -> None:
        while self._queue:
            item = self._queue.popleft()
            self._finish_locked(item[0], item[1], self._failed(error()))

    def _cancel_queued_locked(self, job_id: int, error: Callable[[], BaseException]) -> int:
        """Take job_id's tasks out of the queue; each fails with error()."""
        items = [item for item in self._queue if item[0] == job_id]
        for item in items:
            self._queue.remove(item)
            self._finish_locked(job_id, item[1], self._failed(error()))
        return len(items)

    def _lend_locked(self, job_id: int, job: _Job) -> Tuple[List[Stored], bool]:
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

    # -- the backend interface -------------------------------------------------

    def submit(self, job_id: int, tasks: Sequence[Any], *, seal: bool, notify: bool = False,
               limits: TimeLimits = NO_LIMITS) -> int:
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
                    self._finish_locked(job_id, index, self._failed(terminated()))
                elif self._failure is not None:
                    self._finish_locked(job_id, index, self._failed(self._failure))
                else:
                    self._queue.append(self._queue_item(job_id, index, task, limits))
            if seal:
                self._seal_locked(job_id, job)
            self._cond.notify_all()
            return job_id

    def run(self, task: Any, limits: TimeLimits = NO_LIMITS) -> Tuple[int, List[Entry], bool]:
        job_id = self.submit(0, (task,), seal=True, limits=limits)
        entries, done = self.collect(job_id, 0, self.RUN_WAIT_MS)
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
            lent, done = self._lend_locked(job_id, job)
        return self._entries(lent), done

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
            lent = []
            for job_id in self._notified:
                job = self._jobs.get(job_id)
                if job is None:
                    continue
                job.announced = False
                stored, done = self._lend_locked(job_id, job)
                lent.append((job_id, stored, done))
                self._lent_notified.append(job_id)
            self._notified = []
        return [(job_id, self._entries(stored), done) for job_id, stored, done in lent]

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

    def queued(self) -> int:
        with self._cond:
            return len(self._queue)


def terminated() -> PoolTerminatedError:
    return PoolTerminatedError("the pool was terminated before the task finished")


def cancelled() -> CancelledError:
    return CancelledError("the task was cancelled")
