"""A user's script for the Ctrl-C test: map long tasks until SIGINT.

Usage: python sigint_map.py MARKER_DIR with|bare

Prints ``PIDS <worker pids>`` once the pool is up; each task creates
MARKER_DIR/started-<i> when it starts and then sleeps 30 s. On
KeyboardInterrupt it prints ``KeyboardInterrupt`` and lets the exception end
the script: ``with`` leaves through the pool's context manager (terminate),
``bare`` relies on what happens at interpreter exit.
"""

import functools
import sys

from gopool import Pool

from helpers import tasks


def main():
    marker_dir, mode = sys.argv[1], sys.argv[2]
    pool = Pool(2)
    print("PIDS", *[w.pid for w in pool.workers()], flush=True)
    sleeper = functools.partial(tasks.touch_then_sleep, marker_dir, seconds=30)
    try:
        if mode == "with":
            with pool:
                pool.map(sleeper, range(4), chunksize=1)
        else:
            pool.map(sleeper, range(4), chunksize=1)
    except KeyboardInterrupt:
        print("KeyboardInterrupt", flush=True)
        raise
    print("map returned", flush=True)


if __name__ == "__main__":
    main()
