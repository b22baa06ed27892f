"""A program written for multiprocessing.Pool (the import aside): the
cluster test runs it with GOPOOL_CLUSTER set, then sends it SIGINT.

Usage: python cluster_program.py MARKER_DIR

Prints the squares of 0..9 and GOPOOL_CLUSTER as a task sees it, then maps slow tasks defined here in __main__
(each writes MARKER_DIR/started-<i> holding its pid, sleeps 30 s, then
writes finished-<i>) until interrupted.
"""

import functools
import os
import sys
import time

from gopool import Pool


def square(x):
    return x * x


def environment(name):
    return os.environ.get(name)


def slow(marker_dir, i):
    tmp = os.path.join(marker_dir, f".started-{i}")
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.rename(tmp, os.path.join(marker_dir, f"started-{i}"))
    time.sleep(30)
    open(os.path.join(marker_dir, f"finished-{i}"), "w").close()
    return i


def main():
    marker_dir = sys.argv[1]
    with Pool(2) as pool:
        print(pool.map(square, range(10)), flush=True)
        print(pool.apply(environment, ("GOPOOL_CLUSTER",)), flush=True)
        try:
            pool.map(functools.partial(slow, marker_dir), range(4), chunksize=1)
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
            raise


if __name__ == "__main__":
    main()
