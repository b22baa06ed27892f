"""gopool.ProcessPoolExecutor: the contract of concurrent.futures'
executor, and what it does beyond it (each of those tests fails on the
stdlib's executor). CPython's own executor tests run in
tests/cpython/run_futures_suite.py."""

import asyncio
import concurrent.futures as cf
import os
import signal
import sys
import threading
import time

import pytest

import gopool
from gopool.futures import (
    BrokenProcessPool,
    ExecutorBrokenError,
    ExecutorTerminatedError,
    ExecutorWorkerLostError,
    Future,
    ProcessPoolExecutor,
)
from helpers import tasks
from helpers.util import wait_for_path, wait_pids_gone

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def executor():
    ex = ProcessPoolExecutor(2)
    yield ex
    ex.terminate_workers()


def _worker_pids(ex):
    return [w.pid for w in ex.workers()]


# -- the stdlib's contract -------------------------------------------------------


def test_module_and_top_level_names():
    assert gopool.ProcessPoolExecutor is ProcessPoolExecutor
    assert issubclass(ProcessPoolExecutor, cf.Executor)


def test_submit_returns_a_real_future(executor):
    f = executor.submit(tasks.with_kwargs, 1, b=2, c=3)
    assert isinstance(f, cf.Future)
    assert f.result(timeout=30) == (1, 2, 3)
    assert f.done() and not f.cancelled() and f.exception() is None


def test_submit_positional_only_fn(executor):
    with pytest.raises(TypeError):
        executor.submit(fn=tasks.identity)
    assert executor.submit(tasks.with_kwargs, 1, b=2).result(timeout=30) == (1, 2, 0)


def test_exception_carries_the_remote_traceback(executor):
    f = executor.submit(tasks.raise_value_error, "boom")
    with pytest.raises(ValueError, match="boom") as info:
        f.result(timeout=30)
    cause = info.value.__cause__
    assert type(cause) is cf.process._RemoteTraceback
    assert "raise_value_error" in cause.tb


def test_unpicklable_argument_fails_the_future(executor):
    f = executor.submit(tasks.identity, threading.Lock())
    assert isinstance(f.exception(timeout=30), Exception)


def test_map_in_order_with_chunks(executor):
    assert list(executor.map(pow, range(20), range(20))) == [pow(i, i) for i in range(20)]
    assert list(executor.map(pow, range(20), range(20), chunksize=6)) == [pow(i, i) for i in range(20)]
    assert list(executor.map(tasks.square, [])) == []
    with pytest.raises(ValueError, match="chunksize must be >= 1"):
        executor.map(tasks.square, range(3), chunksize=0)


def test_map_raises_at_the_failing_position(executor):
    it = executor.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5])
    assert next(it) == (0, 1)
    assert next(it) == (0, 1)
    with pytest.raises(ZeroDivisionError):
        next(it)
    with pytest.raises(StopIteration):
        next(it)


def test_map_timeout(executor, tmp_path):
    go = str(tmp_path / "go")
    it = executor.map(tasks.wait_then_return, [go, go], [1, 2], timeout=0.5)
    with pytest.raises(cf.TimeoutError):
        next(it)
    open(go, "w").close()


def test_map_buffersize_reads_the_input_lazily(executor):
    read = []

    def source():
        for i in range(10):
            read.append(i)
            yield i

    it = executor.map(tasks.square, source(), buffersize=2)
    assert read == [0, 1]
    assert next(it) == 0
    assert len(read) == 3
    assert list(it) == [x * x for x in range(1, 10)]
    with pytest.raises(ValueError):
        executor.map(tasks.square, range(3), buffersize=0)
    with pytest.raises(TypeError):
        executor.map(tasks.square, range(3), buffersize=1.5)


def test_as_completed_and_wait(executor):
    fs = [executor.submit(tasks.square, i) for i in range(6)]
    assert sorted(f.result() for f in cf.as_completed(fs, timeout=30)) == [i * i for i in range(6)]
    done, not_done = cf.wait(fs, timeout=30)
    assert done == set(fs) and not not_done


def test_wait_first_completed(executor, tmp_path):
    go = str(tmp_path / "go")
    slow = executor.submit(tasks.wait_then_return, go, "slow")
    fast = executor.submit(tasks.identity, "fast")
    done, not_done = cf.wait([slow, fast], timeout=30, return_when=cf.FIRST_COMPLETED)
    assert done == {fast} and not_done == {slow}
    open(go, "w").close()
    assert slow.result(timeout=30) == "slow"


