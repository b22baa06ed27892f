"""Targets for the non-blocking queue tests (tests/test_queue_nowait.py),
importable by gopool.Process children."""

from helpers.tasks import MAX_WAIT


def put_nowait_range(q, tag, n):
    """put_nowait (tag, 0), ..., (tag, n-1); exit 1 at the first queue.Full."""
    for i in range(n):
        q.put_nowait((tag, i))


def get_nowait_n(q, n, out):
    """get_nowait n items and put them on out with one put_many; exit 1 at
    the first queue.Empty."""
    got = [q.get_nowait() for _ in range(n)]
    out.put_many(got)


def put_huge(q, ready, size):
    """Set ready, then put one item of size bytes: its copy into the queue
    holds the producers' lock for a long while."""
    ready.set()
    q.put(b"h" * size)


def get_one(q, ready, out):
    """Set ready, then take one item (whichever comes first) and report its
    size."""
    ready.set()
    item = q.get(timeout=MAX_WAIT)
    out.put(len(item) if isinstance(item, bytes) else item)

