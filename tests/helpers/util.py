"""Test-side utilities (never sent to workers)."""

import os
import time


def wait_for_path(path, timeout=20.0):
    """Wait until path exists (a file handshake with a task); return its text."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.01)
    with open(path) as f:
        return f.read()


def pid_alive(pid):
    """Whether pid is a live process (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state is the field after the parenthesised command name.
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def wait_pids_gone(pids, timeout=5.0):
    """Wait until none of pids is alive; return those still alive."""
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if pid_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if pid_alive(p)]
    return alive


def check_map_async_of_one_item_with_callbacks(pool, rounds):
    """CPython's test_map_async_callbacks: the job is sealed after its only
    chunk was delivered; the callback must still run and wait() return."""
    for _ in range(rounds):
        calls = []
        result = pool.map_async(int, ["1"], callback=calls.append, error_callback=calls.append)
        result.wait(30)
        assert result.ready()
        assert calls == [[1]]
