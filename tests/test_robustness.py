"""Odd input and failing parts: every one gets a clear answer, and nothing leaks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessageChunk

from gemini_sse._models import ChatMessage, StreamRequest, TokenEvent
from gemini_sse.server.app import create_app
from gemini_sse.server.encoding import TypedSSE, encode_sse
from gemini_sse.server.pipeline import Generation, Timeouts
from gemini_sse.server.providers import ModelRequest
from gemini_sse.server.sse import event_stream
from gemini_sse.server.store import Frame, StreamInfo
from gemini_sse.server.store.redis import RedisStore

from .conftest import make_settings
from .servers import RunningServer, free_port, run_in_thread, wait_for
from .sse import iter_events

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client_for(**settings: Any) -> httpx.AsyncClient:
    app = create_app(make_settings(**settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gateway")


async def test_text_that_is_not_valid_unicode_is_a_422_not_a_failed_stream() -> None:
    """A lone surrogate in a message is refused before any model call, on both APIs."""
    async with client_for() as client:
        native = await client.post(
            "/v1/stream",
            content=b'{"message": "hi \\ud800"}',
            headers={"content-type": "application/json"},
        )
        openai = await client.post(
            "/v1/chat/completions",
            content=b'{"model": "gemini-2.5-flash", "messages": '
            b'[{"role": "user", "content": "hi \\udc00"}]}',
            headers={"content-type": "application/json"},
        )
    assert native.status_code == 422
    assert native.json()["error"]["code"] == "invalid_request"
    assert openai.status_code == 400
    assert openai.json()["error"]["code"] == "invalid_request"


async def test_wrong_method_is_a_json_405_with_allow() -> None:
    """A method a route does not take answers 405 in our error shape, with `Allow`."""
    async with client_for() as client:
        response = await client.put("/v1/stream", json={"message": "hi"})
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    assert response.json()["error"]["code"] == "invalid_request"


async def test_an_unexpected_failure_is_a_json_500_in_our_vocabulary() -> None:
    """A bug surfaces as `internal` with the request id, never as a bare text 500."""
    app = create_app(make_settings())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail")

    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        response = await client.get("/boom", headers={"X-Request-ID": "r-1"})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "internal"
    assert error["request_id"] == "r-1"
    assert "secret" not in response.text


async def test_eventsource_reconnecting_to_a_one_shot_stream_is_told_to_stop() -> None:
    """GET /v1/stream with Last-Event-ID (a reconnect) gets 204, not a second generation."""
    app = create_app(make_settings())
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        response = await client.get(
            "/v1/stream", params={"message": "hi"}, headers={"Last-Event-ID": "4"}
        )
    assert response.status_code == 204
    assert app.state.gateway.provider.stats.started == 0


@pytest.mark.parametrize(
    "value",
    ["\u00b2", "1" * 5000, "-1", "3.0", "99"],
    ids=["superscript", "huge", "neg", "dot", "past-end"],
)
async def test_bad_last_event_ids_are_422(serve: Callable[..., RunningServer], value: str) -> None:
    """Last-Event-ID must be ASCII digits naming an event the stream has sent."""
    running = serve(fake_chunks=2, fake_delay_ms=0, fake_first_delay_ms=0)
    async with httpx.AsyncClient(base_url=running.url) as client:
        created = (await client.post("/v1/streams", json={"message": "hi"})).json()
        response = await client.get(created["events_url"], params={"last_event_id": value})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


async def test_a_response_whose_body_never_runs_still_frees_its_slot() -> None:
    """The release runs on the event loop even when the stream body is never iterated."""
    app = create_app(make_settings(max_streams_per_key=1))
    gateway = app.state.gateway
    caller = await gateway.authorize(None, "127.0.0.1")
    request = gateway.model_request(StreamRequest(message="hi"))
    generation = await gateway.admit(request, caller=caller, separators=None, request_id=None)
    assert len(gateway.live) == 1
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client stays connected: no disconnect comes
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    # A HEAD gets headers only: the body never runs.
    encode = TypedSSE(retry_ms=1000, separators=False)
    body = generation.events()
    await event_stream(gateway, body, encode=encode, request_id=None, generation=generation)(
        {"type": "http", "method": "HEAD", "headers": []}, receive, send
    )
    assert sent[0]["status"] == 200
    assert len(gateway.live) == 0
    await gateway.wait_background(5)  # the slot is released by a task the release started
    # The caller's one stream slot is free again.
    again = await gateway.admit(request, caller=caller, separators=None, request_id=None)
    gateway.finish(again)


async def test_store_failures_are_503_store_unavailable(
    serve: Callable[..., RunningServer],
) -> None:
    """With Redis unreachable, every resumable route answers a retryable 503, not a 500."""
    running = serve(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with httpx.AsyncClient(base_url=running.url, timeout=20) as client:
        responses = [
            await client.post("/v1/streams", json={"message": "hi"}),
            await client.get("/v1/streams/abc/events"),
            await client.get("/v1/streams/abc"),
            await client.delete("/v1/streams/abc"),
        ]
    for response in responses:
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "store_unavailable"
        assert error["retryable"] is True
        assert response.headers["retry-after"] == "1"


# --- the Redis store's edges, on a real redis-server ---------------------------------------


async def _store_with_events(url: str, count: int) -> tuple[RedisStore, str]:
    store = RedisStore(url, ttl_s=60, lease_s=0.3, retry_ms=1000)
    stream_id = f"edge-{free_port()}-{count}"
    await store.create(
        StreamInfo(id=stream_id, model="m", owner=None, created_at=0, expires_at=10**10)
    )
    for i in range(1, count + 1):
        await store.append(stream_id, Frame(i, "token", encode_sse(i, TokenEvent(text=str(i)))))
    return store, stream_id


async def test_a_lagging_reader_of_a_dead_producer_gets_the_lost_event_after_the_last_one(
    redis_url: str,
) -> None:
    """`generation_lost` takes the id after the producer's last event, whoever notices."""
    store, stream_id = await _store_with_events(redis_url, 3)
    try:
        # The dead producer's 0.3 s lease lapses (Redis expires it): time that must pass.
        await asyncio.sleep(0.5)
        behind = [f async for f in store.follow(stream_id, after=1)]
        whole = [f async for f in store.follow(stream_id, after=0)]
    finally:
        await store.aclose()
    assert [f.id for f in behind] == [2, 3, 4]
    assert [f.id for f in whole] == [1, 2, 3, 4]
    assert whole[-1].event == "error" and b"generation_lost" in whole[-1].data


