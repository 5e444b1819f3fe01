"""Per-caller limits over real HTTP: requests and tokens a minute, streams at once, replicas."""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis

from gemini_sse.server import ratelimit
from gemini_sse.server.ratelimit import REDIS_TIMEOUT_S

from .servers import RunningServer, free_port, run_process, wait_for
from .sse import iter_events, parse

ONE_CHUNK = {"message": "hi", "simulation": {"chunks": 1}}
SLOW = {"message": "hi", "simulation": {"chunks": 100, "delay_ms": 50}}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def fresh_keys(count: int) -> list[str]:
    """Keys no other test uses, so that counts kept in the shared Redis start at zero."""
    return [secrets.token_hex(16) for _ in range(count)]


def post(url: str, key: str | None = None, body: dict[str, Any] = ONE_CHUNK) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/stream", json=body, headers=bearer(key) if key else None, timeout=10
    )


def assert_throttled(response: httpx.Response, mentions: str) -> None:
    """429 `too_many_requests`, retryable, with a Retry-After of at most a minute."""
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "too_many_requests"
    assert error["retryable"] is True
    assert mentions in error["message"], error["message"]
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert error["retry_after"] == pytest.approx(int(response.headers["retry-after"]), abs=1)


def started(running: RunningServer) -> int:
    count: int = running.gateway.provider.stats.started  # type: ignore[attr-defined]
    return count


def settled(running: RunningServer) -> bool:
    """No generation running, and its slot and tokens written to the limits' storage."""
    return not running.gateway.live and not running.gateway._tasks


@contextlib.contextmanager
def held_stream(url: str, key: str | None) -> Iterator[None]:
    """A slow stream that has started (its first token arrived) until the block ends."""
    headers = bearer(key) if key else {}
    with httpx.stream("POST", f"{url}/v1/stream", json=SLOW, headers=headers, timeout=10) as r:
        assert r.status_code == 200
        events = iter_events(r.iter_raw())  # held: dropping it would close the response
        assert next(events).event == "token"
        yield


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """A `redis://` URL on 127.0.0.1 whose server accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):  # the listener closed: the block ended
            while True:
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() would not
        listener.close()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()


@contextlib.contextmanager
def replicas(
    env: dict[str, str], count: int
) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    """`count` gateway processes with the same settings, started side by side."""
    managers = [run_process(env) for _ in range(count)]
    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(manager.__enter__) for manager in managers]
    try:
        yield [future.result() for future in futures]
    finally:
        for manager, future in zip(managers, futures, strict=True):
            if future.exception() is None:
                manager.__exit__(None, None, None)


def test_requests_a_minute_are_counted_per_key(serve: Callable[..., RunningServer]) -> None:
    """GEMINI_SSE_RATE_LIMIT_RPM: every keyed request counts; the 4th of 3 gets 429; keys apart."""
    a, b = fresh_keys(2)
    running = serve(api_keys=f"{a},{b}", rate_limit_rpm=3)
    assert post(running.url, a).status_code == 200
    assert httpx.get(f"{running.url}/v1/models", headers=bearer(a)).status_code == 200
    assert post(running.url, a).status_code == 200
    assert_throttled(post(running.url, a), "At most 3 requests a minute")
    assert_throttled(post(running.url, a), "this API key")
    assert post(running.url, b).status_code == 200
    assert started(running) == 3


def test_without_keys_the_limit_is_per_client_address(serve: Callable[..., RunningServer]) -> None:
    """No keys: requests count per client address; probes and metrics do not count."""
    running = serve(rate_limit_rpm=2)
    for path in ("/healthz", "/readyz", "/metrics") * 3:
        assert httpx.get(f"{running.url}{path}").status_code == 200
    assert post(running.url).status_code == 200
    assert post(running.url).status_code == 200
    assert_throttled(post(running.url), "this client address")
    assert started(running) == 2


def test_streams_at_once_are_limited_per_key(serve: Callable[..., RunningServer]) -> None:
    """GEMINI_SSE_MAX_STREAMS_PER_KEY=1: a key's second stream gets 429 until the first ends."""
    a, b = fresh_keys(2)
    running = serve(api_keys=f"{a},{b}", max_streams_per_key=1)
    with held_stream(running.url, a):
        assert_throttled(post(running.url, a), "already runs 1 stream(s) at once")
        resumable = httpx.post(f"{running.url}/v1/streams", json=ONE_CHUNK, headers=bearer(a))
        assert_throttled(resumable, "already runs 1 stream(s) at once")
        assert post(running.url, b).status_code == 200
    assert wait_for(lambda: settled(running))
    assert post(running.url, a).status_code == 200
    assert started(running) == 3


def test_output_tokens_a_minute_refuse_a_key_over_its_budget(
    serve: Callable[..., RunningServer],
) -> None:
    """GEMINI_SSE_TOKENS_PER_MINUTE: tokens are counted as a stream ends; then the key waits."""
    a, b = fresh_keys(2)
    running = serve(api_keys=f"{a},{b}", tokens_per_minute=10)
    first = post(running.url, a, {"message": "hi"})  # 5 chunks of 12 characters: 15 tokens
    assert parse(first.content)[-1].data["usage"]["output_tokens"] == 15
    assert wait_for(lambda: settled(running))
    assert_throttled(post(running.url, a), "has used its 10 output tokens for this minute")
    assert post(running.url, b).status_code == 200
    assert started(running) == 2


