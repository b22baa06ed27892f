"""A user's script that leaves a running pool behind.

Usage: python abandoned_pool.py MARKER_DIR exit|wait

Prints ``PIDS <worker pids>``, starts a 30 s task (which creates
MARKER_DIR/started-0), then either falls off the end of the script without
close() or terminate() (``exit``), or waits to be killed (``wait``).
"""

import sys
import time

from gopool import Pool

from helpers import tasks


def main():
    marker_dir, mode = sys.argv[1], sys.argv[2]
    pool = Pool(2)
    print("PIDS", *[w.pid for w in pool.workers()], flush=True)
    pool.apply_async(tasks.touch_then_sleep, (marker_dir, 0, 30))
    if mode == "wait":
        time.sleep(60)
    # Keep the pool referenced to the end: interpreter exit must stop it.
    globals()["kept"] = pool


if __name__ == "__main__":
    main()
