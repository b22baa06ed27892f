"""The worker process: runs tasks that the Go core sends it.

The core starts it with fork+exec of the interpreter, the task stream on fd 3
and the result stream on fd 4 (frame layout: gopool/frame.go). It never loads
the Go binding, so a task may fork freely. It ignores SIGINT: the parent
decides what Ctrl-C means.
"""

from __future__ import annotations

import itertools
import os
import signal
import struct
import sys

from gopool import _serialize as ser

_HEADER = struct.Struct("<QBQ")
KIND_INIT = 0x20
KIND_TASK = 0x21
KIND_INIT_FAILED = 0x30
KIND_RETIRING = 0x31
STATUS_OK = 0
STATUS_ERROR = 1

TASK_FD = 3
RESULT_FD = 4

_FUNC_CACHE_SIZE = 64


class _FrameReader:
    def __init__(self, fd: int):
        self._file = open(fd, "rb", buffering=1 << 16, closefd=False)

    def read(self):
        """Return (kind, tag, payload), or None at end of stream."""
        header = self._file.read(_HEADER.size)
        if not header:
            return None
        if len(header) < _HEADER.size:
            raise EOFError("task stream ended inside a frame header")
        length, kind, tag = _HEADER.unpack(header)
        payload = self._file.read(length)
        if len(payload) < length:
            raise EOFError("task stream ended inside a frame")
        return kind, tag, payload


def _write_frame(fd: int, kind: int, tag: int, payload: bytes) -> None:
    header = _HEADER.pack(len(payload), kind, tag)
    if len(payload) < 1 << 16:
        data = memoryview(header + payload)
        while data:
            data = data[os.write(fd, data) :]
        return
    buffers = [memoryview(header), memoryview(payload)]
    while buffers:
        written = os.writev(fd, buffers)
        while buffers and written >= len(buffers[0]):
            written -= len(buffers[0])
            buffers.pop(0)
        if buffers and written:
            buffers[0] = buffers[0][written:]


class _OverMemoryLimit(Exception):
    """A task ran out of the worker's memory limit: the worker reports it and
    exits, since its memory may be left fragmented or half-freed."""


class _FunctionCache:
    """Unpickled task functions by their pickled bytes: a map sends the same
    function with every chunk, and a closure sent by value is costly to load."""

    def __init__(self):
        self._items: dict = {}

    def load(self, data):
        key = bytes(data)
        func = self._items.get(key)
        if func is None:
            func = ser.loads(key)
            if len(self._items) >= _FUNC_CACHE_SIZE:
                self._items.clear()
            self._items[key] = func
        return func


def run_task(payload, functions: _FunctionCache):
    """Run one task; return (status, encoded result)."""
    try:
        func_part, rest = ser.unpack(payload)
        func = functions.load(func_part)
        args, kwds, mode = ser.loads(rest)
        if mode == ser.MODE_APPLY:
            value = func(*args, **kwds)
        elif mode == ser.MODE_MAP:
            value = list(map(func, args))
        else:
            value = list(itertools.starmap(func, args))
    except MemoryError as exc:
        if _memory_limit is None:
            return STATUS_ERROR, ser.dumps_exception(exc)
        raise _OverMemoryLimit(exc) from None
    except Exception as exc:
        return STATUS_ERROR, ser.dumps_exception(exc)
    try:
        return STATUS_OK, ser.dumps(value)
    except Exception as exc:
        from gopool._errors import MaybeEncodingError

        return STATUS_ERROR, ser.dumps_exception(MaybeEncodingError(exc, value))


_memory_limit = None  # bytes of address space a worker may use, or None


def _memory_error(over: _OverMemoryLimit) -> bytes:
    """The error of a task that exceeded max_memory_per_child."""
    error = MemoryError(
        f"the task exceeded the worker's memory limit (max_memory_per_child={_memory_limit} bytes "
        "of address space); the worker was replaced"
    )
    error.__cause__ = over.args[0]
    return ser.dumps_exception(error)


def _initialise(payload) -> None:
    """Apply the parent's settings, then run the user's initializer."""
    global _memory_limit
    settings_part, init_part = ser.unpack(payload)
    settings = ser.loads(settings_part)
    sys.path[:] = settings["sys_path"]
    initializer, initargs = ser.loads(init_part)
    if initializer is not None:
        initializer(*initargs)
    if settings.get("max_memory"):
        # Set once the initializer's arguments (a queue maps address space)
        # and the initializer itself are in place: the limit is for tasks.
        import resource

        _memory_limit = settings["max_memory"]
        resource.setrlimit(resource.RLIMIT_AS, (_memory_limit, _memory_limit))


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for fd in (TASK_FD, RESULT_FD):
        os.set_inheritable(fd, False)  # a task's subprocesses must not hold our streams
    reader = _FrameReader(TASK_FD)
    first = reader.read()
    if first is None or first[0] != KIND_INIT:
        sys.exit(2)
    try:
        _initialise(first[2])
    except Exception as exc:
        _write_frame(RESULT_FD, KIND_INIT_FAILED, 0, ser.dumps_exception(exc))
        sys.exit(1)
    functions = _FunctionCache()
    while True:
        frame = reader.read()
        if frame is None:
            break
        kind, tag, payload = frame
        try:
            status, data = run_task(payload, functions)
        except _OverMemoryLimit as over:
            del payload, frame
            _write_frame(RESULT_FD, STATUS_ERROR, tag, _memory_error(over))
            _write_frame(RESULT_FD, KIND_RETIRING, 0, b"")
            break
        del payload, frame
        _write_frame(RESULT_FD, status, tag, data)
    _exit_quickly()


def _exit_quickly() -> None:
    """Exit as the stdlib's forked workers do: run multiprocessing's own
    finalizers (a queue's feeder flushes its buffer), flush stdio, and skip
    the interpreter's teardown, which costs milliseconds per worker."""
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util._exit_function()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(0)
