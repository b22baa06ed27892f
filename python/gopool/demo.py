"""A short tour of gopool: ``python -m gopool.demo``.

Each step prints what it shows; the whole tour takes a few seconds.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Iterator, List

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


def produce(queue: gopool.Queue[int], start: int, count: int) -> None:
    for i in range(start, start + count):
        queue.put(i)


def produce_forever(queue: gopool.Queue[object]) -> None:
    i = 0
    while True:
        queue.put(("spam", i))
        i += 1


def threading_lock() -> object:
    import threading

    return threading.Lock()


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
    pulled: List[int] = []

    def numbers() -> Iterator[int]:
        for i in range(10):
            pulled.append(i)
            yield i

    with Pool(2) as pool:
        for n, value in enumerate(pool.imap(square, numbers(), buffersize=4)):
            if n == 2:
                print(f"after 3 results the input was read {len(pulled)} items deep (of 10)")
        print("last result:", value)

    step("queues in shared memory: processes, a killed producer, an unpicklable item")
    queue: gopool.Queue[int] = gopool.Queue()
    producers = [gopool.Process(target=produce, args=(queue, k * 1000, 1000)) for k in range(2)]
    for p in producers:
        p.start()
    for p in producers:
        p.join()  # joining before draining does not deadlock
    received = sorted(queue.get(timeout=10) for _ in range(2000))
    print("2 producers put 2000 items; all received:", received == list(range(2000)))
    noisy: gopool.Queue[object] = gopool.Queue()
    spammer = gopool.Process(target=produce_forever, args=(noisy,))
    spammer.start()
    noisy.get(timeout=10)
    spammer.kill()  # SIGKILL, most likely in the middle of a put()
    spammer.join()
    while not noisy.empty():
        noisy.get_nowait()
    noisy.put("still works")
    print("after SIGKILL of a producer mid-put the queue says:", noisy.get(timeout=10))
    try:
        noisy.put(threading_lock())
    except Exception as exc:
        print("put() of an unpicklable object raised in the caller:", type(exc).__name__)

    step("cancel and time limits stop the work itself")
    with Pool(2) as pool:
        running = pool.apply_async(sleep_then_return, (60,))
        while not any(w.busy for w in pool.workers()):
            time.sleep(0.01)
        print("cancel() of a running 60 s task:", running.cancel())
        try:
            running.get(timeout=10)
        except gopool.CancelledError:
            print("get() raised CancelledError; the worker was replaced:", pool.apply(square, (3,)))
        limited = pool.apply_async(sleep_then_return, (60,), timeout=0.5)
        try:
            limited.get(timeout=10)
        except gopool.TimeoutError as exc:
            print("a task over its 0.5 s limit:", exc)

    step("ThreadPool: same API, threads, no pickling")
    with ThreadPool(4) as pool:
        print("ThreadPool map ->", pool.map(lambda s: s.upper(), ["go", "pool"]))

    print("\ndemo finished")


if __name__ == "__main__":
    main()
