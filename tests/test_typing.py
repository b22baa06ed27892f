"""gopool's types as a user's type checker sees them: small programs checked
with mypy (--strict) against the installed package.

A correct program must pass cleanly, so the package is typed (py.typed) and
its generics carry the types through (``Pool.map(f, xs)`` is a list of what
f returns); a wrong one must be rejected at the lines where it is wrong, so
that the check cannot pass for want of types (everything ``Any``).

mypy 2.x runs on Python 3.10 and later, as Dask does (see conftest.py): on
3.9 this module has no tests.
"""

import os
import re
import subprocess
import sys
import textwrap

import pytest

# The checker's settings, apart from the project's own (pyproject.toml).
MYPY_CONFIG = """\
[mypy]
strict = True
"""

GOOD_PROGRAM = '''\
import asyncio
from concurrent.futures import as_completed
from typing import Iterator, List, Tuple

import gopool
from gopool import Pool, ProcessPoolExecutor, ThreadPool
from gopool.futures import Future
from gopool.pool import AsyncResult, IMapIterator, MapResult


def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b


def describe(x: int) -> str:
    return f"<{x}>"


def print_total(values: List[int]) -> None:
    print(sum(values))


def use_pool() -> None:
    with Pool(2) as pool:
        squares: List[int] = pool.map(square, [1, 2])
        one: int = pool.apply(square, (2,))
        pending: AsyncResult[int] = pool.apply_async(square, (3,), callback=lambda v: print(v + 1))
        later: int = pending.get(timeout=1)
        texts: IMapIterator[str] = pool.imap(describe, range(3))
        first: str = next(texts)
        count: int = len(texts)
        unordered: List[str] = list(pool.imap_unordered(describe, [1, 2], chunksize=2))
        sums: List[int] = pool.starmap(add, [(1, 2), (3, 4)])
        mapped: MapResult[int] = pool.map_async(square, [1, 2], callback=print_total)
        all_squares: List[int] = mapped.get()
        starred: List[int] = pool.starmap_async(add, [(1, 2)]).get()
    with ThreadPool(2) as threads:
        lengths: List[int] = threads.map(len, ["a", "bb"])


async def use_pool_async(pool: Pool) -> List[int]:
    awaited: int = await pool.apply_async(square, (4,))
    return [value async for value in pool.imap(square, range(3))] + [awaited]


def use_queues() -> None:
    queue: gopool.Queue[int] = gopool.Queue()
    queue.put(1)
    item: int = queue.get(timeout=1)
    items: List[int] = queue.get_many(10, timeout=0)
    jobs: gopool.JoinableQueue[Tuple[str, int]] = gopool.JoinableQueue()
    jobs.put(("job", 1))
    name, number = jobs.get()
    jobs.task_done()
    simple: gopool.SimpleQueue[bytes] = gopool.SimpleQueue()
    simple.put(b"x")
    data: bytes = simple.get()


def use_executor() -> None:
    with ProcessPoolExecutor(2) as executor:
        future: Future[int] = executor.submit(add, 1, 2)
        total: int = future.result()
        for done in as_completed([future]):
            print(done.result() + 1)
        results: Iterator[str] = executor.map(describe, [1, 2])
        wrapped: "asyncio.Future[int]" = asyncio.wrap_future(executor.submit(square, 3))


def use_processes_and_events() -> None:
    event = gopool.Event()
    lock = gopool.Lock()
    with lock:
        event.set()
    process = gopool.Process(target=event.wait, args=(1.0,))
    process.start()
    process.join()
    code: "int | None" = process.exitcode
'''

