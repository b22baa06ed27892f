"""The process backend: a Pool's view of the Go core (see ``_backend``).

Tasks are pickled here and cross into the core through this thread's shared
buffer (records, see pybind/wire.go); results come back through the same
buffer, written there by the core from the workers' channels, and are
unpickled here.
"""

from __future__ import annotations

import os
import struct
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from gopool import _binding as core
from gopool import _serialize as ser
from gopool import _spawning, _wire
from gopool._backend import NO_LIMITS, Entry, JobEntries, TimeLimits, WorkerRow
from gopool._errors import (
    BrokenPoolError,
    CancelledError,
    PoolTerminatedError,
    TimeoutError,
    WorkerLostError,
)

_REPLY = struct.Struct(_wire.REPLY_HEADER_FORMAT)
_RESULT = struct.Struct(_wire.RESULT_HEADER_FORMAT)
_JOB = struct.Struct(_wire.JOB_HEADER_FORMAT)
_WORKER = struct.Struct(_wire.WORKER_RECORD_FORMAT)
_RECORD = struct.Struct(_wire.RECORD_HEADER_FORMAT)
_JOB_ID = struct.Struct("<q")  # PoolRun's reply starts with the job

# A task as the process backend encodes it: the pickled function, and the
# pickled (arguments, keywords, mode) followed by the large arguments taken
# out of it (none, unless the arguments hold large buffers: see
# ser.split_large); the worker gets them as records (ser.pack's format),
# each one a bytes object of its own (gopool._channel).
Task = Tuple[bytes, List[bytes]]

# A task at least this large crosses as parts (core.go_bytes, one copy
# each into Go) instead of through the thread's buffer (two copies).
_BIG_TASK = ser.BIG_PART


def encode_init(initializer: Optional[Callable[..., Any]], initargs: Sequence[Any],
                max_memory: Optional[int] = None) -> Tuple[bytes, List[int]]:
    """The init message of a pool's workers, and the descriptors they
    inherit (for queues, locks and events among the initializer's arguments)."""
    spawning = _spawning.Spawning()
    blob = ser.pack(worker_settings(max_memory), spawning.dumps((initializer, tuple(initargs))))
    return blob, spawning.fds


def worker_settings(max_memory: Optional[int], main: bool = True) -> bytes:
    """The first part of a worker's init message: the preparation a
    gopool.Process child gets too (the authkey, which a Manager's proxy
    passed as an argument authenticates with; sys.path and argv; the start
    method; where ``__main__`` comes from, unless main is false) and the
    memory limit."""
    preparation = _spawning.preparation()
    if not main:
        preparation["main"] = None
    return ser.dumps({"preparation": preparation, "max_memory": max_memory})


class FunctionEncoder:
    """Pickles task functions, reusing the bytes of plain functions and
    builtins.

    A function sent by value (defined in ``__main__``, a notebook, a lambda)
    is captured the first time it is sent, with the globals it refers to at
    that moment; later changes to those globals in the parent are not seen by
    workers. That is the stdlib's rule too: spawned workers import their own
    ``__main__``, forked ones see the globals as they were at the fork.
    """

    _MAX = 256

    def __init__(self) -> None:
        self._cache: Dict[int, Tuple[Callable[..., Any], bytes]] = {}

    def encode(self, func: Callable[..., Any]) -> bytes:
        hit = self._cache.get(id(func))
        if hit is not None and hit[0] is func:
            return hit[1]
        data = ser.dumps(func)
        if isinstance(func, _CACHEABLE):
            if len(self._cache) >= self._MAX:
                self._cache.clear()
            self._cache[id(func)] = (func, data)
        return data


_CACHEABLE = (type(len), type(encode_init))  # builtins and plain functions


_MAX_PENDING_ACKS = 8


def _millis(seconds: Optional[float]) -> int:
    """A time limit in whole milliseconds (at least 1), 0 for none."""
    if seconds is None:
        return 0
    return max(1, int(seconds * 1000 + 0.5))


