"""Smoke test of an installed gopool (run from outside the source tree, no toolchain on PATH).

Checks that gopool comes from site-packages, that both extensions load, and that a
pool (functions, lambdas, imap, a time limit), a Process feeding a Queue, an Event and
a ThreadPool work.
"""

import os
import shutil
import sys
import sysconfig
import time
from importlib import metadata


def square(x):
    return x * x


def slow(s):
    time.sleep(s)
    return s


def produce(q, ev, n):
    for i in range(n):
        q.put(i)
    ev.set()


def main():
    for tool in ("go", "gcc", "cc"):
        assert shutil.which(tool) is None, "%s is on PATH: not a toolchain-free check" % tool
    import gopool
    import gopool._channel
    import gopool._gobind._core as core

    site = os.path.realpath(sysconfig.get_paths()["purelib"])
    for mod in (gopool, gopool._channel, core):
        assert os.path.realpath(mod.__file__).startswith(site + os.sep), (mod.__file__, site)

    with gopool.Pool(2) as pool:
        assert pool.map(square, range(20)) == [x * x for x in range(20)]
        assert pool.map(lambda x: x + 1, range(5)) == [1, 2, 3, 4, 5]
        assert sorted(pool.imap_unordered(square, range(10), chunksize=3)) == sorted(x * x for x in range(10))
        try:
            pool.apply_async(slow, (30,), timeout=0.5).get(20)
        except gopool.TimeoutError:
            pass
        else:
            raise AssertionError("the time limit did not stop the task")
        assert pool.apply(square, (7,)) == 49

    q, ev = gopool.Queue(), gopool.Event()
    p = gopool.Process(target=produce, args=(q, ev, 100))
    p.start()
    got = [q.get(timeout=30) for _ in range(100)]
    p.join(30)
    assert got == list(range(100)) and p.exitcode == 0 and ev.is_set(), (got[:5], p.exitcode)

    with gopool.ThreadPool(2) as tpool:
        assert tpool.map(square, range(5)) == [0, 1, 4, 9, 16]

    print("smoke: gopool %s on CPython %s from %s: ok"
          % (metadata.version("gopool"), sys.version.split()[0], os.path.dirname(gopool.__file__)))


if __name__ == "__main__":
    main()
