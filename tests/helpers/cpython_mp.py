"""CPython's multiprocessing test suite with ``multiprocessing`` meaning gopool.

The source of ``test._test_multiprocessing`` (shipped with CPython) is run
in this module's namespace, so that its test functions, task functions and
classes live here, under a name that gopool's children and pool workers can
import. Afterwards the module-level name ``multiprocessing`` that its tests
use is rebound to :data:`facade`: gopool's names first, the stdlib's for what
gopool does not have (``multiprocessing.process._dangling``...).

The test classes (``WithGopoolProcesses<Name>``, ``WithGopoolThreadsTestPool``,
``GopoolTestSimpleQueue``) are built here, with mixins that route
``self.Process``, ``self.Pool``, ``self.Queue``... to gopool, as the CPython
suite's own ``ProcessesMixin``/``ThreadsMixin`` route them to a start
method. tests/test_cpython_mp.py collects them and lists what is excluded.
"""

import importlib.util
import multiprocessing as _stdlib_multiprocessing
import multiprocessing.process
import multiprocessing.queues  # noqa: F401  (the source expects them loaded)
import types
import unittest

import gopool
import gopool.dummy

_SOURCE_PATH = importlib.util.find_spec("test._test_multiprocessing").origin
with open(_SOURCE_PATH, encoding="utf-8") as _f:
    exec(compile(_f.read(), _SOURCE_PATH, "exec"), globals())


class _GopoolAsMultiprocessing(types.ModuleType):
    """What ``multiprocessing.X`` means in the suite's code: gopool's X,
    else the stdlib's (``process`` stays the stdlib's: the suite reads its
    private registry of processes, where gopool's processes are too)."""

    _STDLIB = frozenset({"process"})

    def __getattr__(self, name):
        if name not in self._STDLIB:
            try:
                return getattr(gopool, name)
            except AttributeError:
                pass
        return getattr(_stdlib_multiprocessing, name)


facade = _GopoolAsMultiprocessing("multiprocessing")
multiprocessing = facade  # noqa: F811  (the suite's global, rebound)


class GopoolProcessesMixin(BaseMixin):  # noqa: F405  (from the suite's source)
    """The suite's ProcessesMixin with gopool's objects."""

    TYPE = "processes"
    Process = gopool.Process
    connection = gopool.connection
    current_process = staticmethod(gopool.current_process)
    parent_process = staticmethod(gopool.parent_process)
    active_children = staticmethod(gopool.active_children)
    set_executable = staticmethod(gopool.set_executable)
    Pool = staticmethod(gopool.Pool)
    Pipe = staticmethod(gopool.Pipe)
    Queue = staticmethod(gopool.Queue)
    JoinableQueue = staticmethod(gopool.JoinableQueue)
    Lock = staticmethod(gopool.Lock)
    RLock = staticmethod(gopool.RLock)
    Semaphore = staticmethod(gopool.Semaphore)
    BoundedSemaphore = staticmethod(gopool.BoundedSemaphore)
    Condition = staticmethod(gopool.Condition)
    Event = staticmethod(gopool.Event)
    Barrier = staticmethod(gopool.Barrier)
    Value = staticmethod(gopool.Value)
    Array = staticmethod(gopool.Array)
    RawValue = staticmethod(gopool.RawValue)
    RawArray = staticmethod(gopool.RawArray)


class GopoolThreadsMixin(ThreadsMixin):  # noqa: F405
    """The suite's ThreadsMixin with gopool's ThreadPool."""

    Pool = staticmethod(gopool.dummy.Pool)


def _build(bases, name):
    cls = type(name, bases, {})
    cls.__module__ = __name__
    globals()[name] = cls
    return cls


PROCESS_CLASSES = [
    _build((base, GopoolProcessesMixin, unittest.TestCase), "WithGopoolProcesses" + base.__name__[1:])
    for base in (_TestPool, _TestQueue, _TestProcess, _TestEvent)  # noqa: F405
]
THREAD_CLASSES = [
    _build((_TestPool, GopoolThreadsMixin, unittest.TestCase), "WithGopoolThreadsTestPool")  # noqa: F405
]
OTHER_CLASSES = [_build((TestSimpleQueue,), "GopoolTestSimpleQueue")]  # noqa: F405
