#!/usr/bin/env python3
"""Side-by-side benchmark of Pool implementations: gopool vs multiprocessing.

    python tests/bench/bench_pool.py                 # full run (~3 min on 2 cores)
    python tests/bench/bench_pool.py --quick         # ~30 s
    python tests/bench/bench_pool.py --only stdlib-fork,gopool --metrics apply,map
    python tests/bench/bench_pool.py --write out.md --json out.json

Implementations: gopool, stdlib-fork, stdlib-spawn, stdlib-forkserver, and
pipe-floor (a bare os.pipe ping-pong between two Python processes: the floor
for one apply() round trip).

Every (implementation, metric) cell runs in its own child process of this
script (``--child``) under a timeout, so an implementation that raises or
hangs shows as ``error``/``timeout`` and the run goes on. This is a script,
not a pytest module.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(BENCH_DIR))
# The task module must be importable by the workers of every implementation:
# spawn/forkserver children get the parent's sys.path, gopool's workers (and
# anything exec'd) get PYTHONPATH, which the driver sets for its children.
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import _common as C  # noqa: E402

POOL_SIZE = 2
STDLIB_METHODS = ("fork", "spawn", "forkserver")
IMPLS = ["gopool"] + ["stdlib-" + m for m in STDLIB_METHODS] + ["pipe-floor"]
POOL_IMPLS = IMPLS[:-1]
FLOOR = "pipe-floor"

# name -> (table label, unit, higher_is_better)
METRICS = {
    "startup": ("startup: Pool(2) + map(10 items) + close + join, first pool of a process", "ms", False),
    "startup_warm": ("the same, a later pool of the process", "ms", False),
    "map": ("map {map_items:,} items, default chunksize", "ms", False),
    "imap": ("imap chunksize=1, {imap_items:,} items", "items/s", True),
    "apply": ("apply(noop) round trip, warm pool", "µs/call", False),
    "apply_async": ("apply_async(noop) x {async_tasks:,}, then get() all", "tasks/s", True),
    "terminate": ("terminate() + join(), both workers busy", "ms", False),
    "close_join": ("close() + join(), idle warm pool", "ms", False),
    "replace": ("a worker SIGKILLed mid-task, until a new worker answers", "ms", False),
    "process": ("Process(target=noop) start() + join()", "ms", False),
    "map_hog": ("map {map_items:,} items with a CPU hog on every core", "ms", False),
    "big_arg": ("apply(len, one {big_mib:,} MiB bytes argument)", "s", False),
    "big_arg_mem": ("the same: peak memory of all the processes", "GiB", False),
}
# metrics measured in a fresh child process per repeat (cold start matters)
PER_PROCESS = {"startup"}

PARAMS = {
    "full": dict(repeats=7, map_items=200_000, imap_items=50_000, apply_calls=10_000,
                 async_tasks=50_000, floor_trips=50_000, terminate_repeats=5,
                 busy_seconds=10.0, timeout=180.0, big_mib=1536),
    "quick": dict(repeats=3, map_items=200_000, imap_items=10_000, apply_calls=2_000,
                  async_tasks=10_000, floor_trips=20_000, terminate_repeats=2,
                  busy_seconds=10.0, timeout=90.0, big_mib=256),
}

# ==========================================================================
# child side: one implementation, one metric
# ==========================================================================

def load_pool_factory(impl):
    """Return a callable ``make(processes) -> Pool`` for ``impl``."""
    import multiprocessing
    import multiprocessing.pool  # noqa: F401 - import cost is not measured

    if impl == "gopool":
        import gopool
        if not hasattr(gopool, "Pool"):
            raise ImportError("gopool imported from %r but has no Pool"
                              % getattr(gopool, "__file__", None))
        return gopool.Pool
    if impl.startswith("stdlib-"):
        return multiprocessing.get_context(impl[len("stdlib-"):]).Pool
    raise ValueError("not a pool implementation: %s" % impl)


def warm_pool(make, n=POOL_SIZE):
    """A pool whose ``n`` workers have all run at least one task."""
    import bench_tasks as T
    pool = make(n)
    pids = set()
    for _ in range(20):
        pids |= set(pool.map(T.pid_after, [0.02] * (2 * n), chunksize=1))
        if len(pids) >= n:
            break
    return pool


def shutdown(pool):
    try:
        pool.terminate()
        pool.join()
    except Exception:
        pass


def m_startup(make, p):
    import bench_tasks as T
    out = []
    for _ in range(p["repeats"]):
        t0 = C.now()
        pool = make(POOL_SIZE)
        res = pool.map(T.square, range(10))
        pool.close()
        pool.join()
        out.append((C.now() - t0) * 1e3)
        assert res == [x * x for x in range(10)], res
    return out


def m_map(make, p):
    import bench_tasks as T
    n = p["map_items"]
    pool = warm_pool(make)
    try:
        out = []
        for _ in range(p["repeats"]):
            t0 = C.now()
            res = pool.map(T.square, range(n))
            out.append((C.now() - t0) * 1e3)
            assert len(res) == n and res[-1] == (n - 1) ** 2
        return out
    finally:
        shutdown(pool)


def m_imap(make, p):
    import bench_tasks as T
    n = p["imap_items"]
    pool = warm_pool(make)
    try:
        out = []
        for _ in range(p["repeats"]):
            count = 0
            t0 = C.now()
            for _r in pool.imap(T.square, range(n), chunksize=1):
                count += 1
            out.append(n / (C.now() - t0))
            assert count == n
        return out
    finally:
        shutdown(pool)


def m_apply(make, p):
    import bench_tasks as T
    n = p["apply_calls"]
    pool = warm_pool(make)
    try:
        for _ in range(min(100, n)):
            pool.apply(T.noop)
        out = []
        for _ in range(p["repeats"]):
            t0 = C.now()
            for _i in range(n):
                pool.apply(T.noop)
            out.append((C.now() - t0) / n * 1e6)
        return out
    finally:
        shutdown(pool)


def m_apply_async(make, p):
    import bench_tasks as T
    n = p["async_tasks"]
    pool = warm_pool(make)
    try:
        out = []
        for _ in range(p["repeats"]):
            t0 = C.now()
            rs = [pool.apply_async(T.noop) for _i in range(n)]
            for r in rs:
                r.get()
            out.append(n / (C.now() - t0))
        return out
    finally:
        shutdown(pool)


def m_terminate(make, p):
    import bench_tasks as T
    out = []
    for _ in range(p["terminate_repeats"]):
        pool = warm_pool(make)
        try:
            with tempfile.TemporaryDirectory(prefix="gopool-bench-") as d:
                for _i in range(POOL_SIZE):
                    pool.apply_async(T.busy_sleep, (d, p["busy_seconds"]))
                deadline = time.monotonic() + 30
                while len(os.listdir(d)) < POOL_SIZE:
                    if time.monotonic() > deadline:
                        raise RuntimeError("busy tasks did not start within 30 s")
                    time.sleep(0.005)
                time.sleep(0.02)  # let the workers reach time.sleep()
                t0 = C.now()
                pool.terminate()
                pool.join()
                out.append((C.now() - t0) * 1e3)
        finally:
            shutdown(pool)
    return out


def m_close_join(make, p):
    out = []
    for _ in range(p["repeats"]):
        pool = warm_pool(make)
        try:
            t0 = C.now()
            pool.close()
            pool.join()
            out.append((C.now() - t0) * 1e3)
        finally:
            shutdown(pool)
    return out


def m_startup_warm(make, p):
    m_startup(make, dict(p, repeats=1))  # the first pool of this process
    return m_startup(make, p)


def m_replace(make, p):
    import bench_tasks as T
    pool = warm_pool(make, 1)
    try:
        out = []
        for _ in range(p["repeats"]):
            with tempfile.TemporaryDirectory(prefix="gopool-bench-") as d:
                pool.apply_async(T.busy_sleep, (d, 60))
                _wait_files(d, 1)
                [name] = os.listdir(d)
                pid = int(name.split("-")[1])
                t0 = C.now()
                os.kill(pid, signal.SIGKILL)
                pool.apply(T.noop)
                out.append((C.now() - t0) * 1e3)
        return out
    finally:
        shutdown(pool)


def _wait_files(d, n, timeout=30):
    deadline = time.monotonic() + timeout
    while len(os.listdir(d)) < n:
        if time.monotonic() > deadline:
            raise RuntimeError("tasks did not start within %d s" % timeout)
        time.sleep(0.002)


def m_process(make, p, per_sample=10):
    import bench_tasks as T
    process = _process_class(make)
    p0 = process(target=T.noop)  # the first one may start helpers (a zygote, a fork server)
    p0.start()
    p0.join()
    out = []
    for _ in range(p["repeats"]):
        t0 = C.now()
        for _i in range(per_sample):
            child = process(target=T.noop)
            child.start()
            child.join()
            assert child.exitcode == 0
        out.append((C.now() - t0) / per_sample * 1e3)
    return out


def _process_class(make):
    if getattr(make, "__module__", "").startswith("gopool"):
        import gopool
        return gopool.Process
    return make.__self__.Process  # a stdlib context's bound Pool method


def m_map_hog(make, p):
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        return m_map(make, p)
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def _big_apply(make, p):
    """One apply of len() over a big bytes argument; returns seconds."""
    pool = warm_pool(make, 1)
    try:
        data = b"x" * (p["big_mib"] << 20)
        t0 = C.now()
        n = pool.apply(len, (data,))
        elapsed = C.now() - t0
        assert n == len(data)
        return elapsed
    finally:
        shutdown(pool)


def m_big_arg(make, p):
    return [_big_apply(make, p)]


def m_big_arg_mem(make, p):
    """Peak of the summed resident memory of this process and all its
    descendants while the big apply runs, sampled every 10 ms."""
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], C.tree_rss(os.getpid()))
            done.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        _big_apply(make, p)
    finally:
        done.set()
        sampler.join()
    return [peak[0] / (1 << 30)]


METRIC_FUNCS = {
    "startup": m_startup, "startup_warm": m_startup_warm, "map": m_map, "imap": m_imap, "apply": m_apply,
    "apply_async": m_apply_async, "terminate": m_terminate, "close_join": m_close_join,
    "replace": m_replace, "process": m_process, "map_hog": m_map_hog, "big_arg": m_big_arg,
    "big_arg_mem": m_big_arg_mem,
}

_PONG = (
    "import os, sys\n"
    "r, w = int(sys.argv[1]), int(sys.argv[2])\n"
    "while True:\n"
    "    m = os.read(r, 64)\n"
    "    if not m:\n"
    "        break\n"
    "    os.write(w, m)\n"
)


def floor_pipe(p):
    """µs per round trip of an 8-byte message over two pipes between this
    process and a fresh Python child (subprocess = fork+exec)."""
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    child = subprocess.Popen([sys.executable, "-c", _PONG, str(to_r), str(from_w)],
                             pass_fds=(to_r, from_w))
    os.close(to_r)
    os.close(from_w)
    msg = b"ping0000"
    read, write = os.read, os.write
    try:
        for _ in range(500):
            write(to_w, msg)
            read(from_r, 64)
        n = p["floor_trips"]
        out = []
        for _ in range(p["repeats"]):
            t0 = C.now()
            for _i in range(n):
                write(to_w, msg)
                read(from_r, 64)
            out.append((C.now() - t0) / n * 1e6)
        return out
    finally:
        os.close(to_w)
        os.close(from_r)
        child.wait(timeout=10)


def child_probe(impl):
    """Is ``impl`` usable here? Returns availability info (no timing)."""
    if impl == "gopool":
        try:
            import gopool
        except Exception as e:  # noqa: BLE001
            return {"status": "unavailable", "error": "import gopool: %s: %s" % (type(e).__name__, e)}
        if not hasattr(gopool, "Pool"):
            return {"status": "unavailable", "error": "gopool has no Pool (yet)"}
        f = getattr(gopool, "__file__", None) or ""
        if f.startswith(REPO_ROOT + os.sep):
            f = os.path.relpath(f, REPO_ROOT)
        elif f:
            f = "outside the repository (installed or --gopool-path)"
        return {"status": "ok", "version": str(getattr(gopool, "__version__", "")), "file": f}
    raise ValueError(impl)


def child_main(args, params):
    if args.gopool_path:
        sys.path.insert(0, args.gopool_path)
    if args.probe:
        return child_probe(args.probe)
    if args.impl == FLOOR:
        if args.metric != "apply":
            raise ValueError("pipe-floor only has the apply metric")
        return {"samples": floor_pipe(params), "unit": "µs/round trip"}
    make = load_pool_factory(args.impl)
    samples = METRIC_FUNCS[args.metric](make, params)
    return {"samples": samples, "unit": METRICS[args.metric][1]}


# ==========================================================================
# parent side: driver
# ==========================================================================

def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def child_env(gopool_path):
    env = dict(os.environ)
    parts = [BENCH_DIR] + ([gopool_path] if gopool_path else [])
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def child_cmd(args, extra, gopool_path):
    cmd = [sys.executable, os.path.abspath(__file__), "--child"]
    if args.quick:
        cmd.append("--quick")
    if args.repeats:
        cmd += ["--repeats", str(args.repeats)]
    if gopool_path:
        cmd += ["--gopool-path", gopool_path]
    return cmd + extra


def resolve_gopool(args):
    """Find an importable gopool with a Pool: ``--gopool-path``, else the
    normal import path, else the repository's python/ directory."""
    candidates = [args.gopool_path] if args.gopool_path else [None, os.path.join(REPO_ROOT, "python")]
    last = None
    for path in candidates:
        res = C.run_child(child_cmd(args, ["--probe", "gopool"], path), 60, child_env(path))
        res["path"] = path
        if res.get("status") == "ok":
            return res
        last = res
    if last.get("status") not in ("ok", "unavailable"):
        last["error"] = "probe failed: %s" % last.get("error")
    last["status"] = "unavailable"
    return last


