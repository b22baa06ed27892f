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

import os
import select
import types
import weakref
from multiprocessing import context as _mp_context
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterable, List, Optional, Tuple, Type, TypeVar

from gopool._queue_handle import QueueHandle, dumps
from gopool._spawning import duplicate_for_child

__all__ = ["Queue", "JoinableQueue", "SimpleQueue"]

_MAX_BOUND = 2**31 - 1  # SEM_VALUE_MAX on Linux: the stdlib's bound too

_T = TypeVar("_T")
_Q = TypeVar("_Q", bound="_Shared[Any]")
_SQ = TypeVar("_SQ", bound="SimpleQueue[Any]")


def _rebuild(cls: Type[_Q], fd: int) -> _Q:
    """Unpickle a queue in a child process: map the inherited descriptor."""
    obj = cls.__new__(cls)
    obj._setup(QueueHandle.open(fd))
    return obj


class _Shared(Generic[_T]):
    """Pickling through inheritance, common to the three queue types;
    generic in the type of the items (``gopool.Queue[int]``)."""

    _handle: QueueHandle

    if TYPE_CHECKING:  # each queue type's
        def _setup(self, handle: QueueHandle) -> None: ...

    def __reduce__(self) -> Tuple[Callable[..., Any], Tuple[Any, ...]]:
        _mp_context.assert_spawning(self)  # RuntimeError outside process creation
        return (_rebuild, (type(self), duplicate_for_child(self._handle.fd())))

    def __class_getitem__(cls, item: Any, /) -> types.GenericAlias:
        """``Queue[int]``, as the stdlib's (a ``types.GenericAlias``)."""
        return types.GenericAlias(cls, item)


class Queue(_Shared[_T]):
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
        self._used = False  # by a put or a get of this process: see empty()

    def _check_closed(self) -> None:
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")

    def put(self, obj: _T, block: bool = True, timeout: Optional[float] = None) -> None:
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
        self._used = True
        self._handle.put(obj, block, timeout)

    def put_nowait(self, obj: _T) -> None:
        """``put(obj, False)``: raise ``queue.Full`` at once if there is no room."""
        self.put(obj, False)

    def put_many(self, items: Iterable[_T], block: bool = True, timeout: Optional[float] = None) -> None:
        """Put items in order with one call into the core (gopool extension).

        The same as ``put()`` for each item, but faster. All items are
        pickled before any is put. On a bounded queue the items go in as
        room allows; if not all of them fit before the timeout, the first
        ones are in the queue and ``queue.Full`` is raised.
        """
        self._check_closed()
        self._used = True
        data = [dumps(obj) for obj in items]
        if data:
            self._handle.put_many(data, block, timeout)

    def get(self, block: bool = True, timeout: Optional[float] = None) -> _T:
        """Remove and return the oldest item.

        Wait up to timeout seconds (None: as long as it takes; block=False:
        not at all) for one, then raise ``queue.Empty``. Raises ValueError
        if the queue was closed in this process.
        """
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        self._used = True
        item: _T = self._handle.get(block, timeout)
        return item

    def get_nowait(self) -> _T:
        """``get(False)``: raise ``queue.Empty`` at once if there is no item."""
        return self.get(False)

    def get_many(self, max_items: int, timeout: Optional[float] = None) -> List[_T]:
        """Remove and return up to max_items items, oldest first, with one
        call into the core (gopool extension).

        Waits up to timeout seconds (None: as long as it takes; 0: not at
        all) for the first item, not for more: it returns the items that are
        in the queue then, at most max_items. Raises ``queue.Empty`` if none
        came in time.
        """
        self._check_closed()
        self._used = True
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, not {max_items}")
        return self._handle.get_many(max_items, timeout)

    def qsize(self) -> int:
        """The number of items in the queue (exact when called)."""
        return self._handle.size()

    def empty(self) -> bool:
        """Whether the queue has no item (exact when called).

        As the stdlib's (Python 3.13's rule): once this process has used
        the queue and closed it, ``OSError('handle is closed')``; a queue
        closed before any use still answers. ``qsize()`` and ``full()``
        answer after ``close()``, as the stdlib's do."""
        if self._closed and self._used:
            raise OSError("handle is closed")
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


class JoinableQueue(Queue[_T]):
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


class _Doorbell:
    """A pipe that holds one byte per item put and not yet claimed, so that
    a waitable SimpleQueue can be waited on with select() and
    ``multiprocessing.connection.wait()`` like the stdlib's, and exactly:
    the pipe is readable if and only if an item is there for the taking.
    A put writes its byte after storing its item; a get claims a byte
    before taking an item. (A stale "readable" would make the stdlib's
    executor block in ``recv()`` instead of watching its workers.)

    The pipe holds 64 KiB: a put that finds 65,536 items unclaimed waits
    for getters (until they have taken a page of them, 4,096), as the
    stdlib's SimpleQueue.put waits once its pipe holds 64 KiB of pickled
    items. (Not enlarged: large pipes count against the
    user's pipe quota, which would shrink every other pipe of the user.) A process killed between
    storing an item and writing its byte (or between claiming and taking)
    leaves that item unannounced: it is taken by the next claim.
    """

    def __init__(self, read_fd: int, write_fd: int):
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        self.read_fd, self.write_fd = read_fd, write_fd
        self.close = weakref.finalize(self, _close_fds, read_fd, write_fd)

    @classmethod
    def create(cls) -> "_Doorbell":
        return cls(*os.pipe())

    def announce(self) -> None:
        """Announce one item (stored already)."""
        while True:
            try:
                os.write(self.write_fd, b"\0")
                return
            except BlockingIOError:
                select.select([], [self.write_fd], [])

    def claim(self) -> None:
        """Claim one announced item, waiting for one as long as it takes."""
        while True:
            try:
                if os.read(self.read_fd, 1):
                    return
            except BlockingIOError:
                pass
            select.select([self.read_fd], [], [])

    def announced(self, timeout: Optional[float]) -> bool:
        """Whether an item is announced, waiting up to timeout seconds (None:
        as long as it takes) for one."""
        return bool(select.select([self.read_fd], [], [], timeout)[0])


