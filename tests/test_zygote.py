"""Workers and Process children are forked by a zygote, a warm interpreter
the core keeps per parent (gopool/zygote.go, gopool/_zygote.py): what a
process started that way must still get from its parent at the time it
starts, and what happens when the zygote goes away."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import gopool
from helpers import tasks
from helpers.util import wait_pids_gone


def _ppid(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode()


def _environ(_=None):
    return dict(os.environ)


def _put_environ(queue):
    queue.put(dict(os.environ))


def _environ_value(name):
    return os.environ.get(name)


def _cwd(_=None):
    return os.getcwd()


def _pgid(_=None):
    return os.getpgid(0)


def _say(text):
    print(text, flush=True)


@pytest.mark.timeout(30)
def test_workers_and_children_come_from_one_zygote(make_pool):
    p = make_pool(2)
    pids = [w.pid for w in p.workers()]
    zygotes = {_ppid(pid) for pid in pids}
    assert len(zygotes) == 1 and os.getpid() not in zygotes
    [zygote] = zygotes
    assert "gopool._zygote" in _cmdline(zygote)
    child = gopool.Process(target=tasks.square, args=(3,))
    child.start()
    assert _ppid(child.pid) == zygote
    child.join(10)
    assert child.exitcode == 0


@pytest.mark.timeout(30)
def test_a_new_process_gets_the_parents_environment_and_directory_of_now(make_pool, tmp_path, monkeypatch):
    make_pool(1).apply(tasks.square, (1,))  # the zygote is running from here on
    monkeypatch.setenv("GOPOOL_TEST_LATE", "late value")
    monkeypatch.chdir(tmp_path)
    p = make_pool(1)
    assert p.apply(_environ_value, ("GOPOOL_TEST_LATE",)) == "late value"
    assert p.apply(_cwd) == str(tmp_path)
    assert p.apply(_environ) == dict(os.environ)


@pytest.mark.timeout(30)
def test_a_process_gets_the_whole_environment_unchanged_or_changed(monkeypatch):
    for change in (None, ("GOPOOL_TEST_LATE", "late"), ("PATH", None)):
        if change is not None:
            name, value = change
            if value is None:
                monkeypatch.delenv(name)
            else:
                monkeypatch.setenv(name, value)
        with gopool.Pool(1) as p:
            assert p.apply(_environ) == dict(os.environ)
        queue = gopool.SimpleQueue()
        child = gopool.Process(target=_put_environ, args=(queue,))
        child.start()
        assert queue.get() == dict(os.environ)
        child.join(10)


@pytest.mark.timeout(30)
def test_process_children_share_the_parents_process_group_and_workers_do_not(make_pool):
    p = make_pool(1)
    assert p.apply(_pgid) != os.getpgid(0)  # Ctrl-C at a terminal is the parent's to handle
    child = gopool.Process(target=time.sleep, args=(60,))
    child.start()
    try:
        assert os.getpgid(child.pid) == os.getpgid(0)
    finally:
        child.kill()
        child.join(10)


_REDIRECTED = """
import os, sys
import gopool

def say(text):
    print(text, flush=True)

if __name__ == "__main__":
    with gopool.Pool(1) as p:
        p.apply(say, ("before",))  # starts the zygote with the first stdout
        out = open(sys.argv[1], "w")
        os.dup2(out.fileno(), 1)
    with gopool.Pool(1) as p:
        p.apply(say, ("from a worker",))
    child = gopool.Process(target=say, args=("from a child",))
    child.start()
    child.join()
