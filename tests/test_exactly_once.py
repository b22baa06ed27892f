"""Each result is delivered exactly once, even when something raises while
results are being collected: a Ctrl-C (KeyboardInterrupt) that lands while
the thread waits for them, or a result that cannot be unpickled in the
parent. The core lends results and keeps them until the collecting thread
acknowledges them (gopool._backend); an interrupted collect lends them again.
"""

import functools
import os
import signal
import threading
import time

import pytest

import gopool
from helpers import tasks


def _interrupt_repeatedly(times, every, stop):
    """SIGINT this process `times` times, `every` seconds apart."""
    for _ in range(times):
        if stop.wait(every):
            return
        os.kill(os.getpid(), signal.SIGINT)


def _consume_through_interrupts(iterator):
    """Iterate to the end, catching the KeyboardInterrupts that land."""
    got, interrupts = [], 0
    while True:
        try:
            got.append(next(iterator))
        except StopIteration:
            return got, interrupts
        except KeyboardInterrupt:
            interrupts += 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_interrupted_imap_loses_no_result(make_pool, method):
    # stdlib: every result arrives; gopool before results were lent lost the
    # batch being collected (the iterator ended after 80-99 of 300).
    p = make_pool(2)
    stop = threading.Event()
    sender = threading.Thread(target=_interrupt_repeatedly, args=(10, 0.05, stop), daemon=True)
    it = getattr(p, method)(tasks.sleep_return, range(300))
    sender.start()
    try:
        got, interrupts = _consume_through_interrupts(it)
    finally:
        stop.set()
        sender.join()
    assert interrupts > 0, "no interrupt landed: the test proved nothing"
    if method == "imap":
        assert got == list(range(300))
    else:
        assert sorted(got) == list(range(300))


@pytest.mark.timeout(60)
def test_get_after_an_interrupted_get_returns_the_result(make_pool, tmp_path):
    p = make_pool(1)
    started, go = str(tmp_path / "started"), str(tmp_path / "go")
    r = p.apply_async(tasks.wait_for_go, (started, go, "value"))
    tasks.wait_for_path(started)
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        r.get(timeout=20)
    open(go, "w").close()
    assert r.get(timeout=20)[0] == "value"
    assert r.get(timeout=0)[0] == "value"


@pytest.mark.timeout(60)
def test_a_result_the_parent_cannot_unpickle_fails_alone(make_pool):
    # Before: imap yielded ERR, 0, STOP (the failure took its batch with it).
    p = make_pool(2)
    it = p.imap(_undecodable_item(), [0, 1, 2, 3])
    got = []
    for _ in range(4):
        try:
            got.append(next(it))
        except RuntimeError as exc:
            got.append("ERR")
            assert "could not be unpickled in the parent" in str(exc)
    assert got == [0, "ERR", 2, 3]
    with pytest.raises(StopIteration):
        next(it)
    r = p.apply_async(_undecodable_item(), (1,))
    for _ in range(2):  # the same error again on a second get()
        with pytest.raises(RuntimeError, match="could not be unpickled"):
            r.get(timeout=20)


def _undecodable_item():
    """x -> x, except that the parent cannot unpickle the result for 1."""
    return functools.partial(tasks.undecodable_on, bad=1, parent_pid=os.getpid())


@pytest.mark.timeout(60)
def test_callbacks_survive_a_result_the_parent_cannot_unpickle(make_pool):
    # Before: the callback thread died, later callbacks never ran and
    # close(); join() never returned.
    p = make_pool(2)
    good, bad = [], []
    results = [p.apply_async(_undecodable_item(), (x,), callback=good.append, error_callback=bad.append)
               for x in [0, 1, 2, 3]]
    p.close()
    p.join()
    assert sorted(good) == [0, 2, 3]
    assert len(bad) == 1 and isinstance(bad[0], RuntimeError)
    assert [r.successful() for r in results] == [True, False, True, True]
