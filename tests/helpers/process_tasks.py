"""Targets for the Process and termination tests.

A gopool.Process child and a pool worker import these by reference (they get
the parent's sys.path). Children that must be seen to start announce it by
setting an Event or creating a file; children that must wait for the test
wait on an Event or a file, never on a sleep.
"""

import os
import sys
import time

import gopool

from helpers.tasks import MAX_WAIT, _touch, wait_for_path

# Set by ``remember`` (a pool initializer), read by tasks in the same worker.
REMEMBERED = None


def exit_with(how):
    """End the process the way ``how`` says."""
    if how == "return":
        return
    if how == "sys_exit_none":
        sys.exit()
    if how == "sys_exit_3":
        sys.exit(3)
    if how == "os_exit_7":
        os._exit(7)
    if how == "sys_exit_msg":
        sys.exit("the child said goodbye")
    if how == "raise":
        raise ValueError("a bad thing happened in the child")
    raise AssertionError(how)


def set_then_wait(ready, release, limit=MAX_WAIT):
    """Set ready, then wait until release is set (or give up after limit s)."""
    ready.set()
    release.wait(limit)


def set_then_sleep(ready, seconds=MAX_WAIT):
    """Set ready, then sleep: a child that may be killed without leaving a
    dead waiter on an Event (the stdlib's Event cannot recover from one)."""
    ready.set()
    time.sleep(seconds)


def wait_event_report(event, results, limit=MAX_WAIT):
    """Wait on event and put what wait() returned, with the pid, on results."""
    results.put(("waited", event.wait(limit), os.getpid()))


def report_identity(results):
    """Put what the child knows about itself and its parent on results."""
    me = gopool.current_process()
    parent = gopool.parent_process()
    results.put(
        {
            "name": me.name,
            "pid": os.getpid(),
            "current_pid": me.pid,
            "daemon": me.daemon,
            "parent_pid": parent.pid if parent is not None else None,
            "parent_name": parent.name if parent is not None else None,
            "parent_alive": parent.is_alive() if parent is not None else None,
        }
    )


def report_kwargs(results, a, b=0, *, c=0):
    results.put((a, b, c))


def report_daemon_rules(results):
    """In a daemonic child: is a new Process daemonic by default, and may it
    be started?"""
    child = gopool.Process(target=time.sleep, args=(0,))
    inherited = child.daemon
    try:
        child.start()
    except AssertionError as exc:
        outcome = ("AssertionError", str(exc))
    else:
        child.join()
        outcome = ("started", child.exitcode)
    results.put((inherited, outcome))


def sleep_for(seconds):
    time.sleep(seconds)


def touch_then_sleep(path, seconds=MAX_WAIT):
    """Create path holding the pid, then sleep."""
    _touch(path, str(os.getpid()))
    time.sleep(seconds)


def create_file(path, value=None):
    """Leave a trace that the task ran."""
    _touch(path, str(os.getpid()))
    return value


def allocate(nbytes):
    """Allocate nbytes (zeroed pages are not touched: bytes(n) uses calloc)
    and return the pid."""
    block = bytes(nbytes)
    size = len(block)
    del block
    return size, os.getpid()


def remember(value):
    """A pool initializer: keep value in the worker."""
    global REMEMBERED
    REMEMBERED = value


def wait_remembered_event(limit=MAX_WAIT):
    """A pool task: wait on the Event the initializer kept."""
    return REMEMBERED.wait(limit), os.getpid()


class SquareProcess(gopool.Process):
    """A Process subclass that overrides run()."""

    def __init__(self, results, x, **kwargs):
        super().__init__(**kwargs)
        self.results = results
        self.x = x

    def run(self):
        self.results.put(("run", self.x * self.x, gopool.current_process().name))

