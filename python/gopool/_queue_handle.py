"""The queues' view of the Go core: a queue id, and items that cross in this
thread's shared buffer (see ``gopool._binding``).

A put writes the pickle into the buffer and makes one Go call with integer
arguments (queue, buffer, length, timeout); a get makes one Go call and
unpickles from the buffer. So a put or a get costs one Go call and one copy
on each side, whatever the item's size. The core's API is
``pybind/queue.go``; results of its blocking calls: put returns what it put
(0 when the queue stayed full), get the number of bytes of the item, -1
when the queue stayed empty, or -(need+1) when the item needs a larger
buffer. Waiting for a queue lock is not waiting for room or items: when a
live process held the lock longer than the core waits for it, the call
fails with CODE_LOCK_BUSY and is made again (``_unbusy``), so that
``queue.Full`` and ``queue.Empty`` mean full and empty, also for
``put_nowait()`` and ``get_nowait()``.
"""

from __future__ import annotations

import pickle
import struct
import weakref
from queue import Empty, Full
from typing import Any, Callable, List, Optional

from gopool import _binding as core
from gopool import _serialize as ser
from gopool import _wire
from gopool._binding import Buffer, SLICE_MS, _local, call, check_not_forked, lib, slices, take_buffer

PROTOCOL = ser.PROTOCOL
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")

# A bytes object of at least this size is pickled straight into the buffer,
# as pickle.dumps(obj, 5) would: PROTO 5, BINBYTES <len>, payload, MEMOIZE,
# STOP (protocol 5 frames only what is smaller than 64 KiB).
_DIRECT_BYTES = 1 << 16
_BYTES_HEAD = b"\x80\x05B"
_BYTES_TAIL = b"\x94."

_PLAIN = ser._PLAIN
dumps = ser.dumps_item
loads = pickle.loads


def _error(exc: BaseException) -> BaseException:
    """The queue's own messages for the core's queue errors."""
    if core.has_code(exc, _wire.CODE_TASK_DONE):
        return ValueError("task_done() called too many times")
    if core.has_code(exc, _wire.CODE_RING_FULL):
        return MemoryError(
            "the queue's shared memory is full: an unbounded queue holds at most about "
            "its ring size in pickled bytes (1 GiB by default); take items out, or use a "
            "bounded queue (maxsize) so that put() waits instead"
        )
    return exc


_BUSY = f"E{_wire.CODE_LOCK_BUSY}: "


def _unbusy(func: Callable[..., Any], *args: Any) -> Any:
    """func(*args), a queue call whose last argument is its timeout (ms),
    called again with timeout 0 for as long as the core reports that a live
    process held the queue's lock for too long (stopped, or copying a huge
    item): that is neither full nor empty. Signals are handled between
    the calls."""
    while True:
        try:
            return func(*args)
        except RuntimeError as exc:
            if not str(exc).startswith(_BUSY):
                raise
        args = args[:-1] + (0,)


def _qcall(func: Callable[..., Any], *args: Any) -> Any:
    try:
        return call(func, *args)
    except Exception as exc:
        raise _error(exc) from None