def test_done_callbacks_run(executor):
    got = []
    ran = threading.Event()
    f = executor.submit(tasks.square, 7)
    f.add_done_callback(lambda fut: (got.append(fut.result()), ran.set()))
    assert ran.wait(30)
    assert got == [49]


def test_asyncio_wrap_future_and_run_in_executor(executor):
    async def main():
        loop = asyncio.get_running_loop()
        a = loop.run_in_executor(executor, tasks.square, 3)
        b = asyncio.wrap_future(executor.submit(tasks.square, 4))
        return await asyncio.gather(a, b)

    assert asyncio.run(main()) == [9, 16]


def test_context_manager_waits_and_stops_workers():
    with ProcessPoolExecutor(2) as ex:
        fs = [ex.submit(tasks.sleep_return, i, 0.05) for i in range(4)]
        pids = _worker_pids(ex)
    assert all(f.done() for f in fs)
    assert [f.result() for f in fs] == [0, 1, 2, 3]
    assert not wait_pids_gone(pids, timeout=10)


def test_submit_after_shutdown_raises():
    ex = ProcessPoolExecutor(1)
    ex.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        ex.submit(tasks.identity, 1)
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        ex.map(tasks.identity, [1])


def test_constructor_validation():
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        ProcessPoolExecutor(0)
    with pytest.raises(TypeError, match="initializer must be a callable"):
        ProcessPoolExecutor(1, initializer=3)
    with pytest.raises(TypeError, match="max_tasks_per_child must be an integer"):
        ProcessPoolExecutor(1, max_tasks_per_child="3")
    with pytest.raises(ValueError, match="max_tasks_per_child must be >= 1"):
        ProcessPoolExecutor(1, max_tasks_per_child=0)
    with pytest.raises(ValueError):
        ProcessPoolExecutor(1, task_timeout=-1)


def test_initializer_and_max_tasks_per_child():
    with ProcessPoolExecutor(1, initializer=tasks.set_global, initargs=("ready",), max_tasks_per_child=2) as ex:
        first = [ex.submit(tasks.read_global).result(timeout=30) for _ in range(2)]
        third = ex.submit(tasks.read_global).result(timeout=30)
    assert first[0] == first[1] and first[0][0] == "ready"
    assert third[0] == "ready" and third[1] != first[0][1]  # a new worker, initialised too


@pytest.mark.timeout(60)
def test_shutdown_cancel_futures_cancels_what_has_not_begun(tmp_path):
    ex = ProcessPoolExecutor(1)
    started, go = str(tmp_path / "started"), str(tmp_path / "go")
    running = ex.submit(tasks.wait_for_go, started, go, "ran")
    queued = [ex.submit(tasks.identity, i) for i in range(5)]
    wait_for_path(started)
    threading.Timer(0.2, lambda: open(go, "w").close()).start()
    ex.shutdown(wait=True, cancel_futures=True)
    assert running.result()[0] == "ran"
    assert all(f.cancelled() for f in queued)
    with pytest.raises(cf.CancelledError):
        queued[0].result()


@pytest.mark.timeout(60)
def test_shutdown_cancel_futures_lets_the_tasks_handed_to_workers_run():
    # Right after the submissions, before any worker began: the tasks the
    # workers already hold run (as the calls the stdlib's executor queued for
    # its workers do), the rest are cancelled (CPython's test_cancel_futures).
    ex = ProcessPoolExecutor(2)
    fs = [ex.submit(time.sleep, 0.1) for _ in range(50)]
    ex.shutdown(cancel_futures=True)
    cancelled = [f for f in fs if f.cancelled()]
    others = [f for f in fs if not f.cancelled()]
    assert len(cancelled) > 20
    assert 1 <= len(others) <= 4
    assert all(f.done() and f.exception() is None for f in others)


def test_cancel_is_exact_and_keeps_the_stdlib_meaning(executor, tmp_path):
    started, go = str(tmp_path / "started"), str(tmp_path / "go")
    running = executor.submit(tasks.wait_for_go, started, go, "ran")
    wait_for_path(started)
    assert running.running()
    assert running.cancel() is False  # it began: the stdlib's cancel() refuses
    assert not running.cancelled()
    open(go, "w").close()
    assert running.result(timeout=30)[0] == "ran"
    assert running.cancel() is False  # finished


def test_cancel_pending_future_notifies_waiters(tmp_path):
    with ProcessPoolExecutor(1) as ex:
        started, go = str(tmp_path / "started"), str(tmp_path / "go")
        blocker = ex.submit(tasks.wait_for_go, started, go)
        pending = ex.submit(tasks.identity, 1)
        wait_for_path(started)
        assert pending.cancel() is True
        assert pending.cancelled()
        done, _ = cf.wait([pending], timeout=10)
        assert done == {pending}
        open(go, "w").close()
        blocker.result(timeout=30)