def measure(args, impl, metric, params, gopool_path):
    """Run the child(ren) for one cell and aggregate the samples."""
    timeout = args.timeout or params["timeout"]
    env = child_env(gopool_path if impl == "gopool" else None)
    extra = ["--impl", impl, "--metric", metric]
    runs = params["repeats"] if metric in PER_PROCESS else 1
    samples, wall, res = [], 0.0, None
    for _ in range(runs):
        cmd = child_cmd(args, extra + (["--repeats", "1"] if metric in PER_PROCESS else []),
                        gopool_path if impl == "gopool" else None)
        res = C.run_child(cmd, timeout, env)
        wall += res.get("wall_s", 0.0)
        if res.get("status") != "ok":
            break
        samples += res["samples"]
    out = {k: v for k, v in res.items() if k not in ("samples", "wall_s")}
    out["wall_s"] = round(wall, 3)
    if res.get("status") == "ok":
        out["samples"] = samples
        out["median"] = C.median(samples)
    return out


def merge_rounds(before, now):
    """Fold one more round of a cell into its earlier rounds."""
    if before is None or before.get("status") != "ok":
        return now
    if now.get("status") != "ok":
        return now
    merged = dict(now)
    merged["samples"] = before["samples"] + now["samples"]
    merged["median"] = C.median(merged["samples"])
    merged["wall_s"] = round(before.get("wall_s", 0.0) + now.get("wall_s", 0.0), 3)
    return merged


