"""``Event``, ``Lock`` and friends, shareable with gopool's Process and Pool
workers through inheritance.

``Event`` lives in the Go core: a flag in an anonymous shared memory file,
waited on with a futex. A waiter that is killed leaves nothing behind, so
``set()`` never hangs (the stdlib's can, when a waiter died inside
``wait()``).

The locks, semaphores, conditions and barriers are for now the stdlib's
objects from its 'spawn' context (named POSIX semaphores), which processes
that gopool starts by fork+exec can open; a process killed while holding
one leaves it held, as with the stdlib.
"""

from __future__ import annotations

import multiprocessing
import weakref
from multiprocessing import context
from typing import Any, Optional

from gopool._binding import call, check_not_forked, in_forked_child, lib, wait_until

__all__ = ["Event", "Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition", "Barrier"]

_context = multiprocessing.get_context("spawn")


class Event:
    """A process-shared event flag with the API of ``multiprocessing.Event``
    (and ``threading.Event``): ``set``, ``clear``, ``is_set``, ``wait``."""

    def __init__(self) -> None:
        check_not_forked()
        self._id = int(call(lib.EventNew))
        self._finalizer = weakref.finalize(self, _release, self._id)

    def is_set(self) -> bool:
        """Whether the flag is set."""
        check_not_forked()
        return bool(call(lib.EventIsSet, self._id))

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        check_not_forked()
        call(lib.EventSet, self._id)

    def clear(self) -> None:
        """Clear the flag."""
        check_not_forked()
        call(lib.EventClear, self._id)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until the flag is set or timeout seconds pass; return the flag."""
        check_not_forked()
        return bool(wait_until(lambda ms: call(lib.EventWait, self._id, ms), timeout))

    def __reduce__(self):
        context.assert_spawning(self)  # RuntimeError outside process creation
        fd = int(call(lib.EventFd, self._id))
        return (_open_event, (context.get_spawning_popen().duplicate_for_child(fd),))

    def __repr__(self) -> str:
        state = "set" if self.is_set() else "unset"
        return f"<{type(self).__qualname__} at {id(self):#x} {state}>"


def _open_event(fd: int) -> Event:
    event = Event.__new__(Event)
    check_not_forked()
    event._id = int(call(lib.EventOpen, fd))
    event._finalizer = weakref.finalize(event, _release, event._id)
    return event


def _release(event_id: int) -> None:
    if not in_forked_child():
        try:
            call(lib.EventRelease, event_id)
        except Exception:
            pass


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
