"""gopool: Python's multiprocessing API with a Go core.

Swap ``import multiprocessing`` for ``import gopool`` (or write ``import
gopool as multiprocessing``): every public name of ``multiprocessing`` is
here. ``Pool``, ``ThreadPool``, ``Process``, the queues, ``Event`` and the
locks are gopool's; ``get_context()`` gives a context whose objects are
gopool's (see ``gopool.context``); ``Pipe``, ``Manager``, ``Value``,
``Array``, ``RawValue``, ``RawArray``, the logging helpers and the
submodules ``connection``, ``managers``, ``sharedctypes``,
``shared_memory``, ``heap``, ``reduction`` and ``util`` are the stdlib's,
bound to gopool's context so that they work with gopool's processes;
``gopool.dummy`` is ``multiprocessing.dummy`` with gopool's ThreadPool.

Names are loaded on first use, so a worker process that imports
``gopool._worker`` does not load the Go runtime.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any, List

if TYPE_CHECKING:
    # What the lazy names below are, for type checkers.
    from multiprocessing import (
        Array,
        Manager,
        Pipe,
        RawArray,
        RawValue,
        Value,
        allow_connection_pickling,
        freeze_support,
        get_logger,
        log_to_stderr,
        reducer,
    )

    from gopool._errors import (
        BrokenPoolError,
        CancelledError,
        ForkedChildError,
        PoolTerminatedError,
        ProcessError,
        SoftTimeLimitExceeded,
        TimeoutError,
        WorkerLostError,
    )
    from gopool.cluster import ClusterError
    from gopool.context import (
        AuthenticationError,
        BufferTooShort,
        get_all_start_methods,
        get_context,
        get_start_method,
        set_executable,
        set_forkserver_preload,
        set_start_method,
    )
    from gopool.futures import ProcessPoolExecutor
    from gopool.pool import Pool, ThreadPool
    from gopool.process import Process, active_children, current_process, parent_process
    from gopool.queues import JoinableQueue, Queue, SimpleQueue
    from gopool.synchronize import Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore

    __version__: str

__all__ = [
    "Pool",
    "ThreadPool",
    "ProcessPoolExecutor",
    "TimeoutError",
    "ProcessError",
    "WorkerLostError",
    "PoolTerminatedError",
    "BrokenPoolError",
    "ForkedChildError",
    "CancelledError",
    "SoftTimeLimitExceeded",
    "cpu_count",
    "Process",
    "current_process",
    "parent_process",
    "active_children",
    "Queue",
    "JoinableQueue",
    "SimpleQueue",
    "Event",
    "Lock",
    "RLock",
    "Semaphore",
    "BoundedSemaphore",
    "Condition",
    "Barrier",
    "AuthenticationError",
    "BufferTooShort",
    "get_context",
    "get_start_method",
    "set_start_method",
    "get_all_start_methods",
    "set_executable",
    "set_forkserver_preload",
    "freeze_support",
    "Pipe",
    "Manager",
    "Value",
    "Array",
    "RawValue",
    "RawArray",
    "get_logger",
    "log_to_stderr",
    "allow_connection_pickling",
    "reducer",
    "ClusterError",
]

SUBDEBUG = 5
SUBWARNING = 25

_LAZY = {
    "Pool": "gopool.pool",
    "ThreadPool": "gopool.pool",
    "ProcessPoolExecutor": "gopool.futures",
    "TimeoutError": "gopool._errors",
    "ProcessError": "gopool._errors",
    "WorkerLostError": "gopool._errors",
    "PoolTerminatedError": "gopool._errors",
    "BrokenPoolError": "gopool._errors",
    "ForkedChildError": "gopool._errors",
    "CancelledError": "gopool._errors",
    "SoftTimeLimitExceeded": "gopool._errors",
    "Process": "gopool.process",
    "current_process": "gopool.process",
    "parent_process": "gopool.process",
    "active_children": "gopool.process",
    "Queue": "gopool.queues",
    "JoinableQueue": "gopool.queues",
    "SimpleQueue": "gopool.queues",
    "Event": "gopool.synchronize",
    "Lock": "gopool.synchronize",
    "RLock": "gopool.synchronize",
    "Semaphore": "gopool.synchronize",
    "BoundedSemaphore": "gopool.synchronize",
    "Condition": "gopool.synchronize",
    "Barrier": "gopool.synchronize",
    "AuthenticationError": "gopool.context",
    "BufferTooShort": "gopool.context",
    "get_context": "gopool.context",
    "get_start_method": "gopool.context",
    "set_start_method": "gopool.context",
    "get_all_start_methods": "gopool.context",
    "set_executable": "gopool.context",
    "set_forkserver_preload": "gopool.context",
    "ClusterError": "gopool.cluster",
}

# Methods of the default context, as in ``multiprocessing``: bound to
# gopool's context when first used (it decides how they start processes).
_CONTEXT_METHODS = frozenset({
    "freeze_support",
    "Pipe",
    "Manager",
    "Value",
    "Array",
    "RawValue",
    "RawArray",
    "get_logger",
    "log_to_stderr",
    "allow_connection_pickling",
    "reducer",
})

# Submodules, loaded as attributes on first use: gopool's own, and the
# stdlib's that gopool uses as they are (``gopool.connection`` is
# ``multiprocessing.connection`` itself).
_SUBMODULES = {
    name: "gopool." + name
    for name in (
        "pool", "process", "queues", "synchronize", "context", "dummy",
        "connection", "managers", "sharedctypes", "shared_memory", "heap", "reduction", "util",
    )
}


def cpu_count() -> int:
    """The number of CPUs in the system (NotImplementedError if unknown)."""
    n = os.cpu_count()
    if n is None:
        raise NotImplementedError("cannot determine number of cpus")
    return n


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("gopool")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def __getattr__(name: str) -> Any:
    value: Any
    if name == "__version__":  # computed on first use: workers never need it
        globals()[name] = value = _version()
        return value
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif name in _CONTEXT_METHODS:
        from gopool.context import _contexts

        value = getattr(_contexts["spawn"], name)
    elif name in _SUBMODULES:
        value = importlib.import_module(_SUBMODULES[name])
    else:
        raise AttributeError(f"module 'gopool' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
