"""Progress people can see: len() of imap iterators (so tqdm shows a total)
and progress= bars on map, imap and friends."""

import functools
import sys

import pytest
import tqdm

import gopool
from helpers import tasks


class Bar:
    """A bar of the caller's: counts what it is told."""

    def __init__(self):
        self.n, self.closed = 0, False

    def update(self, n):
        self.n += n

    def close(self):
        self.closed = True


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_len_of_an_imap_over_a_sized_input(pool, method):
    it = getattr(pool, method)(tasks.square, range(37), chunksize=4)
    assert len(it) == 37
    assert sorted(it) == [i * i for i in range(37)]


@pytest.mark.timeout(60)
def test_len_of_an_imap_over_an_iterator_is_a_type_error(pool):
    it = pool.imap(tasks.square, iter(range(3)))
    with pytest.raises(TypeError):
        len(it)
    assert list(it) == [0, 1, 4]


@pytest.mark.timeout(60)
def test_tqdm_of_an_imap_knows_its_total(pool):
    bar = tqdm.tqdm(pool.imap(tasks.square, range(20)), file=sys.stderr)
    assert bar.total == 20
    assert list(bar) == [i * i for i in range(20)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("call", [
    lambda p, bar: p.map(tasks.square, range(30), chunksize=4, progress=bar),
    lambda p, bar: p.starmap(tasks.add, [(i, i) for i in range(30)], progress=bar),
    lambda p, bar: p.map_async(tasks.square, range(30), progress=bar).get(timeout=30),
    lambda p, bar: list(p.imap(tasks.square, range(30), chunksize=3, progress=bar)),
    lambda p, bar: list(p.imap_unordered(tasks.square, range(30), progress=bar)),
], ids=["map", "starmap", "map_async", "imap", "imap_unordered"])
def test_progress_advances_per_result_and_closes(pool, call):
    bar = Bar()
    assert len(call(pool, bar)) == 30
    assert bar.n == 30 and bar.closed


@pytest.mark.timeout(60)
def test_progress_callable_gets_counts(pool):
    counts = []
    pool.map(tasks.square, range(10), chunksize=3, progress=counts.append)
    assert sorted(counts) == [1, 3, 3, 3]  # a chunk at a time, in the order they finish


@pytest.mark.timeout(60)
def test_progress_true_draws_a_tqdm_bar(pool, capsys):
    assert pool.map(tasks.square, range(8), progress=True) == [i * i for i in range(8)]
    err = capsys.readouterr().err
    assert "8/8" in err


@pytest.mark.timeout(60)
def test_progress_bar_closes_on_failure_and_on_terminate(make_pool, tmp_path):
    p = make_pool(2)
    bar = Bar()
    with pytest.raises(ValueError):
        p.map(tasks.fail_on_odd, range(6), chunksize=1, progress=bar)
    assert bar.closed
    bar = Bar()
    sleeper = functools.partial(tasks.touch_then_sleep, str(tmp_path), seconds=30)
    r = p.map_async(sleeper, range(2), chunksize=1, progress=bar)
    tasks.wait_for_path(str(tmp_path / "started-0"))
    p.terminate()
    with pytest.raises(gopool.PoolTerminatedError):
        r.get(timeout=30)
    assert bar.closed


@pytest.mark.timeout(60)
def test_progress_true_without_tqdm_says_what_to_install(pool, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(ImportError, match="pip install gopool\\[progress\\]"):
        pool.map(tasks.square, range(3), progress=True)


def test_progress_of_another_kind_is_a_type_error(pool):
    with pytest.raises(TypeError):
        pool.map(tasks.square, range(3), progress=42)


# -- the executor's map ---------------------------------------------------------------


@pytest.fixture
def executor():
    with gopool.ProcessPoolExecutor(2) as ex:
        yield ex


@pytest.mark.timeout(60)
def test_executor_map_progress_advances_per_result_and_closes(executor):
    bar = Bar()
    it = executor.map(tasks.square, range(30), chunksize=4, progress=bar)
    assert next(it) == 0
    assert 1 <= bar.n <= 4 and not bar.closed  # the first chunk's results were handed out
    assert list(it) == [i * i for i in range(1, 30)]
    assert bar.n == 30 and bar.closed


@pytest.mark.timeout(60)
def test_executor_map_progress_true_draws_a_tqdm_bar_with_the_shortest_total(executor, capsys):
    assert list(executor.map(tasks.add, range(8), range(12), progress=True)) == [2 * i for i in range(8)]
    assert "8/8" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_executor_map_progress_over_an_iterator_has_no_total(executor, capsys):
    assert list(executor.map(tasks.square, iter(range(5)), progress=True)) == [i * i for i in range(5)]
    err = capsys.readouterr().err
    assert "5it" in err and "/5" not in err


@pytest.mark.timeout(60)
def test_executor_map_progress_closes_on_failure_and_when_abandoned(executor):
    bar = Bar()
    with pytest.raises(ValueError):
        list(executor.map(tasks.fail_on_odd, range(6), progress=bar))
    assert bar.closed
    bar = Bar()
    it = executor.map(tasks.square, range(6), progress=bar)
    next(it)
    it.close()
    assert bar.closed


def test_executor_map_progress_of_another_kind_is_a_type_error(executor):
    with pytest.raises(TypeError):
        executor.map(tasks.square, range(3), progress=42)
