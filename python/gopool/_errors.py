"""Exceptions of gopool, catchable the way the stdlib's are.

Each subclasses the ``multiprocessing`` class a stdlib user would catch, so
code written for ``multiprocessing`` keeps working unchanged.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import signal
from typing import TYPE_CHECKING, Optional, Tuple, Type

import multiprocessing
import multiprocessing.pool

ProcessError = multiprocessing.ProcessError


class TimeoutError(multiprocessing.TimeoutError, builtins.TimeoutError):
    """A result was not ready in time.

    Both a ``multiprocessing.TimeoutError`` and a builtin ``TimeoutError``.
    """


class WorkerLostError(ProcessError):
    """The worker running a task died before it could report a result.

    ``pid`` is the worker's process id and ``exitcode`` its exit status in
    ``Process.exitcode`` convention (minus the signal number for a signal);
    ``host`` is the worker's host on a cluster, None for a local worker.
    """

    host: Optional[str] = None

    def __init__(self, message: str, pid: Optional[int] = None, exitcode: Optional[int] = None):
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode

    def __reduce__(self) -> Tuple[Type["WorkerLostError"], Tuple[str, Optional[int], Optional[int]]]:
        return (type(self), (self.args[0], self.pid, self.exitcode))

    @classmethod
    def from_exit(cls, pid: int, exitcode: int) -> "WorkerLostError":
        return cls(
            f"worker process {pid} died while running the task ({describe_exit(exitcode)})",
            pid,
            exitcode,
        )


class SoftTimeLimitExceeded(Exception):
    """Raised inside a task that ran past its soft time limit
    (``soft_timeout``), so that it can clean up; if it goes on past its hard
    limit, it is stopped (its worker is killed and replaced)."""


class CancelledError(concurrent.futures.CancelledError):
    """The task was cancelled (``AsyncResult.cancel()``) before it finished."""


class PoolTerminatedError(ProcessError):
    """The pool was terminated before the task finished."""


class BrokenPoolError(ProcessError):
    """The pool cannot start workers, so its tasks cannot run."""


class ForkedChildError(RuntimeError):
    """gopool was used in a process created by ``os.fork()``.

    A process that has loaded gopool runs the Go runtime, which does not
    survive a bare ``fork()``: the child would hang at its first call into Go.
    """


# The stdlib's own classes, not subclasses: code compares them by identity
# (``type(exc.__cause__) is multiprocessing.pool.RemoteTraceback``).
if TYPE_CHECKING:
    # typeshed does not declare them: what they are in multiprocessing/pool.py.
    class MaybeEncodingError(Exception):
        exc: str
        value: str

        def __init__(self, exc: object, value: object) -> None: ...

    class RemoteTraceback(Exception):
        tb: str

        def __init__(self, tb: str) -> None: ...
else:
    MaybeEncodingError = multiprocessing.pool.MaybeEncodingError
    RemoteTraceback = multiprocessing.pool.RemoteTraceback


def describe_exit(exitcode: int) -> str:
    """Say how a process ended, from its ``Process.exitcode``-style status."""
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name}"
    return f"exit code {exitcode}"
