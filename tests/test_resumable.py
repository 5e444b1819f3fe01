"""Resumable streams over real uvicorn, with the in-memory store and a real redis-server."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gemini_sse._models import ErrorCode, ErrorInfo
from gemini_sse.server.providers.simulated import expected_answer
from gemini_sse.server.store import StreamInfo
from gemini_sse.server.store.memory import MemoryStore
from gemini_sse.server.store.redis import RedisStore
from gemini_sse.server.streams import _keep_lease

from .conftest import make_settings
from .servers import RunningServer, run_process, wait_for
from .sse import Received, iter_events, names, text

SLOW = {"fake_chunks": 6, "fake_first_delay_ms": 10, "fake_delay_ms": 60}


@pytest.fixture(params=["memory", "redis"])
def gateway(
    request: pytest.FixtureRequest, serve: Callable[..., RunningServer]
) -> Callable[..., RunningServer]:
    """`gateway(**settings)`: a real gateway on one store kind or the other."""
    store: dict[str, Any] = {}
    if request.param == "redis":
        store["redis_url"] = request.getfixturevalue("redis_url")
        store["stream_lease_s"] = 1.0

    def start(**settings: Any) -> RunningServer:
        return serve(**{**store, **settings})

    return start


def create(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = httpx.post(f"{url}/v1/streams", json=body or {"message": "hi"})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def read(
    url: str, path: str, *, last_event_id: str | None = None, stop_after: int | None = None
) -> list[Received]:
    """Read a stream's events; with `stop_after`, drop the connection after that many."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    events: list[Received] = []
    with httpx.stream("GET", f"{url}{path}", headers=headers, timeout=10) as response:
        assert response.status_code == 200, response.read()
        for event in iter_events(response.iter_raw()):
            events.append(event)
            if stop_after is not None and len(events) == stop_after:
                break
    return events


def test_create_returns_an_unguessable_id_and_where_to_read(
    gateway: Callable[..., RunningServer],
) -> None:
    """POST /v1/streams answers 201 with id (>= 128 random bits), events_url and expires_at."""
    running = gateway(**SLOW)
    response = httpx.post(f"{running.url}/v1/streams", json={"message": "hi"})
    assert response.status_code == 201
    body = response.json()
    assert len(body["id"]) >= 22  # base64url: 6 bits a character
    assert body["events_url"] == f"/v1/streams/{body['id']}/events"
    assert response.headers["location"] == body["events_url"]
    assert body["expires_at"] > time.time()
    assert body["id"] != create(running.url)["id"]


def test_a_stream_read_whole_equals_a_direct_answer(gateway: Callable[..., RunningServer]) -> None:
    """Reading a resumable stream gives the same events as `/v1/stream` for the same prompt."""
    running = gateway(**SLOW)
    created = create(running.url, {"message": "What is SSE?"})
    events = read(running.url, created["events_url"])
    with httpx.stream("POST", f"{running.url}/v1/stream", json={"message": "What is SSE?"}) as r:
        direct = list(iter_events(r.iter_raw()))
    assert names(events) == names(direct) == ["token", "separator"] * 6 + ["done"]
    assert text(events) == text(direct) == expected_answer(make_settings(**SLOW), ["What is SSE?"])
    assert [e.id for e in events] == [str(i) for i in range(1, 14)]


@pytest.mark.parametrize("position", [1, 6, 12])
def test_resume_after_a_dropped_connection_loses_and_repeats_nothing(
    gateway: Callable[..., RunningServer], position: int
) -> None:
    """Drop after the first, a middle, or the last-but-done event; resume: one whole stream."""
    running = gateway(**SLOW)
    created = create(running.url)
    first = read(running.url, created["events_url"], stop_after=position)
    rest = read(running.url, created["events_url"], last_event_id=first[-1].id)
    joined = first + rest
    assert [e.id for e in joined] == [str(i) for i in range(1, 14)]
    assert joined[-1].event == "done"
    assert text(joined) == expected_answer(make_settings(**SLOW), ["hi"])


def test_every_resume_point_replays_exactly_the_rest(gateway: Callable[..., RunningServer]) -> None:
    """For each k, Last-Event-ID k (header or query) gives events k+1.. and nothing else."""
    running = gateway(fake_chunks=3, fake_delay_ms=0, fake_first_delay_ms=0)
    created = create(running.url)
    whole = read(running.url, created["events_url"])
    assert len(whole) == 7
    for k in range(len(whole) + 1):
        tail = read(running.url, created["events_url"], last_event_id=str(k))
        assert tail == whole[k:]
        query = read(running.url, f"{created['events_url']}?last_event_id={k}")
        assert query == whole[k:]


def test_many_readers_each_get_every_event_once_in_order(
    gateway: Callable[..., RunningServer],
) -> None:
    """Five concurrent readers of one live stream all see the same complete sequence."""
    running = gateway(**SLOW)
    created = create(running.url)
    results: list[list[Received]] = [[] for _ in range(5)]

    def reader(i: int) -> None:
        results[i] = read(running.url, created["events_url"])

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert all(r == results[0] for r in results)
    assert [e.id for e in results[0]] == [str(i) for i in range(1, 14)]
    late = read(running.url, created["events_url"])  # joins after `done`
    assert late == results[0]


