"""Fixtures shared by the pool tests.

The pools are small (the machine may have two cores shared with other
work) and every fixture terminates and joins its pool, whatever the test did.
"""

import signal
import sys

import pytest

# Cluster mode runs on Dask, which needs Python 3.10 or later.
collect_ignore = ["test_cluster.py"] if sys.version_info < (3, 10) else []

# Started from a shell's background job, the suite inherits SIGINT ignored,
# and Python then installs no KeyboardInterrupt handler: the tests that
# interrupt a wait, and the programs they start, need the usual one.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _stop(pool):
    try:
        pool.terminate()
        pool.join()
    except Exception:
        pass


@pytest.fixture
def pool():
    """A process Pool of 2 workers."""
    from gopool import Pool

    p = Pool(2)
    yield p
    _stop(p)


@pytest.fixture
def pool1():
    """A process Pool of 1 worker (ordering and pids are deterministic)."""
    from gopool import Pool

    p = Pool(1)
    yield p
    _stop(p)


@pytest.fixture
def tpool():
    """A ThreadPool of 2 threads."""
    from gopool import ThreadPool

    p = ThreadPool(2)
    yield p
    _stop(p)


@pytest.fixture
def make_pool():
    """Build pools with custom arguments; each is terminated and joined at
    the end of the test."""
    pools = []

    def make(*args, cls=None, **kwargs):
        if cls is None:
            from gopool import Pool as cls
        p = cls(*args, **kwargs)
        pools.append(p)
        return p

    yield make
    for p in pools:
        _stop(p)
