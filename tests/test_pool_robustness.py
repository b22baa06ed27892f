"""gopool.Pool where the stdlib hangs or loses work (README.md, "Where gopool
differs from the stdlib"): dead workers, terminate(), close(), garbage
collection, Ctrl-C, fork() and failing initializers.
"""

import functools
import gc
import multiprocessing
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

import gopool
from gopool import ForkedChildError, Pool, PoolTerminatedError, WorkerLostError
from gopool.pool import RemoteTraceback

from helpers import tasks
from helpers.util import pid_alive, wait_for_path, wait_pids_gone

pytestmark = pytest.mark.timeout(60)

TESTS_DIR = Path(__file__).resolve().parent
PACKAGE_PARENT = Path(gopool.__file__).resolve().parent.parent


# --------------------------------------------------------------------------
# Worker death


DEATHS = {
    # how: (exitcode, words of the message)
    "sigkill": (-signal.SIGKILL, "killed by SIGKILL"),
    "os_exit": (3, "exit code 3"),
    "sys_exit": (3, "exit code 3"),  # SystemExit is not caught: the worker exits 3
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", sorted(DEATHS))
def test_worker_death_fails_the_task(pool1, tmp_path, how):
    # stdlib hangs here (the task's result is never set).
    exitcode, words = DEATHS[how]
    pid_file = str(tmp_path / "pid")
    r = pool1.apply_async(tasks.write_pid_then, (pid_file, how))
    with pytest.raises(WorkerLostError) as info:
        r.get(timeout=20)
    pid = int(wait_for_path(pid_file))
    exc = info.value
    assert isinstance(exc, multiprocessing.ProcessError)
    assert exc.pid == pid
    assert exc.exitcode == exitcode
    assert str(pid) in str(exc)
    assert words in str(exc)
    assert not r.successful()


@pytest.mark.timeout(30)
def test_worker_killed_from_outside(pool1, tmp_path):
    # The OOM killer's way: SIGKILL from another process while the task runs.
    started, go = str(tmp_path / "started"), str(tmp_path / "go")
    r = pool1.apply_async(tasks.wait_for_go, (started, go))
    pid = int(wait_for_path(started))
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerLostError) as info:
        r.get(timeout=20)
    assert (info.value.pid, info.value.exitcode) == (pid, -signal.SIGKILL)
    assert f"worker process {pid} died" in str(info.value)


@pytest.mark.timeout(30)
def test_map_with_a_dying_item_fails(pool):
    # stdlib hangs here.
    with pytest.raises(WorkerLostError) as info:
        pool.map(tasks.die_on, range(6), chunksize=1)
    assert info.value.exitcode == 5


@pytest.mark.timeout(30)
def test_map_with_a_dying_chunk_fails(pool):
    with pytest.raises(WorkerLostError):
        pool.map(tasks.die_on, range(12), chunksize=4)


@pytest.mark.timeout(30)
def test_map_async_death_goes_to_error_callback(pool):
    got, errors = [], []
    r = pool.map_async(tasks.die_on, range(4), chunksize=1, callback=got.append, error_callback=errors.append)
    with pytest.raises(WorkerLostError):
        r.get(timeout=20)
    assert got == []
    assert len(errors) == 1 and isinstance(errors[0], WorkerLostError)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_imap_dying_item_fails_only_that_item(pool1, method):
    it = getattr(pool1, method)(tasks.die_on, range(5))
    out = []
    for _ in range(5):
        try:
            out.append(next(it))
        except WorkerLostError as exc:
            out.append(type(exc))
    assert out == [0, 1, WorkerLostError, 3, 4]
    with pytest.raises(StopIteration):
        next(it)


@pytest.mark.timeout(30)
def test_pool_heals_after_a_death(pool1, tmp_path):
    before = pool1.apply(tasks.getpid)
    with pytest.raises(WorkerLostError):
        pool1.apply(tasks.write_pid_then, (str(tmp_path / "pid"), "os_exit"))
    after = pool1.apply(tasks.getpid)
    assert after != before
    assert pool1.map(tasks.square, range(10)) == [x * x for x in range(10)]
    assert [w.pid for w in pool1.workers()] == [after]