"""


@pytest.mark.timeout(60)
def test_a_new_process_writes_to_the_parents_stdout_of_now(tmp_path):
    script = tmp_path / "redirected.py"
    script.write_text(textwrap.dedent(_REDIRECTED))
    out = tmp_path / "out.txt"
    run = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=50)
    assert run.returncode == 0, run.stderr
    assert "before" in run.stdout
    assert out.read_text().split() == ["from", "a", "worker", "from", "a", "child"]


@pytest.mark.timeout(60)
def test_a_program_that_never_changes_its_environment_passes_it_whole():
    # Outside pytest (which changes PYTEST_CURRENT_TEST) the parent's
    # environment is the zygote's own: children keep the one they forked with.
    code = textwrap.dedent("""
        import os, gopool
        def environ(_=None):
            return dict(os.environ)
        if __name__ == "__main__":
            with gopool.Pool(1) as p:
                same = [p.apply(environ) == dict(os.environ) for _ in range(2)]
            q = gopool.SimpleQueue()
            child = gopool.Process(target=lambda: q.put(environ()))
            child.start()
            same.append(q.get() == dict(os.environ))
            child.join()
            print(same, child.exitcode)
    """)
    env = dict(os.environ, GOPOOL_TEST_MARK="\u00e9t\u00e9 = x")
    env.pop("PYTEST_CURRENT_TEST", None)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["[True,", "True,", "True]", "0"]


@pytest.mark.timeout(60)
def test_without_the_zygote_processes_are_the_parents_children(tmp_path):
    code = textwrap.dedent("""
        import os, gopool
        from helpers import tasks
        if __name__ == "__main__":
            with gopool.Pool(1) as p:
                [w] = p.workers()
                with open(f"/proc/{w.pid}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                print(ppid == os.getpid(), p.apply(tasks.square, (4,)))
    """)
    env = dict(os.environ, GOPOOL_ZYGOTE="0", PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["True", "16"]


@pytest.mark.timeout(60)
def test_a_killed_zygote_fails_only_running_tasks_and_the_pool_heals(make_pool, tmp_path):
    p = make_pool(1)
    [old] = [w.pid for w in p.workers()]
    zygote = _ppid(old)
    r = p.apply_async(tasks.touch_then_sleep, (str(tmp_path), 0, 30))
    tasks.wait_for_path(str(tmp_path / "started-0"))
    os.kill(zygote, signal.SIGKILL)
    with pytest.raises(gopool.WorkerLostError):
        r.get(timeout=20)
    assert wait_pids_gone([old]) == []
    assert p.apply(tasks.square, (5,)) == 25
    [new] = [w.pid for w in p.workers()]
    assert _ppid(new) != zygote


@pytest.mark.timeout(30)
def test_a_worker_holds_no_descriptor_but_stdio(make_pool):
    # Its channel and doorbell are mapped and closed; nothing of the zygote
    # or of the parent leaks into it.
    p = make_pool(1)
    fds = p.apply(tasks.open_fds)
    tracker = _resource_tracker_pipe()
    assert sorted(fd for fd, what in fds.items() if what != tracker) == [0, 1, 2], fds


def _resource_tracker_pipe():
    """What the parent's resource tracker pipe reads as in /proc, if the
    parent runs one: children are given it (as the stdlib's are), so that
    shared memory they create is cleaned up after them."""
    from multiprocessing import resource_tracker

    fd = getattr(resource_tracker._resource_tracker, "_fd", None)
    if fd is None:
        return None
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _report_fds(path):
    with open(path, "w") as f:
        f.write(repr(tasks.open_fds()))


@pytest.mark.timeout(30)
def test_a_child_holds_its_pipes_and_what_it_inherits_only(tmp_path):
    out = tmp_path / "fds"
    child = gopool.Process(target=_child_fds, args=(str(out),))
    child.start()
    child.join(20)
    assert child.exitcode == 0
    fds = eval(out.read_text())
    # stdio, fd 3 (from the parent: the parent sentinel), fd 4 (its own
    # sentinel's write end), and the stdin that Process sets up: nothing
    # of the zygote's or of the parent's.
    assert fds[3].startswith("pipe:") and fds[4].startswith("pipe:"), repr(fds)
    tracker = _resource_tracker_pipe()
    assert all(what in ("/dev/null", tracker) for fd, what in fds.items() if fd > 4), repr(fds)


def _child_fds(path):
    fds = tasks.open_fds()
    with open(path, "w") as f:
        f.write(repr(fds))


@pytest.mark.timeout(30)
def test_a_child_first_scheduled_after_its_zygote_died_ends(tmp_path):
    # On a busy machine the parent can be killed between the zygote's fork
    # and the child's first instruction: the child must not then run on
    # as an orphan (it once read its new parent as the zygote).
    marker = tmp_path / "ran"
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run([sys.executable, "-m", "helpers.zygote_orphan", str(marker)],
                         capture_output=True, text=True, timeout=20, env=env)
    assert run.returncode == 0, run.stderr
    child = int(run.stdout)
    assert not wait_pids_gone([child], timeout=10)
    assert not marker.exists()
