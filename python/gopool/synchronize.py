"""``Event``, ``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore``,
``Condition`` and ``Barrier``: the stdlib's ``multiprocessing`` primitives,
kept in gopool's Go core, and safe when a process dies holding one.

Each object is a few words in an anonymous shared memory file (it has no
name anywhere: processes share it by inheritance only, as with the stdlib:
pass it in ``gopool.Process(args=...)``, ``gopool.Pool(initializer=...,
initargs=...)``, or to a stdlib Process of the 'spawn' or 'forkserver'
start methods). Waiting uses futexes, in slices of at most 100 ms so that
Ctrl-C is handled. In a child made by a bare ``os.fork()`` every method
raises ``gopool.ForkedChildError``.

The API and messages are the stdlib's (``multiprocessing.synchronize``,
CPython 3.11). What a process's death does, for each primitive (the stdlib
leaves everything as it was: a lock held by a killed process stays held
forever, a barrier waits forever for a killed party):

- ``Lock``, ``RLock``: the lock is held by a process (and, for an RLock, a
  thread of it). Once that process no longer exists (killed, crashed, or
  exited without releasing it), the next acquirer takes the lock over,
  within about 20 ms of waiting, at once if it does not wait. Like a
  robust mutex's EOWNERDEAD, the taker learns it: ``lock.recovered`` is
  True while it holds a lock it took over, since what the lock protected
  may be half updated. A thread that ends holding a lock does not free it
  (its process is alive), as with the stdlib.
- ``Semaphore``, ``BoundedSemaphore``: the semaphore remembers which
  processes hold how many permits: a process holds a permit from its
  ``acquire()`` until its own ``release()``; a ``release()`` by a process
  holding none (a semaphore used to signal) just adds a permit. The
  permits of a process that disappears without closing the semaphore
  (SIGKILL, a crash, the OOM killer, ``os._exit``) return to the
  semaphore, for the next process that finds none (within about 20 ms of
  waiting). A process that exits normally (or drops the semaphore) consumes
  the permits it still holds, as with the stdlib. What cannot be known:
  more than 248 processes holding permits at once (the others are not
  tracked), and a process killed in the nanoseconds between the two steps
  of an ``acquire()``/``release()``, which loses that one permit (a permit
  is never created).
- ``Condition``: a waiter killed in ``wait()`` is skipped: ``notify(n)``
  wakes n live waiters, oldest first, and never waits for them (the
  stdlib's ``notify()`` hangs when a waiter it woke was killed). A waiter
  whose timeout expires just as it is notified keeps the notification
  (``wait()`` returns True). Its lock is a gopool ``Lock`` or ``RLock``,
  with their recovery. At most 1016 waiters at once.
- ``Barrier``: its parties are known: every process that inherited it (and
  its creator, from its first ``wait()``). A party that disappears without
  closing it, whether inside ``wait()`` or between waits, will never come:
  the others get ``threading.BrokenBarrierError`` (within about 20 ms of
  waiting) instead of hanging, and ``reset()`` makes the barrier usable
  again. A process that exits normally stops being a party. What cannot be
  known: a party that never mapped the barrier, or more than 240 processes.
  A party killed inside ``wait()`` had arrived: if the others complete that
  round, they pass it, and the next round breaks. A releasing party killed
  while it runs ``action`` breaks the barrier.
- ``Event``: a waiter that is killed leaves nothing behind, so ``set()``
  never hangs (the stdlib's can).

Other differences: ``acquire()`` also takes the ``blocking=`` keyword (the
name ``threading`` uses; the stdlib's ``multiprocessing`` locks accept only
``block``); the "must acquire()" checks of ``Condition`` are always made
(the stdlib's are ``assert`` statements, gone under ``python -O``);
``Condition`` needs a gopool ``Lock`` or ``RLock``; ``Barrier(parties)``
with ``parties < 1`` raises ValueError (it could never be passed), and its
pickling error names Barrier (the stdlib's names Condition).
"""

from __future__ import annotations

import errno
import operator
import os
import sys
import threading
import time
import weakref
from multiprocessing import context, process, util
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple, Type, TypeVar

from gopool import _wire
from gopool._binding import (
    SLICE_MS,
    call,
    check_not_forked,
    deadline_of,
    has_code,
    in_forked_child,
    lib,
    slice_ms,
    translate,
    wait_until,
)
from gopool._spawning import duplicate_for_child