def test_limits_are_not_enforced_when_redis_is_unreachable(
    serve: Callable[..., RunningServer],
) -> None:
    """Redis down: requests are served (limits off, a warning logged), not all refused."""
    running = serve(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", rate_limit_rpm=1, max_streams_per_key=1
    )
    for _ in range(3):
        assert post(running.url).status_code == 200
    assert started(running) == 3


def test_a_redis_that_never_answers_delays_requests_once_not_each_time(
    serve: Callable[..., RunningServer],
) -> None:
    """Redis silent: after one timed-out call limits skip Redis; 5 requests do not wait 5 times."""
    with black_hole() as url:
        running = serve(redis_url=url, rate_limit_rpm=1, tokens_per_minute=1, max_streams_per_key=1)
        began = time.monotonic()
        for _ in range(5):
            assert post(running.url).status_code == 200
        elapsed = time.monotonic() - began
        # One timeout, then none: far from the five that waiting on every request costs.
        assert elapsed < 3 * REDIS_TIMEOUT_S, f"5 requests took {elapsed:.1f} s"
        assert started(running) == 5
        assert wait_for(lambda: settled(running))


@pytest.mark.redis
def test_tokens_are_shared_by_replicas(serve: Callable[..., RunningServer], redis_url: str) -> None:
    """With Redis, tokens spent through one replica count on another."""
    (a,) = fresh_keys(1)
    one = serve(api_keys=a, tokens_per_minute=10, redis_url=redis_url)
    two = serve(api_keys=a, tokens_per_minute=10, redis_url=redis_url)
    assert post(two.url, a).status_code == 200  # 3 tokens: still under 10
    assert wait_for(lambda: settled(two))
    assert post(one.url, a, {"message": "hi"}).status_code == 200  # 15 more
    assert wait_for(lambda: settled(one))
    assert_throttled(post(two.url, a), "has used its 10 output tokens")


@pytest.mark.redis
def test_a_stream_that_ends_while_redis_is_skipped_frees_its_slot(
    serve: Callable[..., RunningServer], redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream that ends while Redis is skipped stops being renewed; its slot is free later."""
    monkeypatch.setattr(ratelimit, "COOL_DOWN_S", 3.0)
    (a,) = fresh_keys(1)
    running = serve(api_keys=a, max_streams_per_key=1, redis_url=redis_url, stream_lease_s=1)
    with held_stream(running.url, a):
        # Redis stops answering for longer than one call may wait: the limiter fails open.
        with redis.Redis.from_url(redis_url) as admin:
            admin.client_pause(int(REDIS_TIMEOUT_S * 1000) + 500, all=True)
        assert post(running.url, a).status_code == 200
    assert wait_for(lambda: settled(running))  # its slot was settled while Redis was skipped
    # ... so this replica no longer renews it (else, with a lease longer than the cool-down,
    # the renewals would hold it in Redis for ever); in Redis it lapses after the lease.
    assert not running.gateway.limiter.slots._held  # type: ignore[attr-defined]
    # The cool-down (restarted by a renewal that was waiting on Redis) ends, renewals resume
    # (every 1/3 s), then a lease passes: time that must pass, with no outside sign to wait
    # on (during the cool-down every request is let through anyway).
    time.sleep(3.0 + 2.0)
    assert post(running.url, a).status_code == 200  # the ended stream's slot is not held
    with held_stream(running.url, a):
        assert_throttled(post(running.url, a), "already runs 1 stream(s) at once")


@pytest.mark.redis
def test_replicas_share_limits_and_a_crashed_one_frees_its_streams(redis_url: str) -> None:
    """Two processes on one Redis share request and stream counts; a killed one's slot expires."""
    a, b = fresh_keys(2)
    env = {
        "GEMINI_SSE_PROVIDER": "fake",
        "GEMINI_SSE_FAKE_CHUNKS": "1",
        "GEMINI_SSE_FAKE_FIRST_DELAY_MS": "5",
        "GEMINI_SSE_API_KEYS": f"{a},{b}",
        "GEMINI_SSE_RATE_LIMIT_RPM": "3",
        "GEMINI_SSE_MAX_STREAMS_PER_KEY": "1",
        "GEMINI_SSE_REDIS_URL": redis_url,
        "GEMINI_SSE_STREAM_LEASE_S": "1",
    }
    with replicas(env, 2) as [(one, one_proc), (two, _)]:
        assert post(one, a).status_code == 200
        assert post(two, a).status_code == 200
        assert post(one, a).status_code == 200
        assert_throttled(post(two, a), "At most 3 requests a minute")
        assert_throttled(post(one, a), "At most 3 requests a minute")

        with held_stream(one, b):
            # Longer than the lease: only renewals keep the slot counted (the scenario's
            # time, nothing to wait on).
            time.sleep(1.5)
            assert_throttled(post(two, b), "already runs 1 stream(s) at once")
            one_proc.send_signal(signal.SIGKILL)  # no goodbye: its slot is left in Redis
            one_proc.wait(timeout=5)
            # The lease is 1 s and was renewed every 1/3 s: after 2 s the slot is stale. No
            # sign of it to poll for: each request tried would spend b's requests a minute.
            time.sleep(2.0)
            assert post(two, b).status_code == 200  # b's third request this minute
