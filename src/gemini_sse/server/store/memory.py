"""Resumable streams in this process's memory: one replica, no Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from ..._models import Usage
from . import Frame, Status, StreamInfo, StreamNotFound


@dataclass(eq=False)
class _Entry:
    info: StreamInfo
    frames: list[Frame] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    cancel: bool = False
    done: bool = False


class MemoryStore:
    """Streams in this process's memory; expired ones are dropped as they are touched
    and by `sweep()`, which the app runs periodically."""

    needs_lease = False

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._streams: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._streams)

    def _get(self, stream_id: str) -> _Entry | None:
        entry = self._streams.get(stream_id)
        if entry is not None and entry.info.expires_at <= time.time():
            self._drop(stream_id, entry)
            return None
        return entry

    def _drop(self, stream_id: str, entry: _Entry) -> None:
        del self._streams[stream_id]
        entry.frames.clear()
        entry.changed.set()  # wake readers so that they see the end

    def sweep(self) -> int:
        """Drop expired streams; returns how many."""
        now = time.time()
        expired = [(k, e) for k, e in self._streams.items() if e.info.expires_at <= now]
        for stream_id, entry in expired:
            self._drop(stream_id, entry)
        return len(expired)

    async def create(self, info: StreamInfo) -> None:
        self._streams[info.id] = _Entry(info)

    async def append(self, stream_id: str, frame: Frame) -> bool:
        entry = self._get(stream_id)
        if entry is None or entry.done or frame.id != len(entry.frames) + 1:
            return False
        entry.frames.append(frame)
        entry.done = frame.terminal
        changed, entry.changed = entry.changed, asyncio.Event()
        changed.set()
        return True

    async def finish(self, stream_id: str, status: Status, usage: Usage | None) -> None:
        entry = self._get(stream_id)
        if entry is not None:
            entry.info = replace(
                entry.info, status=status, usage=usage, expires_at=time.time() + self.ttl_s
            )

    async def info(self, stream_id: str) -> StreamInfo | None:
        entry = self._get(stream_id)
        if entry is None:
            return None
        return replace(entry.info, events=len(entry.frames))

    async def follow(self, stream_id: str, after: int) -> AsyncIterator[Frame]:
        entry = self._get(stream_id)
        if entry is None:
            raise StreamNotFound(stream_id)
        index = max(0, after)
        while True:
            changed = entry.changed
            frames = entry.frames
            while index < len(frames):
                yield frames[index]
                index += 1
            if entry.done or stream_id not in self._streams:
                return
            await changed.wait()

    async def request_cancel(self, stream_id: str) -> bool:
        entry = self._get(stream_id)
        if entry is None:
            return False
        entry.cancel = True
        return True

    async def cancel_requested(self, stream_id: str) -> bool:
        entry = self._get(stream_id)
        return entry is not None and entry.cancel

    async def cancellations(self) -> AsyncIterator[str]:
        # None: with one process, the routes interrupt a running producer themselves.
        return
        yield

    async def renew_lease(self, stream_id: str) -> None:
        return None

    async def aclose(self) -> None:
        for stream_id, entry in list(self._streams.items()):
            self._drop(stream_id, entry)
