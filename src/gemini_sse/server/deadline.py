"""A deadline for repeated waits, enforced by one lazily re-armed timer.

The gateway waits again and again on the same task: for the next chunk from upstream,
for the next send to the client. `asyncio.timeout` (or anyio's cancel scope) per wait
costs a timer pushed and cancelled each time; this costs a float stored, and about one
timer per deadline's length (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import math


class Deadline:
    """The deadline of the current wait of one task.

    It behaves like an `asyncio.timeout` around each wait, at a fraction of the cost:
    that took two reschedules per wait, each a cancelled timer left in the loop's heap
    and a new one pushed (~2 us and more garbage per token with thousands of streams).
    Here a wait only stores its deadline. The one timer fires at the deadline it was armed
    for; if the current deadline is later by then, it re-arms for that; if a wait is
    still running past its deadline, it cancels the task, and `expired()` tells the
    waiter that the cancellation was the deadline's (undoing it, as `asyncio.timeout`
    does), so it can raise its own timeout error instead.
    """

    __slots__ = (
        "_loop",
        "_task",
        "_cancelling",
        "_handle",
        "_armed",
        "_fired",
        "deadline",
        "waiting",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a Deadline belongs to a task")
        self._loop = loop
        self._task = task
        self._cancelling = task.cancelling()
        self._handle: asyncio.TimerHandle | None = None
        self._armed = math.inf  # when the timer fires
        self._fired = False  # the timer cancelled the task
        self.deadline = math.inf  # when the current wait must end
        self.waiting = False  # a wait for upstream is running

    def wait(self, deadline: float) -> None:
        """A wait starts now and must end by `deadline` (loop time)."""
        self.deadline = deadline
        self.waiting = True
        if deadline < self._armed:
            self._arm(deadline)

    def expire_now(self) -> None:
        """End the running wait at once (cancel, shutdown)."""
        if self.waiting:
            self.wait(self._loop.time())

    def expired(self) -> bool:
        """After a `CancelledError` from a wait: was it ours? Then it is undone.

        As `asyncio.timeout`: ours only if nobody else cancelled the task meanwhile.
        """
        if not self._fired:
            return False
        self._fired = False
        return self._task.uncancel() <= self._cancelling

    def close(self) -> None:
        """No more waits: drop the timer."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed = math.inf
        self.waiting = False

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed = math.inf
        if not self.waiting:
            return  # the client is being served; the next wait arms the timer again
        if self._loop.time() < self.deadline:
            self._arm(self.deadline)  # chunks came since this was armed
            return
        self._fired = True
        self._task.cancel()
