"""Task functions and probes for the cluster tests.

The tasks run in gopool worker processes under a Dask worker; the probes
(``gopool_children``) run inside Dask worker processes through
``client.run``. Tasks that must be seen to start announce it with a file;
tasks that must wait for the test wait for a file (see tasks.py).
"""

import os
import random
import signal
import time

from helpers.tasks import _touch, wait_for_path


def record(marker_dir, name, value=None):
    """Append one line (pid and value) to marker_dir/name: a counter of
    runs that survives the process."""
    with open(os.path.join(marker_dir, name), "a") as f:
        f.write(f"{os.getpid()} {value}\n")
    return value


def record_then_sleep(marker_dir, name, seconds):
    """Count a run, announce it (started-<name>), then sleep; return the pid."""
    record(marker_dir, name)
    _touch(os.path.join(marker_dir, f"started-{name}"), str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def interval(marker_dir, index, seconds=0.3):
    """Record when this task ran: start and end times, in a file of its own."""
    start = time.time()
    time.sleep(seconds)
    _touch(os.path.join(marker_dir, f"interval-{index}"), f"{start} {time.time()}")
    return index


def pid_after_start(marker_dir, name):
    """Announce the start, then return (pid, parent pid)."""
    _touch(os.path.join(marker_dir, f"started-{name}"), str(os.getpid()))
    return os.getpid()


def segfault(_=None):
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(30)


def count_items(items):
    return len(items)


def big_list(n):
    return list(range(n))


def touch_and_return(marker_dir, x):
    _touch(os.path.join(marker_dir, f"ran-{x}"))
    return x


def wait_for_file(path, value):
    wait_for_path(path)
    return value


def random_value(_=None):
    return random.random()


def allocate(megabytes):
    data = bytearray(megabytes << 20)
    return len(data)


def gopool_children():
    """Run in a Dask worker: the pids of gopool worker processes below it
    (its idle zygote, a direct child that forks workers, does not count)."""
    import psutil

    me = psutil.Process()
    pids = []
    for child in me.children(recursive=True):
        try:
            zygote = child.ppid() == me.pid and "gopool._zygote" in " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if not zygote:
            pids.append(child.pid)
    return pids


def worker_pid():
    return os.getpid()


def touch_then_fail_on_odd(marker_dir, x):
    """Leave a trace of the run, then fail for odd x."""
    touch_and_return(marker_dir, x)
    if x % 2:
        raise ValueError(x)
    return x