__all__ = ["Event", "Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition", "Barrier"]

SEM_VALUE_MAX = _wire.SEMAPHORE_VALUE_MAX

_RELEASED_TOO_MANY = "semaphore or lock released too many times"
_BUSY = f"E{_wire.CODE_LOCK_BUSY}: "
_UNSET: Any = object()
_BROKEN_STATE = -2  # a barrier's state when broken, as in threading.Barrier

T = TypeVar("T")


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

    def __reduce__(self) -> Tuple[Callable[[int], Event], Tuple[int]]:
        context.assert_spawning(self)  # RuntimeError outside process creation
        fd = int(call(lib.EventFd, self._id))
        return (_open_event, (duplicate_for_child(fd),))

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


# -- arguments -------------------------------------------------------------------


def _block_arg(block: Any, blocking: Any) -> bool:
    """acquire()'s block flag, also given as ``blocking=`` (threading's name)."""
    if blocking is _UNSET:
        return True if block is _UNSET else bool(block)
    if block is not _UNSET:
        raise TypeError("acquire() got both 'block' and 'blocking'")
    return bool(blocking)


def _timeout_arg(timeout: Any) -> Optional[float]:
    """A timeout in seconds as the stdlib's locks read it: None or a real
    number (TypeError otherwise); a negative one counts as 0."""
    if timeout is None:
        return None
    if isinstance(timeout, (str, bytes, bytearray)) or not (
        hasattr(type(timeout), "__float__") or hasattr(type(timeout), "__index__")
    ):
        raise TypeError(f"must be real number, not {type(timeout).__name__}")
    return max(float(timeout), 0.0)


def _unbusy(func: Callable[..., T], *args: Any) -> T:
    """call(func, *args), made again while the core reports an internal lock
    held by a live process for too long (a stopped process)."""
    while True:
        try:
            return func(*args)
        except RuntimeError as exc:
            if not str(exc).startswith(_BUSY):
                raise
        # Signals are handled here, between the calls.


def _thread_label() -> str:
    name = process.current_process().name
    if threading.current_thread().name != "MainThread":
        name += "|" + threading.current_thread().name
    return name


# -- the shared-object plumbing --------------------------------------------------


class _Shared:
    """An object of the core: its id in this process, closed when the
    object is garbage or when the process exits normally (multiprocessing's
    finalizers, which also run in pool workers and Process children).
    Closing is what tells the other processes that this one is done with
    the object (see the module's documentation); a process that dies
    without closing it is the "killed" case."""

    _KIND = ""  # the core's name for the object: Mutex, Semaphore, Cond, Barrier

    _id: int

    def _attach(self, obj_id: int) -> None:
        self._id = int(obj_id)
        util.Finalize(self, _close, args=(self._KIND, self._id), exitpriority=0)

    def _fd(self) -> int:
        check_not_forked()
        return int(call(getattr(lib, self._KIND + "Fd"), self._id))

    def _spawning_fd(self) -> int:
        """The descriptor a new process will inherit (RuntimeError outside
        process creation, in the stdlib's words)."""
        context.assert_spawning(self)
        return duplicate_for_child(self._fd())


def _close(kind: str, obj_id: int) -> None:
    if not in_forked_child():
        try:
            call(getattr(lib, kind + "Close"), obj_id)
        except Exception:
            pass


_S = TypeVar("_S", bound=_Shared)


def _opened(cls: Type[_S], kind: str, fd: int) -> _S:
    """A new cls object for the core's object inherited as fd."""
    obj = cls.__new__(cls)
    check_not_forked()
    _Shared._attach(obj, call(getattr(lib, kind + "Open"), fd))
    return obj


# -- locks -----------------------------------------------------------------------