class ProcessBackend:
    """Worker processes run by the Go core."""

    def __init__(self, processes: int, initializer: Optional[Callable[..., Any]], initargs: Sequence[Any],
                 maxtasksperchild: Optional[int], max_memory_per_child: Optional[int] = None):
        core.check_not_forked()
        self._functions = FunctionEncoder()
        argv, zygote, entry = _spawning.start_arguments("gopool._worker")
        init, fds = encode_init(initializer, initargs, max_memory_per_child)
        with core.go_bytes(argv, zygote, _spawning.environment(), init, _spawning.pack_fds(fds)) as go:
            argv_h, zygote_h, env_h, init_h, fds_h = go
            self._id = core.call(
                core.lib.PoolNew,
                processes,
                maxtasksperchild or 0,
                argv_h,
                zygote_h,
                entry,
                env_h,
                os.getcwd(),
                init_h,
                fds_h,
                0,  # the core's grace between SIGTERM and SIGKILL
                True,  # workers in a process group of their own: Ctrl-C is the parent's
            )
        self._released = False
        self._acks: List[Tuple[int, int]] = []  # (job, handled) not yet sent

    # -- tasks ---------------------------------------------------------------

    def encode(self, func: Callable[..., Any], args: Any, kwds: Any, mode: int) -> Task:
        return self._functions.encode(func), _dumps_call(args, kwds, mode)

    def iter_encode(self, func: Callable[..., Any], arg_list: Iterable[Any], mode: int) -> Iterator[Task]:
        func_bytes = self._functions.encode(func)
        return ((func_bytes, _dumps_call(args, None, mode)) for args in arg_list)

    def submit(self, job: int, tasks: Sequence[Task], *, seal: bool, notify: bool = False,
               limits: TimeLimits = NO_LIMITS) -> int:
        core.check_not_forked()
        flags = _wire.SUBMIT_NOTIFY if notify else 0
        hard, soft = _millis(limits.hard), _millis(limits.soft)
        small: List[Task] = []
        for i, task in enumerate(tasks):
            if _task_size(task) < _BIG_TASK:
                small.append(task)
                continue
            if small:
                job = self._submit_records(job, small, flags, hard, soft)
                small = []
            last = seal and i == len(tasks) - 1
            job = self._submit_parts(job, task, flags | (_wire.SUBMIT_SEAL if last else 0), hard, soft)
        if small or not tasks or (seal and _task_size(tasks[-1]) < _BIG_TASK):
            job = self._submit_records(job, small, flags | (_wire.SUBMIT_SEAL if seal else 0), hard, soft)
        return job

    def _submit_records(self, job: int, tasks: Sequence[Task], flags: int, hard: int, soft: int) -> int:
        buf = _write_records(tasks)
        try:
            submitted: int = core.call(core.lib.PoolSubmit, self._id, job, flags, hard, soft, buf.id, buf.used)
            return submitted
        finally:
            buf.busy = False

    def _submit_parts(self, job: int, task: Task, flags: int, hard: int, soft: int) -> int:
        func, parts = task
        pieces = [_RECORD.pack(len(func)) + func]
        for part in parts:
            pieces += [_RECORD.pack(len(part)), part]
        builder = core.call(core.lib.TaskNew)
        try:
            for part in pieces:
                with core.go_bytes(part) as (handle,):
                    core.call(core.lib.TaskAppend, builder, handle)
        except BaseException:
            core.call(core.lib.TaskDrop, builder)
            raise
        submitted: int = core.call(core.lib.PoolSubmitTask, self._id, job, flags, hard, soft, builder)
        return submitted

    def run(self, task: Task, limits: TimeLimits = NO_LIMITS) -> Tuple[int, List[Entry], bool]:
        core.check_not_forked()
        if _task_size(task) >= _BIG_TASK:
            job = self.submit(0, (task,), seal=True, limits=limits)
            del task  # the core has its copy
            entries, done = self.collect(job, 0, core.SLICE_MS)
            return job, entries, done
        buf = _write_records((task,))
        try:
            ack_job, ack_handled = self._pending_ack()
            n = core.call(core.lib.PoolRun, self._id, _millis(limits.hard), _millis(limits.soft), buf.id, buf.used,
                          core.SLICE_MS, ack_job, ack_handled)
            (job,) = _JOB_ID.unpack_from(buf.view)
            if n < 0:  # the result needs a larger buffer: collect it
                buf.busy = False
                entries, done = self.collect(job, 0, 0)
                return job, entries, done
            entries, done = _decode_reply(buf.view, _JOB_ID.size)
            return job, entries, done
        finally:
            buf.busy = False

    def collect(self, job: int, handled: int, timeout_ms: int) -> Tuple[List[Entry], bool]:
        core.check_not_forked()
        size = 0
        while True:
            buf = core.take_buffer(size)
            try:
                ack_job, ack_handled = self._pending_ack()
                n = core.call(core.lib.PoolCollect, self._id, job, handled, buf.id, min(timeout_ms, core.SLICE_MS),
                              ack_job, ack_handled)
                if n >= 0:
                    return _decode_reply(buf.view, 0)
            finally:
                buf.busy = False
            size = core.need_from(n)

    def ack(self, job: int, handled: int) -> None:
        """The last acknowledgement of a job rides on the next collect or
        run (a call less per result); a few are kept at most."""
        self._acks.append((job, handled))
        if len(self._acks) > _MAX_PENDING_ACKS:
            self._flush_acks()

    def _pending_ack(self) -> Tuple[int, int]:
        try:
            return self._acks.pop()  # atomic: threads may collect at once
        except IndexError:
            return 0, 0

    def _flush_acks(self) -> None:
        while not core.in_forked_child() and not self._released:
            job, handled = self._pending_ack()
            if job == 0:
                return
            core.call(core.lib.PoolAck, self._id, job, handled)

    def collect_notified(self, ack: bool, timeout_ms: int) -> List[JobEntries]:
        core.check_not_forked()
        size = 0
        while True:
            buf = core.take_buffer(size)
            try:
                n = core.call(core.lib.PoolCollectNotified, self._id, ack, buf.id, min(timeout_ms, core.SLICE_MS))
                if n >= 0:
                    return _decode_notified(buf.view)
            finally:
                buf.busy = False
            size, ack = core.need_from(n), False

    def notify(self, job: int, handled: int) -> None:
        core.check_not_forked()
        core.call(core.lib.PoolNotify, self._id, job, handled)

    def cancel(self, job: int) -> int:
        core.check_not_forked()
        return int(core.call(core.lib.PoolCancel, self._id, job))

    def cancel_pending(self, job: int) -> int:
        """Cancel the job's tasks that have not begun; running ones go on."""
        core.check_not_forked()
        return int(core.call(core.lib.PoolCancelPending, self._id, job))

    def discard(self, job: int) -> None:
        if core.in_forked_child() or self._released:
            return
        core.call(core.lib.PoolDiscard, self._id, job)

    # -- life cycle ----------------------------------------------------------

    def close(self) -> None:
        core.check_not_forked()
        core.call(core.lib.PoolClose, self._id)

    def terminate(self) -> None:
        core.check_not_forked()
        core.call(core.lib.PoolTerminate, self._id)

    def join(self, timeout_ms: int) -> bool:
        core.check_not_forked()
        return bool(core.call(core.lib.PoolJoin, self._id, min(timeout_ms, core.SLICE_MS)))

    def release(self) -> None:
        if self._released or core.in_forked_child():
            return
        self._released = True
        core.call(core.lib.PoolRelease, self._id)

    # -- introspection -------------------------------------------------------

    def workers(self) -> List[WorkerRow]:
        core.check_not_forked()
        size = 0
        while True:
            buf = core.take_buffer(size)
            try:
                n = core.call(core.lib.PoolWorkers, self._id, buf.id)
                if n >= 0:
                    count, _ = _REPLY.unpack_from(buf.view)
                    return [_WORKER.unpack_from(buf.view, _REPLY.size + i * _WORKER.size) for i in range(count)]
            finally:
                buf.busy = False
            size = core.need_from(n)

    def queued(self) -> int:
        core.check_not_forked()
        return int(core.call(core.lib.PoolQueued, self._id))


