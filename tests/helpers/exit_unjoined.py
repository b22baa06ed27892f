"""A user's script that ends with gopool.Process children it never joined.

Usage: python exit_unjoined.py OUTDIR running|finished

``running``: a daemonic child that would write OUTDIR/late after 30 s, and a
non-daemonic child that waits until the parent's exit has begun, then
prints ``child done``. ``finished``: one non-daemonic child that returned
long before the parent ends, never joined.

The first atexit handler registered (so the last to run, after
multiprocessing's own exit handler) prints each child's exitcode as the
parent sees it then.
"""

import atexit
import os
import sys
import time

CHILDREN = []


def report():
    for name, p in CHILDREN:
        try:
            code = p.exitcode
        except Exception as exc:  # the exit sequence broke the child object
            code = f"error {exc!r}"
        print(f"{name} exitcode {code}", flush=True)


atexit.register(report)  # before gopool's and multiprocessing's: runs after them

import gopool  # noqa: E402


def late_writer(path):
    time.sleep(30)
    with open(path, "w") as f:
        f.write("the daemon outlived its parent\n")


def wait_then_print(go):
    go.wait(30)
    print("child done", flush=True)


def main():
    outdir, mode = sys.argv[1], sys.argv[2]
    if mode == "running":
        daemon = gopool.Process(target=late_writer, args=(os.path.join(outdir, "late"),), daemon=True)
        daemon.start()
        CHILDREN.append(("daemon", daemon))
        go = gopool.Event()
        child = gopool.Process(target=wait_then_print, args=(go,))
        child.start()
        CHILDREN.append(("child", child))
        atexit.register(go.set)  # registered last: the first thing the exit does
    else:
        child = gopool.Process(target=print, args=("child done",), kwargs={"flush": True})
        child.start()
        CHILDREN.append(("child", child))
        gopool.Event()  # a finalizer registered after the child's
        # The child has ended: its sentinel is readable.
        import multiprocessing.connection

        multiprocessing.connection.wait([child.sentinel])
    print("parent done", flush=True)


if __name__ == "__main__":
    main()
