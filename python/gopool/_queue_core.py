"""The queues' view of the Go core: queue ids, the buffers items cross in,
pickling, blocking in bounded slices, and error mapping.

An item crosses the binding through a per-thread shared buffer: a memory
file that Go maps and this module maps with :mod:`mmap`. A put writes the
pickle into the buffer and makes one Go call with integer arguments (queue,
buffer, length, timeout); a get makes one Go call and unpickles from the
buffer. So the cost of a put or a get is one Go call and one copy on each
side, whatever the item's size (gopy's ``[]byte`` would add a Go allocation,
a copy and a handle per call). The core's API is ``pybind/queue.go``.
"""

from __future__ import annotations

import copyreg
import io
import mmap
import os
import pickle
import struct
import threading
import time
import weakref
from collections import ChainMap
from multiprocessing.reduction import ForkingPickler
from queue import Empty, Full
from typing import Any, List, Optional

from gopool import _serialize as ser
from gopool._core import SLICE_MS, _translate, check_not_forked

PROTOCOL = pickle.HIGHEST_PROTOCOL
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")

# A bytes object of at least this size is pickled straight into the buffer,
# as pickle.dumps(obj, 5) would: PROTO 5, BINBYTES <len>, payload, MEMOIZE,
# STOP (protocol 5 frames only what is smaller than 64 KiB).
_DIRECT_BYTES = 1 << 16
_BYTES_HEAD = b"\x80\x05B"
_BYTES_TAIL = b"\x94."

DEFAULT_BUFFER = 1 << 20  # a thread's buffer: memory is used only as far as written
KEEP_BUFFER = 16 << 20  # a larger buffer is dropped after use

# Messages of the core's errors (gopool/queue_shm.go).
_TOO_LARGE = "queue: item too large"
_RING_FULL = "queue: shared memory ring is full"
_TASK_DONE = "queue: task_done() called too many times"


_LIB = None


def _lib():
    """The binding's functions (imported on first use: it starts Go)."""
    global _LIB
    if _LIB is None:
        from gopool import _native

        _LIB = _Functions(_native)
    return _LIB


class _Functions:
    """The core's queue functions: the extension's own entry points where
    they exist (one Python call less than the generated wrappers, which
    only forward their arguments), else the wrappers."""

    def __init__(self, native):
        for name in dir(native.lib):
            if name.startswith(("Queue", "Buffer")):
                raw = getattr(native._ext, "pybind_" + name, None)
                setattr(self, name, raw if raw is not None else getattr(native.lib, name))


_forked = False


def _mark_forked() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_mark_forked)


# -- pickling ------------------------------------------------------------------

# Types whose pickle cannot hold anything that needs the stdlib's process
# reducers or cloudpickle: pickled at once.
_PLAIN = frozenset({int, float, complex, str, bytes, bytearray, bool, type(None)})


_REDUCERS = ForkingPickler._extra_reducers


class _Pickler(pickle.Pickler):
    """pickle with the reducers of multiprocessing's ForkingPickler (the
    stdlib's queues use them: connections, sockets...)."""

    dispatch_table = ChainMap(_REDUCERS, copyreg.dispatch_table)


def dumps(obj: Any) -> bytes:
    """Pickle an item the way gopool sends anything to another process:
    plain pickle with the stdlib's process reducers, and cloudpickle for what
    pickle cannot send by reference (lambdas, classes defined in
    ``__main__``, which the receiving process may not have)."""
    if type(obj) in _PLAIN:
        return pickle.dumps(obj, PROTOCOL)
    buffer = io.BytesIO()
    try:
        _Pickler(buffer, PROTOCOL).dump(obj)
    except Exception:
        return ser.dumps(obj, _REDUCERS)
    data = buffer.getvalue()
    if b"__main__" in data:
        return ser.dumps(obj, _REDUCERS)
    return data


loads = pickle.loads


# -- buffers -------------------------------------------------------------------


class _Buffer:
    """A shared buffer of the core, mapped here too."""

    __slots__ = ("id", "size", "view", "busy", "__weakref__")

    def __init__(self, size: int):
        lib = _lib()
        self.id = _call(lib.BufferNew, size)
        try:
            mapping = mmap.mmap(_call(lib.BufferFd, self.id), size)
        except BaseException:
            _release_buffer(self.id, None, None)
            raise
        self.size = size
        self.view = memoryview(mapping)
        self.busy = False
        weakref.finalize(self, _release_buffer, self.id, mapping, self.view)


def _release_buffer(buffer_id: int, mapping: Optional[mmap.mmap], view: Optional[memoryview]) -> None:
    from gopool._core import in_forked_child

    if view is not None:
        view.release()
    if mapping is not None:
        mapping.close()
    if not in_forked_child():
        try:
            _lib().BufferRelease(buffer_id)
        except Exception:
            pass


_local = threading.local()


def _take_buffer(size: int) -> _Buffer:
    """This thread's buffer, marked busy, with room for size bytes."""
    try:
        buf = _local.buffer
    except AttributeError:
        buf = None
    if buf is None or buf.busy or buf.size < size:
        buf = _new_buffer(size, buf)
    buf.busy = True
    return buf