def _dumps_call(args: Any, kwds: Any, mode: int) -> List[bytes]:
    """The pickle of a call, followed by its large arguments if its
    arguments (or a map chunk's items) hold large buffers."""
    call = (args, kwds, mode)
    if ser.holds_big_buffer(args) or (kwds and ser.holds_big_buffer(kwds)):
        return ser.split_large(call)
    return [ser.dumps(call)]


def _task_size(task: Task) -> int:
    """The size of a task's payload: its records."""
    func, parts = task
    return _RECORD.size * (1 + len(parts)) + len(func) + sum(map(len, parts))


def _write_records(tasks: Sequence[Task]) -> "core.Buffer":
    """This thread's buffer, taken, holding tasks as records ([u64 length]
    [payload], the payload being ser.pack(function, *parts)); ``buf.used``
    is their size. Each part is copied once, straight into the buffer."""
    head = _RECORD.size
    size = sum(head + _task_size(task) for task in tasks)
    buf = core.take_buffer(size)
    view, pos, pack = buf.view, 0, _RECORD.pack_into
    for f, parts in tasks:
        if len(parts) == 1:  # the hot case: (function, arguments), nothing large
            (a,) = parts
            nf, na = len(f), len(a)
            pack(view, pos, 2 * head + nf + na)
            pack(view, pos + head, nf)
            pos += 2 * head
            view[pos : pos + nf] = f
            pos += nf
            pack(view, pos, na)
            pos += head
            view[pos : pos + na] = a
            pos += na
            continue
        pack(view, pos, _task_size((f, parts)))
        pos += head
        for data in (f, *parts):
            n = len(data)
            pack(view, pos, n)
            pos += head
            view[pos : pos + n] = data
            pos += n
    buf.used = size
    return buf