class _LockBase(_Shared):
    _KIND = "Mutex"

    if TYPE_CHECKING:  # what Lock and RLock define
        def acquire(self, block: bool = _UNSET, timeout: Optional[float] = None, *,
                    blocking: bool = _UNSET) -> bool: ...

        def release(self) -> None: ...

        def _release_save(self) -> int: ...

        def _acquire_restore(self, saved: int) -> None: ...

    def __init__(self) -> None:
        check_not_forked()
        self._attach(call(lib.MutexNew))
        self._init_state()

    def _init_state(self) -> None:
        self._owner: Optional[int] = None  # the thread of this process holding it
        self._count = 0
        self._recovered = False

    def __reduce__(self) -> Tuple[Callable[[Type[_LockBase], int], _LockBase], Tuple[Type[_LockBase], int]]:
        return (_rebuild_lock, (type(self), self._spawning_fd()))

    @property
    def recovered(self) -> bool:
        """Whether the lock, as this process holds it now, was taken over
        from a process that died holding it (what it protects may be half
        updated). Like a robust mutex's EOWNERDEAD; False when not held
        here."""
        return self._recovered and self._owner is not None

    def _take(self, block: bool, timeout: Optional[float]) -> int:
        """Acquire the core's lock: LOCK_TIMED_OUT, LOCK_ACQUIRED or
        LOCK_RECOVERED."""
        check_not_forked()
        acquire = lib.MutexAcquire
        try:
            got: int = acquire(self._id, 0)
        except RuntimeError as exc:
            raise translate(exc) from None
        if got or not block or timeout == 0:
            return got
        got = wait_until(lambda ms: call(acquire, self._id, ms), timeout)
        return got

    def _give(self) -> None:
        try:
            lib.MutexRelease(self._id)
        except RuntimeError as exc:
            error = translate(exc)
            if has_code(error, _wire.CODE_RELEASED_TOO_MANY):
                raise ValueError(_RELEASED_TOO_MANY) from None
            raise error from None

    def _holder(self) -> int:
        check_not_forked()
        return int(call(lib.MutexHolder, self._id))

    def _is_mine(self) -> bool:
        """Whether the calling thread holds the lock (as Condition needs)."""
        return self._owner == threading.get_ident() and bool(call(lib.MutexHeldHere, self._id))

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *args: Any) -> None:
        self.release()


_L = TypeVar("_L", bound=_LockBase)


def _rebuild_lock(cls: Type[_L], fd: int) -> _L:
    lock = _opened(cls, "Mutex", fd)
    lock._init_state()
    return lock


class Lock(_LockBase):
    """A process-shared non-recursive lock (``multiprocessing.Lock``).

    Like the stdlib's (a semaphore of one), any thread of any process may
    release it. A lock whose holding process died is taken over by the next
    acquirer, who sees ``recovered`` set. See the module's documentation.
    """

    def acquire(self, block: bool = _UNSET, timeout: Optional[float] = None, *, blocking: bool = _UNSET) -> bool:
        """Acquire the lock, waiting up to timeout seconds (None: as long as
        it takes; ``block=False``: not at all); return whether it was
        acquired. ``blocking`` is another name for ``block``."""
        if block is not _UNSET or blocking is not _UNSET or timeout is not None:
            block, timeout = _block_arg(block, blocking), _timeout_arg(timeout)
        else:
            block = True
        got = self._take(block, timeout)
        if got:
            self._owner = threading.get_ident()
            self._count = 1
            self._recovered = got == _wire.LOCK_RECOVERED
        return bool(got)

    def release(self) -> None:
        """Release the lock; ValueError if it is not locked."""
        check_not_forked()
        self._owner, self._count, self._recovered = None, 0, False
        self._give()

    def _release_save(self) -> int:
        self.release()
        return 1

    def _acquire_restore(self, saved: int) -> None:
        self.acquire()

    def __repr__(self) -> str:
        try:
            holder = self._holder()
            if holder and self._is_mine():
                name = _thread_label()
            elif not holder:
                name = "None"
            elif holder == os.getpid():
                name = "SomeOtherThread"
            else:
                name = "SomeOtherProcess"
        except Exception:
            name = "unknown"
        return f"<{type(self).__name__}(owner={name})>"


