"""A deadline for repeated waits, checked by a `Ticker` rather than a timer of its own.

The gateway waits again and again on the same task for the next chunk from upstream.
`asyncio.timeout` per wait costs a timer pushed and cancelled each time; a timer of our
own per stream still costs every stream a place in asyncio's timer heap, which the
model's own pauses then pay for (`ticker.py`). Here a wait only stores its deadline, and
one `Ticker` for all generations looks at every open deadline once a period
(docs/benchmarks.md, "Optimisations made", 2 and 10).
"""

from __future__ import annotations

import asyncio
import math

from .ticker import Ticker


class Deadline:
    """The deadline of the current wait of one task.

    It behaves like an `asyncio.timeout` around each wait, at a fraction of the cost, and
    up to one ticker period late: when a tick finds a wait still running past its
    deadline, it cancels the task, and `expired()` tells the waiter that the
    cancellation was the deadline's (undoing it, as `asyncio.timeout` does), so it can
    raise its own timeout error instead. `close()` when the waits are over.
    """

    __slots__ = ("_task", "_cancelling", "_ticker", "_fired", "deadline", "waiting")

    def __init__(self, ticker: Ticker[Deadline]) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a Deadline belongs to a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._ticker = ticker
        self._fired = 0  # times the deadline cancelled the task, not yet undone
        self.deadline = math.inf  # when the current wait must end (loop time)
        self.waiting = False  # a wait for upstream is running
        ticker.add(self)

    def wait(self, deadline: float) -> None:
        """A wait starts now and must end by `deadline` (loop time)."""
        self.deadline = deadline
        self.waiting = True

    def expire_now(self) -> None:
        """End the running wait at once (cancel, shutdown)."""
        if self.waiting:
            self._fire()

    def expired(self) -> bool:
        """After a `CancelledError` from a wait: was it ours? Then it is undone.

        As `asyncio.timeout`: ours only if nobody else cancelled the task meanwhile.
        """
        if not self._fired:
            return False
        fired, self._fired = self._fired, 0
        for _ in range(fired):
            remaining = self._task.uncancel()
        return remaining <= self._cancelling

    def close(self) -> None:
        """No more waits: leave the ticker."""
        self._ticker.discard(self)
        self.waiting = False

    def tick(self, now: float) -> None:
        if self.waiting and now >= self.deadline:
            self._fire()

    def _fire(self) -> None:
        # Again at a later tick if the wait is still on (a provider that swallowed the
        # first cancellation); `expired()` undoes every one.
        self._fired += 1
        self._task.cancel()
