"""CPython's own tests of the multiprocessing locks, semaphores, conditions
and barriers (``test._test_multiprocessing``, shipped with this Python),
run against gopool.

``_test_multiprocessing`` builds its test classes by mixing a base class
(``_TestLock``...) with a mixin that names the objects under test
(``self.Lock``, ``self.Process``...: ``ProcessesMixin`` for the
'processes' flavour). Here the mixin is ``GopoolMixin``, a ProcessesMixin
whose names are gopool's; the test classes are made the way
``install_tests_in_module_dict`` makes them. The barrier tests' shared
counter (``_DummyList``, a stdlib Lock from the default 'fork' context,
which a process started by exec cannot open) uses a gopool Lock instead.

Adapted, not excluded:

- ``_TestCondition.check_invariant`` reads the three internal semaphores of
  the stdlib's Condition (``_sleeping_count``, ``_woken_count``,
  ``_wait_semaphore``), which gopool's does not have: here it checks
  gopool's invariant instead, that no waiter is left enlisted.

Excluded: none. Every test of the four classes runs.
"""

import struct
import unittest

import multiprocessing
import multiprocessing.heap
import pytest

import gopool
from gopool._binding import lib

tm = pytest.importorskip("test._test_multiprocessing")

pytestmark = pytest.mark.timeout(300)

_spawn = multiprocessing.get_context("spawn")


class GopoolMixin(tm.ProcessesMixin):
    """The 'processes' flavour, with gopool's objects."""

    Process = gopool.Process
    current_process = staticmethod(gopool.current_process)
    parent_process = staticmethod(gopool.parent_process)
    active_children = staticmethod(gopool.active_children)
    Pool = staticmethod(gopool.Pool)
    Queue = staticmethod(gopool.Queue)
    JoinableQueue = staticmethod(gopool.JoinableQueue)
    Lock = staticmethod(gopool.Lock)
    RLock = staticmethod(gopool.RLock)
    Semaphore = staticmethod(gopool.Semaphore)
    BoundedSemaphore = staticmethod(gopool.BoundedSemaphore)
    Condition = staticmethod(gopool.Condition)
    Event = staticmethod(gopool.Event)
    Barrier = staticmethod(gopool.Barrier)
    # gopool has no shared ctypes: the stdlib's, from a context whose locks
    # a process started by exec can open.
    Value = staticmethod(_spawn.Value)
    Array = staticmethod(_spawn.Array)
    RawValue = staticmethod(_spawn.RawValue)
    RawArray = staticmethod(_spawn.RawArray)


class GopoolDummyList(tm._DummyList):
    """``_DummyList`` (a counter in shared memory) with a gopool Lock."""

    def __init__(self):
        wrapper = multiprocessing.heap.BufferWrapper(struct.calcsize("i"))
        self.__setstate__((wrapper, gopool.Lock()))
        self._lengthbuf[0] = 0


@pytest.fixture(autouse=True, scope="module")
def _gopool_dummy_list():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tm, "_DummyList", GopoolDummyList)
        yield


def _make(base):
    name = "WithGopool" + base.__name__[1:]
    cls = type(name, (base, GopoolMixin, unittest.TestCase), {"__module__": __name__, "__qualname__": name})
    globals()[name] = cls
    return cls


WithGopoolTestLock = _make(tm._TestLock)
WithGopoolTestSemaphore = _make(tm._TestSemaphore)
WithGopoolTestCondition = _make(tm._TestCondition)
WithGopoolTestBarrier = _make(tm._TestBarrier)


def _check_invariant(self, cond):
    # No waiter left enlisted (the stdlib's version counts its Condition's
    # internal semaphores).
    self.assertEqual(lib.CondWaiters(cond._id), 0)


WithGopoolTestCondition.check_invariant = _check_invariant


def test_the_classes_test_gopool():
    # The harness really puts gopool's objects under test.
    case = WithGopoolTestLock("test_lock")
    assert isinstance(case.Lock(), gopool.Lock)
    assert isinstance(WithGopoolTestBarrier("test_barrier").Barrier(2), gopool.Barrier)
    assert tm._DummyList is GopoolDummyList
