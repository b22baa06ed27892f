"""gopool.Process and gopool.Event against the stdlib's contract
(SEMANTICS.md §15 and §16), and what gopool adds: no orphans, and a clear
error for terminate()/kill() before start().

Children are started by the Go core with fork+exec; targets travel by
pickle (cloudpickle for lambdas and closures). Tests wait on Events, Queues,
sentinels and pipes, never on sleeps.
"""

import multiprocessing
import multiprocessing.connection
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import gopool
from gopool import Event, Process, Queue

from helpers import process_tasks as pt
from helpers.util import pid_alive, wait_pids_gone

pytestmark = pytest.mark.timeout(60)

TESTS_DIR = Path(__file__).resolve().parent
PACKAGE_PARENT = Path(gopool.__file__).resolve().parent.parent

CLOSED = "^process object is closed$"
NOT_STARTED = "^process not started$"


@pytest.fixture
def make_process():
    """Build gopool.Process objects; any still running at the end of the
    test is killed and joined."""
    made = []

    def make(*args, cls=Process, **kwargs):
        p = cls(*args, **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        try:
            if p._popen is not None and p.exitcode is None:
                p.kill()
                p.join(10)
        except Exception:
            pass


@pytest.fixture
def events():
    """A (ready, release) pair: a child sets ready, then waits for release.
    release is set at the end of the test, whatever happened."""
    ready, release = Event(), Event()
    yield ready, release
    release.set()


def _started_waiting(make_process, events, **kwargs):
    """A started Process that has set ready and waits for release."""
    ready, release = events
    p = make_process(target=pt.set_then_wait, args=(ready, release), **kwargs)
    p.start()
    assert ready.wait(20), "the child never started"
    return p


def _started_sleeping(make_process):
    """A started Process that has set an Event and sleeps: it may be killed
    (a child killed inside Event.wait() would break that Event)."""
    ready = Event()
    p = make_process(target=pt.set_then_sleep, args=(ready, 60))
    p.start()
    assert ready.wait(20), "the child never started"
    return p


# --------------------------------------------------------------------------
# Exit codes


@pytest.mark.parametrize(
    "how, exitcode",
    [
        ("return", 0),
        ("sys_exit_none", 0),
        ("sys_exit_3", 3),
        ("os_exit_7", 7),
        ("sys_exit_msg", 1),
        ("raise", 1),
    ],
)
def test_exitcode(make_process, how, exitcode):
    p = make_process(target=pt.exit_with, args=(how,))
    assert p.exitcode is None
    p.start()
    assert p.join() is None
    assert p.exitcode == exitcode
    assert not p.is_alive()


def test_start_join_exitcode_zero(make_process):
    p = make_process(target=pt.sleep_for, args=(0,))
    p.start()
    assert isinstance(p.pid, int) and p.pid > 0 and p.pid != os.getpid()
    p.join()
    assert p.exitcode == 0
    assert re.fullmatch(r"<Process name='Process-\d+' pid=\d+ parent=\d+ stopped exitcode=0>", repr(p)), repr(p)


def _run_script(name, *args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_PARENT), str(TESTS_DIR)])
    return subprocess.Popen(
        [sys.executable, str(TESTS_DIR / "helpers" / name), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.timeout(40)
def test_uncaught_exception_prints_traceback_and_exits_1():
    proc = _run_script("proc_exits.py", "raise")
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.splitlines() == ["EXITCODE 1"], (out, err)
    assert "Process doomed-child:\n" in err, err
    assert "Traceback (most recent call last):" in err
    assert err.rstrip().endswith("ValueError: a bad thing happened in the child"), err
    assert proc.returncode == 0


@pytest.mark.timeout(40)
def test_sys_exit_message_goes_to_stderr_and_exits_1():
    proc = _run_script("proc_exits.py", "sys_exit_msg")
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.splitlines() == ["EXITCODE 1"], (out, err)
    assert err.splitlines() == ["the child said goodbye"], err
    assert proc.returncode == 0


def test_terminate_gives_minus_sigterm(make_process):
    p = _started_sleeping(make_process)
    p.terminate()
    p.join(20)
    assert p.exitcode == -signal.SIGTERM
    assert not p.is_alive()
    assert repr(p).endswith("stopped exitcode=-SIGTERM>"), repr(p)


def test_kill_gives_minus_sigkill(make_process):
    p = _started_sleeping(make_process)
    p.kill()
    p.join(20)
    assert p.exitcode == -signal.SIGKILL
    assert not p.is_alive()


def test_terminate_and_kill_after_exit_are_ignored(make_process):
    p = make_process(target=pt.exit_with, args=("sys_exit_3",))
    p.start()
    p.join()
    p.terminate()
    p.kill()
    assert p.exitcode == 3


def test_killed_from_outside(make_process):
    p = _started_sleeping(make_process)
    os.kill(p.pid, signal.SIGKILL)
    p.join(20)
    assert p.exitcode == -signal.SIGKILL


# --------------------------------------------------------------------------
# State: is_alive, pid, name, daemon, join


def test_is_alive_before_while_after(make_process, events):
    ready, release = events
    p = make_process(target=pt.set_then_wait, args=(ready, release))
    assert not p.is_alive()
    assert p.pid is None and p.ident is None
    p.start()
    assert ready.wait(20)
    assert p.is_alive()
    assert p.exitcode is None
    release.set()
    p.join(20)
    assert not p.is_alive()
    assert p.exitcode == 0


def test_join_timeout_returns_none_while_running(make_process, events):
    p = _started_waiting(make_process, events)
    start = time.monotonic()
    assert p.join(0.2) is None
    assert time.monotonic() - start >= 0.15
    assert p.is_alive() and p.exitcode is None
    assert p.join(-1) is None  # a negative timeout acts as 0
    assert p.is_alive()
    events[1].set()
    assert p.join(20) is None
    assert p.exitcode == 0
    assert p.join() is None  # may be joined again


def test_default_name_pattern(make_process):
    a, b = make_process(target=pt.sleep_for, args=(0,)), make_process(target=pt.sleep_for, args=(0,))
    assert re.fullmatch(r"Process-\d+", a.name), a.name
    assert re.fullmatch(r"Process-\d+", b.name), b.name
    assert a.name != b.name
    sub = make_process(Queue(), 2, cls=pt.SquareProcess)
    assert re.fullmatch(r"SquareProcess-\d+", sub.name), sub.name


def test_custom_name_and_setter(make_process):
    p = make_process(target=pt.sleep_for, args=(0,), name="worker-one")
    assert p.name == "worker-one"
    p.name = "renamed"
    assert p.name == "renamed"
    with pytest.raises(AssertionError, match="^name must be a string$"):
        p.name = 5


def test_group_must_be_none():
    with pytest.raises(AssertionError, match="^group argument must be None for now$"):
        Process(group=object(), target=pt.sleep_for, args=(0,))


def test_daemon_default_and_setter(make_process, events):
    assert make_process(target=pt.sleep_for, args=(0,)).daemon is False
    assert make_process(target=pt.sleep_for, args=(0,), daemon=True).daemon is True
    p = make_process(target=pt.set_then_wait, args=events)
    p.daemon = True
    assert p.daemon is True
    p.start()
    assert events[0].wait(20)
    with pytest.raises(AssertionError, match="^process has already started$"):
        p.daemon = False
    assert p.daemon is True


def test_daemon_is_inherited_and_daemons_have_no_children(make_process):
    results = Queue()
    p = make_process(target=pt.report_daemon_rules, args=(results,), daemon=True)
    p.start()
    inherited, outcome = results.get(timeout=20)
    p.join(20)
    assert inherited is True
    assert outcome == ("AssertionError", "daemonic processes are not allowed to have children")
    assert p.exitcode == 0


# --------------------------------------------------------------------------
# Misuse


def test_start_twice(make_process, events):
    p = _started_waiting(make_process, events)
    with pytest.raises(AssertionError, match="^cannot start a process twice$"):
        p.start()


def test_start_twice_after_exit(make_process):
    p = make_process(target=pt.sleep_for, args=(0,))
    p.start()
    p.join()
    with pytest.raises(AssertionError, match="^cannot start a process twice$"):
        p.start()


def test_join_before_start():
    p = Process(target=pt.sleep_for, args=(0,))
    with pytest.raises(AssertionError, match="^can only join a started process$"):
        p.join()


@pytest.mark.parametrize("method", ["terminate", "kill"])
def test_terminate_or_kill_before_start(method):
    # stdlib: AttributeError("'NoneType' object has no attribute 'terminate'"),
    # an accident of its implementation.
    p = Process(target=pt.sleep_for, args=(0,))
    with pytest.raises(ValueError, match=NOT_STARTED):
        getattr(p, method)()
    assert p.exitcode is None and not p.is_alive()


def test_close_while_running(make_process, events):
    p = _started_waiting(make_process, events)
    with pytest.raises(ValueError) as info:
        p.close()
    assert str(info.value) == (
        "Cannot close a process while it is still running. "
        "You should first call join() or terminate()."
    )
    assert p.is_alive()  # close() failed: the object is still usable
    events[1].set()
    p.join(20)
    assert p.exitcode == 0


def test_attributes_after_close(make_process):
    p = make_process(target=pt.sleep_for, args=(0,))
    p.start()
    p.join()
    p.close()
    p.close()  # idempotent
    for attribute in ("pid", "ident", "exitcode", "sentinel"):
        with pytest.raises(ValueError, match=CLOSED):
            getattr(p, attribute)
    for method in ("is_alive", "start", "terminate", "kill"):
        with pytest.raises(ValueError, match=CLOSED):
            getattr(p, method)()
    with pytest.raises(ValueError, match=CLOSED):
        p.join()
    assert "closed" in repr(p)


def test_close_before_start_then_start(make_process):
    p = make_process(target=pt.sleep_for, args=(0,))
    p.close()
    with pytest.raises(ValueError, match=CLOSED):
        p.start()


# --------------------------------------------------------------------------
# sentinel


def test_sentinel_before_start():
    p = Process(target=pt.sleep_for, args=(0,))
    with pytest.raises(ValueError, match=NOT_STARTED):
        p.sentinel


def test_sentinel_with_connection_wait(make_process, events):
    p = _started_waiting(make_process, events)
    sentinel = p.sentinel
    assert isinstance(sentinel, int)
    assert multiprocessing.connection.wait([sentinel], timeout=0.2) == []
    events[1].set()
    assert multiprocessing.connection.wait([sentinel], timeout=20) == [sentinel]
    p.join(20)
    assert p.exitcode == 0


def test_sentinel_wait_among_several(make_process):
    # The stdlib's idiom for "whichever child ends first".
    ready, release = Event(), Event()
    try:
        waiting = make_process(target=pt.set_then_wait, args=(ready, release))
        quick = make_process(target=pt.exit_with, args=("sys_exit_3",))
        waiting.start()
        assert ready.wait(20)
        quick.start()
        assert multiprocessing.connection.wait([waiting.sentinel, quick.sentinel], timeout=20) == [quick.sentinel]
        quick.join(20)
        assert quick.exitcode == 3
        assert waiting.is_alive()
    finally:
        release.set()


# --------------------------------------------------------------------------
# Targets and arguments


def test_subclass_overriding_run(make_process):
    results = Queue()
    p = make_process(results, 7, name="squarer", cls=pt.SquareProcess)
    p.start()
    assert results.get(timeout=20) == ("run", 49, "squarer")
    p.join(20)
    assert p.exitcode == 0


def test_lambda_target(make_process):
    results = Queue()
    p = make_process(target=lambda q, x: q.put(("lambda", x + 1)), args=(results, 41))
    p.start()
    assert results.get(timeout=20) == ("lambda", 42)
    p.join(20)
    assert p.exitcode == 0


def test_closure_target(make_process):
    results = Queue()
    captured = {"word": "closure", "n": 3}

    def target(q):
        q.put(captured["word"] * captured["n"])

    p = make_process(target=target, args=(results,))
    p.start()
    assert results.get(timeout=20) == "closureclosureclosure"
    p.join(20)
    assert p.exitcode == 0


def test_args_and_kwargs(make_process):
    results = Queue()
    p = make_process(target=pt.report_kwargs, args=(results, 1), kwargs={"b": 2, "c": 3})
    p.start()
    assert results.get(timeout=20) == (1, 2, 3)
    p.join(20)
    assert p.exitcode == 0


def test_no_target_runs_nothing(make_process):
    p = make_process()
    p.start()
    p.join(20)
    assert p.exitcode == 0


def test_queue_carries_results_back(make_process):
    results = Queue()
    p = make_process(target=lambda q: [q.put(i * i) for i in range(100)], args=(results,))
    p.start()
    assert [results.get(timeout=20) for _ in range(100)] == [i * i for i in range(100)]
    p.join(20)
    assert p.exitcode == 0


# --------------------------------------------------------------------------
# current_process, parent_process, active_children


def test_child_identity(make_process):
    results = Queue()
    p = make_process(target=pt.report_identity, args=(results,), name="identity-child")
    p.start()
    info = results.get(timeout=20)
    p.join(20)
    assert info["name"] == "identity-child"
    assert info["pid"] == info["current_pid"] == p.pid
    assert info["daemon"] is False
    assert info["parent_pid"] == os.getpid()
    assert info["parent_name"] == gopool.current_process().name
    assert info["parent_alive"] is True
    assert p.exitcode == 0


def test_parent_side_helpers_are_the_stdlib_ones():
    assert gopool.current_process() is multiprocessing.current_process()
    assert gopool.parent_process() is None  # the test process has no multiprocessing parent


def test_active_children(make_process, events):
    p = _started_waiting(make_process, events)
    assert p in gopool.active_children()
    assert p in multiprocessing.active_children()
    events[1].set()
    p.join(20)
    assert p not in gopool.active_children()


def test_child_outlives_the_thread_that_started_it(make_process, events):
    # PR_SET_PDEATHSIG fires when the *thread* that spawned a child exits: the
    # child must not die with a short-lived starter thread.
    ready, release = events
    p = make_process(target=pt.set_then_wait, args=(ready, release))
    starter = threading.Thread(target=p.start)
    starter.start()
    starter.join(20)
    assert ready.wait(20)
    assert p.join(0.5) is None
    assert p.is_alive(), f"the child died with its starter thread (exitcode {p.exitcode})"
    release.set()
    p.join(20)
    assert p.exitcode == 0


# --------------------------------------------------------------------------
# Event


def test_event_in_process_semantics():
    e = Event()
    assert e.is_set() is False
    start = time.monotonic()
    assert e.wait(0.2) is False
    assert time.monotonic() - start >= 0.15
    assert e.wait(0) is False
    e.set()
    assert e.is_set() is True
    assert e.wait() is True
    assert e.wait(0) is True
    assert e.wait(5) is True
    e.set()  # setting twice is harmless
    assert e.is_set() is True
    e.clear()
    assert e.is_set() is False
    assert e.wait(0.01) is False
    assert re.fullmatch(r"<Event at 0x[0-9a-f]+ unset>", repr(e)), repr(e)
    e.set()
    assert re.fullmatch(r"<Event at 0x[0-9a-f]+ set>", repr(e)), repr(e)


def test_event_wakes_a_waiting_thread():
    e = Event()
    got = []
    t = threading.Thread(target=lambda: got.append(e.wait(20)))
    t.start()
    e.set()
    t.join(20)
    assert got == [True]


def test_event_parent_sets_child_waits(make_process):
    e, results = Event(), Queue()
    p = make_process(target=pt.wait_event_report, args=(e, results))
    p.start()
    assert results.empty()
    e.set()
    assert results.get(timeout=20) == ("waited", True, p.pid)
    p.join(20)
    assert p.exitcode == 0


def test_event_child_sets_parent_waits(make_process, events):
    ready, release = events
    assert not ready.is_set()
    p = make_process(target=pt.set_then_wait, args=(ready, release))
    p.start()
    assert ready.wait(20) is True
    assert ready.is_set()
    release.set()
    p.join(20)
    assert p.exitcode == 0


def test_event_child_wait_times_out(make_process):
    e, results = Event(), Queue()
    p = make_process(target=pt.wait_event_report, args=(e, results, 0.1))
    p.start()
    assert results.get(timeout=20) == ("waited", False, p.pid)
    p.join(20)
    assert p.exitcode == 0


def test_event_shared_with_pool_workers_through_initargs():
    e = Event()
    pool = gopool.Pool(1, initializer=pt.remember, initargs=(e,))
    try:
        r = pool.apply_async(pt.wait_remembered_event)
        e.set()
        waited, pid = r.get(timeout=20)
        assert waited is True and pid != os.getpid()
    finally:
        pool.terminate()
        pool.join()


@pytest.mark.timeout(30)
def test_event_set_after_a_waiter_was_killed(make_process):
    # stdlib: the same hang. A child killed inside Event.wait() stays counted
    # as a sleeper of the Event's Condition, so the next set() waits forever
    # for it to wake (named semaphores have no owner-death recovery).
    event, ready = Event(), Event()
    p = make_process(target=pt.set_then_wait, args=(ready, event))
    p.start()
    assert ready.wait(20)
    # The child's main thread sleeps in a futex once it is inside wait().
    wchan = f"/proc/{p.pid}/wchan"
    deadline = time.monotonic() + 20
    while "futex" not in open(wchan).read():
        assert time.monotonic() < deadline, "the child never waited on the event"
        time.sleep(0.01)
    p.kill()
    p.join(20)
    assert p.exitcode == -signal.SIGKILL
    setter = threading.Thread(target=event.set, daemon=True)
    setter.start()
    setter.join(5)
    assert not setter.is_alive(), "Event.set() hangs after a waiting child was killed"
    assert event.is_set() and event.wait(0) is True


def test_event_cannot_be_pickled_outside_process_creation():
    with pytest.raises(RuntimeError, match="through inheritance"):
        pickle.dumps(Event())


# --------------------------------------------------------------------------
# No orphans


class _Script:
    """A helper script run as a user's program; its first stdout line is
    read with a timeout."""

    def __init__(self, name, *args):
        self.proc = _run_script(name, *args)
        self._lines = []
        self._got_line = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in iter(self.proc.stdout.readline, ""):
            self._lines.append(line.rstrip("\n"))
            self._got_line.set()
        self._got_line.set()

    def first_line(self, timeout):
        self._got_line.wait(timeout)
        return self._lines[0] if self._lines else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _child_pid(script):
    line = script.first_line(timeout=20)
    if not (line and line.startswith("PID ")):
        script.stop()
        raise AssertionError(f"no PID line: {line!r}; stderr: {script.proc.stderr.read()}")
    return int(line.split()[1])


def _gone_within(pid, seconds):
    """Poll until pid no longer runs (exited, or a zombie nobody reaped)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


@pytest.mark.timeout(40)
@pytest.mark.parametrize("mode", ["main", "thread"])
def test_child_dies_with_its_sigkilled_parent(mode):
    # stdlib: the child of a SIGKILLed parent keeps running (an orphan).
    # thread: the child was started from a thread that has since exited.
    script = _Script("proc_orphan.py", mode)
    pid = None
    try:
        pid = _child_pid(script)
        assert pid_alive(pid)
        script.proc.kill()
        script.proc.wait(10)
        assert _gone_within(pid, 3.0), f"child {pid} outlived its SIGKILLed parent"
    finally:
        script.stop()
        if pid is not None and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(40)
def test_daemon_child_is_terminated_when_the_parent_exits():
    script = _Script("proc_orphan.py", "daemon_exit")
    pid = None
    try:
        pid = _child_pid(script)
        assert script.proc.wait(20) == 0, script.proc.stderr.read()
        assert wait_pids_gone([pid], 3.0) == [], f"daemonic child {pid} outlived its parent"
    finally:
        script.stop()
        if pid is not None and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
