"""Task functions for the pool tests.

Workers import task functions by reference, so they live in this importable
module (the worker gets the parent's sys.path). Tasks that must be seen to
start announce it by creating a file; tasks that must wait for the test wait
for a file to appear: the tests never use sleeps to synchronise.
"""

import os
import signal
import sys
import threading
import time

# Set by ``set_global`` (used as a pool initializer), read by ``read_global``.
GLOBAL = None

# The longest any task waits for a file before giving up, so that a worker
# left behind by a failed test does not wait forever.
MAX_WAIT = 60.0


def square(x):
    return x * x


def identity(x):
    return x


def add(a, b):
    return a + b


def with_kwargs(a, b=0, *, c=0):
    return (a, b, c)


def getpid(_=None):
    return os.getpid()


def fail_on_odd(x):
    if x % 2:
        raise ValueError(x)
    return x


def raise_value_error(message):
    raise ValueError(message)


def set_global(value):
    global GLOBAL
    GLOBAL = (value, os.getpid())


def read_global(_=None):
    return GLOBAL


def failing_initializer(message):
    raise RuntimeError(message)


def return_lock(_=None):
    """A result that neither pickle nor cloudpickle can encode."""
    return threading.Lock()


class TwoArgError(Exception):
    """An exception that pickles but cannot be unpickled (its __init__ needs
    two arguments, its args hold one)."""

    def __init__(self, a, b):
        super().__init__(a)
        self.b = b


def raise_two_arg_error(_=None):
    raise TwoArgError("a", "b")


class UnpicklableError(Exception):
    """An exception carrying an attribute that cannot be pickled."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def raise_unpicklable_error(_=None):
    raise UnpicklableError("carries a lock")


def _touch(path, content=""):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(content)
    os.rename(tmp, path)  # atomic: the reader never sees a half-written file


def wait_for_path(path, timeout=MAX_WAIT):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not appear within {timeout} s")
        time.sleep(0.01)


def touch_then_sleep(marker_dir, index, seconds=30.0):
    """Announce the start (a file named after index holding the pid), then
    sleep."""
    _touch(os.path.join(marker_dir, f"started-{index}"), str(os.getpid()))
    time.sleep(seconds)
    return index


def wait_for_go(started_path, go_path, value=None):
    """Write the pid to started_path, wait until go_path exists, return
    (value, pid)."""
    _touch(started_path, str(os.getpid()))
    wait_for_path(go_path)
    return value, os.getpid()


def wait_then_return(go_path, value):
    wait_for_path(go_path)
    return value


def sleep_then_return(seconds, value):
    time.sleep(seconds)
    return value


def write_pid_then(path, how):
    """Write the pid to path, then die the way ``how`` says."""
    _touch(path, str(os.getpid()))
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(MAX_WAIT)
    elif how == "os_exit":
        os._exit(3)
    elif how == "sys_exit":
        sys.exit(3)
    raise ValueError(how)


def sigkill_self_unless(marker_path):
    """An initializer: the first worker to run it (marker_path absent)
    writes its pid there and is killed by SIGKILL, as by the OOM killer or
    a user's kill; later ones return. A marker path ending in ".always"
    kills every worker, appending one line per worker."""
    if marker_path.endswith(".always"):
        with open(marker_path, "a") as f:
            f.write(f"{os.getpid()}\n")
    elif os.path.exists(marker_path):
        return
    else:
        _touch(marker_path, str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(MAX_WAIT)


def die_on(x, bad=2):
    """Return x, but kill the worker when x == bad."""
    if x == bad:
        os._exit(5)
    return x


def raising_generator(n, exc):
    """Yield 1 .. n, then raise exc."""
    for i in range(1, n + 1):
        yield i
    raise exc


def ignore_sigterm_then_sleep(marker_dir, index, seconds=30.0):
    """Like touch_then_sleep, in a worker that ignores SIGTERM."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return touch_then_sleep(marker_dir, index, seconds)


def _load_in_child_only(value, parent_pid):
    """Rebuild value, except in the process parent_pid: there it fails."""
    if os.getpid() == parent_pid:
        raise ValueError(f"this result cannot be unpickled in the parent ({value!r})")
    return value


class NotForTheParent:
    """A result that pickles in a worker but cannot be unpickled in the
    parent whose pid it was given."""

    def __init__(self, value, parent_pid):
        self.value, self.parent_pid = value, parent_pid

    def __reduce__(self):
        return _load_in_child_only, (self.value, self.parent_pid)


def undecodable_on(x, bad, parent_pid):
    """x, except for x == bad: a result the parent cannot unpickle."""
    if x == bad:
        return NotForTheParent(x, parent_pid)
    return x


def sleep_return(x, seconds=0.005):
    time.sleep(seconds)
    return x


def nested(depth):
    """A list nested depth deep: more than pickle can take."""
    value = []
    for _ in range(depth):
        value = [value]
    return value


def sleep_or_clean_up(seconds):
    """Sleep; if told of the soft time limit, stop and say so."""
    from gopool import SoftTimeLimitExceeded

    try:
        time.sleep(seconds)
        return "finished"
    except SoftTimeLimitExceeded:
        return "cleaned up"


def ignore_soft_limit(seconds):
    """Sleep for seconds whatever the soft time limit says."""
    from gopool import SoftTimeLimitExceeded

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            time.sleep(end - time.monotonic())
        except SoftTimeLimitExceeded:
            pass
    return "never"


def touch_sleep_touch(started, seconds, finished):
    """Create started, sleep, then create finished."""
    _touch(started)
    time.sleep(seconds)
    _touch(finished)


def open_fds(_=None):
    """The descriptors this process has open, with what they are."""
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the listing's own descriptor, closed already
    return out


def types_and_values(*args, **kwds):
    """What a task received: each argument with its type's name."""
    return [(type(a).__name__, a) for a in args], {k: (type(v).__name__, v) for k, v in kwds.items()}


def peak_memory_after(data):
    """The worker's peak resident memory (bytes) once it holds data."""
    import resource

    return len(data), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
