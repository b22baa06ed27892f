"""The process backend: a Pool's view of the Go core.

Everything that crosses into Go goes through this module. It encodes tasks,
decodes the core's byte blobs, maps core errors to Python exceptions and
refuses to call Go in a child made by ``os.fork()``.
"""

from __future__ import annotations

import os
import struct
import sys
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

from gopool import _serialize as ser
from gopool import _spawning
from gopool._errors import (
    BrokenPoolError,
    CancelledError,
    TimeoutError,
    ForkedChildError,
    PoolTerminatedError,
    WorkerLostError,
)

# Task outcomes as the core reports them (gopool/pool.go, Status).
STATUS_OK = 0
STATUS_ERROR = 1
STATUS_WORKER_LOST = 2
STATUS_TERMINATED = 3
STATUS_INIT_FAILED = 4
STATUS_BROKEN = 5
STATUS_CANCELLED = 6
STATUS_TIMED_OUT = 7

SLICE_MS = 100  # the longest a call into Go blocks: Ctrl-C stays responsive
KILL_GRACE_MS = 250  # terminate(): SIGTERM, then SIGKILL after this long

_ENTRY = struct.Struct("<QBQ")
_U64 = struct.Struct("<Q")
_WORKER = struct.Struct("<qqqq")

Entry = Tuple[int, bool, Any]  # (task index, succeeded, value or exception)

_forked_child = False


def _mark_forked_child() -> None:
    global _forked_child
    _forked_child = True


os.register_at_fork(after_in_child=_mark_forked_child)


def check_not_forked() -> None:
    if _forked_child:
        raise ForkedChildError(
            "gopool cannot be used in a process created by os.fork() after gopool was "
            "imported: the Go runtime does not survive fork(). Create pools and queues in "
            "the child itself after an exec (e.g. a 'spawn' multiprocessing context), or "
            "use gopool.Pool's own workers."
        )


def in_forked_child() -> bool:
    return _forked_child


_binding = None


def _lib():
    """The Go binding, loaded on first use (it starts the Go runtime)."""
    global _binding
    if _binding is None:
        from gopool._native import lib

        _binding = lib
    return _binding


def encode_init(
    initializer: Optional[Callable], initargs: Sequence, max_memory: Optional[int] = None
) -> Tuple[bytes, List[int]]:
    """The init payload of a pool's workers, and the descriptors they inherit
    (for queues, locks and events among the initializer's arguments)."""
    settings = {"sys_path": list(sys.path), "max_memory": max_memory}
    spawning = _spawning.Spawning()
    blob = ser.pack(ser.dumps(settings), spawning.dumps((initializer, tuple(initargs))))
    return blob, spawning.fds


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

    def __init__(self):
        self._cache: dict = {}

    def encode(self, func: Callable) -> bytes:
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


