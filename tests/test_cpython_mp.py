"""CPython's own multiprocessing tests, run against gopool.

The classes of CPython 3.11's ``test._test_multiprocessing`` (the suite that
ships with the interpreter) that issue 8 names run here with every name
routed to gopool (see helpers/cpython_mp.py):

- ``_TestPool``, ``_TestQueue``, ``_TestProcess`` and ``_TestEvent`` with
  the suite's 'processes' type: gopool's Pool, Process, Queue, Event...;
- ``_TestPool`` with the 'threads' type: gopool's ThreadPool;
- ``TestSimpleQueue``, whose tests use ``multiprocessing.X`` directly
  (gopool's X here).

The suite itself skips a few tests: ``test_forkserver_sigint`` and
``test_forkserver_sigkill`` (they kill the stdlib's fork server; gopool's
start method reads as 'spawn') and, for threads, ``test_map_unplicklable``.

EXCLUDED lists, with the reason, every test that does not run against gopool:
tests of the stdlib's private internals, and tests of stdlib behaviours that
gopool deliberately replaces (README, "Where gopool differs"). An excluded
test is reported as skipped with its reason.
"""

import unittest

import pytest

from helpers import cpython_mp

pytestmark = pytest.mark.timeout(120)

EXCLUDED = {
    # Deliberate differences.
    "WithGopoolProcessesTestProcess.test_parent_process": (
        "no orphans: gopool kills a process's children when it dies, so the "
        "grandchild that this test expects to outlive its terminated parent "
        "(and report its death) is killed with it"
    ),
    "WithGopoolProcessesTestQueue.test_queue_feeder_donot_stop_onexc": (
        "put() of an unpicklable object raises in the caller (gopool has no "
        "feeder thread that prints the error and drops the item)"
    ),
    "WithGopoolProcessesTestQueue.test_queue_feeder_on_queue_feeder_error": (
        "tests the stdlib Queue's feeder-thread hook _on_queue_feeder_error "
        "on a subclass of multiprocessing.queues.Queue; gopool's put() "
        "raises in the caller instead"
    ),
    "WithGopoolThreadsTestPool.test_terminate": (
        "ThreadPool.join() after terminate() waits for a task blocked in a C "
        "call, as the stdlib's does; the stdlib passes only because none of "
        "its time.sleep(LONG_TIMEOUT) tasks has started when terminate() "
        "runs, while gopool's threads start them at once, so join() would "
        "wait 300 s"
    ),
    # The stdlib's private internals.
    "GopoolTestSimpleQueue.test_closed": (
        "reads SimpleQueue._reader.closed and ._writer.closed, the pipe "
        "connections of the stdlib's implementation; gopool's SimpleQueue "
        "is a shared-memory ring"
    ),
}

CLASSES = cpython_mp.PROCESS_CLASSES + cpython_mp.THREAD_CLASSES + cpython_mp.OTHER_CLASSES


def _exclude() -> None:
    by_name = {cls.__name__: cls for cls in CLASSES}
    for key, reason in EXCLUDED.items():
        class_name, test_name = key.split(".")
        cls = by_name[class_name]
        setattr(cls, test_name, unittest.skip(f"excluded: {reason}")(getattr(cls, test_name)))


_exclude()
globals().update((cls.__name__, cls) for cls in CLASSES)
