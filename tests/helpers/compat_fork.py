"""A program that asks gopool for the 'fork' start method and relies on
fork's semantics: its child sees an object the parent made at run time that
no pickle could carry (a lock).

Usage: python compat_fork.py get_context|set_start_method

Prints one line per fact, ``name: value``.
"""

import sys
import threading

import gopool as multiprocessing

from helpers import compat_tasks as ct


def main():
    how = sys.argv[1]
    # gopool's core runs in this process before the fork.
    core_queue = multiprocessing.Queue()
    core_queue.put("started")
    if how == "set_start_method":
        multiprocessing.set_start_method("fork")
        ctx = multiprocessing.get_context()
    else:
        ctx = multiprocessing.get_context("fork")
    print("start method:", ctx.get_start_method())
    print("stdlib context:", ctx is __import__("multiprocessing").get_context("fork"))
    ct.INHERITED = (threading.Lock(), 42)  # a lock cannot be pickled
    results = ctx.Queue()
    p = ctx.Process(target=ct.report_inherited, args=(results,))
    p.start()
    print("child sees:", results.get(timeout=30))
    p.join(30)
    print("exitcode:", p.exitcode)
    print("process class:", type(p).__module__ + "." + type(p).__qualname__)
    with ctx.Pool(1) as pool:
        print("pool class:", type(pool).__module__ + "." + type(pool).__qualname__)
        print("pool sees:", pool.apply(ct.report_inherited_value))
    # gopool's own objects cannot cross a bare fork once its core runs.
    p = ctx.Process(target=ct.use_gopool_queue, args=(core_queue, results))
    p.start()
    print("gopool queue in a fork child:", results.get(timeout=30)[0])
    p.join(30)
    # gopool's classes stay gopool's.
    print("gopool.Process:", multiprocessing.Process.__module__)
    print("gopool child sees:", end=" ", flush=True)
    q = multiprocessing.Queue()
    gp = multiprocessing.Process(target=ct.report_inherited, args=(q,))
    gp.start()
    print(q.get(timeout=30))
    gp.join(30)


if __name__ == "__main__":
    main()