@pytest.mark.timeout(30)
def test_queued_tasks_survive_a_death(pool1, tmp_path):
    dying = pool1.apply_async(tasks.write_pid_then, (str(tmp_path / "pid"), "sigkill"))
    queued = [pool1.apply_async(tasks.square, (i,)) for i in range(5)]
    with pytest.raises(WorkerLostError):
        dying.get(timeout=20)
    assert [r.get(timeout=20) for r in queued] == [0, 1, 4, 9, 16]


@pytest.mark.timeout(30)
def test_idle_worker_killed_is_replaced(pool1):
    [pid] = [w.pid for w in pool1.workers()]
    os.kill(pid, signal.SIGKILL)
    assert wait_pids_gone([pid]) == []
    new_pid = pool1.apply(tasks.getpid)
    assert new_pid != pid
    assert [w.pid for w in pool1.workers()] == [new_pid]


@pytest.mark.timeout(30)
def test_join_after_close_after_a_death(pool, tmp_path):
    # stdlib hangs here (the cache never drains).
    r = pool.apply_async(tasks.write_pid_then, (str(tmp_path / "pid"), "sigkill"))
    other = pool.apply_async(tasks.square, (4,))
    pool.close()
    start = time.monotonic()
    pool.join()
    assert time.monotonic() - start < 10
    with pytest.raises(WorkerLostError):
        r.get(timeout=0)
    assert other.get(timeout=0) == 16


# --------------------------------------------------------------------------
# terminate()


@pytest.mark.timeout(30)
def test_terminate_stops_running_tasks(make_pool, tmp_path):
    p = make_pool(2)
    running = [p.apply_async(tasks.touch_then_sleep, (str(tmp_path), i, 30)) for i in range(2)]
    queued = p.apply_async(tasks.square, (3,))
    pids = [int(wait_for_path(tmp_path / f"started-{i}")) for i in range(2)]
    start = time.monotonic()
    p.terminate()
    p.join()
    assert time.monotonic() - start < 5
    assert p.workers() == []
    assert p.queued() == 0
    # stdlib hangs here: terminated results never become ready.
    for r in running + [queued]:
        with pytest.raises(PoolTerminatedError):
            r.get(timeout=5)
        assert r.ready() and not r.successful()
    assert wait_pids_gone(pids) == []


@pytest.mark.timeout(30)
def test_terminate_wakes_a_blocked_get(pool1, tmp_path):
    # stdlib hangs here.
    r = pool1.apply_async(tasks.touch_then_sleep, (str(tmp_path), 0, 30))
    wait_for_path(tmp_path / "started-0")
    outcome = queue.Queue()

    def waiter():
        try:
            outcome.put(r.get())
        except BaseException as exc:
            outcome.put(exc)

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    pool1.terminate()
    exc = outcome.get(timeout=5)
    assert isinstance(exc, PoolTerminatedError)
    assert isinstance(exc, multiprocessing.ProcessError)


@pytest.mark.timeout(30)
def test_terminate_fails_map_async(pool, tmp_path):
    # stdlib hangs here.
    errors = []
    sleeper = functools.partial(tasks.touch_then_sleep, str(tmp_path), seconds=30)
    r = pool.map_async(sleeper, range(3), chunksize=1, error_callback=errors.append)
    wait_for_path(tmp_path / "started-0")
    pool.terminate()
    with pytest.raises(PoolTerminatedError):
        r.get(timeout=5)
    assert len(errors) == 1 and isinstance(errors[0], PoolTerminatedError)


@pytest.mark.timeout(30)
def test_terminate_fails_imap(pool1, tmp_path):
    # stdlib hangs here.
    it = pool1.imap(lambda i: tasks.touch_then_sleep(str(tmp_path), i, 30) if i else i, range(3))
    assert next(it) == 0
    wait_for_path(tmp_path / "started-1")
    pool1.terminate()
    with pytest.raises(PoolTerminatedError):
        it.next(timeout=5)


