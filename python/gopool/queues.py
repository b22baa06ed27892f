"""Queues with the API of ``multiprocessing.Queue``, ``JoinableQueue`` and
``SimpleQueue``, shareable with gopool's Process and Pool workers through
inheritance.

For now these are the stdlib's own queues (from its 'spawn' context, whose
objects can be handed to processes that gopool starts by fork+exec), with
the stdlib's semantics and its known weaknesses: ``put()`` of an unpicklable
object fails in the feeder thread, and a process killed while using a queue
can corrupt or deadlock it. The Go-core queues that fix these are not built
yet.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

__all__ = ["Queue", "JoinableQueue", "SimpleQueue"]

_context = multiprocessing.get_context("spawn")


def Queue(maxsize: int = 0) -> Any:
    """A process-shared FIFO queue (``multiprocessing.Queue``)."""
    return _context.Queue(maxsize)


def JoinableQueue(maxsize: int = 0) -> Any:
    """A Queue with ``task_done()`` and ``join()`` (``multiprocessing.JoinableQueue``)."""
    return _context.JoinableQueue(maxsize)


def SimpleQueue() -> Any:
    """A simplified queue, close to a locked pipe (``multiprocessing.SimpleQueue``)."""
    return _context.SimpleQueue()