class RLock(_LockBase):
    """A process-shared recursive lock (``multiprocessing.RLock``), owned by
    a thread of a process: that thread may acquire it again, and only it may
    release it. A lock whose holding process died is taken over by the next
    acquirer, who sees ``recovered`` set. See the module's documentation.
    """

    def acquire(self, block: bool = _UNSET, timeout: Optional[float] = None, *, blocking: bool = _UNSET) -> bool:
        """Acquire the lock, or acquire it once more if the calling thread
        holds it; wait up to timeout seconds (None: as long as it takes;
        ``block=False``: not at all). Return whether it was acquired.
        ``blocking`` is another name for ``block``."""
        if block is not _UNSET or blocking is not _UNSET or timeout is not None:
            block, timeout = _block_arg(block, blocking), _timeout_arg(timeout)
        else:
            block = True
        me = threading.get_ident()
        if self._owner == me:
            check_not_forked()
            self._count += 1
            return True
        got = self._take(block, timeout)
        if got:
            self._owner, self._count = me, 1
            self._recovered = got == _wire.LOCK_RECOVERED
        return bool(got)

    def release(self) -> None:
        """Release the lock once; AssertionError if the calling thread does
        not hold it."""
        check_not_forked()
        if self._owner != threading.get_ident() or self._count == 0:
            raise AssertionError("attempt to release recursive lock not owned by thread")
        self._count -= 1
        if self._count == 0:
            self._owner, self._recovered = None, False
            self._give()

    def _release_save(self) -> int:
        count = self._count
        self._owner, self._count, self._recovered = None, 0, False
        self._give()
        return count

    def _acquire_restore(self, saved: int) -> None:
        got = self._take(True, None)
        self._owner, self._count = threading.get_ident(), saved
        self._recovered = got == _wire.LOCK_RECOVERED

    def __repr__(self) -> str:
        try:
            count: object
            holder = self._holder()
            if holder and self._is_mine():
                name, count = _thread_label(), self._count
            elif not holder:
                name, count = "None", 0
            elif holder == os.getpid():
                name, count = "SomeOtherThread", "nonzero"
            else:
                name, count = "SomeOtherProcess", "nonzero"
        except Exception:
            name, count = "unknown", "unknown"
        return f"<{type(self).__name__}({name}, {count})>"


# -- semaphores ------------------------------------------------------------------


def _semaphore_value(value: Any) -> int:
    """The stdlib's checks of a semaphore's initial value."""
    number = operator.index(value)
    if number > SEM_VALUE_MAX:
        raise OverflowError("Python int too large to convert to C int")
    if number < 0:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    return number


class Semaphore(_Shared):
    """A process-shared counting semaphore (``multiprocessing.Semaphore``).

    The permits of a process that dies holding them come back. See the
    module's documentation for what holding means.
    """

    _KIND = "Semaphore"

    def __init__(self, value: int = 1) -> None:
        value = _semaphore_value(value)
        check_not_forked()
        self._attach(call(lib.SemaphoreNew, value, self._maximum(value)))

    @staticmethod
    def _maximum(value: int) -> int:
        return SEM_VALUE_MAX

    def __reduce__(self) -> Tuple[Callable[[Type[Semaphore], str, int], Semaphore], Tuple[Type[Semaphore], str, int]]:
        return (_opened, (type(self), "Semaphore", self._spawning_fd()))

    def acquire(self, block: bool = _UNSET, timeout: Optional[float] = None, *, blocking: bool = _UNSET) -> bool:
        """Take a permit, waiting up to timeout seconds (None: as long as it
        takes; ``block=False``: not at all); return whether one was taken.
        ``blocking`` is another name for ``block``."""
        if block is not _UNSET or blocking is not _UNSET or timeout is not None:
            block, timeout = _block_arg(block, blocking), _timeout_arg(timeout)
        else:
            block = True
        check_not_forked()
        acquire = lib.SemaphoreAcquire
        try:
            if acquire(self._id, 0):
                return True
        except RuntimeError as exc:
            raise translate(exc) from None
        if not block or timeout == 0:
            return False
        return bool(wait_until(lambda ms: call(acquire, self._id, ms), timeout))

    def release(self) -> None:
        """Return a permit; ValueError if the semaphore is at its maximum."""
        check_not_forked()
        try:
            lib.SemaphoreRelease(self._id)
        except RuntimeError as exc:
            error = translate(exc)
            if has_code(error, _wire.CODE_RELEASED_TOO_MANY):
                raise ValueError(_RELEASED_TOO_MANY) from None
            raise error from None

    def get_value(self) -> int:
        """The number of permits available."""
        check_not_forked()
        return int(call(lib.SemaphoreValue, self._id))

    @property
    def _semlock(self) -> "_SemLockView":
        # The stdlib's Queue.full() and a few of its helpers look inside a
        # semaphore through ``_semlock``; this view lets them work on ours.
        return _SemLockView(self)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *args: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        try:
            value: Any = self.get_value()
        except Exception:
            value = "unknown"
        return f"<{type(self).__name__}(value={value})>"