def metric_label(metric, params):
    label, unit, _ = METRICS[metric]
    return "%s (%s)" % (label.format(**params), unit)


def build_table(results, impls, metrics, params):
    pool_cols = [i for i in impls if i != FLOOR]
    show_floor = FLOOR in impls
    show_ratio = "gopool" in impls
    stdlib_cols = [i for i in pool_cols if i.startswith("stdlib-")]
    headers = ["metric"] + pool_cols
    if show_floor:
        headers.append("pipe floor")
    if show_ratio:
        headers.append("gopool vs best stdlib")
        if show_floor:
            headers.append("gopool / pipe floor")
    rows = []
    ratios = {}
    for m in metrics:
        hib = METRICS[m][2]
        cells = results.get(m, {})
        row = [metric_label(m, params)] + [C.cell_text(cells.get(i)) for i in pool_cols]
        if show_floor:
            row.append(C.cell_text(cells.get(FLOOR)) if m == "apply" else "—")
        if show_ratio:
            med = {i: cells[i]["median"] for i in stdlib_cols
                   if cells.get(i, {}).get("status") == "ok"}
            best = C.best_value(med.values(), hib)
            g = cells.get("gopool", {})
            gv = g.get("median") if g.get("status") == "ok" else None
            r = C.ratio_vs(gv, best, hib)
            best_name = next((i for i, v in med.items() if v == best), None)
            txt = C.fmt_ratio(r)
            if r is not None and best_name:
                txt += " (vs %s)" % best_name[len("stdlib-"):]
            row.append(txt)
            ratios[m] = {"gopool_vs_best_stdlib": r, "best_stdlib": best_name}
            if show_floor:
                if m == "apply":
                    fl = cells.get(FLOOR, {})
                    fv = fl.get("median") if fl.get("status") == "ok" else None
                    fr = gv / fv if (gv is not None and fv) else None
                    row.append(C.fmt_ratio(fr))
                    ratios[m]["gopool_over_floor"] = fr
                else:
                    row.append("—")
        rows.append(row)
    return C.markdown_table(headers, rows), ratios


