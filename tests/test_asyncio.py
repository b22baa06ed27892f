"""Pool results in asyncio code: AsyncResult is awaitable, imap iterators are
async-iterable; awaiting never blocks the event loop, and cancelling the
awaiting task cancels the gopool task (issue: concurrent.futures and
asyncio on the same core)."""

import asyncio
import os
import sys

import pytest

import gopool
from helpers import tasks

import uvloop  # a test dependency, installed by `make build`


def run(coro):
    return asyncio.run(coro)


@pytest.mark.timeout(60)
def test_await_apply_async_gives_the_value_or_raises(pool):
    async def main():
        assert await pool.apply_async(tasks.square, (7,)) == 49
        with pytest.raises(ValueError, match="boom"):
            await pool.apply_async(tasks.raise_value_error, ("boom",))
        assert await pool.map_async(tasks.square, range(5)) == [0, 1, 4, 9, 16]
        return True

    assert run(main())


@pytest.mark.timeout(60)
def test_awaiting_does_not_block_the_event_loop(pool):
    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.create_task(ticker())
        value = await pool.apply_async(tasks.sleep_then_return, (0.5, "slept"))
        t.cancel()
        return value, ticks

    value, ticks = run(main())
    assert value == "slept"
    assert ticks >= 10, f"the loop ran {ticks} times while a 0.5 s task ran"


@pytest.mark.timeout(60)
def test_gather_many_results(pool):
    async def main():
        return await asyncio.gather(*[pool.apply_async(tasks.square, (i,)) for i in range(200)])

    assert run(main()) == [i * i for i in range(200)]


@pytest.mark.timeout(60)
def test_wait_for_timeout_stops_the_running_task(pool1, tmp_path):
    # stdlib: no await at all; an executor's Future cannot stop a running call.
    started, marker = tmp_path / "started", tmp_path / "finished"

    async def main():
        r = pool1.apply_async(tasks.touch_sleep_touch, (str(started), 30, str(marker)))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(_started_then(r, started), 20)
        return r

    r = run(main())
    assert r.cancelled()
    with pytest.raises(gopool.CancelledError):
        r.get(timeout=10)
    assert pool1.apply(tasks.square, (3,)) == 9  # a new worker
    assert not marker.exists()


async def _started_then(result, started):
    """Wait until the task has started, then await it with a short limit."""
    while not started.exists():
        await asyncio.sleep(0.01)
    return await asyncio.wait_for(result, 0.2)


@pytest.mark.timeout(60)
def test_cancelling_the_awaiting_task_cancels_a_queued_task(pool1, tmp_path):
    go = str(tmp_path / "go")

    async def main():
        head = pool1.apply_async(tasks.wait_for_go, (str(tmp_path / "started"), go, "head"))
        queued = pool1.apply_async(tasks.touch_then_sleep, (str(tmp_path), "queued", 0))
        waiter = asyncio.create_task(_await(queued))
        await asyncio.sleep(0.1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        open(go, "w").close()
        return await head, queued

    (value, _), queued = run(main())
    assert value == "head"
    assert queued.cancelled()
    assert not (tmp_path / "started-queued").exists(), "a cancelled task ran"


async def _await(result):
    return await result


if sys.version_info >= (3, 11):  # asyncio.TaskGroup; the suite allows no skipped test

    @pytest.mark.timeout(60)
    def test_task_group(pool):
        async def main():
            async with asyncio.TaskGroup() as tg:
                a = tg.create_task(_await(pool.apply_async(tasks.square, (2,))))
                b = tg.create_task(_await(pool.apply_async(tasks.square, (3,))))
            return a.result() + b.result()

        assert run(main()) == 13


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_async_for_over_imap(pool, method):
    async def main():
        out = []
        async for x in getattr(pool, method)(tasks.square, range(50)):
            out.append(x)
        return out

    got = run(main())
    assert (got if method == "imap" else sorted(got)) == [i * i for i in range(50)]


@pytest.mark.timeout(60)
def test_async_for_raises_each_failure_at_its_position(pool):
    async def main():
        out = []
        it = pool.imap(tasks.fail_on_odd, range(4))
        while True:
            try:
                out.append(await it.__anext__())
            except StopAsyncIteration:
                return out
            except ValueError:
                out.append("ERR")

    assert run(main()) == [0, "ERR", 2, "ERR"]


@pytest.mark.timeout(60)
def test_cancelling_an_async_for_cancels_the_rest_of_the_imap(pool1, tmp_path):
    # An imap whose items each sleep 30 s: the consumer is cancelled while
    # it waits for the first; nothing is left running or waiting.
    async def consume(it):
        async for _ in it:
            pass

    async def scenario():
        it = pool1.imap(_sleeper(tmp_path), range(5))
        consumer = asyncio.create_task(consume(it))
        while not (tmp_path / "started-0").exists():
            await asyncio.sleep(0.01)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer

    run(scenario())
    assert pool1.apply(tasks.square, (4,)) == 16
    assert sorted(os.listdir(tmp_path)) == ["started-0"]


def _sleeper(tmp_path):
    import functools

    return functools.partial(tasks.touch_then_sleep, str(tmp_path), seconds=30)


@pytest.mark.timeout(60)
def test_thread_pool_results_are_awaitable(tpool):
    async def main():
        return await tpool.apply_async(tasks.square, (5,)), [x async for x in tpool.imap(tasks.square, range(3))]

    assert run(main()) == (25, [0, 1, 4])


@pytest.mark.timeout(60)
def test_under_uvloop(pool):
    async def main():
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        return await asyncio.gather(pool.apply_async(tasks.square, (6,)), pool.apply_async(tasks.square, (7,)))

    assert uvloop.run(main()) == [36, 49]
