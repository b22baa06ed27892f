"""What a pool runs on: the interface that ``Pool``'s results classes use,
implemented by the process backend (the Go core) and the thread backend.

A *job* groups the tasks of one submission (an apply, a map, an imap); its
results are indexed by task position. A job is open (tasks may be added)
until sealed, complete once sealed with every task finished, and forgotten
once its results have been collected and acknowledged (or it is discarded).

Collecting is two-phase so that nothing is lost when the collecting thread
is interrupted (Ctrl-C) or a result cannot be decoded: ``collect`` lends
results, and they stay in the backend until the caller acknowledges them
by passing, to a later ``collect`` or to ``ack``, the number of the job's
results it has handled so far. Results lent and not acknowledged are lent
again, so a caller must handle a result idempotently (results carry their
index). A result that cannot be decoded comes as a failed entry.

A job opened with ``notify`` delivers its results to ``collect_notified``
instead (one caller: the pool's callback thread), which acknowledges with
a flag: everything it lent the previous time.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, List, NamedTuple, Optional, Protocol, Sequence, Tuple, Union

# (task index, succeeded, value or exception)
Entry = Tuple[int, bool, Any]

# (job, entries, the job is complete and these are its last results)
JobEntries = Tuple[int, List[Entry], bool]

# (pid or thread ident, tasks done, job of the running task or 0, its index)
WorkerRow = Tuple[int, int, int, int]

# the same, and the worker's host, on a cluster
ClusterWorkerRow = Tuple[int, int, int, int, str]


class TimeLimits(NamedTuple):
    """How long each task of a job may run (seconds, None for no limit):
    past ``soft`` the task is told (SoftTimeLimitExceeded is raised in it);
    past ``hard`` it is stopped."""

    hard: Optional[float] = None
    soft: Optional[float] = None


NO_LIMITS = TimeLimits()


class Backend(Protocol):
    """The interface between ``Pool`` and what runs its tasks."""

    def encode(self, func: Callable[..., Any], args: Any, kwds: Any, mode: int) -> Any:
        """One task: ``func`` applied to ``args`` as ``mode`` says (see
        ``_serialize.MODE_*``)."""

    def iter_encode(self, func: Callable[..., Any], arg_list: Iterable[Any], mode: int) -> Iterator[Any]:
        """One task per element of arg_list, lazily."""

    def submit(self, job: int, tasks: Sequence[Any], *, seal: bool, notify: bool = False,
               limits: TimeLimits = NO_LIMITS) -> int:
        """Add tasks to a job (0: a new one, whose results go to
        collect_notified if notify, and whose tasks run within ``limits``);
        seal it if ``seal``. Returns the job."""

    def run(self, task: Any, limits: TimeLimits = NO_LIMITS) -> Tuple[int, List[Entry], bool]:
        """Submit one task as a sealed job and collect it for one slice:
        ``apply()``'s fast path. Returns (job, entries, done)."""

    def collect(self, job: int, handled: int, timeout_ms: int) -> Tuple[List[Entry], bool]:
        """Acknowledge ``handled`` results, then lend the job's results,
        waiting up to timeout_ms (at most one slice) for one. Returns
        (entries, done); KeyError once the job is forgotten."""

    def ack(self, job: int, handled: int) -> None:
        """Acknowledge the job's first ``handled`` results."""

    def collect_notified(self, ack: bool, timeout_ms: int) -> List[JobEntries]:
        """Acknowledge what the previous call lent if ``ack``, then lend the
        results of notify jobs, waiting up to timeout_ms for one."""

    def notify(self, job: int, handled: int) -> None:
        """Acknowledge ``handled`` results, then send the job's results to
        collect_notified from now on (an awaited result goes there)."""

    def cancel(self, job: int) -> int:
        """Cancel a job: tasks not begun never will, running ones are
        stopped. Returns how many tasks were cancelled."""

    def discard(self, job: int) -> None:
        """Forget a job whose results nobody will collect."""

    def close(self) -> None:
        """No more jobs: workers exit once the open ones are done."""

    def terminate(self) -> None:
        """Stop now: every unfinished task fails."""

    def join(self, timeout_ms: int) -> bool:
        """Wait up to timeout_ms for the workers to exit."""

    def release(self) -> None:
        """Terminate and free everything; safe to call twice, and from a
        finalizer."""

    def workers(self) -> Sequence[Union[WorkerRow, ClusterWorkerRow]]:
        """One row per live worker."""

    def queued(self) -> int:
        """How many tasks wait for a worker."""
