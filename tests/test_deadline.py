"""`Deadline`, the upstream wait's clock, checked by a `Ticker`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from gemini_sse.server.deadline import Deadline
from gemini_sse.server.ticker import Ticker


async def _wait_past(deadline_in: float, wait: Callable[[], Awaitable[None]]) -> tuple[bool, int]:
    """Run `wait` under a deadline `deadline_in` seconds away, ticked every 10 ms: was
    the cancellation the deadline's, and how many cancellations are left on the task."""
    loop = asyncio.get_running_loop()
    clock = Deadline(Ticker(0.01))
    clock.wait(loop.time() + deadline_in)
    expired = False
    try:
        await wait()
    except asyncio.CancelledError:
        expired = clock.expired()
    finally:
        clock.close()
    task = asyncio.current_task()
    assert task is not None
    return expired, task.cancelling()


def test_a_wait_past_its_deadline_is_cancelled_and_told_apart() -> None:
    """A tick after the deadline cancels the waiting task; `expired()` says it was the
    deadline's and undoes the cancellation, so the task can go on."""
    assert asyncio.run(_wait_past(0.03, lambda: asyncio.sleep(5))) == (True, 0)


def test_a_cancellation_swallowed_below_is_repeated_at_the_next_tick() -> None:
    """If the code under the wait swallows the cancellation and keeps waiting, a later
    tick cancels again; `expired()` undoes both."""

    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(5)  # the first cancellation is swallowed here
        await asyncio.sleep(5)

    assert asyncio.run(_wait_past(0.02, stubborn)) == (True, 0)


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
