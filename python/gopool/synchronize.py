"""``Event``, ``Lock`` and friends, shareable with gopool's Process and Pool
workers through inheritance.

For now these are the stdlib's objects from its 'spawn' context (named POSIX
semaphores), which processes that gopool starts by fork+exec can open.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

__all__ = ["Event", "Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition", "Barrier"]

_context = multiprocessing.get_context("spawn")


def Event() -> Any:
    """A process-shared event flag (``multiprocessing.Event``)."""
    return _context.Event()


def Lock() -> Any:
    """A process-shared non-recursive lock (``multiprocessing.Lock``)."""
    return _context.Lock()


def RLock() -> Any:
    """A process-shared recursive lock (``multiprocessing.RLock``)."""
    return _context.RLock()


def Semaphore(value: int = 1) -> Any:
    """A process-shared semaphore (``multiprocessing.Semaphore``)."""
    return _context.Semaphore(value)


def BoundedSemaphore(value: int = 1) -> Any:
    """A process-shared bounded semaphore (``multiprocessing.BoundedSemaphore``)."""
    return _context.BoundedSemaphore(value)


def Condition(lock: Any = None) -> Any:
    """A process-shared condition variable (``multiprocessing.Condition``)."""
    return _context.Condition(lock)


def Barrier(parties: int, action: Any = None, timeout: Any = None) -> Any:
    """A process-shared barrier (``multiprocessing.Barrier``)."""
    return _context.Barrier(parties, action, timeout)