def test_pickling_error_and_lambda_closure():
    with ProcessPoolExecutor(1) as ex:
        offset = 10
        assert ex.submit(lambda x: x + offset, 1).result(timeout=30) == 11
        assert list(ex.map(lambda x: x * offset, range(3))) == [0, 10, 20]


# -- beyond the stdlib ------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_killed_worker_fails_only_its_future_and_the_executor_heals(tmp_path):
    with ProcessPoolExecutor(2) as ex:
        pid_file = str(tmp_path / "pid")
        other_started, go = str(tmp_path / "other"), str(tmp_path / "go")
        other = ex.submit(tasks.wait_for_go, other_started, go, "other")
        wait_for_path(other_started)
        doomed = ex.submit(tasks.write_pid_then, pid_file, "sigkill")
        with pytest.raises(BrokenProcessPool) as info:
            doomed.result(timeout=30)
        exc = info.value
        assert isinstance(exc, gopool.WorkerLostError) and isinstance(exc, ExecutorWorkerLostError)
        assert exc.pid == int(wait_for_path(pid_file)) and exc.exitcode == -signal.SIGKILL
        try:
            raise exc
        except cf.process.BrokenProcessPool:
            pass
        # the other task and the executor go on
        open(go, "w").close()
        assert other.result(timeout=30)[0] == "other"
        assert ex.submit(tasks.square, 6).result(timeout=30) == 36
        assert list(ex.map(tasks.square, range(4))) == [0, 1, 4, 9]


def test_task_timeout_stops_the_task(tmp_path):
    with ProcessPoolExecutor(1, task_timeout=0.5) as ex:
        f = ex.submit(tasks.sleep_then_return, 30, "late")
        with pytest.raises(gopool.TimeoutError):
            f.result(timeout=30)
        assert ex.submit(tasks.identity, "next").result(timeout=30) == "next"


@pytest.mark.timeout(60)
def test_cancel_running_stops_a_running_task(tmp_path):
    with ProcessPoolExecutor(1) as ex:
        started, go = str(tmp_path / "started"), str(tmp_path / "go")
        f = ex.submit(tasks.wait_for_go, started, go)
        pid = int(wait_for_path(started))
        assert f.cancel() is False
        assert f.cancel(running=True) is True
        assert f.cancelled()
        with pytest.raises(cf.CancelledError):
            f.result(timeout=30)
        assert not wait_pids_gone([pid], timeout=10)
        assert ex.submit(tasks.identity, "after").result(timeout=30) == "after"


@pytest.mark.timeout(60)
def test_shutdown_nowait_cancel_futures_leaves_no_process(tmp_path):
    ex = ProcessPoolExecutor(2)
    started = str(tmp_path / "started")
    running = ex.submit(tasks.touch_sleep_touch, started, 0.5, str(tmp_path / "finished"))
    queued = [ex.submit(tasks.sleep_return, i, 5) for i in range(6)]
    wait_for_path(started)
    pids = _worker_pids(ex)
    assert len(pids) == 2
    t0 = time.monotonic()
    ex.shutdown(wait=False, cancel_futures=True)
    assert time.monotonic() - t0 < 1.0
    assert not wait_pids_gone(pids, timeout=15)
    assert running.result(timeout=5) is None
    assert sum(f.cancelled() for f in queued) >= 5


def test_max_memory_per_child_fails_the_task():
    with ProcessPoolExecutor(1, max_memory_per_child=3 << 30) as ex:
        f = ex.submit(bytearray, 4 << 30)
        with pytest.raises(MemoryError):
            f.result(timeout=30)
        assert ex.submit(tasks.identity, 1).result(timeout=30) == 1


def test_initializer_failure_breaks_the_executor_with_its_cause():
    ex = ProcessPoolExecutor(1, initializer=tasks.failing_initializer, initargs=("no init",))
    try:
        f = ex.submit(tasks.identity, 1)
        with pytest.raises(BrokenProcessPool) as info:
            f.result(timeout=30)
        assert isinstance(info.value, ExecutorBrokenError)
        assert isinstance(info.value.__cause__, RuntimeError)
        assert str(info.value.__cause__) == "no init"
        with pytest.raises(BrokenProcessPool):
            ex.submit(tasks.identity, 2)
    finally:
        ex.shutdown()


