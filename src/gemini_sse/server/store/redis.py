"""Resumable streams in Redis, shared by every gateway replica.

Per stream, three keys under `gemini-sse:{id}:`
- `e`: a Redis Stream of events. Entry ids are `N-0` for event id N, so `XADD` refuses an
  id that is already taken: when two writers race for the same slot (a producer and a
  reader declaring it lost), exactly one wins. Entry `0-1` is an opening marker that
  gives the key its expiry before the first event.
- `m`: a hash: model, owner, times, status, usage, cancel flag.
- `l`: the producer's lease, a key with a short expiry that the producer renews. A reader
  that finds no new event and no lease declares the generation lost.
A cancel request sets the hash's flag and is published on `gemini-sse:cancel`, so that the
producing replica, subscribed, stops at once rather than at its next look at the flag.
Everything expires `ttl` seconds after the stream ends (and at `expires_at` at the latest).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError, ResponseError

from ..._models import ErrorCode, ErrorEvent, Usage
from ..encoding import encode_sse
from . import Frame, Status, StreamInfo, StreamNotFound

logger = logging.getLogger("gemini_sse.store")

_OPEN = "0-1"

_CANCEL_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'cancel', '1')
  redis.call('PUBLISH', ARGV[1], ARGV[2])
  return 1
end
return 0
"""


