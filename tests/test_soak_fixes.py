"""Defects a soak run of real programs found (issue "a drop-in for real
programs", item 5), each with the behaviour it must have now."""

import os
import subprocess
import sys
import textwrap

import pytest

import gopool
from gopool import _binding
from helpers import tasks


@pytest.mark.timeout(60)
def test_a_result_too_deep_to_pickle_fails_that_task_only(pool1):
    # Before: the worker crashed while building the error and the task was
    # reported as WorkerLostError.
    r = pool1.apply_async(tasks.nested, (100_000,))
    with pytest.raises(gopool.pool.MaybeEncodingError) as info:
        r.get(timeout=50)
    assert "Error sending result" in str(info.value)
    [worker] = pool1.workers()
    assert pool1.apply(tasks.getpid) == worker.pid  # the same worker goes on


@pytest.mark.timeout(60)
def test_a_fork_of_a_process_that_never_started_go_may_use_gopool():
    # Importing gopool alone must not poison os.fork() children.
    code = textwrap.dedent("""
        import os, gopool
        from gopool import _binding
        assert not _binding.go_started()
        pid = os.fork()
        if pid == 0:
            q = gopool.Queue()
            q.put("from the child")
            os._exit(0 if q.get(timeout=10) == "from the child" else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50)
    assert run.stdout.strip() == "0", run.stderr


@pytest.mark.timeout(60)
def test_a_fork_after_go_started_still_raises_forked_child_error():
    code = textwrap.dedent("""
        import os, gopool
        q = gopool.Queue()
        pid = os.fork()
        if pid == 0:
            try:
                q.put(1)
            except gopool.ForkedChildError:
                os._exit(0)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50)
    assert run.stdout.strip() == "0", run.stderr


@pytest.mark.timeout(60)
def test_an_item_too_large_for_the_queue_is_refused_before_it_is_copied(monkeypatch):
    q = gopool.Queue(_ring_size=64 << 10)
    asked = []
    take = _binding.take_buffer

    def spy(size=0):
        asked.append(size)
        return take(size)

    monkeypatch.setattr("gopool._queue_handle.take_buffer", spy)
    for item in (b"x" * (2 << 20), [b"y" * (2 << 20)]):  # the direct bytes path, and pickled
        with pytest.raises(ValueError, match="too large for the queue"):
            q.put(item)
    assert all(size < 1 << 20 for size in asked), asked
    q.put("small")
    assert q.get(timeout=10) == "small"
