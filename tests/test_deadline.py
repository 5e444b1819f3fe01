"""`Deadline`, the upstream wait's clock, checked by a `Ticker`."""

from __future__ import annotations

import asyncio
import contextlib

from gemini_sse.server.deadline import Deadline
from gemini_sse.server.ticker import Ticker


def test_a_wait_past_its_deadline_is_cancelled_and_told_apart() -> None:
    """A tick after the deadline cancels the waiting task; `expired()` says it was the
    deadline's and undoes the cancellation, so the task can go on."""

    async def main() -> tuple[bool, int]:
        loop = asyncio.get_running_loop()
        clock = Deadline(Ticker(0.01))
        clock.wait(loop.time() + 0.03)
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            expired = clock.expired()
        finally:
            clock.close()
        task = asyncio.current_task()
        assert task is not None
        return expired, task.cancelling()

    assert asyncio.run(main()) == (True, 0)


def test_a_cancellation_swallowed_below_is_repeated_at_the_next_tick() -> None:
    """If the code under the wait swallows the cancellation and keeps waiting, a later
    tick cancels again; `expired()` undoes both."""

    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(5)  # the first cancellation is swallowed here
        await asyncio.sleep(5)

    async def main() -> tuple[bool, int]:
        loop = asyncio.get_running_loop()
        clock = Deadline(Ticker(0.01))
        clock.wait(loop.time() + 0.02)
        try:
            await stubborn()
        except asyncio.CancelledError:
            expired = clock.expired()
        finally:
            clock.close()
        task = asyncio.current_task()
        assert task is not None
        return expired, task.cancelling()

    assert asyncio.run(main()) == (True, 0)


def test_no_cancellation_while_not_waiting_or_before_the_deadline() -> None:
    """Ticks leave alone a task that is not waiting, or whose wait is not yet due."""

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        clock = Deadline(Ticker(0.01))
        clock.wait(loop.time() + 60)
        await asyncio.sleep(0.05)  # ticks pass, the deadline is far
        clock.waiting = False
        clock.deadline = loop.time()  # past, but the task is not waiting
        await asyncio.sleep(0.05)
        clock.close()
        return clock.expired()

    assert asyncio.run(main()) is False