def _new_buffer(size: int, current: Optional[_Buffer]) -> _Buffer:
    """A buffer of at least size bytes. It becomes this thread's buffer
    unless the thread's is busy (a signal handler, or code run by an
    unpickler, using a queue while this thread is in the middle of an
    operation): then it is a temporary one."""
    capacity = DEFAULT_BUFFER
    while capacity < size:
        capacity <<= 1
    buf = _Buffer(capacity)
    if current is None or not current.busy:
        _local.buffer = buf if capacity <= KEEP_BUFFER else None
    return buf


# -- calls ---------------------------------------------------------------------


def _call(func, *args):
    try:
        return func(*args)
    except RuntimeError as exc:
        raise _error(exc) from None


def _error(exc: RuntimeError) -> Exception:
    message = str(exc)
    if message.startswith(_TASK_DONE):
        return ValueError("task_done() called too many times")
    if message.startswith(_RING_FULL):
        return MemoryError(
            "the queue's shared memory is full: an unbounded queue holds at most about "
            "its ring size in pickled bytes (1 GiB by default); take items out, or use a "
            "bounded queue (maxsize) so that put() waits instead"
        )
    if message.startswith(("memfd_create", "mmap", "fcntl", "queue: descriptor")):
        return OSError(message)
    return _translate(exc)


def _slices(block: bool, timeout: Optional[float]):
    """The timeouts (ms) of successive calls into Go for a blocking
    operation: SLICE_MS each while blocking without timeout, then what is
    left of the timeout; a single 0 for a non-blocking one."""
    if not block:
        yield 0
        return
    if timeout is None:
        while True:
            yield SLICE_MS
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        left = deadline - time.monotonic()
        yield min(max(int(left * 1000 + 0.999), 0), SLICE_MS)
        if left <= 0:
            return


