"""CPython's own multiprocessing tests, run against gopool.

The classes of CPython 3.11's ``test._test_multiprocessing`` (the suite that
ships with the interpreter) that issue 8 names run here with every name
routed to gopool (see helpers/cpython_mp.py):

- ``_TestPool``, ``_TestQueue``, ``_TestProcess`` and ``_TestEvent`` with
  the suite's 'processes' type: gopool's Pool, Process, Queue, Event...;
- ``_TestPool`` with the 'threads' type: gopool's ThreadPool;
- ``TestSimpleQueue``, whose tests use ``multiprocessing.X`` directly
  (gopool's X here).

EXCLUDED lists, with the reason, every test of these classes that does not
run against gopool: tests of stdlib behaviours that gopool deliberately
replaces (README, "Where gopool differs"), tests of the stdlib's private
internals, and the tests the suite itself would skip here. They are removed
from the classes (the project's suite allows no skipped test), so what runs
is every other test of the five classes.
"""

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
    # Tests the suite itself skips in this configuration.
    "WithGopoolProcessesTestProcess.test_forkserver_sigint": (
        "kills the stdlib's fork server and checks that it restarts; gopool has "
        "no fork server (the suite skips it unless the start method is 'forkserver')"
    ),
    "WithGopoolProcessesTestProcess.test_forkserver_sigkill": (
        "the same as test_forkserver_sigint, with SIGKILL"
    ),
    "WithGopoolThreadsTestPool.test_map_unplicklable": (
        "a ThreadPool pickles nothing (the suite skips it for threads)"
    ),
}

CLASSES = cpython_mp.PROCESS_CLASSES + cpython_mp.THREAD_CLASSES + cpython_mp.OTHER_CLASSES


def _exclude() -> None:
    """Remove the excluded tests: a name bound to None is no test for
    unittest's loader (nor for pytest's)."""
    by_name = {cls.__name__: cls for cls in CLASSES}
    for key in EXCLUDED:
        class_name, test_name = key.split(".")
        cls = by_name[class_name]
        assert callable(getattr(cls, test_name)), key  # the suite still has it
        setattr(cls, test_name, None)


_exclude()
globals().update((cls.__name__, cls) for cls in CLASSES)
