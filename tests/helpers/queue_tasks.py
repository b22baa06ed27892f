"""Targets for the queue tests, importable by gopool.Process children and
pool workers (they get the parent's sys.path).

Items that must be checked for integrity are ``(tag, seq, payload, crc)``
tuples: ``checked_item`` makes them, ``check_item`` verifies them.
"""

import os
import random
import zlib

from helpers.tasks import MAX_WAIT

# Set by init_worker (a pool initializer), used by tasks of the same worker.
WORKER_QUEUE = None


def checked_item(tag, seq, size):
    """An item that carries the crc32 of its payload."""
    payload = os.urandom(size)
    return (tag, seq, payload, zlib.crc32(payload))


def check_item(item):
    """Return (tag, seq) of an intact item; raise AssertionError otherwise."""
    tag, seq, payload, crc = item
    assert zlib.crc32(payload) == crc, f"item {tag}/{seq} is corrupt"
    return tag, seq


def put_range(q, n, start=0):
    """Put the ints start, ..., start+n-1."""
    for i in range(start, start + n):
        q.put(i)


def put_many_range(q, n, batch=100):
    """Put the ints 0..n-1 with put_many, batch by batch."""
    for i in range(0, n, batch):
        q.put_many(range(i, min(i + batch, n)))


def put_blob_and_exit(q, size):
    """Put one bytes item of size bytes, in 1 KiB items too, and return:
    the process exits with the items still in the queue."""
    q.put(b"x" * size)
    for i in range(size // 1024):
        q.put(bytes([i % 256]) * 1024)


def echo(inbox, outbox, count):
    """Get count items from inbox and put each on outbox, doubled."""
    for _ in range(count):
        outbox.put(inbox.get(timeout=MAX_WAIT) * 2)


def work_joinable(q, results):
    """Take items until None, report each and mark it done."""
    while True:
        item = q.get(timeout=MAX_WAIT)
        if item is None:
            q.task_done()
            return
        results.put(item * 10)
        q.task_done()


def produce_forever(q, tag, large_every=8):
    """Put checked items of random sizes (some large, so that a kill often
    lands in the middle of a put) until killed. The first item is small: it
    tells the consumer that the producer runs."""
    rng = random.Random(os.getpid())
    q.put(checked_item(tag, 0, 16))
    seq = 1
    while True:
        size = rng.randrange(16, 2048)
        if seq % large_every == 0:
            size = rng.randrange(64 << 10, 1 << 20)
        q.put(checked_item(tag, seq, size))
        seq += 1


def consume_and_report(q, reports):
    """Take checked items and report (tag, seq) of each on reports, until
    killed."""
    while True:
        item = q.get(timeout=MAX_WAIT)
        reports.put(check_item(item))


def init_worker(q):
    """Pool initializer: remember the queue the pool was given."""
    global WORKER_QUEUE
    WORKER_QUEUE = q


def put_from_worker(x):
    """A pool task that puts (x, pid) on the initializer's queue."""
    WORKER_QUEUE.put((x, os.getpid()))
    return x


def try_queue_after_fork(q):
    """In a child of os.fork(): 0 if the queue raises ForkedChildError, 1 if
    it works, 2 for another error."""
    import gopool

    try:
        q.put(1)
    except gopool.ForkedChildError:
        return 0
    except BaseException:
        return 2
    return 1
