"""gopool: Python's multiprocessing API with a Go core.

Swap ``import multiprocessing`` for ``import gopool``. Names are loaded on
first use, so a worker process that imports ``gopool._worker`` does not load
the Go runtime.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__all__ = [
    "Pool",
    "ThreadPool",
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
    "ClusterError",
]

_LAZY = {
    "Pool": "gopool.pool",
    "ThreadPool": "gopool.pool",
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
    "ClusterError": "gopool.cluster",
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
    if name == "__version__":  # computed on first use: workers never need it
        globals()[name] = value = _version()
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gopool' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