@pytest.mark.timeout(30)
def test_terminate_kills_a_worker_that_ignores_sigterm(make_pool, tmp_path):
    p = make_pool(1)
    r = p.apply_async(tasks.ignore_sigterm_then_sleep, (str(tmp_path), 0, 30))
    pid = int(wait_for_path(tmp_path / "started-0"))
    start = time.monotonic()
    p.terminate()
    p.join()
    assert time.monotonic() - start < 5
    with pytest.raises(PoolTerminatedError):
        r.get(timeout=5)
    assert wait_pids_gone([pid]) == []


@pytest.mark.timeout(30)
def test_context_manager_terminates(make_pool, tmp_path):
    p = make_pool(1)
    with p:
        r = p.apply_async(tasks.touch_then_sleep, (str(tmp_path), 0, 30))
        pid = int(wait_for_path(tmp_path / "started-0"))
    with pytest.raises(PoolTerminatedError):
        r.get(timeout=5)
    start = time.monotonic()
    p.join()
    assert time.monotonic() - start < 5
    assert wait_pids_gone([pid]) == []


# --------------------------------------------------------------------------
# close()


@pytest.mark.timeout(30)
def test_close_lets_outstanding_tasks_finish(make_pool):
    p = make_pool(2)
    results = [p.apply_async(tasks.sleep_then_return, (0.1, i)) for i in range(6)]
    mapped = p.map_async(tasks.square, range(10), chunksize=1)
    pids = [w.pid for w in p.workers()]
    p.close()
    p.join()
    assert [r.get(timeout=0) for r in results] == list(range(6))
    assert mapped.get(timeout=0) == [x * x for x in range(10)]
    assert wait_pids_gone(pids) == []


@pytest.mark.timeout(30)
def test_close_with_imap_in_flight(pool):
    it = pool.imap(tasks.square, range(20))
    pool.close()
    assert list(it) == [x * x for x in range(20)]
    pool.join()


@pytest.mark.timeout(30)
def test_join_returns_after_every_callback_ran(pool):
    # The common pattern: collect results through callbacks, close(), join(),
    # then read what the callbacks collected. In the stdlib join() joins the
    # result-handler thread, so every callback has run when it returns.
    got = []

    def slow_callback(value):
        time.sleep(0.01)
        got.append(value)

    results = [pool.apply_async(tasks.square, (i,), callback=slow_callback) for i in range(10)]
    mapped = pool.map_async(tasks.square, range(3), callback=slow_callback)
    pool.close()
    pool.join()
    assert len(got) == 11, f"only {len(got)} of 11 callbacks had run when join() returned"
    assert sorted(v for v in got if isinstance(v, int)) == [i * i for i in range(10)]
    assert [0, 1, 4] in got
    assert all(r.ready() for r in results) and mapped.ready()


# --------------------------------------------------------------------------
# Garbage collection


def _resource_warnings(caught):
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.timeout(30)
def test_gc_of_a_running_pool_warns_and_terminates():
    p = Pool(2)
    assert p.map(tasks.square, range(4)) == [0, 1, 4, 9]
    pids = [w.pid for w in p.workers()]
    assert len(pids) == 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del p
        gc.collect()
    assert _resource_warnings(caught) == [
        "unclosed running multiprocessing pool <gopool.pool.Pool state=RUN pool_size=2>"
    ]
    assert wait_pids_gone(pids) == []


@pytest.mark.timeout(30)
def test_gc_of_a_closed_pool_does_not_warn():
    p = Pool(1)
    pids = [w.pid for w in p.workers()]
    p.close()
    p.join()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del p
        gc.collect()
    assert _resource_warnings(caught) == []
    assert wait_pids_gone(pids) == []


@pytest.mark.timeout(30)
def test_pending_result_keeps_the_pool_alive(tmp_path):
    go = str(tmp_path / "go")
    p = Pool(1)
    r = p.apply_async(tasks.wait_then_return, (go, "alive"))
    pids = [w.pid for w in p.workers()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del p
        gc.collect()
        assert _resource_warnings(caught) == []
        assert all(pid_alive(pid) for pid in pids)
        open(go, "w").close()
        assert r.get(timeout=20) == "alive"
        gc.collect()
    assert len(_resource_warnings(caught)) == 1
    assert wait_pids_gone(pids) == []


# --------------------------------------------------------------------------
# Signals


@pytest.mark.timeout(30)
def test_workers_ignore_sigint(pool1, tmp_path):
    started, go = str(tmp_path / "started"), str(tmp_path / "go")
    r = pool1.apply_async(tasks.wait_for_go, (started, go, "finished"))
    pid = int(wait_for_path(started))
    os.kill(pid, signal.SIGINT)
    open(go, "w").close()
    assert r.get(timeout=20) == ("finished", pid)
    # The same worker goes on; an idle worker ignores SIGINT as well.
    os.kill(pid, signal.SIGINT)
    assert pool1.apply(tasks.getpid) == pid


class _LineReader:
    """Read a pipe's lines on a thread, so that the test can wait with a timeout."""

    def __init__(self, stream):
        self.lines = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream):
        for line in iter(stream.readline, ""):
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout):
        return self.lines.get(timeout=timeout)


