"""The worker process: runs the tasks the Go core sends it.

The core starts it with its channel on fd 3 and the pool's doorbell on fd 4
(see gopool/shm/channel.go and gopool/protocol.go); descriptors of shared
objects in the initializer's arguments follow from fd 5. It reads its
init message, then tasks, through ``gopool._channel`` (C: a worker never
loads the Go runtime, so a task may fork freely) and answers each one. It
ignores SIGINT: the parent decides what Ctrl-C means.
"""

from __future__ import annotations

import os
import signal
import sys
import types
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from gopool import _serialize as ser
from gopool import _wire

if TYPE_CHECKING:
    from gopool._channel import Channel

_FUNC_CACHE_SIZE = 64

_memory_limit: Optional[int] = None  # bytes of address space a worker may use, or None

# A task's soft time limit arrives as a signal (see gopool/protocol.go,
# SoftLimitSignal): it raises SoftTimeLimitExceeded in the task if the task
# the core meant is still the one running, and only while the task's own
# code runs (_in_task), never in the worker's loop.
_in_task = False
_channel: Optional[Channel] = None


def _on_soft_limit(signum: int, frame: Optional[types.FrameType]) -> None:
    if _in_task and _channel is not None:
        seq = _channel.running()
        if seq and seq == _channel.soft_limit():
            from gopool._errors import SoftTimeLimitExceeded

            raise SoftTimeLimitExceeded("the task passed its soft time limit")


class _OverMemoryLimit(Exception):
    """A task ran out of the worker's memory limit: the worker reports it and
    exits, since its memory may be left fragmented or half-freed."""


class _FunctionCache:
    """Unpickled task functions by their pickled bytes: a map sends the same
    function with every chunk, and a closure sent by value is costly to load."""

    def __init__(self) -> None:
        self._items: Dict[bytes, Callable[..., Any]] = {}

    def load(self, data: ser.BytesLike) -> Callable[..., Any]:
        key = bytes(data)
        func = self._items.get(key)
        if func is None:
            func = ser.loads(key)
            if len(self._items) >= _FUNC_CACHE_SIZE:
                self._items.clear()
            self._items[key] = func
        return func


def run_task(parts: Tuple[bytes, ...], functions: _FunctionCache) -> Tuple[int, bytes]:
    """Run one task, given as its records (the function, the call's pickle,
    and the large arguments taken out of it); return (message kind, encoded
    result)."""
    global _in_task
    try:
        func_part, call_part, *large = parts
        func = functions.load(func_part)
        args = ser.loads(call_part)
        if large:
            args = ser.fill_large(args, large)
            del large
        _in_task = True
        value = ser.call_task(func, *args)
        _in_task = False
    except MemoryError as exc:
        _in_task = False
        if _memory_limit is None:
            return _wire.MSG_RESULT_ERROR, ser.dumps_exception(exc)
        raise _OverMemoryLimit(exc) from None
    except Exception as exc:
        _in_task = False
        return _wire.MSG_RESULT_ERROR, ser.dumps_exception(exc)
    try:
        return _wire.MSG_RESULT_OK, ser.dumps(value)
    except Exception as exc:
        return _wire.MSG_RESULT_ERROR, ser.dumps_exception(ser.encoding_error(exc, value))


def _memory_error(over: _OverMemoryLimit) -> bytes:
    """The error of a task that exceeded max_memory_per_child."""
    error = MemoryError(
        f"the task exceeded the worker's memory limit (max_memory_per_child={_memory_limit} bytes "
        "of address space); the worker was replaced"
    )
    error.__cause__ = over.args[0]
    return ser.dumps_exception(error)


def _initialise(payload: bytes) -> None:
    """Apply the parent's settings, then run the user's initializer."""
    global _memory_limit
    settings_part, init_part = ser.unpack(payload)
    settings = ser.loads(settings_part)
    from multiprocessing import process

    from gopool import _spawning

    _spawning.prepare(settings["preparation"])
    process.current_process().name = f"PoolWorker-{os.getpid()}"  # as Pool's worker objects name it
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
    from gopool._channel import Channel

    global _channel
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(_wire.SOFT_LIMIT_SIGNAL, _on_soft_limit)
    channel = _channel = Channel(_wire.CHANNEL_FD, _wire.DOORBELL_FD)
    for fd in (_wire.CHANNEL_FD, _wire.DOORBELL_FD):
        os.close(fd)  # mapped now; a task's subprocesses must not hold them
    init = channel.read_init()
    channel.set_phase(_wire.PHASE_INITIALIZING)
    try:
        _initialise(init)
    except Exception as exc:
        channel.send(_wire.MSG_INIT_FAILED, 0, ser.dumps_exception(exc))
        sys.exit(1)
    del init
    channel.set_phase(_wire.PHASE_READY)
    serve(channel)
    _exit_quickly()


def serve(channel: Channel) -> None:
    """Run tasks until the core says stop."""
    global _forked
    _forked = False  # a worker may itself have been forked (by the zygote)
    functions = _FunctionCache()
    next_task, answer = channel.next_task, channel.answer
    while True:
        task = next_task()
        if task is None:
            return
        seq, parts = task
        try:
            kind, data = run_task(parts, functions)
        except _OverMemoryLimit as over:
            del parts, task
            answer(_wire.MSG_RESULT_ERROR, seq, _memory_error(over))
            channel.send(_wire.MSG_RETIRING, 0, b"")
            return
        if _forked:
            # The task forked and this is the child coming back from it: it
            # must not answer in its parent's name.
            os._exit(0)
        # The result first: freeing a large argument takes a while (about
        # 75 ms per 512 MiB here), and the parts hold it until then.
        answer(kind, seq, data)
        del parts, task


_forked = False


def _mark_forked() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_mark_forked)


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
