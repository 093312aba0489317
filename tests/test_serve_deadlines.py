"""The shared time limit of the serving path (assay.serve.deadlines)."""

from __future__ import annotations

import asyncio
import time

import pytest

from assay.serve.deadlines import Deadlines


def test_a_block_that_outlives_its_limit_raises_timeout_error_within_a_tick() -> None:
    async def scenario() -> float:
        deadlines = Deadlines(0.2)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            async with deadlines.limit():
                await asyncio.sleep(5)
        return time.monotonic() - start

    took = asyncio.run(scenario())
    assert 0.2 <= took < 0.2 + 0.2 / 10 + 0.15


def test_blocks_that_finish_in_time_are_left_alone_and_the_timer_stops() -> None:
    async def scenario() -> tuple[list[int], bool]:
        deadlines = Deadlines(0.2)

        async def quick(i: int) -> int:
            async with deadlines.limit():
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # past the deadline, outside the block: not cancelled
            return i

        done = await asyncio.gather(*(quick(i) for i in range(50)))
        await asyncio.sleep(0.1)
        return done, deadlines._timer is None

    done, stopped = asyncio.run(scenario())
    assert done == list(range(50)) and stopped


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def scenario() -> None:
        deadlines = Deadlines(5)

        async def guarded() -> None:
            async with deadlines.limit():
                await asyncio.sleep(5)

        task = asyncio.create_task(guarded())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_late_and_early_requests_mixed_only_the_late_ones_time_out() -> None:
    async def scenario() -> list[str]:
        deadlines = Deadlines(0.2)

        async def request(seconds: float) -> str:
            try:
                async with deadlines.limit():
                    await asyncio.sleep(seconds)
            except TimeoutError:
                return "timeout"
            return "ok"

        return await asyncio.gather(*(request(0.5 if i % 3 == 0 else 0.05) for i in range(30)))

    results = asyncio.run(scenario())
    assert results == ["timeout" if i % 3 == 0 else "ok" for i in range(30)]
