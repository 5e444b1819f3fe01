"""Where resumable streams keep their events: between the pipeline and the readers.

A producer appends each encoded event once; any number of readers replay what is there
after the id they already have, then follow new events until the terminal one.
`memory.MemoryStore` serves one process; `redis.RedisStore` shares streams between
replicas. Both implement `StreamStore`, so the routes cannot tell them apart;
`create_store(settings)` picks one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from ..._models import StreamState, Usage
from ..settings import Settings

Status = StreamState


@dataclass(frozen=True, slots=True)
class Frame:
    """One stored event: its id, its type, and its SSE bytes as sent."""

    id: int
    event: str
    data: bytes

    @property
    def terminal(self) -> bool:
        return self.event in ("done", "error")


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What is known about a stream besides its events."""

    id: str
    model: str
    owner: str | None
    created_at: float
    expires_at: float
    status: Status = "running"
    events: int = 0
    usage: Usage | None = None


class StreamNotFound(LookupError):
    """No stream with that id (never made, or expired)."""


class StreamStore(Protocol):
    """Storage for resumable streams."""

    #: Whether producers must hold a lease (their death is only seen through it).
    needs_lease: bool

    async def create(self, info: StreamInfo) -> None:
        """Register a new, empty, running stream."""
        ...

    async def append(self, stream_id: str, frame: Frame) -> bool:
        """Store the next event; False if the stream is gone or the id is taken."""
        ...

    async def finish(self, stream_id: str, status: Status, usage: Usage | None) -> None:
        """Record the outcome; the stream expires `ttl` seconds from now."""
        ...

    async def info(self, stream_id: str) -> StreamInfo | None: ...

    def follow(self, stream_id: str, after: int) -> AsyncIterator[Frame]:
        """Every frame with an id above `after`, then live ones until the terminal one.

        Raises `StreamNotFound` when first iterated if the stream does not exist.
        """
        ...

    async def request_cancel(self, stream_id: str) -> bool:
        """Ask the stream's producer, wherever it runs, to stop. False if unknown."""
        ...

    async def cancel_requested(self, stream_id: str) -> bool: ...

    def cancellations(self) -> AsyncIterator[str]:
        """The ids of streams whose cancel is requested, on any replica, as it happens.

        For a replica to stop its producers at once; best effort: a request made while
        this is not listening (a reconnect) is missed here, and `cancel_requested`
        still says it.
        """
        ...

    async def renew_lease(self, stream_id: str) -> None:
        """The producer is alive; readers wait for it a little longer."""
        ...

    async def aclose(self) -> None: ...


def create_store(settings: Settings) -> StreamStore:
    """Redis when GEMINI_SSE_REDIS_URL is set, else this process's memory."""
    if settings.redis_url:
        from .redis import RedisStore  # redis-py is imported only where it is used

        return RedisStore(
            settings.redis_url,
            ttl_s=settings.stream_ttl_s,
            lease_s=settings.stream_lease_s,
            retry_ms=settings.retry_hint_ms,
        )
    from .memory import MemoryStore

    return MemoryStore(ttl_s=settings.stream_ttl_s)