class _SemLockView:
    """The part of ``_multiprocessing.SemLock`` that stdlib code reads."""

    def __init__(self, semaphore: Semaphore) -> None:
        self._semaphore = semaphore

    def _get_value(self) -> int:
        return self._semaphore.get_value()

    def _is_zero(self) -> bool:
        return self._semaphore.get_value() == 0


class BoundedSemaphore(Semaphore):
    """A process-shared semaphore whose value never exceeds its initial
    value (``multiprocessing.BoundedSemaphore``): releasing it beyond raises
    ValueError."""

    @staticmethod
    def _maximum(value: int) -> int:
        return value

    def __repr__(self) -> str:
        try:
            value: Any = self.get_value()
            maxvalue: Any = int(call(lib.SemaphoreMax, self._id))
        except Exception:
            value = maxvalue = "unknown"
        return f"<{type(self).__name__}(value={value}, maxvalue={maxvalue})>"


# -- condition -------------------------------------------------------------------


class Condition(_Shared):
    """A process-shared condition variable (``multiprocessing.Condition``)
    over a gopool ``RLock`` (the default) or ``Lock``.

    ``notify()`` wakes live waiters, oldest first, and never waits for them.
    See the module's documentation.
    """

    _KIND = "Cond"

    def __init__(self, lock: Optional[_LockBase] = None) -> None:
        lock = lock or RLock()
        if not isinstance(lock, _LockBase):
            raise TypeError(f"a gopool Condition needs a gopool Lock or RLock, not {type(lock).__name__}")
        check_not_forked()
        self._lock = lock
        self._attach(call(lib.CondNew))

    def __reduce__(self) -> Tuple[Callable[[_LockBase, int], Condition], Tuple[_LockBase, int]]:
        return (_rebuild_condition, (self._lock, self._spawning_fd()))

    def acquire(self, *args: Any, **kwargs: Any) -> bool:
        """Acquire the underlying lock (its ``acquire()``)."""
        return self._lock.acquire(*args, **kwargs)

    def release(self) -> None:
        """Release the underlying lock."""
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *args: Any) -> None:
        return self._lock.__exit__(*args)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Release the lock, wait until notified or timeout seconds pass,
        reacquire the lock; return False if it timed out. AssertionError if
        the calling thread does not hold the lock."""
        timeout = _timeout_arg(timeout)
        check_not_forked()
        if not self._lock._is_mine():
            raise AssertionError("must acquire() condition before using wait()")
        slot = call(lib.CondEnlist, self._id)  # before the lock goes: no lost notify
        saved = self._lock._release_save()
        try:
            wait_until(lambda ms: call(lib.CondSleep, self._id, slot, ms), timeout)
        finally:
            notified = bool(call(lib.CondLeave, self._id, slot))
            self._lock._acquire_restore(saved)
        return notified

    def wait_for(self, predicate: Callable[[], T], timeout: Optional[float] = None) -> T:
        """Wait until predicate() is true (checked with the lock held) or
        timeout seconds pass; return its last value."""
        result = predicate()
        if result:
            return result
        endtime = None if timeout is None else time.monotonic() + timeout
        waittime = None
        while not result:
            if endtime is not None:
                waittime = endtime - time.monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to n waiters, the longest waiting first. AssertionError if
        the calling thread does not hold the lock."""
        check_not_forked()
        if not self._lock._is_mine():
            raise AssertionError("lock is not owned")
        call(lib.CondNotify, self._id, max(0, min(operator.index(n), sys.maxsize)))

    def notify_all(self) -> None:
        """Wake every waiter."""
        self.notify(sys.maxsize)

    def __repr__(self) -> str:
        try:
            waiters: Any = int(call(lib.CondWaiters, self._id))
        except Exception:
            waiters = "unknown"
        return f"<{type(self).__name__}({self._lock}, {waiters})>"


def _rebuild_condition(lock: _LockBase, fd: int) -> Condition:
    cond = _opened(Condition, "Cond", fd)
    cond._lock = lock
    return cond


# -- barrier ---------------------------------------------------------------------


