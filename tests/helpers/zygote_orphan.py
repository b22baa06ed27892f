"""A zygote's child that first runs after its zygote has died.

Usage: python zygote_orphan.py MARKER

Plays the zygote: forks a child that waits until this "zygote" has exited
(as a child not yet scheduled on a busy machine would), then becomes a
gopool process as the zygote's children do, with the entry
``helpers.zygote_orphan`` (whose main() writes MARKER). Prints the child's
pid. The child must end at once instead: with its parent gone, no death
signal would ever stop it.
"""

import os
import sys
import time


def main():
    with open(os.environ["GOPOOL_TEST_MARKER"], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)


if __name__ == "__main__":
    from gopool import _zygote

    os.environ["GOPOOL_TEST_MARKER"] = sys.argv[1]
    zygote = os.getpid()
    child = os.fork()
    if child == 0:
        while os.getppid() == zygote:
            time.sleep(0.01)
        fds = [os.open(os.devnull, os.O_RDONLY), os.dup(1), os.dup(2)]
        _zygote._run_child(zygote, "helpers.zygote_orphan", os.getcwd(), None, fds, 0)
    print(child, flush=True)
    os._exit(0)