class RedisStore:
    """`StreamStore` on Redis Streams."""

    needs_lease = True

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float,
        lease_s: float,
        retry_ms: int,
        prefix: str = "gemini-sse:",
    ) -> None:
        # Reads block for at most a second (XREAD BLOCK); anything much slower is a fault.
        self._redis: redis.Redis = redis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
        )
        self.ttl_s = ttl_s
        self.lease_ms = max(1, int(lease_s * 1000))
        self.retry_ms = retry_ms
        self.prefix = prefix
        self._cancel_channel = f"{prefix}cancel"

    def _keys(self, stream_id: str) -> tuple[str, str, str]:
        base = f"{self.prefix}{stream_id}:"
        return base + "e", base + "m", base + "l"

    async def create(self, info: StreamInfo) -> None:
        events, meta, lease = self._keys(info.id)
        expire_at = int(info.expires_at) + 1
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                meta,
                mapping={
                    "model": info.model,
                    "owner": info.owner or "",
                    "created_at": repr(info.created_at),
                    "expires_at": repr(info.expires_at),
                    "status": info.status,
                },
            )
            pipe.xadd(events, {"t": "open"}, id=_OPEN)
            pipe.set(lease, "1", px=self.lease_ms)
            pipe.expireat(meta, expire_at)
            pipe.expireat(events, expire_at)
            await pipe.execute()

    async def append(self, stream_id: str, frame: Frame) -> bool:
        events, _, _ = self._keys(stream_id)
        entry_id = f"{frame.id}-0"
        try:
            await self._redis.xadd(events, {"t": frame.event, "f": frame.data}, id=entry_id)
        except ResponseError:
            # The slot is taken: by this very frame when an earlier try landed but its
            # reply was lost (a timeout, a dropped connection), else by a reader that
            # declared the stream lost.
            taken: Any = await self._redis.xrange(events, entry_id, entry_id)
            return bool(taken) and taken[0][1].get(b"f") == frame.data
        return True

    async def finish(self, stream_id: str, status: Status, usage: Usage | None) -> None:
        events, meta, lease = self._keys(stream_id)
        ttl = max(1, int(self.ttl_s))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                meta,
                mapping={
                    "status": status,
                    "usage": usage.model_dump_json() if usage else "",
                    "expires_at": repr(time.time() + ttl),
                },
            )
            pipe.expire(meta, ttl)
            pipe.expire(events, ttl)
            pipe.delete(lease)
            await pipe.execute()

    async def info(self, stream_id: str) -> StreamInfo | None:
        events, meta, _ = self._keys(stream_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(meta)
            pipe.xlen(events)
            fields, length = await pipe.execute()
        if not fields:
            return None
        text = {k.decode(): v.decode() for k, v in fields.items()}
        usage = text.get("usage")
        return StreamInfo(
            id=stream_id,
            model=text.get("model", ""),
            owner=text.get("owner") or None,
            created_at=float(text.get("created_at", 0)),
            expires_at=float(text.get("expires_at", 0)),
            status=text.get("status", "running"),
            events=max(0, int(length) - 1),
            usage=Usage.model_validate_json(usage) if usage else None,
        )

    async def follow(self, stream_id: str, after: int) -> AsyncIterator[Frame]:
        events, meta, lease = self._keys(stream_id)
        status = await self._redis.hget(meta, "status")
        if status is None:
            raise StreamNotFound(stream_id)
        last = max(0, after)
        # A finished stream has all its events: read them without blocking, once.
        finishing = status != b"running"
        block_ms: int | None = None if finishing else min(self.lease_ms, 1000)
        # When this reader first found the lease gone (monotonic seconds), or None.
        lease_missing_since: float | None = None
        while True:
            start = f"{last}-0" if last else _OPEN
            reply: Any = await self._redis.xread({events: start}, count=512, block=block_ms)
            if reply:
                lease_missing_since = None
                for _key, entries in reply:
                    for entry_id, fields in entries:
                        frame = Frame(
                            int(entry_id.split(b"-", 1)[0]), fields[b"t"].decode(), fields[b"f"]
                        )
                        yield frame
                        last = frame.id
                        if frame.terminal:
                            return
                continue
            # Nothing new for a while: is the stream still there, its producer alive?
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.exists(meta)
                pipe.exists(lease)
                pipe.hget(meta, "status")
                has_meta, has_lease, status = await pipe.execute()
            if not has_meta or finishing:
                return  # expired, or finished with its terminal event at or before `after`
            if status != b"running":
                # It finished between our read and this look: its terminal event may have
                # landed in between. One more read, without blocking, then stop.
                finishing, block_ms = True, None
                continue
            if has_lease:
                lease_missing_since = None
                continue
            # A lease lapses for everyone at once when Redis itself stood still (paused,
            # restarted): only a lease this reader has seen missing for a whole lease
            # period means that its producer is gone, not just late to renew it.
            now = time.monotonic()
            if lease_missing_since is None:
                lease_missing_since = now
            if now - lease_missing_since >= self.lease_ms / 1000:
                # The producer is gone. Its last event decides the lost event's id (this
                # reader may be behind, e.g. a Last-Event-ID from long ago).
                top: Any = await self._redis.xrevrange(events, count=1)
                produced = int(top[0][0].split(b"-", 1)[0]) if top else 0
                if await self.append(stream_id, self._lost_frame(produced + 1)):
                    await self.finish(stream_id, "error", None)
                # Either way the next read returns the terminal event (ours or another's).

    def _lost_frame(self, event_id: int) -> Frame:
        event = ErrorEvent(
            code=ErrorCode.GENERATION_LOST,
            message="The gateway replica producing this stream stopped; ask again.",
            retryable=True,
        )
        return Frame(event_id, "error", encode_sse(event_id, event, retry_ms=self.retry_ms))

    async def request_cancel(self, stream_id: str) -> bool:
        _, meta, _ = self._keys(stream_id)
        # One step: the hash may expire between a check and a write, and HSET would then
        # leave a hash with no expiry behind.
        flagged = await self._redis.eval(
            _CANCEL_IF_EXISTS, 1, meta, self._cancel_channel, stream_id
        )
        return bool(flagged)

    async def cancel_requested(self, stream_id: str) -> bool:
        _, meta, _ = self._keys(stream_id)
        return bool(await self._redis.hget(meta, "cancel"))

    async def cancellations(self) -> AsyncIterator[str]:
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._cancel_channel)
                    while True:
                        # A bounded wait: a blocking one would end in the client's
                        # socket timeout whenever nobody cancels for that long.
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None:
                            yield message["data"].decode()
            except (RedisError, OSError) as exc:
                logger.info("listening for cancel requests failed (%s); again in 1 s", exc)
                await asyncio.sleep(1)

    async def renew_lease(self, stream_id: str) -> None:
        _, _, lease = self._keys(stream_id)
        await self._redis.set(lease, "1", px=self.lease_ms)

    async def keys_of(self, stream_id: str) -> list[str]:
        """The stream's keys that exist now (for tests and operators)."""
        return [k for k in self._keys(stream_id) if await self._redis.exists(k)]

    async def aclose(self) -> None:
        await self._redis.aclose()