def notes(results, gopool_info, impls):
    lines = []
    if "gopool" in impls:
        if gopool_info.get("status") == "ok":
            v = gopool_info.get("version") or "?"
            lines.append("gopool: version %s, from %s" % (v, gopool_info.get("file") or "?"))
        else:
            lines.append("gopool: unavailable (%s)" % gopool_info.get("error", "?"))
    for m, cells in results.items():
        for i, r in cells.items():
            if r.get("status") in ("error", "timeout"):
                lines.append("%s / %s: %s: %s" % (i, m, r["status"], r.get("error", "")))
    return lines


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run (~30 s)")
    ap.add_argument("--only", help="comma list of implementations (%s)" % ",".join(IMPLS))
    ap.add_argument("--metrics", help="comma list of metrics (%s)" % ",".join(METRICS))
    ap.add_argument("--repeats", type=int, help="override repeats per metric")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure every cell this many times, interleaving implementations")
    ap.add_argument("--timeout", type=float, help="seconds per child process")
    ap.add_argument("--gopool-path", help="directory to put first on sys.path to import gopool")
    ap.add_argument("--write", metavar="FILE", help="write the markdown report to FILE")
    ap.add_argument("--json", metavar="FILE", help="write raw numbers as JSON to FILE")
    # internal: child mode
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", help=argparse.SUPPRESS)
    ap.add_argument("--metric", help=argparse.SUPPRESS)
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    params = dict(PARAMS["quick" if args.quick else "full"])
    if args.repeats:
        params["repeats"] = args.repeats
        params["terminate_repeats"] = min(args.repeats, params["terminate_repeats"])
    if args.child:
        C.child_guard(child_main, args, params)  # never returns

    impls = C.selection(args.only, IMPLS, "implementation")
    metrics = C.selection(args.metrics, list(METRICS), "metric")
    t_start = time.monotonic()
    info = C.env_info()
    log("bench_pool: %s mode, impls=%s, metrics=%s"
        % ("quick" if args.quick else "full", ",".join(impls), ",".join(metrics)))

    # availability
    avail = {}
    gopool_info = {}
    import multiprocessing
    methods = multiprocessing.get_all_start_methods()
    for i in impls:
        if i == "gopool":
            gopool_info = resolve_gopool(args)
            avail[i] = gopool_info.get("status") == "ok"
            log("  gopool: %s" % ("available" if avail[i] else gopool_info.get("error")))
        elif i.startswith("stdlib-"):
            avail[i] = i[len("stdlib-"):] in methods
        else:
            avail[i] = True
    gopool_path = gopool_info.get("path")

    # Rounds interleave the implementations, so that a change of machine
    # load during the run weighs on all of them alike; each cell's figure is
    # the median of its samples from every round.
    results = {m: {} for m in metrics}
    for rnd in range(args.rounds):
        for m in metrics:
            for i in impls:
                if i == FLOOR and m != "apply":
                    continue
                if not avail[i]:
                    results[m][i] = {"status": "unavailable"}
                    continue
                r = merge_rounds(results[m].get(i), measure(args, i, m, params, gopool_path))
                results[m][i] = r
                log("  round %d %-12s %-18s %-8s %s  (%.1f s)" % (
                    rnd + 1, m, i, r.get("status"), C.fmt_num(r.get("median")) if r.get("status") == "ok"
                    else r.get("error", ""), r.get("wall_s", 0.0)))

    table, ratios = build_table(results, impls, metrics, params)
    note_lines = notes(results, gopool_info, impls)
    elapsed = time.monotonic() - t_start
    print(table)
    for n in note_lines:
        print("- " + n)
    log("bench_pool: done in %.0f s" % elapsed)

    cmdline = C.command_line([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    if args.write:
        go = info["go"] or "go: not found"
        with open(args.write, "w") as f:
            f.write("### Pool benchmark (%s)\n\n" % ("quick" if args.quick else "full"))
            f.write("- command: `%s`\n" % cmdline)
            f.write("- date: %s; run time %.0f s\n" % (info["date"], elapsed))
            f.write("- Python %s; %s; %s CPUs (affinity %s); %s\n" % (
                info["python"], go, info["cpu_count"], info["cpu_affinity"], info["platform"]))
            f.write("- %d interleaved round(s); " % args.rounds)
            f.write("- pool size %d; each cell is the median of %d runs per round (terminate: %d); "
                    "ratio > 1 means gopool is better (times: best_stdlib / gopool, "
                    "rates: gopool / best_stdlib); 'gopool / pipe floor' is gopool's apply "
                    "round trip over a bare pipe ping-pong between two Python processes\n\n"
                    % (POOL_SIZE, params["repeats"], params["terminate_repeats"]))
            f.write(table + "\n\n")
            for n in note_lines:
                f.write("- " + n + "\n")
        log("wrote %s" % args.write)
    if args.json:
        C.write_json(args.json, {
            "command": cmdline, "env": info, "params": params, "mode": "quick" if args.quick else "full",
            "pool_size": POOL_SIZE, "impls": impls, "metrics": metrics,
            "units": {m: METRICS[m][1] for m in metrics},
            "higher_is_better": {m: METRICS[m][2] for m in metrics},
            "gopool": {k: v for k, v in gopool_info.items() if k != "path"},
            "results": results, "ratios": ratios, "elapsed_s": round(elapsed, 1),
        })
        log("wrote %s" % args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
