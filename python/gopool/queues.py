"""Process-shared queues with the API of ``multiprocessing.Queue``,
``JoinableQueue`` and ``SimpleQueue``, kept in the Go core.

A queue is a ring in shared memory (an anonymous memory file: it has no
name anywhere, and only processes that inherit it can open it), with
futex-based waiting and locks that recover from the death of their owner.
Processes share a queue by inheritance only, as with the stdlib: pass it in
``gopool.Process(args=...)``, in ``gopool.Pool(initializer=...,
initargs=...)``, or to a stdlib Process of the 'spawn' or 'forkserver'
start methods.

Differences from the stdlib (which buffers items in a feeder thread):

- ``put()`` pickles and stores the item before it returns: an unpicklable
  object raises in the caller (the stdlib drops it in the feeder thread and
  prints a traceback), and the item is visible to other processes at once
  (no "infinitesimal delay" before ``empty()`` or ``get()`` see it).
- Nothing is buffered in the producing process, so a process that put items
  can exit, and be joined, before anyone takes them: there is no "join
  before drain" deadlock. ``join_thread()`` returns at once (after
  ``close()``), and ``cancel_join_thread()`` does nothing: it cannot lose
  data.
- An unbounded queue (``maxsize <= 0``) never blocks in ``put()`` and never
  raises ``queue.Full``. Its items live in a shared ring of 1 GiB of address
  space (memory is used only for what is in flight): a put that would need
  more than that raises ``MemoryError``. An item larger than the ring raises
  ``ValueError``.
- ``qsize()``, ``empty()`` and ``full()`` are exact at the moment of the
  call, on every platform; they still work after ``close()``.
- ``queue.Full`` means full and ``queue.Empty`` means empty, also without
  blocking: ``put_nowait()`` and ``get_nowait()`` wait for a queue lock that
  another live process holds (for microseconds; a dead holder's lock is
  taken over), never for room or items. The stdlib's ``get_nowait()``
  raises ``queue.Empty`` on a queue with items when another process holds
  its read lock.
- ``join_thread()`` raises ``AssertionError`` when the queue is not closed
  even under ``python -O``.
- Extensions: ``put_many(items)`` and ``get_many(max_items, timeout)`` move
  many items in one call into the core.
- Each process that uses a queue maps about 2 GiB of address space for it
  (its ring, twice): a process with a smaller address-space limit
  (``RLIMIT_AS``) cannot use it. Memory is used for what is in flight,
  plus the pages the queue keeps reusing (1 to 64 MiB, four times what is
  usually in flight).
- A queue cannot be used in a child made by a bare ``os.fork()`` (the
  stdlib's 'fork' start method included): gopool's Go core does not survive
  ``fork()``, so its methods raise ``gopool.ForkedChildError`` there.

Crash safety, and the exact data-loss rule. A process may be killed
(SIGKILL, OOM killer, ``os._exit``) at any instant, inside ``put()`` or
``get()`` included; the other processes' queue stays consistent and usable
(a lock held by the dead process is taken over within about 20 ms), and:

1. an item whose ``put()`` returned is in the queue, intact, until a
   ``get()`` takes it, whatever happens to the process that put it;
2. the item a process was putting when it died is either in the queue,
   intact, or absent: never torn, never duplicated; ``put_many()`` publishes
   its items in groups, in order, so a prefix of them is in the queue;
3. the item a process was taking when it died stays in the queue for the
   others if the removal had not been published, and is lost if it had:
   at most that one item (or that one ``get_many()`` batch) per killed
   process is lost;
4. nothing else is ever lost or duplicated, and the order of each
   producer's items is kept.

For a JoinableQueue, an item taken by a process that died before calling
``task_done()`` remains unfinished: ``join()`` waits for it, as with the
stdlib.
"""

from __future__ import annotations

import types
from multiprocessing import context as _mp_context
from typing import Any, Iterable, List, Optional

from gopool._queue_handle import QueueHandle, dumps

__all__ = ["Queue", "JoinableQueue", "SimpleQueue"]

_MAX_BOUND = 2**31 - 1  # SEM_VALUE_MAX on Linux: the stdlib's bound too


def _rebuild(cls: type, fd: int) -> Any:
    """Unpickle a queue in a child process: map the inherited descriptor."""
    obj = cls.__new__(cls)
    obj._setup(QueueHandle.open(fd))
    return obj


class _Shared:
    """Pickling through inheritance, common to the three queue types."""

    _handle: QueueHandle

    def __reduce__(self):
        _mp_context.assert_spawning(self)  # RuntimeError outside process creation
        popen = _mp_context.get_spawning_popen()
        return (_rebuild, (type(self), popen.duplicate_for_child(self._handle.fd())))

    __class_getitem__ = classmethod(types.GenericAlias)


