"""Cluster mode benchmark: gopool on a Dask LocalCluster (two single-threaded
worker processes, loopback) beside local gopool and Dask's own client API on
the same work.

Not a test module. One process drives everything, interleaving rounds:

- round trip: sequential ``apply(square)`` (gopool) against
  ``client.submit(square, x, pure=False).result()`` (Dask);
- throughput of short chunks: ``imap(noop, chunksize=1)`` with two tasks in
  flight (chunks per second);
- ``map(square)`` of 200,000 and 1,000,000 items with the default chunksize
  (8 chunks for a pool of 2) against ``client.map`` over the same 8 chunks
  as Python lists (Dask's natural way; its serialization walks the lists;
  200,000 items only: 1,000,000 take over a minute);
- start-up: ``Pool(2, cluster="dask:local")`` + a map of 10 + close + join.

    python tests/bench/bench_cluster.py --rounds 3 --write build/bench_cluster.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_tasks  # noqa: E402  (task functions importable by the workers)


def _map_chunk(chunk):
    return [bench_tasks.square(x) for x in chunk]


def _timed(fn, repeat=1):
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _round_trips(call, n):
    call()  # warm
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _chunks(items, n):
    size = -(-len(items) // n)
    return [items[i:i + size] for i in range(0, len(items), size)]


def run_round(client, cluster_pool, local_pool, sizes, calls, results):
    sq = bench_tasks.square
    results.setdefault("apply round trip (ms)", {}).setdefault("gopool local", []).append(
        1000 * _round_trips(lambda: local_pool.apply(sq, (3,)), calls))
    results["apply round trip (ms)"].setdefault("gopool cluster", []).append(
        1000 * _round_trips(lambda: cluster_pool.apply(sq, (3,)), calls))
    results["apply round trip (ms)"].setdefault("dask submit+result", []).append(
        1000 * _round_trips(lambda: client.submit(sq, 3, pure=False).result(), calls))

    n = 400
    metric = "imap(noop, chunksize=1): chunks/s, 2 in flight"
    t = _timed(lambda: list(cluster_pool.imap(bench_tasks.noop, range(n), chunksize=1)))
    results.setdefault(metric, {}).setdefault("gopool cluster", []).append(n / t)
    t = _timed(lambda: list(local_pool.imap(bench_tasks.noop, range(n), chunksize=1)))
    results[metric].setdefault("gopool local", []).append(n / t)

    for size in sizes:
        items = list(range(size))
        expected = [x * x for x in items]
        metric = f"map {size:,} items, 8 chunks (ms)"
        row = results.setdefault(metric, {})

        def cluster_map():
            assert cluster_pool.map(sq, items) == expected

        def local_map():
            assert local_pool.map(sq, items) == expected

        def dask_map():
            futures = client.map(_map_chunk, _chunks(items, 8), pure=False)
            out = []
            for part in client.gather(futures):
                out.extend(part)
            assert out == expected

        row.setdefault("gopool local", []).append(1000 * _timed(local_map))
        row.setdefault("gopool cluster", []).append(1000 * _timed(cluster_map))
        if size <= DASK_LIST_MAX:  # past that, minutes (the study: 78 s for 1,000,000)
            row.setdefault("dask client.map, list chunks", []).append(1000 * _timed(dask_map))


DASK_LIST_MAX = 200_000


def startup(results):
    from gopool import Pool

    def once():
        p = Pool(2, cluster="dask:local")
        p.map(bench_tasks.square, range(10))
        p.close()
        p.join()

    results.setdefault("startup: Pool(2, cluster='dask:local') + map + close + join (ms)", {}).setdefault(
        "gopool cluster", []).append(1000 * _timed(once))


COLUMNS = ["gopool local", "gopool cluster", "dask submit+result", "dask client.map, list chunks"]


def report(results, args, seconds):
    lines = [
        "### Cluster benchmark",
        "",
        f"- command: `python tests/bench/bench_cluster.py --rounds {args.rounds}`",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; run time {seconds:.0f} s",
        f"- Python {platform.python_version()}; {os.cpu_count()} CPUs; Dask LocalCluster of 2 worker processes "
        "x 1 thread on loopback; local pool of 2; medians over rounds",
        "",
        "| metric | " + " | ".join(COLUMNS) + " |",
        "| :-- | " + " | ".join("--:" for _ in COLUMNS) + " |",
    ]
    for metric, row in results.items():
        cells = []
        for col in COLUMNS:
            values = row.get(col)
            cells.append("—" if not values else f"{statistics.median(values):,.3g}")
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=100, help="round trips per round")
    ap.add_argument("--quick", action="store_true", help="200,000 items only, one round")
    ap.add_argument("--write", metavar="FILE")
    args = ap.parse_args()
    if args.quick:
        args.rounds = 1
    sizes = [200_000] if args.quick else [200_000, 1_000_000]

    import dask
    import distributed

    from gopool import Pool

    t0 = time.perf_counter()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.scheduler.worker-saturation": 1.0}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                           dashboard_address=None, silence_logs=40,
                                           scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    client = distributed.Client(cluster, set_as_default=False)
    results: dict = {}
    try:
        cluster_pool = Pool(2, cluster=client)
        local_pool = Pool(2)
        import warnings

        warnings.simplefilter("ignore")  # the short-chunk warning is what the round trips measure
        try:
            for _ in range(args.rounds):
                run_round(client, cluster_pool, local_pool, sizes, args.calls, results)
                startup(results)
        finally:
            cluster_pool.close()
            cluster_pool.join()
            local_pool.close()
            local_pool.join()
    finally:
        client.close()
        cluster.close()
    text = report(results, args, time.perf_counter() - t0)
    print(text)
    if args.write:
        os.makedirs(os.path.dirname(os.path.abspath(args.write)), exist_ok=True)
        with open(args.write, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
