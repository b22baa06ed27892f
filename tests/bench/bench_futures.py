#!/usr/bin/env python3
"""Side-by-side benchmark of ProcessPoolExecutor implementations.

    python tests/bench/bench_futures.py                # full (~2 min on 2 cores)
    python tests/bench/bench_futures.py --quick
    python tests/bench/bench_futures.py --rounds 2 --write out.md

Implementations: gopool (gopool.ProcessPoolExecutor), concurrent.futures'
ProcessPoolExecutor with the fork / spawn / forkserver contexts, and loky's
executor (get_reusable_executor's class, if loky is installed). Metrics,
executor of 2 workers, warm: the submit(noop).result() round trip (µs), and
map(square, N items) throughput with chunksize=1 (the default) and
chunksize=100 (items/s).

Every (implementation, metric) cell runs in a child process of its own
under a timeout (see _common.py); rounds interleave the implementations.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import _common as C  # noqa: E402

WORKERS = 2
IMPLS = ["gopool", "stdlib-fork", "stdlib-spawn", "stdlib-forkserver", "loky"]
METRICS = {
    "roundtrip": ("submit(noop).result() round trip, warm executor", "µs/call", False),
    "map": ("map(square, {map_items:,} items), chunksize=1", "items/s", True),
    "map_chunked": ("map(square, {chunked_items:,} items), chunksize=100", "items/s", True),
}
PARAMS = {
    "full": dict(repeats=5, calls=3000, map_items=20_000, chunked_items=200_000, timeout=240.0),
    "quick": dict(repeats=3, calls=1000, map_items=5_000, chunked_items=50_000, timeout=120.0),
}


def make_executor(impl):
    if impl == "gopool":
        import gopool

        return gopool.ProcessPoolExecutor(WORKERS)
    if impl == "loky":
        from loky import ProcessPoolExecutor

        return ProcessPoolExecutor(WORKERS)
    import concurrent.futures
    import multiprocessing

    return concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context(impl[7:]))


def warm(ex):
    import bench_tasks as T

    pids = set()
    for _ in range(50):
        pids |= set(ex.map(T.pid_after, [0.02] * (2 * WORKERS)))
        if len(pids) >= WORKERS:
            return


def m_roundtrip(ex, p):
    import bench_tasks as T

    for _ in range(200):
        ex.submit(T.noop).result()
    out = []
    for _ in range(p["repeats"]):
        t0 = C.now()
        for _i in range(p["calls"]):
            ex.submit(T.noop).result()
        out.append((C.now() - t0) / p["calls"] * 1e6)
    return out


def _map(ex, p, n, chunksize):
    import bench_tasks as T

    out = []
    for _ in range(p["repeats"]):
        t0 = C.now()
        res = list(ex.map(T.square, range(n), chunksize=chunksize))
        out.append(n / (C.now() - t0))
        assert len(res) == n and res[-1] == (n - 1) ** 2
    return out


def child_main(args, params):
    if args.probe:
        try:
            make_executor(args.probe).shutdown()
        except ImportError as e:
            return {"status": "unavailable", "error": str(e)}
        return {"status": "ok"}
    ex = make_executor(args.impl)
    try:
        warm(ex)
        if args.metric == "roundtrip":
            samples = m_roundtrip(ex, params)
        elif args.metric == "map":
            samples = _map(ex, params, params["map_items"], 1)
        else:
            samples = _map(ex, params, params["chunked_items"], 100)
    finally:
        ex.shutdown(wait=False)
    return {"samples": samples, "unit": METRICS[args.metric][1]}


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([BENCH_DIR] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", help="comma list of implementations (%s)" % ",".join(IMPLS))
    ap.add_argument("--metrics", help="comma list of metrics (%s)" % ",".join(METRICS))
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--write", metavar="FILE")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", help=argparse.SUPPRESS)
    ap.add_argument("--metric", help=argparse.SUPPRESS)
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    params = PARAMS["quick" if args.quick else "full"]
    if args.child:
        C.child_guard(child_main, args, params)

    impls = C.selection(args.only, IMPLS, "implementation")
    metrics = C.selection(args.metrics, list(METRICS), "metric")
    base = [sys.executable, os.path.abspath(__file__), "--child"] + (["--quick"] if args.quick else [])
    info, t_start = C.env_info(), time.monotonic()
    avail = {}
    for i in impls:
        res = C.run_child(base + ["--probe", i], 60, child_env())
        avail[i] = res.get("status") == "ok"
        if not avail[i]:
            sys.stderr.write("  %s: unavailable (%s)\n" % (i, res.get("error")))
    results = {m: {} for m in metrics}
    for rnd in range(args.rounds):
        for m in metrics:
            for i in impls:
                if not avail[i]:
                    results[m][i] = {"status": "unavailable"}
                    continue
                r = C.run_child(base + ["--impl", i, "--metric", m], params["timeout"], child_env())
                if r.get("status") == "ok":
                    r["median"] = C.median(r["samples"])
                prev = results[m].get(i)
                if prev and prev.get("status") == "ok" and r.get("status") == "ok":
                    r["samples"] = prev["samples"] + r["samples"]
                    r["median"] = C.median(r["samples"])
                results[m][i] = r
                sys.stderr.write("  round %d %-12s %-18s %s\n" % (
                    rnd + 1, m, i, C.fmt_num(r.get("median")) if r.get("status") == "ok" else r.get("error")))

    headers = ["metric"] + impls + ["gopool vs best stdlib", "gopool vs loky"]
    rows = []
    for m in metrics:
        label, unit, hib = METRICS[m]
        cells = results[m]
        row = ["%s (%s)" % (label.format(**params), unit)] + [C.cell_text(cells.get(i)) for i in impls]
        med = {i: cells[i]["median"] for i in impls if cells.get(i, {}).get("status") == "ok"}
        stdlib = {i: v for i, v in med.items() if i.startswith("stdlib-")}
        best = C.best_value(stdlib.values(), hib)
        best_name = next((i for i, v in stdlib.items() if v == best), None)
        r = C.ratio_vs(med.get("gopool"), best, hib)
        row.append(C.fmt_ratio(r) + (" (vs %s)" % best_name[7:] if r is not None and best_name else ""))
        row.append(C.fmt_ratio(C.ratio_vs(med.get("gopool"), med.get("loky"), hib)))
        rows.append(row)
    table = C.markdown_table(headers, rows)
    elapsed = time.monotonic() - t_start
    print(table)
    notes = ["%s / %s: %s: %s" % (i, m, r["status"], r.get("error", ""))
             for m, cells in results.items() for i, r in cells.items() if r.get("status") in ("error", "timeout")]
    for n in notes:
        print("- " + n)
    cmdline = C.command_line([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    if args.write:
        with open(args.write, "w") as f:
            f.write("### Executor benchmark (%s)\n\n" % ("quick" if args.quick else "full"))
            f.write("- command: `%s`\n" % cmdline)
            f.write("- date: %s; run time %.0f s\n" % (info["date"], elapsed))
            f.write("- Python %s; %s; %s CPUs (affinity %s); %s\n" % (
                info["python"], info["go"] or "go: not found", info["cpu_count"], info["cpu_affinity"],
                info["platform"]))
            f.write("- %d interleaved round(s), %d workers, each cell the median of %d runs per round; "
                    "ratio > 1 means gopool is better\n\n" % (args.rounds, WORKERS, params["repeats"]))
            f.write(table + "\n\n")
            for n in notes:
                f.write("- " + n + "\n")
    if args.json:
        C.write_json(args.json, {"command": cmdline, "env": info, "params": params, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