@pytest.mark.timeout(45)
@pytest.mark.parametrize("mode", ["with", "bare"])
def test_ctrl_c_stops_map_and_leaves_no_workers(tmp_path, mode):
    proc = _run_script("sigint_map.py", tmp_path, mode)
    pids = []
    try:
        out = _LineReader(proc.stdout)
        first = out.next_line(timeout=20)
        assert first and first.startswith("PIDS "), first
        pids = [int(p) for p in first.split()[1:]]
        assert len(pids) == 2
        # The map has started once its tasks announce themselves.
        wait_for_path(tmp_path / "started-0")
        wait_for_path(tmp_path / "started-1")
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        line = out.next_line(timeout=10)
        elapsed = time.monotonic() - start
        assert line == "KeyboardInterrupt"
        assert elapsed < 2.5, f"KeyboardInterrupt took {elapsed:.2f} s"
        proc.wait(timeout=10)
        assert time.monotonic() - start < 5
        stderr = proc.stderr.read()
        assert "KeyboardInterrupt" in stderr
        assert out.next_line(timeout=5) is None  # nothing after: no "map returned"
        assert wait_pids_gone(pids) == [], "workers outlived the interrupted script"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def _run_script(name, tmp_path, mode):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_PARENT), str(TESTS_DIR)])
    return subprocess.Popen(
        [sys.executable, str(TESTS_DIR / "helpers" / name), str(tmp_path), mode],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.timeout(45)
@pytest.mark.parametrize("mode", ["exit", "sigkill"])
def test_workers_do_not_outlive_their_parent(tmp_path, mode):
    # exit: the script ends with a running pool and a running task (no
    # close/terminate): it must exit promptly and stop its workers.
    # sigkill: the parent is killed; its workers must not be left behind.
    proc = _run_script("abandoned_pool.py", tmp_path, "exit" if mode == "exit" else "wait")
    pids = []
    try:
        first = _LineReader(proc.stdout).next_line(timeout=20)
        assert first and first.startswith("PIDS "), (first, proc.stderr.read() if proc.poll() is not None else "")
        pids = [int(p) for p in first.split()[1:]]
        if mode == "sigkill":
            wait_for_path(tmp_path / "started-0")
            proc.kill()
        start = time.monotonic()
        proc.wait(timeout=15)
        assert time.monotonic() - start < 10
        assert wait_pids_gone(pids) == [], "workers outlived their parent"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(30)
def test_worker_output_reaches_the_parent_stdout(capfd):
    p = Pool(1)
    try:
        p.apply(print, ("hello from a worker",), {"flush": True})
        p.apply(tasks.identity, (None,))
        p.close()
        p.join()
    finally:
        p.terminate()
    assert "hello from a worker" in capfd.readouterr().out


# --------------------------------------------------------------------------
# fork()


@pytest.mark.timeout(30)
def test_fork_child_gets_forked_child_error(pool1):
    assert pool1.apply(tasks.square, (2,)) == 4
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        try:
            os.close(read_end)
            outcomes = []
            for attempt in (lambda: Pool(1), lambda: pool1.apply(tasks.square, (3,))):
                try:
                    attempt()
                    outcomes.append("no error")
                except BaseException as exc:
                    outcomes.append(f"{type(exc).__module__}.{type(exc).__name__}")
            os.write(write_end, ",".join(outcomes).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        data = b""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], 0.1)
            if ready:
                chunk = os.read(read_end, 4096)
                if not chunk:
                    break
                data += chunk
        status = None
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.01)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
    finally:
        os.close(read_end)
    name = f"{ForkedChildError.__module__}.{ForkedChildError.__name__}"
    assert data.decode() == f"{name},{name}"
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's pool is unaffected.
    assert pool1.apply(tasks.square, (5,)) == 25


