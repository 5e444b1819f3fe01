"""`GET /metrics` scraped over real HTTP after known traffic: every number is exact."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .servers import RunningServer
from .sse import Received, iter_events, parse
from .test_stream_live import wait_for

LABELS = {"model": "gemini-2.5-flash", "provider": "fake"}
OUTCOMES = ("done", "rate_limited", "upstream_disconnected", "cancelled", "client_disconnect")


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics by (name, labels)."""
    response = httpx.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def stream(url: str, body: dict[str, Any]) -> list[Received]:
    response = httpx.post(f"{url}/v1/stream", json=body, timeout=10)
    assert response.status_code == 200
    return parse(response.content)


@contextlib.contextmanager
def held(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Iterator[None]:
    """A stream whose first token has arrived, dropped by the client when the block ends."""
    with httpx.stream("POST", f"{url}/v1/stream", json=body, headers=headers, timeout=10) as r:
        assert r.status_code == 200
        events = iter_events(r.iter_raw())  # held: dropping it would close the response
        assert next(events).event == "token"
        yield


def hang_after(chunks: int) -> dict[str, Any]:
    return {"message": "hi", "simulation": {"fault": "hang", "fail_after": chunks}}


def test_metrics_count_exactly_the_streams_sent(serve: Callable[..., RunningServer]) -> None:
    """Outcomes, upstream errors, chunks, tokens and histogram counts match the traffic."""
    running = serve(fake_chunks=5)
    url = running.url
    finished = [stream(url, {"message": "hi"}), stream(url, {"message": "hello"})]
    created = httpx.post(f"{url}/v1/streams", json={"message": "hi"}).json()
    finished.append(parse(httpx.get(f"{url}{created['events_url']}", timeout=10).content))
    assert [events[-1].data["usage"]["output_tokens"] for events in finished] == [15, 15, 15]
    limited = stream(url, {"message": "hi", "simulation": {"fault": "rate_limit"}})
    assert limited[-1].data["code"] == "rate_limited"
    dropped = stream(url, {"message": "hi", "simulation": {"fault": "drop", "fail_after": 2}})
    assert dropped[-1].data["code"] == "upstream_disconnected"

    # Cancelled after exactly 2 chunks: the model hangs after them until DELETE.
    created = httpx.post(f"{url}/v1/streams", json=hang_after(2)).json()
    with httpx.stream("GET", f"{url}{created['events_url']}", timeout=10) as response:
        cancelled: list[Received] = []
        for event in iter_events(response.iter_raw()):
            cancelled.append(event)
            if sum(e.event == "token" for e in cancelled) == 2:
                httpx.delete(f"{url}/v1/streams/{created['id']}")
    assert [e.event for e in cancelled][-1:] == ["error"]
    assert cancelled[-1].data["code"] == "cancelled"

    # The client leaves after the only chunk the model sends before hanging.
    with held(url, hang_after(1)):
        pass

    assert wait_for(lambda: not running.gateway.live)
    m = scrape(url)
    assert {
        o: value(m, "gemini_sse_streams_finished_total", **LABELS, outcome=o) for o in OUTCOMES
    } == {
        "done": 3,
        "rate_limited": 1,
        "upstream_disconnected": 1,
        "cancelled": 1,
        "client_disconnect": 1,
    }
    assert value(m, "gemini_sse_upstream_errors_total", **LABELS, code="rate_limited") == 1
    assert value(m, "gemini_sse_upstream_errors_total", **LABELS, code="upstream_disconnected") == 1
    assert value(m, "gemini_sse_upstream_errors_total", **LABELS, code="cancelled") == 0
    chunks = [5, 5, 5, 0, 2, 2, 1]
    assert value(m, "gemini_sse_chunks_total", **LABELS) == sum(chunks)
    # The simulated model reports 3 output tokens per 12-character chunk (15 per answer above).
    assert value(m, "gemini_sse_output_tokens_total", **LABELS) == 3 * sum(chunks)
    assert value(m, "gemini_sse_time_to_first_token_seconds_count", **LABELS) == 6
    assert value(m, "gemini_sse_stream_duration_seconds_count", **LABELS) == 7
    gaps = sum(n - 1 for n in chunks if n)
    assert value(m, "gemini_sse_chunk_gap_seconds_count", **LABELS) == gaps == 14
    assert value(m, "gemini_sse_chunk_gap_seconds_bucket", **LABELS, le="+Inf") == gaps
    # The model pauses 5 ms between chunks: no gap can fall in the first (1 ms) bucket.
    assert value(m, "gemini_sse_chunk_gap_seconds_bucket", **LABELS, le="0.001") == 0
    assert 0 < value(m, "gemini_sse_chunk_gap_seconds_sum", **LABELS) < gaps * 1.0
    assert value(m, "gemini_sse_streams_in_flight", **LABELS) == 0
    for reason in ("auth", "rate_limit", "overload", "validation", "too_large"):
        assert value(m, "gemini_sse_requests_rejected_total", reason=reason) == 0
    assert not any("key" in dict(labels) for _, labels in m)


def test_rejections_are_counted_by_reason(serve: Callable[..., RunningServer]) -> None:
    """Each refusal before a model call is counted once under its reason, and none runs a model."""
    running = serve(
        api_keys="k1,k2,k3",
        max_streams=2,
        max_streams_per_key=1,
        max_messages=2,
        max_body_bytes=2000,
    )
    url = running.url

    def post(body: Any, key: str | None = "k1", **kwargs: Any) -> int:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(f"{url}/v1/stream", json=body, headers=headers, **kwargs).status_code

    assert post({"message": "hi"}, key=None) == 401
    assert post({"message": " "}) == 422
    assert post({"message": "hi", "bogus": 1}) == 422
    assert post({"messages": [{"role": "user", "content": "hi"}] * 3}) == 413
    assert post({"message": "x" * 3000}) == 413
    with held(url, hang_after(1), {"Authorization": "Bearer k1"}):
        assert post({"message": "hi"}) == 429  # k1 already runs its one stream
        with held(url, hang_after(1), {"Authorization": "Bearer k2"}):
            assert post({"message": "hi"}, key="k3") == 503  # the gateway runs max_streams
    assert wait_for(lambda: not running.gateway.live)
    m = scrape(url)
    assert {
        reason: value(m, "gemini_sse_requests_rejected_total", reason=reason)
        for reason in ("auth", "rate_limit", "overload", "validation", "too_large")
    } == {"auth": 1, "rate_limit": 1, "overload": 1, "validation": 2, "too_large": 2}
    assert running.gateway.provider.stats.started == 2  # type: ignore[attr-defined]


def test_streams_in_flight_and_two_apps_count_apart(serve: Callable[..., RunningServer]) -> None:
    """The in-flight gauge follows running streams, and each app has its own registry."""
    one, two = serve(), serve()
    with held(one.url, hang_after(1)):
        assert value(scrape(one.url), "gemini_sse_streams_in_flight", **LABELS) == 1
        assert value(scrape(two.url), "gemini_sse_streams_in_flight", **LABELS) == 0
    assert wait_for(lambda: not one.gateway.live)
    assert value(scrape(one.url), "gemini_sse_streams_in_flight", **LABELS) == 0
    finished = "gemini_sse_streams_finished_total"
    assert value(scrape(one.url), finished, **LABELS, outcome="client_disconnect") == 1
    assert value(scrape(two.url), finished, **LABELS, outcome="client_disconnect") == 0


def test_metrics_can_be_turned_off(serve: Callable[..., RunningServer]) -> None:
    """GEMINI_SSE_METRICS=false: no /metrics route."""
    running = serve(metrics=False)
    assert httpx.get(f"{running.url}/metrics").status_code == 404
