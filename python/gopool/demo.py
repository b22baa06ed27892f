"""A short tour of gopool: ``python -m gopool.demo``.

Each step prints what it shows; the whole tour takes a few seconds.
"""

from __future__ import annotations

import os
import signal
import time

import gopool
from gopool import Pool, ThreadPool


def square(x: int) -> int:
    return x * x


def slow_square(x: int) -> int:
    time.sleep(0.05)
    return x * x


def sleep_then_return(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def die_abruptly(_: int) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def step(title: str) -> None:
    print(f"\n== {title}")


def main() -> None:
    step("map, apply, imap: the multiprocessing API")
    with Pool(2) as pool:
        print("map(square, range(10))      ->", pool.map(square, range(10)))
        print("apply(pow, (2, 10))         ->", pool.apply(pow, (2, 10)))
        print("imap(lambda x: x + 1, ...)  ->", list(pool.imap(lambda x: x + 1, range(5))))
        print("starmap(pow, [(2,3),(3,2)]) ->", pool.starmap(pow, [(2, 3), (3, 2)]))
        done = pool.apply_async(square, (12,), callback=lambda v: print("callback got", v))
        print("apply_async(...).get()      ->", done.get(timeout=10))

    step("a worker killed mid-task fails its task instead of hanging the pool")
    with Pool(2) as pool:
        doomed = pool.apply_async(die_abruptly, (0,))
        try:
            doomed.get(timeout=10)
        except gopool.WorkerLostError as exc:
            print("get() raised WorkerLostError:", exc)
        print("the pool healed itself:", pool.map(square, [1, 2, 3]))

    step("terminate() stops busy workers at once and fails what was left")
    pool = Pool(2)
    pending = [pool.apply_async(sleep_then_return, (60,)) for _ in range(3)]
    while sum(w.busy for w in pool.workers()) < 2:
        time.sleep(0.01)
    start = time.monotonic()
    pool.terminate()
    pool.join()
    print(f"terminate() + join() with two 60 s tasks running: {time.monotonic() - start:.2f} s")
    for result in pending:
        try:
            result.get(timeout=1)
        except gopool.PoolTerminatedError as exc:
            print("outstanding result raised PoolTerminatedError:", exc)

    step("close() lets outstanding work finish; join() waits for the workers")
    pool = Pool(2)
    results = pool.map_async(slow_square, range(8))
    pool.close()
    pool.join()
    print("after close() + join():", results.get(timeout=1))
    try:
        pool.apply(square, (1,))
    except ValueError as exc:
        print("apply() on a closed pool raised ValueError:", exc)

    step("imap with back-pressure: at most 4 tasks ahead of the consumer")
    pulled = []

    def numbers():
        for i in range(10):
            pulled.append(i)
            yield i

    with Pool(2) as pool:
        for n, value in enumerate(pool.imap(square, numbers(), buffersize=4)):
            if n == 2:
                print(f"after 3 results the input was read {len(pulled)} items deep (of 10)")
        print("last result:", value)

    step("ThreadPool: same API, threads, no pickling")
    with ThreadPool(4) as pool:
        print("ThreadPool map ->", pool.map(lambda s: s.upper(), ["go", "pool"]))

    print("\ndemo finished")


if __name__ == "__main__":
    main()
