"""A program that runs concurrent.futures.ProcessPoolExecutor with a gopool
context and functions defined in its ``__main__`` (the executor pickles
them by reference, as the stdlib does).

Usage: python compat_executor.py [spawn|forkserver|default]

Prints ``map: [...]``, ``submit: ...``, ``workers: <n>`` and the module of
the workers' class.
"""

import concurrent.futures
import sys

import gopool as multiprocessing

import __main__

# Run again in each worker when it imports this module for the executor's
# tasks: a lookup in __main__ made by that import itself must not wait for it.
PROBE = getattr(__main__, "not_defined_anywhere", None)

class Point:
    """A class of ``__main__``, sent by reference."""

    def __init__(self, x, y):
        self.x, self.y = x, y


def norm2(point):
    return point.x * point.x + point.y * point.y


def main():
    method = None if sys.argv[1:] in ([], ["default"]) else sys.argv[1]
    ctx = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as executor:
        print("map:", list(executor.map(norm2, [Point(i, 1) for i in range(6)])))
        print("submit:", executor.submit(norm2, Point(3, 4)).result(timeout=60))
        print("workers:", len(executor._processes))
        print("worker class:", {type(p).__module__ for p in executor._processes.values()})


if __name__ == "__main__":
    main()
