"""Giving memory back to the system once a burst of streams is over.

Python frees a finished stream's objects at once, but the process keeps their pages:
glibc's malloc keeps freed heap memory for reuse (on its own it only returns the top of
the heap, and one live block above the holes pins all of them), and pymalloc returns a
1 MiB arena only once every object in it is gone. The few hundred objects in reference
cycles that each stream leaves behind (cancelled helper tasks and their tracebacks) are
such objects, and they wait for a full collection, which serve.py's
collector thresholds make rare. After 200 concurrent answers of 800 KB, 440-650 MiB
stayed resident that no object used (docs/benchmarks.md, "Memory after a burst").

So once the gateway has had no stream for `IDLE_S`, it runs one full collection and asks
glibc to return its free pages (`malloc_trim(0)`): 40-110 ms after such a burst, a few ms
after a small one, and only while nothing streams. Where the C library is not glibc
(musl, macOS), only the collection runs.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
from collections.abc import Callable

logger = logging.getLogger("gemini_sse.memory")

# Quiet time before releasing: a burst's last streams end within it, and a steady trickle
# of streams (one ending as the next starts) never pays for a release.
IDLE_S = 2.0


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # glibc's; musl and macOS have none
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_memory(trim: Callable[[int], int] | None) -> None:
    """Free what reference cycles hold, then hand glibc's free pages back to the system."""
    gc.collect()
    if trim is not None:
        trim(0)


class IdleRelease:
    """Runs `release_memory()` once the gateway has been idle for `idle_s` seconds."""

    def __init__(self, is_idle: Callable[[], bool], idle_s: float = IDLE_S) -> None:
        self.idle_s = idle_s
        self._is_idle = is_idle
        self._trim = _malloc_trim()
        self._timer: asyncio.TimerHandle | None = None

    def schedule(self) -> None:
        """Memory was freed: release it `idle_s` from now if the gateway is idle then.

        Each call moves the release later, so a burst is released once, after its end.
        """
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.idle_s, self._fire)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        if not self._is_idle():
            return  # a stream started since: its end schedules the release again
        started = time.perf_counter()
        release_memory(self._trim)
        logger.info("memory released in %.1f ms", (time.perf_counter() - started) * 1000)
