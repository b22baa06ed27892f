"""Task functions for the benchmarks.

They live in their own importable module (not ``__main__``) so that every
implementation -- fork, spawn, forkserver and gopool's workers -- can find
them by reference (``bench_tasks.square``). The benchmark driver puts this
directory on ``sys.path`` and ``PYTHONPATH`` before creating any pool.
"""

import os
import time


def square(x):
    return x * x


def noop(*args, **kwargs):
    return None


def pid_after(delay):
    """Sleep ``delay`` seconds, return the worker's pid (used to make sure
    every worker of a pool is up before a warm measurement)."""
    if delay:
        time.sleep(delay)
    return os.getpid()


def busy_sleep(marker_dir, seconds):
    """Announce the start by creating a file in ``marker_dir``, then sleep.

    Used by the terminate() benchmark: the driver waits until every worker
    has announced itself, then calls terminate()."""
    path = os.path.join(marker_dir, "started-%d" % os.getpid())
    with open(path, "w") as f:
        f.write("x")
    time.sleep(seconds)
    return os.getpid()