class ProcessBackend:
    """Worker processes run by the Go core."""

    def __init__(
        self,
        processes: int,
        initializer: Optional[Callable],
        initargs: Sequence,
        maxtasksperchild: Optional[int],
        max_memory_per_child: Optional[int] = None,
    ):
        check_not_forked()
        from gopool._native import from_go_bytes, to_go_bytes

        self._to_go = to_go_bytes
        self._from_go = from_go_bytes
        self._functions = FunctionEncoder()
        argv = [os.fsencode(a) for a in _spawning.worker_command("gopool._worker")]
        init, fds = encode_init(initializer, initargs, max_memory_per_child)
        self._id = _call(
            _lib().PoolNew,
            processes,
            maxtasksperchild or 0,
            to_go_bytes(ser.pack(*argv)),
            to_go_bytes(_spawning.environment()),
            os.getcwd(),
            to_go_bytes(init),
            to_go_bytes(_spawning.pack_fds(fds)),
            KILL_GRACE_MS,
        )
        self._released = False

    # -- tasks ---------------------------------------------------------------

    def encode(self, func: Callable, args: Any, kwds: Any, mode: int) -> bytes:
        return ser.pack(self._functions.encode(func), ser.dumps((args, kwds, mode)))

    def iter_encode(self, func: Callable, arg_list: Iterable, mode: int) -> Iterator[bytes]:
        """Encode one task per element of arg_list, lazily."""
        func_bytes = self._functions.encode(func)
        return (ser.pack(func_bytes, ser.dumps((args, None, mode))) for args in arg_list)

    def _records(self, tasks: Sequence[bytes]):
        if len(tasks) == 1:
            return self._to_go(_U64.pack(len(tasks[0])) + tasks[0])
        return self._to_go(ser.pack(*tasks))

    def submit(self, tasks: Sequence[bytes], notify: bool, timeout: Optional[float] = None) -> int:
        """Submit tasks as one sealed job; return its id. timeout (seconds)
        limits how long each task may run."""
        check_not_forked()
        return _call(_lib().PoolSubmitJob, self._id, notify, _millis(timeout), self._records(tasks))

    def open_job(self, notify: bool = False, timeout: Optional[float] = None) -> int:
        check_not_forked()
        return _call(_lib().PoolNewJob, self._id, notify, _millis(timeout))

    def run(self, task: bytes, timeout: Optional[float]) -> Tuple[int, List[Entry], bool]:
        """Submit one task and collect its result for up to one slice, in a
        single call: apply()'s fast path. Returns (job, entries, done)."""
        check_not_forked()
        blob = self._from_go(
            _call(_lib().PoolRun, self._id, False, _millis(timeout), self._records([task]), SLICE_MS)
        )
        (job,) = _U64.unpack_from(blob, 1)
        return job, self._decode_results(blob, 9), bool(blob[0] & 1)

    def cancel(self, job: int) -> int:
        """Cancel a job: queued tasks never run, running ones are stopped.
        Returns how many tasks were cancelled."""
        check_not_forked()
        return int(_call(_lib().PoolCancel, self._id, job))

    def add(self, job: int, tasks: Sequence[bytes]) -> None:
        check_not_forked()
        _call(_lib().PoolSubmit, self._id, job, self._records(tasks))

    def seal(self, job: int) -> None:
        check_not_forked()
        _call(_lib().PoolSeal, self._id, job)

    def collect(self, job: int, timeout_ms: int) -> Tuple[List[Entry], bool]:
        """Take the job's finished results, waiting up to timeout_ms (capped
        at SLICE_MS) for the first. Returns (entries, job is done)."""
        check_not_forked()
        blob = self._from_go(
            _call(_lib().PoolCollect, self._id, job, 0, min(max(timeout_ms, 0), SLICE_MS))
        )
        return self._decode_results(blob), bool(blob[0] & 1)

    @staticmethod
    def _decode_results(blob: bytes, start: int = 1) -> List[Entry]:
        entries = []
        view = memoryview(blob)
        unpack, loads, size = _ENTRY.unpack_from, ser.loads, _ENTRY.size
        pos, end = start, len(blob)
        while pos < end:
            index, status, length = unpack(blob, pos)
            pos += size
            payload = view[pos : pos + length]
            pos += length
            if status == STATUS_OK:  # the common case, inline
                entries.append((index, True, loads(payload)))
            else:
                entries.append((index, *decode_outcome(status, payload)))
        return entries

    def discard(self, job: int) -> None:
        if _forked_child or self._released:
            return
        _call(_lib().PoolDiscard, self._id, job)

    def next_events(self, timeout_ms: int) -> List[int]:
        check_not_forked()
        from gopool._native import from_go_bytes

        blob = from_go_bytes(_call(_lib().PoolNextEvents, self._id, min(timeout_ms, SLICE_MS)))
        return [_U64.unpack_from(blob, pos)[0] for pos in range(1, len(blob), 8)]

    # -- life cycle ----------------------------------------------------------

    def close(self) -> None:
        check_not_forked()
        _call(_lib().PoolClose, self._id)

    def terminate(self) -> None:
        check_not_forked()
        _call(_lib().PoolTerminate, self._id)

    def join(self, timeout_ms: int) -> bool:
        check_not_forked()
        return bool(_call(_lib().PoolJoin, self._id, min(timeout_ms, SLICE_MS)))

    def release(self) -> None:
        """Terminate the workers and free the core's pool. Safe to call twice
        and from a finalizer."""
        if self._released or _forked_child:
            return
        self._released = True
        _call(_lib().PoolRelease, self._id)

    # -- introspection -------------------------------------------------------

    def workers(self) -> List[Tuple[int, int, int, int]]:
        """(pid, tasks done, job id or 0, task index) per live worker."""
        check_not_forked()
        from gopool._native import from_go_bytes

        blob = from_go_bytes(_call(_lib().PoolWorkers, self._id))
        return [_WORKER.unpack_from(blob, pos) for pos in range(1, len(blob), _WORKER.size)]

    def queued(self) -> int:
        check_not_forked()
        return int(_call(_lib().PoolQueued, self._id))


def _millis(seconds: Optional[float]) -> int:
    """A time limit in whole milliseconds (at least 1), 0 for none."""
    if seconds is None:
        return 0
    return max(1, int(seconds * 1000 + 0.5))


def _call(func, *args):
    """Call into Go, turning the core's errors into Python ones."""
    try:
        return func(*args)
    except RuntimeError as exc:
        raise _translate(exc) from None


def _translate(exc: RuntimeError) -> Exception:
    message = str(exc)
    if message.startswith("cannot start worker") or "number of workers" in message:
        return OSError(message)
    return RuntimeError(f"gopool core: {message}")


def decode_outcome(status: int, payload) -> Tuple[bool, Any]:
    """Turn a task's status and payload into (succeeded, value or exception)."""
    if status == STATUS_OK:
        return True, ser.loads(payload)
    if status in (STATUS_ERROR, STATUS_INIT_FAILED):
        return False, ser.loads_exception(payload)
    if status == STATUS_WORKER_LOST:
        pid, exitcode = (int(x) for x in bytes(payload).split())
        return False, WorkerLostError.from_exit(pid, exitcode)
    if status == STATUS_TERMINATED:
        return False, PoolTerminatedError("the pool was terminated before the task finished")
    if status == STATUS_CANCELLED:
        return False, CancelledError("the task was cancelled")
    if status == STATUS_TIMED_OUT:
        pid = int(bytes(payload))
        return False, TimeoutError(f"the task exceeded its time limit; its worker (pid {pid}) was killed")
    if status == STATUS_BROKEN:
        return False, BrokenPoolError(f"the pool cannot start workers: {bytes(payload).decode(errors='replace')}")
    return False, RuntimeError(f"gopool core: unknown task status {status}")