def test_forked_child_error_is_a_runtime_error():
    assert issubclass(ForkedChildError, RuntimeError)


# --------------------------------------------------------------------------
# A failing initializer


@pytest.mark.timeout(30)
def test_failing_initializer_fails_the_tasks(make_pool):
    # stdlib hangs here (it respawns workers forever and never runs a task).
    p = make_pool(2, initializer=tasks.failing_initializer, initargs=("init failed",))
    r = p.apply_async(tasks.square, (1,))
    with pytest.raises(RuntimeError, match="^init failed$") as info:
        r.get(timeout=20)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "failing_initializer" in str(info.value.__cause__)
    with pytest.raises(RuntimeError, match="^init failed$"):
        p.map(tasks.square, range(4))
    # A task submitted after the failure fails too, at once.
    with pytest.raises(RuntimeError, match="^init failed$"):
        p.apply(tasks.square, (2,))


@pytest.mark.timeout(30)
def test_failing_initializer_pool_closes_promptly(make_pool):
    p = make_pool(2, initializer=tasks.failing_initializer, initargs=("init failed",))
    r = p.apply_async(tasks.square, (1,))
    with pytest.raises(RuntimeError):
        r.get(timeout=20)
    start = time.monotonic()
    p.close()
    p.join()
    assert time.monotonic() - start < 5


@pytest.mark.timeout(30)
def test_failing_initializer_does_not_respawn_forever(make_pool):
    p = make_pool(1, initializer=tasks.failing_initializer, initargs=("init failed",))
    with pytest.raises(RuntimeError):
        p.apply(tasks.square, (1,))
    # However long the pool lives, its tasks fail rather than wait.
    results = [p.apply_async(tasks.square, (i,)) for i in range(5)]
    for r in results:
        with pytest.raises(RuntimeError, match="^init failed$"):
            r.get(timeout=20)
    p.terminate()
    p.join()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("exit_func", [os._exit, sys.exit], ids=["os_exit", "sys_exit"])
def test_initializer_that_kills_the_worker(make_pool, exit_func):
    # A worker that dies in its initializer (no exception to report) must
    # fail the tasks, not respawn silently forever.
    p = make_pool(1, initializer=exit_func, initargs=(4,))
    with pytest.raises(WorkerLostError) as info:
        p.apply_async(tasks.square, (2,)).get(timeout=20)
    assert info.value.exitcode == 4
    p.close()
    start = time.monotonic()
    p.join()
    assert time.monotonic() - start < 5


@pytest.mark.timeout(30)
def test_worker_killed_while_initialising_is_replaced(make_pool, tmp_path):
    # A kill from outside during start-up is not the initializer failing:
    # the stdlib replaces that worker, and so does gopool.
    marker = tmp_path / "killed"
    p = make_pool(1, initializer=tasks.sigkill_self_unless, initargs=(str(marker),))
    pid = p.apply(tasks.getpid)
    assert pid != int(marker.read_text())
    assert [w.pid for w in p.workers()] == [pid]


@pytest.mark.timeout(30)
def test_workers_killed_while_initialising_every_time_fail_the_tasks(make_pool, tmp_path):
    # stdlib hangs here (it respawns workers forever). gopool tries a few
    # workers, then fails the tasks with the last death.
    marker = tmp_path / "killed.always"
    p = make_pool(1, initializer=tasks.sigkill_self_unless, initargs=(str(marker),))
    with pytest.raises(WorkerLostError) as info:
        p.apply(tasks.square, (2,))
    assert info.value.exitcode == -signal.SIGKILL
    tries = len(marker.read_text().split())
    assert 1 < tries < 10
    with pytest.raises(WorkerLostError):
        p.apply_async(tasks.square, (3,)).get(timeout=20)
    p.close()
    start = time.monotonic()
    p.join()
    assert time.monotonic() - start < 5
    assert len(marker.read_text().split()) == tries
