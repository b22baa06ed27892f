"""``multiprocessing.dummy`` with gopool's ThreadPool.

The API of ``multiprocessing`` over threads: everything is the stdlib's
``multiprocessing.dummy`` (threads as processes, ``threading``'s locks,
``queue.Queue``...) except ``Pool``, which returns a
:class:`gopool.ThreadPool`. ``gopool.dummy.connection`` is
``multiprocessing.dummy.connection``.
"""

from __future__ import annotations

# multiprocessing.dummy's dict and list are the builtins
from builtins import dict, list  # noqa: F401  (re-exported)
from multiprocessing.dummy import (  # noqa: F401  (re-exported)
    Array,
    Barrier,
    BoundedSemaphore,
    Condition,
    DummyProcess,
    Event,
    JoinableQueue,
    Lock,
    Manager,
    Namespace,
    Pipe,
    Process,
    Queue,
    RLock,
    Semaphore,
    Value,
    active_children,
    current_process,
    freeze_support,
    shutdown,
)
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

if TYPE_CHECKING:
    from gopool.pool import ThreadPool

__all__ = [
    "Process", "current_process", "active_children", "freeze_support",
    "Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition",
    "Event", "Barrier", "Queue", "Manager", "Pipe", "Pool", "JoinableQueue",
]


def Pool(processes: Optional[int] = None, initializer: Optional[Callable[..., Any]] = None,
         initargs: Iterable[Any] = ()) -> ThreadPool:
    """A :class:`gopool.ThreadPool` (``multiprocessing.dummy.Pool``)."""
    from gopool.pool import ThreadPool

    return ThreadPool(processes, initializer, initargs)
