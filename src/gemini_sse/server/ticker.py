"""One timer for the periodic checks of many open streams.

Every open SSE response needs looking at now and then: is a heartbeat due, has a send
been stuck past its timeout? A timer of its own per response (or two) would do, but
asyncio keeps its timers in one heap whose entries are compared in Python, and at two
thousand open streams the model's own pauses between chunks then cost more to schedule:
each push and pop walks a heap three times as large, through entries cold in the cache
(4-5 us per token at 2,000 streams, docs/benchmarks.md, "Optimisations made", 10).
A `Ticker` keeps one timer for all its members and calls `tick(now)` on each of them
every `period` seconds while it has any; a check is then late by at most one period.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar


class Ticking(Protocol):
    def tick(self, now: float) -> None:
        """Look at the time (`now`, the event loop's clock) and act on it."""
        ...


T = TypeVar("T", bound=Ticking)


def tick_period(*spans: float | None) -> float:
    """How often to tick for checks due every `spans` seconds (None, 0 or inf: never):
    an eighth of the shortest, at most a second."""
    return min([1.0, *(span / 8 for span in spans if span and span != math.inf)])


class Ticker(Generic[T]):
    """The members to tick, and the one timer that ticks them."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._members: set[T] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, member: T) -> None:
        self._members.add(member)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.period, self._tick)

    def discard(self, member: T) -> None:
        self._members.discard(member)
        if not self._members and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._members))  # a copy: members may leave meanwhile

    def __len__(self) -> int:
        return len(self._members)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        try:
            for member in list(self._members):
                member.tick(now)
        finally:  # one member's failure must not stop the others' ticks
            self._timer = loop.call_later(self.period, self._tick) if self._members else None