def _close_fds(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class _QueueReader:
    """The ``_reader`` of a waitable SimpleQueue: what the stdlib's users of
    ``SimpleQueue._reader`` need of a connection (``fileno()`` for
    ``multiprocessing.connection.wait()``, ``poll()``, ``recv()``)."""

    def __init__(self, queue: "SimpleQueue[Any]", doorbell: _Doorbell):
        self._queue = queue
        self._doorbell = doorbell

    def fileno(self) -> int:
        self._queue._check_closed()
        return self._doorbell.read_fd

    def poll(self, timeout: Optional[float] = 0.0) -> bool:
        """Whether an item can be taken, waiting up to timeout seconds (None:
        as long as it takes) for one."""
        self._queue._check_closed()
        return self._doorbell.announced(None if timeout is None else max(timeout, 0.0))

    def recv(self) -> Any:
        """The next item (``SimpleQueue.get()``)."""
        return self._queue.get()

    def close(self) -> None:
        self._queue.close()

    @property
    def closed(self) -> bool:
        return self._queue._closed


def _rebuild_waitable(cls: Type[_SQ], fd: int, read_fd: int, write_fd: int) -> _SQ:
    obj = cls.__new__(cls)
    obj._setup(QueueHandle.open(fd), _Doorbell(read_fd, write_fd))
    return obj


class SimpleQueue(_Shared[_T]):
    """An unbounded process-shared FIFO queue with only ``put()``, ``get()``,
    ``empty()`` and ``close()`` (``multiprocessing.SimpleQueue``).

    After ``close()`` its methods raise ``OSError('handle is closed')``, as
    the stdlib's do. The same shared ring, crash safety and data-loss rule
    as Queue (see the module's documentation).

    The SimpleQueue of a gopool context (``gopool.get_context().
    SimpleQueue()``) can also be waited on as the stdlib's can: its
    ``_reader`` has ``fileno()``, ``poll()`` and ``recv()``, which
    ``concurrent.futures.ProcessPoolExecutor`` uses; it is ready exactly
    when an item is there for the taking. Each of its puts and gets costs a
    system call more, and a put waits once 65,536 items are waiting (the
    stdlib's waits once 64 KiB of them are).
    """

    def __init__(self, *, _ring_size: int = 0, _waitable: bool = False):
        self._setup(QueueHandle.create(0, _ring_size), _Doorbell.create() if _waitable else None)

    def _setup(self, handle: QueueHandle, doorbell: Optional[_Doorbell] = None) -> None:
        self._handle = handle
        self._closed = False
        self._doorbell = doorbell
        self._reader_view: Optional[_QueueReader] = None

    def __reduce__(self) -> Tuple[Callable[..., Any], Tuple[Any, ...]]:
        if self._doorbell is None:
            return super().__reduce__()
        _mp_context.assert_spawning(self)
        fds = (self._handle.fd(), self._doorbell.read_fd, self._doorbell.write_fd)
        return (_rebuild_waitable, (type(self), *(duplicate_for_child(fd) for fd in fds)))

    @property
    def _reader(self) -> _QueueReader:
        """A connection-like view for waiting on the queue (waitable queues
        only; AttributeError otherwise)."""
        if self._doorbell is None:
            raise AttributeError("_reader: only the SimpleQueue of a gopool context can be waited on")
        if self._reader_view is None:
            self._reader_view = _QueueReader(self, self._doorbell)
        return self._reader_view

    def _check_closed(self) -> None:
        if self._closed:
            raise OSError("handle is closed")

    def put(self, obj: _T) -> None:
        """Put obj into the queue (pickled here; never waits)."""
        self._check_closed()
        self._handle.put(obj, True, None)
        if self._doorbell is not None:
            self._doorbell.announce()

    def get(self) -> _T:
        """Remove and return the oldest item, waiting for one as long as it
        takes."""
        self._check_closed()
        if self._doorbell is not None:
            self._doorbell.claim()  # then the item is there: it was stored before it was announced
        item: _T = self._handle.get(True, None)
        return item

    def empty(self) -> bool:
        """Whether the queue has no item (exact when called)."""
        self._check_closed()
        return self._handle.size() == 0

    def close(self) -> None:
        """Stop using the queue in this process: later calls raise OSError.
        Items in the queue stay there for other processes. Idempotent."""
        self._closed = True
        if self._doorbell is not None:
            self._doorbell.close()