class Queue(_Shared):
    """A process-shared FIFO queue (``multiprocessing.Queue``).

    ``maxsize > 0`` bounds the number of items: ``put()`` then waits for
    room (or raises ``queue.Full``). Items travel by pickle (with
    cloudpickle for lambdas and classes defined in ``__main__``). Items from
    one producer come out in the order it put them; items from several
    producers interleave. See the module's documentation for the
    differences from the stdlib and the exact rule of what a killed process
    may lose.
    """

    def __init__(self, maxsize: int = 0, *, _ring_size: int = 0):
        if maxsize > _MAX_BOUND:
            raise ValueError(f"maxsize must be at most {_MAX_BOUND}, not {maxsize}")
        self._setup(QueueHandle.create(max(maxsize, 0), _ring_size))

    def _setup(self, handle: QueueHandle) -> None:
        self._handle = handle
        self._maxsize = handle.maxsize or _MAX_BOUND
        self._closed = False

    def _check_closed(self) -> None:
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")

    def put(self, obj: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Put obj into the queue.

        On a bounded queue that is full, wait up to timeout seconds (None:
        as long as it takes; block=False: not at all) for room, then raise
        ``queue.Full``. An unbounded queue never waits. The object is
        pickled here: pickling errors are raised here. Raises ValueError if
        the queue was closed in this process, or if the pickled object is
        larger than the queue's ring (about 1 GiB).
        """
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        self._handle.put(obj, block, timeout)

    def put_nowait(self, obj: Any) -> None:
        """``put(obj, False)``: raise ``queue.Full`` at once if there is no room."""
        self.put(obj, False)

    def put_many(self, items: Iterable[Any], block: bool = True, timeout: Optional[float] = None) -> None:
        """Put items in order with one call into the core (gopool extension).

        The same as ``put()`` for each item, but faster. All items are
        pickled before any is put. On a bounded queue the items go in as
        room allows; if not all of them fit before the timeout, the first
        ones are in the queue and ``queue.Full`` is raised.
        """
        self._check_closed()
        data = [dumps(obj) for obj in items]
        if data:
            self._handle.put_many(data, block, timeout)

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Remove and return the oldest item.

        Wait up to timeout seconds (None: as long as it takes; block=False:
        not at all) for one, then raise ``queue.Empty``. Raises ValueError
        if the queue was closed in this process.
        """
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        return self._handle.get(block, timeout)

    def get_nowait(self) -> Any:
        """``get(False)``: raise ``queue.Empty`` at once if there is no item."""
        return self.get(False)

    def get_many(self, max_items: int, timeout: Optional[float] = None) -> List[Any]:
        """Remove and return up to max_items items, oldest first, with one
        call into the core (gopool extension).

        Waits up to timeout seconds (None: as long as it takes; 0: not at
        all) for the first item, not for more: it returns the items that are
        in the queue then, at most max_items. Raises ``queue.Empty`` if none
        came in time.
        """
        self._check_closed()
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, not {max_items}")
        return self._handle.get_many(max_items, timeout)

    def qsize(self) -> int:
        """The number of items in the queue (exact when called)."""
        return self._handle.size()

    def empty(self) -> bool:
        """Whether the queue has no item (exact when called)."""
        return self._handle.size() == 0

    def full(self) -> bool:
        """Whether a bounded queue has maxsize items (exact when called)."""
        return self._handle.maxsize > 0 and self._handle.size() >= self._handle.maxsize

    def close(self) -> None:
        """Indicate that this process will put (and get) no more through
        this object. Items already put stay in the queue for the others: put
        is synchronous, so nothing is waiting to be flushed. Idempotent."""
        self._closed = True

    def join_thread(self) -> None:
        """Return once this process's items are in the queue: at once, since
        ``put()`` stores them before returning. Raises AssertionError if the
        queue is not closed, as the stdlib does (even under ``python -O``)."""
        if not self._closed:
            raise AssertionError("Queue {0!r} not closed".format(self))

    def cancel_join_thread(self) -> None:
        """Does nothing. In the stdlib it lets a process exit without
        flushing its buffered items, losing them; gopool's queues buffer
        nothing in the process, so there is nothing to skip or lose."""


class JoinableQueue(Queue):
    """A Queue with ``task_done()`` and ``join()``
    (``multiprocessing.JoinableQueue``).

    Every item put counts as unfinished until a ``task_done()`` call; the
    count lives with the queue in shared memory and is updated in the same
    atomic step as the put, so a producer's death cannot skew it.
    """

    def task_done(self) -> None:
        """Mark one item as processed. Raises ValueError('task_done() called
        too many times') if every item put was already marked."""
        self._handle.task_done()

    def join(self) -> None:
        """Block until every item put has been marked with ``task_done()``."""
        self._handle.join()


class SimpleQueue(_Shared):
    """An unbounded process-shared FIFO queue with only ``put()``, ``get()``,
    ``empty()`` and ``close()`` (``multiprocessing.SimpleQueue``).

    After ``close()`` its methods raise ``OSError('handle is closed')``, as
    the stdlib's do. The same shared ring, crash safety and data-loss rule
    as Queue (see the module's documentation).
    """

    def __init__(self, *, _ring_size: int = 0):
        self._setup(QueueHandle.create(0, _ring_size))

    def _setup(self, handle: QueueHandle) -> None:
        self._handle = handle
        self._closed = False

    def _check_closed(self) -> None:
        if self._closed:
            raise OSError("handle is closed")

    def put(self, obj: Any) -> None:
        """Put obj into the queue (pickled here; never waits)."""
        self._check_closed()
        self._handle.put(obj, True, None)

    def get(self) -> Any:
        """Remove and return the oldest item, waiting for one as long as it
        takes."""
        self._check_closed()
        return self._handle.get(True, None)

    def empty(self) -> bool:
        """Whether the queue has no item (exact when called)."""
        self._check_closed()
        return self._handle.size() == 0

    def close(self) -> None:
        """Stop using the queue in this process: later calls raise OSError.
        Items in the queue stay there for other processes. Idempotent."""
        self._closed = True