class QueueHandle:
    """A queue of the core, mapped in this process; released when garbage."""

    __slots__ = ("id", "maxsize", "__weakref__")

    def __init__(self, queue_id: int):
        self.id = queue_id
        self.maxsize = int(_call(_lib().QueueMaxItems, queue_id))
        weakref.finalize(self, _release_queue, queue_id)

    @classmethod
    def create(cls, maxsize: int, ring_size: int = 0) -> "QueueHandle":
        check_not_forked()
        return cls(_call(_lib().QueueNew, maxsize, ring_size))

    @classmethod
    def open(cls, fd: int) -> "QueueHandle":
        """Map the queue whose memory file is the inherited descriptor fd."""
        check_not_forked()
        return cls(_call(_lib().QueueOpen, fd))

    def fd(self) -> int:
        check_not_forked()
        return int(_call(_lib().QueueFd, self.id))

    def size(self) -> int:
        check_not_forked()
        return int(_call(_lib().QueueLen, self.id))

    def max_item_size(self) -> int:
        check_not_forked()
        return int(_call(_lib().QueueMaxItemSize, self.id))

    # -- put -------------------------------------------------------------------

    def put(self, obj: Any, block: bool, timeout: Optional[float]) -> None:
        """Pickle obj and put it; queue.Full if it does not fit in time."""
        if _forked:
            check_not_forked()
        kind = type(obj)
        if kind is bytes and len(obj) >= _DIRECT_BYTES:
            self._put_bytes_direct(obj, block, timeout)
            return
        data = pickle.dumps(obj, PROTOCOL) if kind in _PLAIN else dumps(obj)
        n = len(data)
        try:
            buf = _local.buffer
        except AttributeError:
            buf = None
        if buf is None or buf.busy or buf.size < n:
            buf = _new_buffer(n, buf)
        buf.busy = True
        try:
            buf.view[:n] = data
            self._put_filled(buf, n, block, timeout)
        finally:
            buf.busy = False

    def _put_bytes_direct(self, obj: bytes, block: bool, timeout: Optional[float]) -> None:
        """Put a large bytes object, pickling it straight into the buffer:
        the bytes pickle.dumps would make, without its copy."""
        n = len(obj)
        total = len(_BYTES_HEAD) + 4 + n + len(_BYTES_TAIL)
        buf = _take_buffer(total)
        try:
            view = buf.view
            view[: len(_BYTES_HEAD)] = _BYTES_HEAD
            _U32.pack_into(view, len(_BYTES_HEAD), n)
            start = len(_BYTES_HEAD) + 4
            view[start : start + n] = obj
            view[start + n : total] = _BYTES_TAIL
            self._put_filled(buf, total, block, timeout)
        finally:
            buf.busy = False

    def _put_filled(self, buf: _Buffer, n: int, block: bool, timeout: Optional[float]) -> None:
        """Put the n bytes already written to buf, waiting as put() says."""
        try:
            if not _LIB.QueuePut(self.id, buf.id, n, 0):
                self._put_wait(buf, n, block, timeout)
        except RuntimeError as exc:
            raise self._put_error(exc, n) from None

    def _put_wait(self, buf: _Buffer, n: int, block: bool, timeout: Optional[float]) -> None:
        """Retry a put that found the queue full, in slices, until timeout."""
        put = _LIB.QueuePut
        for ms in _slices(block, timeout):
            if ms and put(self.id, buf.id, n, ms):
                return
        raise Full

    def put_many(self, items: List[bytes], block: bool, timeout: Optional[float]) -> None:
        """Put pickled items in order; queue.Full if they do not all fit in
        time (those before the first that did not fit are in the queue)."""
        check_not_forked()
        total = 8 * len(items) + sum(map(len, items))
        buf = _take_buffer(total)
        try:
            view, pos = buf.view, 0
            pack = _U64.pack_into
            for data in items:
                n = len(data)
                pack(view, pos, n)
                view[pos + 8 : pos + 8 + n] = data
                pos += 8 + n
            put_many = _LIB.QueuePutMany
            try:
                done = put_many(self.id, buf.id, 0, total, 0)
                if done == total:
                    return
                for ms in _slices(block, timeout):
                    if ms:
                        done += put_many(self.id, buf.id, done, total, ms)
                        if done == total:
                            return
            except RuntimeError as exc:
                raise self._put_error(exc, max(map(len, items))) from None
        finally:
            buf.busy = False
        raise Full

    def _put_error(self, exc: RuntimeError, n: int) -> Exception:
        if str(exc).startswith(_TOO_LARGE):
            return ValueError(
                f"the item is too large for the queue: {n} bytes pickled, "
                f"at most {self.max_item_size()} bytes"
            )
        return _error(exc)

    # -- get -------------------------------------------------------------------

    def get(self, block: bool, timeout: Optional[float]) -> Any:
        """Take one item and unpickle it; queue.Empty if none comes in time."""
        if _forked:
            check_not_forked()
        if not block:
            ms = 0
        elif timeout is None:
            ms = SLICE_MS
        else:
            return self._get_slow(-1, block, timeout)
        try:
            buf = _local.buffer
        except AttributeError:
            buf = None
        if buf is None or buf.busy:
            buf = _new_buffer(0, buf)
        buf.busy = True
        try:
            n = _LIB.QueueGet(self.id, buf.id, ms)
            if n >= 0:
                return loads(buf.view[:n])
        except RuntimeError as exc:
            raise _error(exc) from None
        finally:
            buf.busy = False
        if n == -1 and not block:
            raise Empty
        return self._get_slow(n, block, timeout)

    def _get_slow(self, n: int, block: bool, timeout: Optional[float]) -> Any:
        """get() with a timeout, or after a first attempt found no item (n ==
        -1) or a buffer too small (n < -1)."""
        get = _LIB.QueueGet
        slices = _slices(block, timeout)
        size = 0
        while True:
            if n < -1:
                size = -n - 1  # the next item needs a larger buffer
            buf = _take_buffer(size)
            try:
                try:
                    n = get(self.id, buf.id, 0)
                    if n == -1:
                        for ms in slices:
                            if ms:
                                n = get(self.id, buf.id, ms)
                                if n != -1:
                                    break
                except RuntimeError as exc:
                    raise _error(exc) from None
                if n >= 0:
                    return loads(buf.view[:n])
            finally:
                buf.busy = False
            if n == -1:
                raise Empty

    def get_many(self, max_items: int, timeout: Optional[float]) -> List[Any]:
        """Take up to max_items items that are in the queue, waiting up to
        timeout (None: as long as it takes) for the first."""
        check_not_forked()
        get_many = _LIB.QueueGetMany
        slices = _slices(timeout != 0, timeout)
        size = 0
        while True:
            buf = _take_buffer(size)
            try:
                try:
                    n = get_many(self.id, buf.id, max_items, 0)
                    if n == -1:
                        for ms in slices:
                            if ms:
                                n = get_many(self.id, buf.id, max_items, ms)
                                if n != -1:
                                    break
                except RuntimeError as exc:
                    raise _error(exc) from None
                if n >= 0:
                    return _decode_records(buf.view, n)
            finally:
                buf.busy = False
            if n == -1:
                raise Empty
            size = -n - 1

    # -- JoinableQueue ---------------------------------------------------------

    def task_done(self) -> None:
        check_not_forked()
        _call(_lib().QueueTaskDone, self.id)

    def join(self, timeout: Optional[float] = None) -> bool:
        check_not_forked()
        join = _lib().QueueJoin
        for ms in _slices(True, timeout):
            if _call(join, self.id, ms):
                return True
        return False

    def unfinished(self) -> int:
        check_not_forked()
        return int(_call(_lib().QueueUnfinished, self.id))


def _decode_records(view: memoryview, n: int) -> List[Any]:
    items = []
    pos = 0
    unpack = _U64.unpack_from
    while pos < n:
        (length,) = unpack(view, pos)
        pos += 8
        items.append(loads(view[pos : pos + length]))
        pos += length
    return items


def _release_queue(queue_id: int) -> None:
    from gopool._core import in_forked_child

    if not in_forked_child():
        try:
            _lib().QueueRelease(queue_id)
        except Exception:
            pass