def _decode_reply(view: memoryview, pos: int) -> Tuple[List[Entry], bool]:
    count, flags = _REPLY.unpack_from(view, pos)
    entries, _ = _decode_results(view, pos + _REPLY.size, count)
    return entries, bool(flags & _wire.REPLY_DONE)


def _decode_notified(view: memoryview) -> List[JobEntries]:
    jobs, _ = _REPLY.unpack_from(view, 0)
    pos, out = _REPLY.size, []
    for _ in range(jobs):
        job, count, flags = _JOB.unpack_from(view, pos)
        entries, pos = _decode_results(view, pos + _JOB.size, count)
        out.append((job, entries, bool(flags & _wire.REPLY_DONE)))
    return out


def _decode_results(view: memoryview, pos: int, count: int) -> Tuple[List[Entry], int]:
    entries = []
    unpack, size, loads = _RESULT.unpack_from, _RESULT.size, ser.loads
    for _ in range(count):
        index, status, pid, code, sig, length = unpack(view, pos)
        pos += size
        payload = view[pos : pos + length]
        pos += length
        if status == _wire.STATUS_OK:  # the common case, inline
            try:
                entries.append((index, True, loads(payload)))
                continue
            except (Exception, SystemExit) as exc:  # SystemExit: a result whose unpickling exits
                entries.append((index, False, _undecodable(exc)))
                continue
        entries.append((index, *decode_outcome(status, pid, -sig if sig else code, payload)))
    return entries, pos


def _undecodable(exc: BaseException) -> BaseException:
    error = RuntimeError(f"the task's result could not be unpickled in the parent: {exc!r}")
    error.__cause__ = exc
    return error


def decode_outcome(status: int, pid: int, exitcode: int, payload: Any) -> Tuple[bool, Any]:
    """Turn a task's status and payload into (succeeded, value or exception)."""
    try:
        if status == _wire.STATUS_OK:
            return True, ser.loads(payload)
        if status in (_wire.STATUS_ERROR, _wire.STATUS_INIT_FAILED):
            return False, ser.loads_exception(payload)
    except (Exception, SystemExit) as exc:
        return False, _undecodable(exc)
    if status == _wire.STATUS_WORKER_LOST:
        return False, WorkerLostError.from_exit(pid, exitcode)
    if status == _wire.STATUS_TERMINATED:
        return False, PoolTerminatedError("the pool was terminated before the task finished")
    if status == _wire.STATUS_CANCELLED:
        return False, CancelledError("the task was cancelled")
    if status == _wire.STATUS_TIMED_OUT:
        return False, TimeoutError(f"the task exceeded its time limit; its worker (pid {pid}) was killed")
    if status == _wire.STATUS_BROKEN:
        return False, BrokenPoolError(f"the pool cannot start workers: {bytes(payload).decode(errors='replace')}")
    return False, RuntimeError(f"gopool core: unknown task status {status}")