def test_unknown_streams_are_204_for_eventsource_and_404_otherwise(
    gateway: Callable[..., RunningServer],
) -> None:
    """An unknown id stops an EventSource (204) and gives other clients a JSON 404."""
    running = gateway()
    path = f"{running.url}/v1/streams/not-a-stream"
    assert httpx.get(f"{path}/events", headers={"Accept": "text/event-stream"}).status_code == 204
    plain = httpx.get(f"{path}/events")
    assert plain.status_code == 404
    assert plain.json()["error"]["code"] == "not_found"
    assert httpx.get(path).status_code == 404
    assert httpx.delete(path).status_code == 404


def test_cancel_ends_the_stream_with_cancelled_and_partial_usage(
    gateway: Callable[..., RunningServer],
) -> None:
    """DELETE stops the generation: an `error` event `cancelled` with the usage so far."""
    running = gateway(fake_chunks=100, fake_first_delay_ms=10, fake_delay_ms=50)
    created = create(running.url)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    first = read(running.url, created["events_url"], stop_after=4)
    cancelled = httpx.delete(f"{running.url}/v1/streams/{created['id']}")
    assert cancelled.status_code == 202
    rest = read(running.url, created["events_url"], last_event_id=first[-1].id)
    last = rest[-1]
    assert last.event == "error"
    assert last.data["code"] == "cancelled"
    assert last.data["usage"]["output_tokens"] > 0
    assert wait_for(lambda: stats.cancelled == 1)
    status = httpx.get(f"{running.url}/v1/streams/{created['id']}").json()
    assert status["status"] == "cancelled"
    assert status["events"] == int(last.id)


def test_status_reports_progress_and_usage(gateway: Callable[..., RunningServer]) -> None:
    """GET /v1/streams/{id} says running, then done with the event count and usage."""
    running = gateway(fake_chunks=3, fake_first_delay_ms=300, fake_delay_ms=10)
    created = create(running.url)
    early = httpx.get(f"{running.url}/v1/streams/{created['id']}").json()
    events = read(running.url, created["events_url"])
    assert wait_for(
        lambda: httpx.get(f"{running.url}/v1/streams/{created['id']}").json()["status"] == "done"
    )
    late = httpx.get(f"{running.url}/v1/streams/{created['id']}").json()
    assert early["status"] == "running"
    assert late["events"] == len(events) == 7
    assert late["usage"] == events[-1].data["usage"]


def test_leaving_the_events_endpoint_does_not_cancel_the_generation(
    gateway: Callable[..., RunningServer],
) -> None:
    """A detached generation runs on when its reader goes away (it can come back)."""
    running = gateway(**SLOW)
    created = create(running.url)
    read(running.url, created["events_url"], stop_after=1)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    assert wait_for(lambda: stats.completed == 1)
    assert stats.cancelled == 0


def test_a_stream_over_its_event_cap_ends_with_stream_limit(
    gateway: Callable[..., RunningServer],
) -> None:
    """GEMINI_SSE_STREAM_MAX_EVENTS caps what one stream stores; the last event says why."""
    running = gateway(stream_max_events=6, fake_chunks=50, fake_delay_ms=0, fake_first_delay_ms=0)
    created = create(running.url)
    events = read(running.url, created["events_url"])
    assert len(events) == 6
    assert events[-1].data["code"] == "stream_limit"


def test_finished_streams_expire_and_their_storage_is_released(
    gateway: Callable[..., RunningServer],
) -> None:
    """After GEMINI_SSE_STREAM_TTL_S a finished stream is gone, memory or Redis keys too."""
    running = gateway(stream_ttl_s=1, fake_chunks=2, fake_delay_ms=0, fake_first_delay_ms=0)
    created = create(running.url)
    read(running.url, created["events_url"])
    store = running.gateway.store
    status_url = f"{running.url}/v1/streams/{created['id']}"
    assert httpx.get(status_url).status_code == 200
    # Gone once its 1 s TTL has passed.
    assert wait_for(lambda: httpx.get(status_url).status_code == 404)
    if isinstance(store, MemoryStore):
        store.sweep()
        assert len(store) == 0
    else:
        assert isinstance(store, RedisStore)
        url = running.gateway.settings.redis_url or ""
        assert wait_for(lambda: asyncio.run(_keys_of(url, created["id"])) == [], every=0.1)


async def _keys_of(url: str, stream_id: str) -> list[str]:
    store = RedisStore(url, ttl_s=1, lease_s=1, retry_ms=0)
    try:
        return await store.keys_of(stream_id)
    finally:
        await store.aclose()


# --- several replicas on one redis-server -------------------------------------------------


