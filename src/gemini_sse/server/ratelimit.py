"""Per-caller limits: requests a minute, output tokens a minute, streams at once.

A caller is an API key (its id), or the client's address when no keys are configured.
Over a limit, a request gets 429 `too_many_requests` with `Retry-After`: the gateway's own
refusal, distinct from `rate_limited`, which is the model's.

The two windows are kept by the `limits` library, in memory or, with
`GEMINI_SSE_REDIS_URL`, in Redis so that every replica sees the same counts:
- requests: a moving window, so a burst at a minute's boundary cannot double the rate;
- tokens: a fixed window. Tokens are known only when a stream ends, so they are added
  then, past the budget if need be (a moving window would refuse to record them), and a
  caller at or over the budget is refused new streams until the window ends.

Streams at once live in a Redis sorted set per caller, one member per running stream,
scored with the Redis server's time when its replica last vouched for it. Each replica
renews its members every `lease / 3`; members older than `lease` belong to a replica that
died and are dropped by the next admission, so a crash frees its slots within a lease.

If Redis cannot be reached (or takes over 2 s), limits are not enforced (a warning is
logged, once a minute) rather than every request refused: they protect a budget, not
the gateway. After a failure the limits leave Redis alone for `COOL_DOWN_S`, then try it
again (a circuit breaker): a Redis that accepts connections but never answers would
otherwise cost every limit call its own timeout, several per request. Slots are freed in
this process at once even then; their Redis members, no longer renewed, lapse after the
lease.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as redis
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from redis.exceptions import RedisError

from .._exceptions import RequestRejected
from .._models import ErrorCode
from .auth import Caller
from .settings import Settings

logger = logging.getLogger("gemini_sse.ratelimit")

_PREFIX = "gemini-sse:limits"
REDIS_TIMEOUT_S = 2.0  # the longest one call to Redis may take
COOL_DOWN_S = 30.0  # after a Redis failure, how long limits go unenforced before trying again


@dataclass(frozen=True, slots=True)
class Slot:
    """One running stream counted against a caller."""

    caller: str
    member: str


def too_many(message: str, retry_after: float) -> RequestRejected:
    return RequestRejected.of(
        429,
        ErrorCode.TOO_MANY_REQUESTS,
        message,
        retryable=True,
        retry_after=max(1.0, retry_after),
    )


class _Slots(Protocol):
    async def acquire(self, caller: str, limit: int) -> Slot | None: ...
    def forget(self, slot: Slot) -> None: ...
    async def release(self, slot: Slot) -> None: ...
    async def renew(self) -> None: ...


class MemorySlots:
    """Streams at once in this process."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    async def acquire(self, caller: str, limit: int) -> Slot | None:
        count = self._counts.get(caller, 0)
        if count >= limit:
            return None
        self._counts[caller] = count + 1
        return Slot(caller, "")

    def forget(self, slot: Slot) -> None:
        count = self._counts.pop(slot.caller, 0) - 1
        if count > 0:
            self._counts[slot.caller] = count

    async def release(self, slot: Slot) -> None:
        self.forget(slot)

    async def renew(self) -> None:
        return None


# Times are the Redis server's (TIME), so replicas' clocks need not agree.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
# KEYS[1] the caller's set; ARGV: limit, lease (ms), member. 1 if a slot was taken.
_ACQUIRE = (
    _NOW
    + """
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - lease)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], lease)
return 1
"""
)
# KEYS[1] the caller's set; ARGV: lease (ms), members. XX: a member released meanwhile
# stays released.
_RENEW = (
    _NOW
    + """
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
"""
)


class RedisSlots:
    """Streams at once across replicas, in one Redis sorted set per caller."""

    def __init__(self, client: redis.Redis, lease_s: float) -> None:
        self._redis = client
        self.lease_ms = max(1000, int(lease_s * 1000))
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._held: dict[str, set[str]] = {}  # this replica's members, by caller

    @staticmethod
    def _key(caller: str) -> str:
        return f"{_PREFIX}:streams:{caller}"

    async def acquire(self, caller: str, limit: int) -> Slot | None:
        member = uuid.uuid4().hex
        taken = await self._acquire(keys=[self._key(caller)], args=[limit, self.lease_ms, member])
        if not taken:
            return None
        self._held.setdefault(caller, set()).add(member)
        return Slot(caller, member)

    def forget(self, slot: Slot) -> None:
        """Stop renewing the slot; left in Redis, it lapses after the lease."""
        held = self._held.get(slot.caller)
        if held is not None:
            held.discard(slot.member)
            if not held:
                del self._held[slot.caller]

    async def release(self, slot: Slot) -> None:
        self.forget(slot)  # first: should Redis fail now, the slot still lapses
        await self._redis.zrem(self._key(slot.caller), slot.member)

    async def renew(self) -> None:
        for caller, members in list(self._held.items()):
            await self._renew(keys=[self._key(caller)], args=[self.lease_ms, *members])