async def test_cancelling_an_expired_stream_leaves_no_key_behind(redis_url: str) -> None:
    """A cancel that arrives after expiry answers False and creates nothing."""
    store = RedisStore(redis_url, ttl_s=60, lease_s=1, retry_ms=1000)
    try:
        assert await store.request_cancel("never-was") is False
        assert await store.keys_of("never-was") == []
    finally:
        await store.aclose()


class RateLimited(Exception):
    """An upstream 429 asking to come back in 30 s (read as `status_code`, `retry_after`)."""

    status_code = 429
    retry_after = 30.0


class AlwaysRateLimited:
    """A model that refuses every try with `RateLimited`, counting them."""

    name = "rate-limited"

    def __init__(self) -> None:
        self.tries = 0

    def check(self, request: ModelRequest) -> None:
        """Anything goes."""

    async def astream(self, request: ModelRequest) -> AsyncIterator[AIMessageChunk]:
        self.tries += 1
        raise RateLimited("quota exceeded")
        yield  # an async generator, like every provider's stream

    async def aclose(self) -> None:
        return None


def test_cancel_during_a_retry_backoff_does_not_wait_it_out() -> None:
    """DELETE while the gateway waits to retry the model ends the stream at once."""
    model = AlwaysRateLimited()
    settings = make_settings(
        upstream_retries=2, upstream_retry_budget_s=120, first_token_timeout_s=120
    )
    with run_in_thread(create_app(settings, provider=model)) as running:
        created = httpx.post(f"{running.url}/v1/streams", json={"message": "hi"}).json()
        # The first try failed; the retry waits out the model's retry-after: 24 to 36 s.
        assert wait_for(lambda: model.tries == 1)
        started = time.monotonic()
        assert httpx.delete(f"{running.url}/v1/streams/{created['id']}").status_code == 202
        with httpx.stream("GET", f"{running.url}{created['events_url']}") as response:
            last = list(iter_events(response.iter_raw()))[-1]
        ended = time.monotonic() - started
    assert last.data["code"] == "cancelled"
    assert model.tries == 1
    # Not the backoff, which lasts 24 s at the least: well apart even on a slow machine.
    assert ended < 10


async def test_no_text_because_the_output_budget_ran_out_says_so() -> None:
    """An empty answer that stopped at max tokens names the budget, not a blocked prompt."""

    class BudgetSpent:
        name = "fake"

        async def astream(self, request: ModelRequest) -> AsyncIterator[AIMessageChunk]:
            yield AIMessageChunk(content="", response_metadata={"finish_reason": "MAX_TOKENS"})

        async def aclose(self) -> None:
            return None

    request = ModelRequest(messages=[ChatMessage(role="user", content="hi")], model="m")
    generation = Generation(BudgetSpent(), request, Timeouts(first_token=5, idle=5, total=5))
    events = [event async for event in generation.events()]
    assert [e.event for e in events] == ["error"]
    assert events[0].code == "content_blocked"
    assert "max_output_tokens" in events[0].message