def _replica_env(redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "GEMINI_SSE_PROVIDER": "fake",
        "GEMINI_SSE_REDIS_URL": redis_url,
        "GEMINI_SSE_STREAM_LEASE_S": "1",
        "GEMINI_SSE_FAKE_CHUNKS": "8",
        "GEMINI_SSE_FAKE_FIRST_DELAY_MS": "10",
        "GEMINI_SSE_FAKE_DELAY_MS": "100",
        **extra,
    }


def test_a_stream_started_on_one_replica_continues_on_another(redis_url: str) -> None:
    """Start on replica A, drop the connection, resume on replica B: one whole stream."""
    env = _replica_env(redis_url)
    with run_process(env) as (a, _), run_process(env) as (b, _):
        created = create(a)
        first = read(a, created["events_url"], stop_after=3)
        rest = read(b, created["events_url"], last_event_id=first[-1].id)
        status = httpx.get(f"{b}/v1/streams/{created['id']}").json()
    joined = first + rest
    assert [e.id for e in joined] == [str(i) for i in range(1, 18)]
    assert joined[-1].event == "done"
    assert text(joined) == expected_answer(make_settings(fake_chunks=8), ["hi"])
    assert status["status"] == "done"


def test_cancel_on_another_replica_stops_the_producer_at_once(redis_url: str) -> None:
    """DELETE on replica B reaches the producer on replica A through Redis, published: A
    stops without waiting for its next look at the flag (every 40 s with this lease, and
    the answer takes 20 s)."""
    env = _replica_env(redis_url, GEMINI_SSE_FAKE_CHUNKS="200", GEMINI_SSE_STREAM_LEASE_S="120")
    with run_process(env) as (a, _), run_process(env) as (b, _):
        created = create(a)
        read(b, created["events_url"], stop_after=2)
        assert httpx.delete(f"{b}/v1/streams/{created['id']}").status_code == 202
        events = read(b, created["events_url"])
    assert events[-1].data["code"] == "cancelled"
    assert len(events) < 100


def test_a_cancel_request_that_was_not_heard_is_found_by_the_lease_keeper() -> None:
    """A producer that missed the published request (its replica was reconnecting to
    Redis) stops at its lease keeper's next look at the flag."""

    class Producer:
        """The part of a `Generation` the lease keeper uses."""

        def __init__(self) -> None:
            self.interrupted: list[str] = []
            self.stopped = asyncio.Event()

        def interrupt(self, info: ErrorInfo) -> None:
            self.interrupted.append(info.code)
            self.stopped.set()

    async def main() -> list[str]:
        store = MemoryStore(ttl_s=60)  # its `cancellations` never tells of one
        now = time.time()
        await store.create(StreamInfo("s1", "m", None, created_at=now, expires_at=now + 60))
        producer = Producer()
        keeper = asyncio.create_task(_keep_lease(store, "s1", producer, 0.03))  # type: ignore[arg-type]
        assert await store.request_cancel("s1")
        await asyncio.wait_for(producer.stopped.wait(), 5)
        keeper.cancel()
        return producer.interrupted

    assert asyncio.run(main())[0] == ErrorCode.CANCELLED


def test_the_redis_store_tells_of_cancel_requests_made_through_another_client(
    redis_url: str,
) -> None:
    """`cancellations()` yields the id of each stream whose cancel any replica requests."""

    async def main() -> str:
        listening = RedisStore(redis_url, ttl_s=60, lease_s=5, retry_ms=0)
        asking = RedisStore(redis_url, ttl_s=60, lease_s=5, retry_ms=0)
        now = time.time()
        await asking.create(StreamInfo("heard", "m", None, created_at=now, expires_at=now + 60))
        heard = listening.cancellations()
        try:
            first = asyncio.ensure_future(anext(heard))
            await asyncio.sleep(0.3)  # subscribed by then, and nothing yet
            assert not first.done()
            assert await asking.request_cancel("heard")
            assert not await asking.request_cancel("never-was")  # unknown: not published
            return await asyncio.wait_for(first, 5)
        finally:
            await heard.aclose()
            await listening.aclose()
            await asking.aclose()

    assert asyncio.run(main()) == "heard"


def test_a_killed_producer_is_reported_as_generation_lost(redis_url: str) -> None:
    """SIGKILL the producing replica: readers on another get every event, then generation_lost."""
    env = _replica_env(redis_url, GEMINI_SSE_FAKE_CHUNKS="200")
    with run_process(env) as (a, proc_a), run_process(env) as (b, _):
        created = create(a)
        before = read(b, created["events_url"], stop_after=5)
        proc_a.send_signal(signal.SIGKILL)
        proc_a.wait(timeout=10)
        killed_at = time.monotonic()
        events = read(b, created["events_url"])
        noticed = time.monotonic() - killed_at
        status = httpx.get(f"{b}/v1/streams/{created['id']}").json()
    assert events[:5] == before
    assert [e.id for e in events] == [str(i) for i in range(1, len(events) + 1)]
    assert events[-1].event == "error"
    assert events[-1].data["code"] == "generation_lost"
    assert events[-1].data["retryable"] is True
    assert names(events).count("error") == 1
    assert noticed < 10  # the lease is 1 s; the read blocks at most 1 s at a time
    assert status["status"] == "error"