class Barrier(threading.Barrier, _Shared):
    """A process-shared barrier (``multiprocessing.Barrier``, a
    ``threading.Barrier``): ``parties`` parties wait until all have come;
    the last one runs ``action`` first. ``timeout`` is the default for
    ``wait()``; a wait that times out breaks the barrier.

    A party that dies, inside ``wait()`` or between waits, breaks the
    barrier instead of leaving the others waiting forever. See the
    module's documentation.
    """

    _KIND = "Barrier"

    def __init__(self, parties: int, action: Optional[Callable[[], Any]] = None,
                 timeout: Optional[float] = None) -> None:
        parties = operator.index(parties)
        if parties < 1:
            raise ValueError("parties must be >= 1")
        check_not_forked()
        self._attach(call(lib.BarrierNew, parties))
        self._setup(parties, action, timeout)

    def __repr__(self) -> str:
        # threading.Barrier's from Python 3.10, on every version
        cls = type(self)
        if self.broken:
            return f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}: broken>"
        return (f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}:"
                f" waiters={self.n_waiting}/{self.parties}>")

    def _setup(self, parties: int, action: Optional[Callable[[], Any]], timeout: Optional[float]) -> None:
        self._parties = parties
        self._action = action
        self._timeout = timeout

    def __reduce__(self) -> Tuple[Callable[..., Barrier], Tuple[Any, ...]]:
        return (_rebuild_barrier, (self._parties, self._action, self._timeout, self._spawning_fd()))

    def _core(self, func: Callable[..., Any], *args: Any) -> int:
        """Call the core's barrier function func (every one returns an int)."""
        check_not_forked()
        result: int = _unbusy(call, func, self._id, *args)
        return result

    def wait(self, timeout: Optional[float] = None) -> int:
        """Wait until all parties have called wait(); return this party's
        index (0 to parties-1; the last to come runs ``action``).
        ``threading.BrokenBarrierError`` if the barrier is broken or reset
        meanwhile, if a party died, or if timeout seconds (default: the
        barrier's) pass first, which breaks it."""
        if timeout is None:
            timeout = self._timeout
        timeout = _timeout_arg(timeout)
        index = self._enter_core()
        try:
            if index + 1 == self._parties:
                try:
                    if self._action:
                        self._action()
                except BaseException:
                    self._core(lib.BarrierBreak)
                    raise
                if not self._core(lib.BarrierPass):
                    raise threading.BrokenBarrierError
            else:
                self._await_core(deadline_of(timeout))
            return index
        finally:
            self._core(lib.BarrierLeave)

    def _enter_core(self) -> int:
        """Wait while the barrier drains or resets, then count in."""
        while True:
            index = self._core(lib.BarrierEnter, SLICE_MS)
            if index >= 0:
                return index
            if index == _wire.BARRIER_BROKEN:
                raise threading.BrokenBarrierError

    def _await_core(self, deadline: Optional[float]) -> None:
        while True:
            outcome = self._core(lib.BarrierAwait, slice_ms(deadline))
            if outcome == _wire.BARRIER_PASSED:
                return
            if outcome == _wire.BARRIER_BROKEN:
                raise threading.BrokenBarrierError
            if deadline is not None and time.monotonic() >= deadline:
                self._core(lib.BarrierBreak)
                raise threading.BrokenBarrierError

    def reset(self) -> None:
        """Return the barrier to its initial state; parties waiting in it get
        ``threading.BrokenBarrierError``."""
        self._core(lib.BarrierReset)

    def abort(self) -> None:
        """Break the barrier: parties waiting in it, and later calls to
        wait(), get ``threading.BrokenBarrierError`` until reset()."""
        self._core(lib.BarrierBreak)

    @property
    def parties(self) -> int:
        """The number of parties the barrier waits for."""
        return self._parties

    @property
    def n_waiting(self) -> int:
        """The number of parties waiting in the barrier now."""
        if self._core(lib.BarrierState) != 0:
            return 0
        return int(self._core(lib.BarrierCount))

    @property
    def broken(self) -> bool:
        """Whether the barrier is broken."""
        return self._core(lib.BarrierState) == _BROKEN_STATE


def _rebuild_barrier(parties: int, action: Optional[Callable[[], Any]], timeout: Optional[float],
                     fd: int) -> Barrier:
    barrier = _opened(Barrier, "Barrier", fd)
    barrier._setup(parties, action, timeout)
    return barrier
