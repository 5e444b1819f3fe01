"""Small statistics for the figures the reliability tests record, and an RSS sampler."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (`fraction` in 0..1) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(0, math.ceil(fraction * len(ordered)) - 1)
    return ordered[rank]


def slope(points: Sequence[tuple[float, float]]) -> float:
    """The least-squares slope of y over x."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in points)
    variance = sum((x - mean_x) ** 2 for x, _ in points)
    return covariance / variance


@dataclass
class Samples:
    """(seconds since the start, value) pairs taken by `sampling`."""

    points: list[tuple[float, float]] = field(default_factory=list)

    @property
    def peak(self) -> float:
        return max(value for _, value in self.points)


@contextlib.contextmanager
def sampling(read: Callable[[], float], every_s: float) -> Iterator[Samples]:
    """Call `read` every `every_s` seconds in a thread while the block runs."""
    samples = Samples()
    stop = threading.Event()
    start = time.monotonic()

    def run() -> None:
        while True:
            with contextlib.suppress(OSError):  # the process may be gone at the very end
                samples.points.append((time.monotonic() - start, read()))
            if stop.wait(every_s):
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(timeout=10)