class QueueHandle:
    """A queue of the core, mapped in this process; released when garbage."""

    __slots__ = ("id", "maxsize", "__weakref__")

    def __init__(self, queue_id: int):
        self.id = queue_id
        self.maxsize = int(_qcall(lib.QueueMaxItems, queue_id))
        weakref.finalize(self, _release_queue, queue_id)

    @classmethod
    def create(cls, maxsize: int, ring_size: int = 0) -> "QueueHandle":
        check_not_forked()
        return cls(_qcall(lib.QueueNew, maxsize, ring_size))

    @classmethod
    def open(cls, fd: int) -> "QueueHandle":
        """Map the queue whose memory file is the inherited descriptor fd."""
        check_not_forked()
        return cls(_qcall(lib.QueueOpen, fd))

    def fd(self) -> int:
        check_not_forked()
        return int(_qcall(lib.QueueFd, self.id))

    def size(self) -> int:
        check_not_forked()
        return int(_qcall(lib.QueueLen, self.id))

    def max_item_size(self) -> int:
        check_not_forked()
        return int(_qcall(lib.QueueMaxItemSize, self.id))

    # -- put -------------------------------------------------------------------

    def put(self, obj: Any, block: bool, timeout: Optional[float]) -> None:
        """Pickle obj and put it; queue.Full if it does not fit in time."""
        # The hot path of every put: checks and calls kept inline.
        if core._forked_child:
            check_not_forked()
        kind = type(obj)
        if kind is bytes and len(obj) >= _DIRECT_BYTES:
            self._put_bytes_direct(obj, block, timeout)
            return
        data = pickle.dumps(obj, PROTOCOL) if kind in _PLAIN else dumps(obj)
        n = len(data)
        if n > _MAX_CHECKED:
            self._check_size(n)
        buf = getattr(_local, "buffer", None)
        if buf is None or buf.busy or buf.size < n:
            buf = take_buffer(n)
        buf.busy = True
        try:
            buf.view[:n] = data
            try:
                if lib.QueuePut(self.id, buf.id, n, 0):
                    return
            except RuntimeError:
                pass  # a busy lock, or an error: the slow path tells
            self._put_filled(buf, n, block, timeout)
        finally:
            buf.busy = False

    def _put_bytes_direct(self, obj: bytes, block: bool, timeout: Optional[float]) -> None:
        """Put a large bytes object, pickling it straight into the buffer:
        the bytes pickle.dumps would make, without its copy."""
        n = len(obj)
        total = len(_BYTES_HEAD) + 4 + n + len(_BYTES_TAIL)
        self._check_size(total)
        buf = take_buffer(total)
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

    def _check_size(self, n: int) -> None:
        """Refuse an item that can never fit before copying it anywhere."""
        if n > _MAX_CHECKED and n > self.max_item_size():
            raise self._too_large(n)

    def _put_filled(self, buf: Buffer, n: int, block: bool, timeout: Optional[float]) -> None:
        """Put the n bytes already written to buf, waiting as put() says."""
        put = lib.QueuePut
        try:
            try:
                if put(self.id, buf.id, n, 0):
                    return
            except RuntimeError as exc:
                if not str(exc).startswith(_BUSY):
                    raise
                if _unbusy(put, self.id, buf.id, n, 0):
                    return
            for ms in slices(block, timeout):
                if ms and _unbusy(put, self.id, buf.id, n, ms):
                    return
        except RuntimeError as exc:
            raise self._put_error(exc, n) from None
        raise Full

    def put_many(self, items: List[bytes], block: bool, timeout: Optional[float]) -> None:
        """Put pickled items in order; queue.Full if they do not all fit in
        time (those before the first that did not fit are in the queue)."""
        check_not_forked()
        total = 8 * len(items) + sum(map(len, items))
        buf = take_buffer(total)
        try:
            view, pos = buf.view, 0
            pack = _U64.pack_into
            for data in items:
                n = len(data)
                pack(view, pos, n)
                view[pos + 8 : pos + 8 + n] = data
                pos += 8 + n
            put_many = lib.QueuePutMany
            try:
                done = _unbusy(put_many, self.id, buf.id, 0, total, 0)
                if done == total:
                    return
                for ms in slices(block, timeout):
                    if ms:
                        done += _unbusy(put_many, self.id, buf.id, done, total, ms)
                        if done == total:
                            return
                # Out of time: what fits now goes in (a call may stop early
                # when a lock is busy: only one that puts nothing means full).
                while True:
                    got = _unbusy(put_many, self.id, buf.id, done, total, 0)
                    if not got:
                        break
                    done += got
                    if done == total:
                        return
            except RuntimeError as exc:
                raise self._put_error(exc, max(map(len, items))) from None
        finally:
            buf.busy = False
        raise Full

    def _put_error(self, exc: RuntimeError, n: int) -> BaseException:
        error = core.translate(exc)
        if core.has_code(error, _wire.CODE_ITEM_TOO_LARGE):
            return self._too_large(n)
        return _error(error)

    def _too_large(self, n: int) -> ValueError:
        return ValueError(
            f"the item is too large for the queue: {n} bytes pickled, "
            f"at most {self.max_item_size()} bytes"
        )

    # -- get -------------------------------------------------------------------

    def get(self, block: bool, timeout: Optional[float]) -> Any:
        """Take one item and unpickle it; queue.Empty if none comes in time."""
        if core._forked_child:
            check_not_forked()
        if not block:
            ms = 0
        elif timeout is None:
            ms = SLICE_MS
        else:
            return self._get_slow(-1, block, timeout)
        buf = getattr(_local, "buffer", None)
        if buf is None or buf.busy:
            buf = take_buffer()
        buf.busy = True
        try:
            try:
                n = lib.QueueGet(self.id, buf.id, ms)
            except RuntimeError as exc:
                if not str(exc).startswith(_BUSY):
                    raise
                n = _unbusy(lib.QueueGet, self.id, buf.id, 0)
            if n >= 0:
                return loads(buf.view[:n])
        except RuntimeError as exc:
            raise _error(core.translate(exc)) from None
        finally:
            buf.busy = False
        if n == -1 and not block:
            raise Empty
        return self._get_slow(n, block, timeout)

    def _get_slow(self, n: int, block: bool, timeout: Optional[float]) -> Any:
        """get() with a timeout, or after a first attempt found no item (n ==
        -1) or a buffer too small (n < -1)."""
        get = lib.QueueGet
        waits = slices(block, timeout)
        size = 0
        while True:
            if n < -1:
                size = core.need_from(n)  # the next item needs a larger buffer
            buf = take_buffer(size)
            try:
                try:
                    n = _unbusy(get, self.id, buf.id, 0)
                    if n == -1:
                        for ms in waits:
                            if ms:
                                n = _unbusy(get, self.id, buf.id, ms)
                                if n != -1:
                                    break
                except RuntimeError as exc:
                    raise _error(core.translate(exc)) from None
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
        get_many = lib.QueueGetMany
        waits = slices(timeout != 0, timeout)
        size = 0
        while True:
            buf = take_buffer(size)
            try:
                try:
                    n = _unbusy(get_many, self.id, buf.id, max_items, 0)
                    if n == -1:
                        for ms in waits:
                            if ms:
                                n = _unbusy(get_many, self.id, buf.id, max_items, ms)
                                if n != -1:
                                    break
                except RuntimeError as exc:
                    raise _error(core.translate(exc)) from None
                if n >= 0:
                    return _decode_records(buf.view, n)
            finally:
                buf.busy = False
            if n == -1:
                raise Empty
            size = core.need_from(n)

    # -- JoinableQueue ---------------------------------------------------------

    def task_done(self) -> None:
        check_not_forked()
        _qcall(lib.QueueTaskDone, self.id)

    def join(self, timeout: Optional[float] = None) -> bool:
        check_not_forked()
        join = lib.QueueJoin
        return bool(core.wait_until(lambda ms: _qcall(join, self.id, ms), timeout))

    def unfinished(self) -> int:
        check_not_forked()
        return int(_qcall(lib.QueueUnfinished, self.id))


# Items up to this size are not checked against the queue's largest item
# before they are copied (every ring holds them): one call less per put.
_MAX_CHECKED = 1 << 20


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
    if not core.in_forked_child():
        try:
            lib.QueueRelease(queue_id)
        except Exception:
            pass