def test_terminate_workers_fails_running_futures(tmp_path):
    ex = ProcessPoolExecutor(1)
    started, go = str(tmp_path / "started"), str(tmp_path / "go")
    running = ex.submit(tasks.wait_for_go, started, go)
    queued = ex.submit(tasks.identity, 1)
    pid = int(wait_for_path(started))
    ex.terminate_workers()
    with pytest.raises(BrokenProcessPool) as info:
        running.result(timeout=30)
    assert isinstance(info.value, ExecutorTerminatedError)
    assert queued.cancelled()
    assert not wait_pids_gone([pid], timeout=10)
    with pytest.raises(RuntimeError):
        ex.submit(tasks.identity, 1)


def test_workers_introspection(executor, tmp_path):
    started, go = str(tmp_path / "started"), str(tmp_path / "go")
    f = executor.submit(tasks.wait_for_go, started, go)
    pid = int(wait_for_path(started))
    busy = [w for w in executor.workers() if w.busy]
    assert [w.pid for w in busy] == [pid]
    assert busy[0].function == "wait_for_go" and busy[0].result is f
    open(go, "w").close()
    f.result(timeout=30)


def test_future_is_generic():
    assert Future[int] is not None
    assert isinstance(Future(), cf.Future)


_EXIT_SCRIPT = """if 1:
    import sys
    sys.path.insert(0, {tests!r})
    from gopool import ProcessPoolExecutor
    from helpers import tasks
    ex = ProcessPoolExecutor(1)
    ex.submit(tasks.touch_sleep_touch, {started!r}, 0.3, {finished!r})
"""


@pytest.mark.timeout(60)
def test_pending_work_completes_at_interpreter_exit(tmp_path):
    import subprocess

    started, finished = str(tmp_path / "started"), str(tmp_path / "finished")
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    script = _EXIT_SCRIPT.format(tests=tests_dir, started=started, finished=finished)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert os.path.exists(finished)


# -- results collected by their caller ---------------------------------------------
# A future whose result() is called collects it from the core itself; whatever
# else takes an interest hands it over to the results thread. Each path must
# deliver every outcome once.


def test_a_future_nobody_asks_about_is_complete_after_shutdown():
    ex = ProcessPoolExecutor(2)
    futures = [ex.submit(tasks.square, i) for i in range(10)]
    ex.shutdown(wait=True)
    assert all(f._state == "FINISHED" for f in futures)  # set, not merely collectable
    assert [f.result(timeout=0) for f in futures] == [i * i for i in range(10)]


def test_result_from_several_threads_at_once(executor, tmp_path):
    future = executor.submit(tasks.touch_then_sleep, str(tmp_path), 0, 0.3)
    got = []
    threads = [threading.Thread(target=lambda: got.append(future.result(timeout=30))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 4 and len(set(map(repr, got))) == 1


def test_wait_and_callbacks_on_futures_whose_result_nobody_called(executor):
    seen = []
    futures = [executor.submit(tasks.square, i) for i in range(6)]
    futures[0].add_done_callback(lambda f: seen.append(f.result()))
    done, not_done = cf.wait(futures, timeout=30)
    assert not not_done
    assert sorted(f.result() for f in cf.as_completed(futures, timeout=30)) == [i * i for i in range(6)]
    assert seen == [0]


def test_done_polls_without_blocking(executor):
    future = executor.submit(tasks.square, 7)
    deadline = time.monotonic() + 30
    while not future.done():  # nothing else collects it: done() must
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert future.result(timeout=0) == 49


def test_more_futures_than_are_left_to_their_callers(executor):
    # Beyond a limit, futures go through the results thread from the start;
    # both kinds complete, in any order of asking.
    futures = [executor.submit(tasks.square, i) for i in range(300)]
    assert [f.result(timeout=30) for f in reversed(futures)] == [i * i for i in reversed(range(300))]


@pytest.mark.timeout(120)
def test_shutdown_after_cancelling_a_task_just_submitted_does_not_hang():
    # CPython's gh-94440 case: a task cancelled right after its submission may
    # already be written to an idle worker and revoked there; the worker's
    # answer must still be read, or shutdown(wait=True) waits for it forever.
    for _ in range(20):
        ex = ProcessPoolExecutor(max_workers=1)
        ex.submit(int).result(timeout=30)
        ex.submit(int).cancel()
        done = threading.Event()
        waiter = threading.Thread(target=lambda: (ex.shutdown(wait=True), done.set()), daemon=True)
        waiter.start()
        assert done.wait(10), "shutdown(wait=True) hung"