# Each line below that ends in "# error: CODE" must be reported with that code.
BAD_PROGRAM = '''\
import gopool
from gopool import Pool, ProcessPoolExecutor


def square(x: int) -> int:
    return x * x


with Pool(2) as pool:
    s: str = pool.apply(square, (2,))  # error: assignment
    pool.apply_async(square, 5)  # error: arg-type
    words: list[str] = pool.map(square, [1, 2])  # error: arg-type
    pool.map(square, ["a", "b"])  # error: arg-type
    total: str = pool.apply_async(square, (3,)).get()  # error: assignment
    first: str = next(pool.imap(square, [1]))  # error: assignment
    pool.map_async(square, [1], callback=lambda values: values.upper())  # error: attr-defined
queue: gopool.Queue[int] = gopool.Queue()
queue.put("one")  # error: arg-type
text: str = queue.get()  # error: assignment
with ProcessPoolExecutor() as executor:
    executor.submit(square, "two")  # error: arg-type
    result: str = executor.submit(square, 2).result()  # error: assignment
'''

REVEAL_PROGRAM = '''\
from gopool import Pool, ProcessPoolExecutor, Queue


def square(x: int) -> int:
    return x * x


with Pool(2) as pool:
    reveal_type(pool)
    reveal_type(pool.map(square, [1]))
    reveal_type(pool.apply(square, (1,)))
    reveal_type(pool.apply_async(square, (1,)))
    reveal_type(pool.map_async(square, [1]))
    reveal_type(pool.imap(square, [1]))
    reveal_type(pool.imap_unordered(square, [1]))
    reveal_type(pool.starmap(pow, [(2, 3)]))
queue: Queue[str] = Queue()
reveal_type(queue.get())
with ProcessPoolExecutor() as executor:
    reveal_type(executor.submit(square, 1))
    reveal_type(executor.map(square, [1]))
'''

# As mypy 2.x writes types (mypy 1.x wrote builtins.list[builtins.int]).
REVEALED = [
    "gopool.pool.Pool",
    "list[int]",
    "int",
    "gopool.pool.ApplyResult[int]",
    "gopool.pool.MapResult[int]",
    "gopool.pool.IMapIterator[int]",
    "gopool.pool.IMapIterator[int]",
    "list[int]",
    "str",
    "gopool.futures.Future[int]",
    "typing.Iterator[int]",
]


def _mypy(tmp_path, cache, name, program):
    """Check program (as tmp_path/name) with mypy; return (exit status, output)."""
    source = tmp_path / name
    source.write_text(textwrap.dedent(program))
    config = tmp_path / "mypy.ini"
    config.write_text(MYPY_CONFIG)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir", str(cache),
         "--no-error-summary", "--show-error-codes", "--no-color-output", name],
        cwd=tmp_path, capture_output=True, text=True, timeout=280,
        # the package as installed, not a source tree on a path of the environment's
        env={k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")},
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One mypy cache for the module: gopool and the stdlib are analysed once."""
    return tmp_path_factory.mktemp("mypy-cache")


if sys.version_info >= (3, 10):

    @pytest.mark.timeout(300)
    def test_correct_program_passes(tmp_path, cache):
        status, output = _mypy(tmp_path, cache, "good.py", GOOD_PROGRAM)
        assert (status, output) == (0, ""), output

    @pytest.mark.timeout(300)
    def test_wrong_program_is_rejected_where_it_is_wrong(tmp_path, cache):
        expected = set()
        for number, line in enumerate(BAD_PROGRAM.splitlines(), 1):
            match = re.search(r"# error: ([a-z-]+)$", line)
            if match:
                expected.add((number, match.group(1)))
        assert len(expected) == 11
        status, output = _mypy(tmp_path, cache, "bad.py", BAD_PROGRAM)
        reported = {(int(m.group(1)), m.group(2))
                    for m in re.finditer(r"^bad\.py:(\d+): error: .*\[([a-z-]+)\]$", output, re.M)}
        assert status == 1, output
        assert reported == expected, output

    @pytest.mark.timeout(300)
    def test_revealed_types(tmp_path, cache):
        status, output = _mypy(tmp_path, cache, "reveal.py", REVEAL_PROGRAM)
        revealed = re.findall(r'^reveal\.py:\d+: note: Revealed type is "(.*)"$', output, re.M)
        assert status == 0, output
        assert revealed == REVEALED, output