class Limiter:
    """The per-caller limits of one gateway; every check is a no-op for a limit set to 0."""

    def __init__(self, settings: Settings) -> None:
        self.requests: RateLimitItem | None = (
            RateLimitItemPerMinute(settings.rate_limit_rpm) if settings.rate_limit_rpm else None
        )
        self.tokens: RateLimitItem | None = (
            RateLimitItemPerMinute(settings.tokens_per_minute)
            if settings.tokens_per_minute
            else None
        )
        self.max_streams = settings.max_streams_per_key
        self.enabled = bool(self.requests or self.tokens or self.max_streams)
        self.renew_every_s = settings.stream_lease_s / 3
        self._redis: redis.Redis | None = None
        self._warned_at = -60.0
        self._retry_at = 0.0  # monotonic time before which Redis is left alone
        storage: Storage
        self.slots: _Slots
        if self.enabled and settings.redis_url:
            # A Redis that stops answering must not hold requests for long.
            self._redis = redis.Redis.from_url(
                settings.redis_url,
                socket_connect_timeout=REDIS_TIMEOUT_S,
                socket_timeout=REDIS_TIMEOUT_S,
            )
            options: dict[str, Any] = {"connection_pool": self._redis.connection_pool}
            storage = RedisStorage(
                _limits_uri(settings.redis_url),
                implementation="redispy",
                key_prefix=_PREFIX,
                **options,  # one connection pool for the windows and the slots
            )
            self.slots = RedisSlots(self._redis, settings.stream_lease_s)
        else:
            storage = MemoryStorage()
            self.slots = MemorySlots()
        self._moving = MovingWindowRateLimiter(storage)
        self._fixed = FixedWindowRateLimiter(storage)

    @property
    def shared(self) -> bool:
        """Whether the counts live in Redis (and slots need renewing)."""
        return self._redis is not None

    def _skipping(self) -> bool:
        """Whether Redis failed less than `COOL_DOWN_S` ago: then limits are not enforced."""
        return time.monotonic() < self._retry_at

    def _unavailable(self, exc: Exception) -> None:
        now = time.monotonic()
        self._retry_at = now + COOL_DOWN_S
        if now - self._warned_at >= 60:
            self._warned_at = now
            logger.warning("rate limits not enforced: Redis is unavailable (%s)", exc)

    async def check_request(self, caller: Caller) -> None:
        """Count one request; raise 429 if the caller is over its requests a minute."""
        if self.requests is None or self._skipping():
            return
        try:
            if await self._moving.hit(self.requests, "requests", caller.id):
                return
            stats = await self._moving.get_window_stats(self.requests, "requests", caller.id)
        except (RedisError, OSError) as exc:
            self._unavailable(exc)
            return
        raise too_many(
            f"At most {self.requests.amount} requests a minute are accepted from {_who(caller)}.",
            stats.reset_time - time.time(),
        )

    async def check_tokens(self, caller: Caller) -> None:
        """Raise 429 if the caller has used its output tokens for this minute."""
        if self.tokens is None or self._skipping():
            return
        try:
            if await self._fixed.test(self.tokens, "tokens", caller.id):
                return
            stats = await self._fixed.get_window_stats(self.tokens, "tokens", caller.id)
        except (RedisError, OSError) as exc:
            self._unavailable(exc)
            return
        raise too_many(
            f"{_who(caller).capitalize()} has used its {self.tokens.amount} output tokens "
            "for this minute.",
            stats.reset_time - time.time(),
        )

    async def acquire_stream(self, caller: Caller) -> Slot | None:
        """Count one more running stream; raise 429 if the caller has as many as allowed.

        None: nothing to release later (no limit, or Redis unavailable).
        """
        if not self.max_streams or self._skipping():
            return None
        try:
            slot = await self.slots.acquire(caller.id, self.max_streams)
        except (RedisError, OSError) as exc:
            self._unavailable(exc)
            return None
        if slot is None:
            raise too_many(
                f"{_who(caller).capitalize()} already runs {self.max_streams} stream(s) at "
                "once, the most allowed.",
                1.0,
            )
        return slot

    async def settle(self, caller: Caller, slot: Slot | None, output_tokens: int) -> None:
        """A stream ended: free its slot and spend its tokens."""
        if self._skipping():
            if slot is not None:
                self.slots.forget(slot)
            return
        try:
            if slot is not None:
                await self.slots.release(slot)
            if self.tokens is not None and output_tokens > 0:
                await self._fixed.hit(self.tokens, "tokens", caller.id, cost=output_tokens)
        except (RedisError, OSError) as exc:
            self._unavailable(exc)

    async def keep_alive(self) -> None:
        """Renew this replica's slots until cancelled (Redis only)."""
        while True:
            await asyncio.sleep(self.renew_every_s)
            if self._skipping():
                continue
            try:
                await self.slots.renew()
            except (RedisError, OSError) as exc:
                self._unavailable(exc)

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


def _limits_uri(url: str) -> str:
    """`limits` names redis-py's URLs with an `async+` scheme (`unix://` is `redis+unix`)."""
    if url.startswith("unix://"):
        return "async+redis+unix://" + url.removeprefix("unix://")
    return "async+" + url


def _who(caller: Caller) -> str:
    return "this API key" if caller.key_id is not None else "this client address"
