#!/usr/bin/env python3
"""Side-by-side benchmark of process-shared queues: gopool.Queue vs
multiprocessing.Queue and faster-fifo.

    python tests/bench/bench_queue.py                 # full run (~2 min on 2 cores)
    python tests/bench/bench_queue.py --quick         # ~40 s
    python tests/bench/bench_queue.py --only gopool,stdlib --scenarios small,kib
    python tests/bench/bench_queue.py --write out.md --json out.json

Scenarios: producer processes put items that the measuring process gets.
The clock starts once every producer is running (each puts a "ready" item,
then waits on an Event) and stops when the last item has been taken.

- small: 1 producer -> 1 consumer, ints, put()/get() one at a time
- small-batch: the same with each library's batch calls (gopool and
  faster-fifo: put_many/get_many; the stdlib has none: put/get)
- kib: 1 producer -> 1 consumer, 1 KiB bytes items
- mib: 1 producer -> 1 consumer, 1 MiB bytes items
- small-4p: 4 producers -> 1 consumer, ints
- pingpong: one item there and back between two processes through two
  queues (µs per round trip), with a bare os.pipe ping-pong as the floor

Implementations: gopool (its own Process), stdlib (multiprocessing.Queue,
'fork' start method, the fastest for it) and faster-fifo (faster_fifo.Queue
with a 200 MB buffer, 'fork'); faster-fifo is skipped if not installed
(``pip install faster-fifo``). Each cell runs in its own child process under
a timeout. This is a script, not a pytest module.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(BENCH_DIR))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import _common as C  # noqa: E402

IMPLS = ["gopool", "stdlib", "faster-fifo"]

# name -> (label, unit, higher_is_better, item kind, producers, batch)
SCENARIOS = {
    "small": ("1 -> 1, ints, put/get", "items/s", True, "int", 1, False),
    "small-batch": ("1 -> 1, ints, put_many/get_many (stdlib: put/get)", "items/s", True, "int", 1, True),
    "kib": ("1 -> 1, 1 KiB bytes", "items/s", True, 1024, 1, False),
    "mib": ("1 -> 1, 1 MiB bytes", "items/s", True, 1 << 20, 1, False),
    "small-4p": ("4 -> 1, ints, put/get", "items/s", True, "int", 4, False),
    "pingpong": ("round trip through two queues", "µs", False, "int", 1, False),
}

# items per run (per producer: divided by the number of producers)
COUNTS = {
    # mib: at most 800 MiB per run. gopool's unbounded queue holds at most
    # about 1 GiB in flight (then put() raises MemoryError), and a producer
    # that runs ahead of a slowed-down consumer can get that far.
    "full": {"small": 300_000, "small-batch": 1_000_000, "kib": 100_000, "mib": 800,
             "small-4p": 400_000, "pingpong": 20_000},
    "quick": {"small": 100_000, "small-batch": 300_000, "kib": 30_000, "mib": 500,
              "small-4p": 100_000, "pingpong": 5_000},
}
REPEATS = {"full": 5, "quick": 3}
BATCH = 256  # items per put_many/get_many
FFIFO_BYTES = 200_000_000

# ==========================================================================
# child side
# ==========================================================================


def payload(kind):
    return None if kind == "int" else b"\xab" * kind


def produce(q, go, n, kind, batch, ready_tag):
    """A producer process: announce itself, wait for the start, put n items."""
    q.put(ready_tag)
    go.wait()
    item = payload(kind)
    if batch:
        if item is None:
            for i in range(0, n, BATCH):
                q.put_many(list(range(i, min(i + BATCH, n))))
        else:
            for i in range(0, n, BATCH):
                q.put_many([item] * (min(i + BATCH, n) - i))
        return
    put = q.put
    if item is None:
        for i in range(n):
            put(i)
    else:
        for _ in range(n):
            put(item)


def pong(inbox, outbox, n):
    for _ in range(n):
        outbox.put(inbox.get())


def make_env(impl):
    """(queue factory, Process class, Event factory) for impl."""
    if impl == "gopool":
        import gopool
        return gopool.Queue, gopool.Process, gopool.Event
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    if impl == "stdlib":
        return ctx.Queue, ctx.Process, ctx.Event
    if impl == "faster-fifo":
        import faster_fifo
        return (lambda: faster_fifo.Queue(max_size_bytes=FFIFO_BYTES)), ctx.Process, ctx.Event
    raise ValueError(impl)


def get_all(q, n, impl, batch):
    """Take n items; returns how many were taken (all, or raises)."""
    got = 0
    if batch and impl == "gopool":
        while got < n:
            got += len(q.get_many(BATCH))
    elif batch and impl == "faster-fifo":
        while got < n:
            got += len(q.get_many(max_messages_to_get=BATCH))
    else:
        get = q.get
        for _ in range(n):
            get()
        got = n
    return got


def run_stream(impl, scenario, n, repeats):
    _label, _unit, _hib, kind, producers, batch = SCENARIOS[scenario]
    make_queue, Process, Event = make_env(impl)
    if impl == "stdlib":
        batch = False
    samples = []
    per = n // producers
    for _ in range(repeats):
        q = make_queue()
        go = Event()
        procs = [Process(target=produce, args=(q, go, per, kind, batch, ("ready", k)))
                 for k in range(producers)]
        for p in procs:
            p.start()
        for _k in range(producers):
            assert q.get(timeout=60)[0] == "ready"
        t0 = C.now()
        go.set()
        got = get_all(q, per * producers, impl, batch)
        dt = C.now() - t0
        for p in procs:
            p.join(60)
            if p.exitcode != 0:
                raise RuntimeError("producer exited with %s" % p.exitcode)
        assert got == per * producers
        samples.append(got / dt)
    return samples


def run_pingpong(impl, n, repeats):
    make_queue, Process, _Event = make_env(impl)
    samples = []
    for _ in range(repeats):
        a, b = make_queue(), make_queue()
        p = Process(target=pong, args=(a, b, n + 100))
        p.start()
        for i in range(100):  # warm up
            a.put(i)
            b.get()
        t0 = C.now()
        for i in range(n):
            a.put(i)
            b.get()
        samples.append((C.now() - t0) / n * 1e6)
        p.join(60)
    return samples


def run_pipe_floor(n, repeats):
    import subprocess
    code = ("import os, sys\nr, w = int(sys.argv[1]), int(sys.argv[2])\n"
            "while True:\n    m = os.read(r, 64)\n    if not m:\n        break\n    os.write(w, m)\n")
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    child = subprocess.Popen([sys.executable, "-c", code, str(to_r), str(from_w)], pass_fds=(to_r, from_w))
    os.close(to_r)
    os.close(from_w)
    samples = []
    try:
        for _ in range(200):
            os.write(to_w, b"ping")
            os.read(from_r, 64)
        for _ in range(repeats):
            t0 = C.now()
            for _i in range(n):
                os.write(to_w, b"ping")
                os.read(from_r, 64)
            samples.append((C.now() - t0) / n * 1e6)
    finally:
        os.close(to_w)
        os.close(from_r)
        child.wait(10)
    return samples


def child_main(args):
    if args.gopool_path:
        sys.path.insert(0, args.gopool_path)
    mode = "quick" if args.quick else "full"
    n = COUNTS[mode][args.scenario]
    repeats = args.repeats or REPEATS[mode]
    if args.impl == "pipe-floor":
        return {"samples": run_pipe_floor(n, repeats)}
    if args.scenario == "pingpong":
        return {"samples": run_pingpong(args.impl, n, repeats)}
    return {"samples": run_stream(args.impl, args.scenario, n, repeats)}


# ==========================================================================
# parent side
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


def available(impl, gopool_path):
    if impl == "faster-fifo":
        try:
            import faster_fifo  # noqa: F401
        except ImportError:
            return False, "not installed (pip install faster-fifo)"
        return True, ""
    if impl == "gopool":
        code = "import gopool; gopool.Queue().put(1)"
        env = child_env(gopool_path)
        import subprocess
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        return r.returncode == 0, r.stderr.strip().splitlines()[-1:] if r.returncode else ""
    return True, ""


def measure(args, impl, scenario, gopool_path):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--impl", impl, "--scenario", scenario]
    if args.quick:
        cmd.append("--quick")
    if args.repeats:
        cmd += ["--repeats", str(args.repeats)]
    if gopool_path and impl == "gopool":
        cmd += ["--gopool-path", gopool_path]
    res = C.run_child(cmd, args.timeout, child_env(gopool_path if impl == "gopool" else None))
    if res.get("status") == "ok":
        res["median"] = C.median(res["samples"])
    return res


def ratio_text(results, scenario, other):
    hib = SCENARIOS[scenario][2]
    g = results.get("gopool", {})
    o = results.get(other, {})
    if g.get("status") != "ok" or o.get("status") != "ok":
        return "n/a", None
    r = C.ratio_vs(g["median"], o["median"], hib)
    return C.fmt_ratio(r), r


def mb_per_s(scenario, cell):
    kind = SCENARIOS[scenario][3]
    if kind == "int" or cell.get("status") != "ok":
        return None
    return cell["median"] * kind / 1e6


def build_table(results, impls, scenarios):
    headers = ["scenario"] + impls + (["pipe floor"] if "pingpong" in scenarios else [])
    headers += ["gopool / stdlib", "gopool / faster-fifo"]
    rows, ratios = [], {}
    for s in scenarios:
        label, unit, _hib, _k, _p, _b = SCENARIOS[s]
        cells = results.get(s, {})
        row = ["%s (%s)" % (label, unit)]
        for i in impls:
            txt = C.cell_text(cells.get(i))
            mb = mb_per_s(s, cells.get(i, {}))
            if mb is not None:
                txt += " (%s MB/s)" % C.fmt_num(mb)
            row.append(txt)
        if "pingpong" in scenarios:
            row.append(C.cell_text(cells.get("pipe-floor")) if s == "pingpong" else "—")
        r1_txt, r1 = ratio_text(cells, s, "stdlib")
        r2_txt, r2 = ratio_text(cells, s, "faster-fifo")
        row += [r1_txt, r2_txt]
        ratios[s] = {"vs_stdlib": r1, "vs_faster_fifo": r2}
        rows.append(row)
    return C.markdown_table(headers, rows), ratios


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run")
    ap.add_argument("--only", help="comma list of implementations (%s)" % ",".join(IMPLS))
    ap.add_argument("--scenarios", help="comma list of scenarios (%s)" % ",".join(SCENARIOS))
    ap.add_argument("--repeats", type=int, help="runs per cell (default: 5, quick: 3)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure every cell this many times, interleaving implementations")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per child process")
    ap.add_argument("--gopool-path", help="directory to put first on sys.path to import gopool")
    ap.add_argument("--write", metavar="FILE", help="write the markdown report to FILE")
    ap.add_argument("--json", metavar="FILE", help="write raw numbers as JSON to FILE")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", help=argparse.SUPPRESS)
    ap.add_argument("--scenario", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        C.child_guard(child_main, args)  # never returns
    impls = C.selection(args.only, IMPLS, "implementation")
    scenarios = C.selection(args.scenarios, list(SCENARIOS), "scenario")
    t_start = time.monotonic()
    info = C.env_info()
    gopool_path = args.gopool_path
    if gopool_path is None:
        ok, _ = available("gopool", None)
        if not ok:
            gopool_path = os.path.join(REPO_ROOT, "python")
    avail = {i: available(i, gopool_path) for i in impls}
    for i, (ok, why) in avail.items():
        if not ok:
            log("  %s: unavailable: %s" % (i, why))
    results = {s: {} for s in scenarios}
    for rnd in range(args.rounds):
        for s in scenarios:
            for i in impls + (["pipe-floor"] if s == "pingpong" else []):
                if i != "pipe-floor" and not avail[i][0]:
                    results[s][i] = {"status": "unavailable"}
                    continue
                r = measure(args, i, s, gopool_path)
                before = results[s].get(i)
                if before and before.get("status") == "ok" and r.get("status") == "ok":
                    r["samples"] = before["samples"] + r["samples"]
                    r["median"] = C.median(r["samples"])
                results[s][i] = r
                log("  round %d %-12s %-12s %-8s %s" % (
                    rnd + 1, s, i, r.get("status"),
                    C.fmt_num(r.get("median")) if r.get("status") == "ok" else r.get("error", "")))
    table, ratios = build_table(results, impls, scenarios)
    elapsed = time.monotonic() - t_start
    print(table)
    notes = ["%s / %s: %s: %s" % (i, s, r["status"], r.get("error", ""))
             for s, cells in results.items() for i, r in cells.items()
             if r.get("status") in ("error", "timeout")]
    for n in notes:
        print("- " + n)
    log("bench_queue: done in %.0f s" % elapsed)
    cmdline = C.command_line([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    if args.write:
        with open(args.write, "w") as f:
            f.write("### Queue benchmark (%s)\n\n" % ("quick" if args.quick else "full"))
            f.write("- command: `%s`\n" % cmdline)
            f.write("- date: %s; run time %.0f s\n" % (info["date"], elapsed))
            f.write("- Python %s; %s; %s CPUs (affinity %s); %s\n" % (
                info["python"], info["go"] or "go: not found", info["cpu_count"],
                info["cpu_affinity"], info["platform"]))
            f.write("- each cell: median of %d runs x %d round(s); rates: higher is better; "
                    "ratios > 1 mean gopool is better\n\n" % (args.repeats or REPEATS[
                        "quick" if args.quick else "full"], args.rounds))
            f.write(table + "\n\n")
            for n in notes:
                f.write("- " + n + "\n")
        log("wrote %s" % args.write)
    if args.json:
        C.write_json(args.json, {"command": cmdline, "env": info, "impls": impls, "scenarios": scenarios,
                                 "results": results, "ratios": ratios, "elapsed_s": round(elapsed, 1)})
        log("wrote %s" % args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
