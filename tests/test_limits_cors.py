"""Request limits and CORS over real HTTP: refusals come before any model call, and browsers
on other origins can read streams and errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from gemini_sse.server.providers.simulated import expected_answer

from .servers import RunningServer
from .sse import Received, iter_events

LIMITS = {
    "max_body_bytes": 4000,
    "max_messages": 3,
    "max_message_chars": 200,
    "max_total_chars": 300,
    "max_output_tokens": 100,
}
APP = "https://app.example"


def user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def chunked(body: bytes) -> Iterator[bytes]:
    """A body sent without Content-Length (chunked), so only the bytes received count."""
    for start in range(0, len(body), 1000):
        yield body[start : start + 1000]


# (case, request keyword arguments, status, code, words the message must contain)
CASES: list[tuple[str, dict[str, Any], int, str, str]] = [
    (
        "body declared too large",
        {"json": {"message": "x" * 5000}},
        413,
        "payload_too_large",
        "at most 4000 bytes",
    ),
    (
        "body received too large",
        {
            "content": b'{"message": "' + b"x" * 5000 + b'"}',
            "headers": {"Content-Type": "application/json"},
        },
        413,
        "payload_too_large",
        "at most 4000 bytes",
    ),
    (
        "too many messages",
        {"json": {"messages": [user("hi")] * 4}},
        413,
        "payload_too_large",
        "At most 3 messages",
    ),
    (
        "message too long",
        {"json": {"message": "x" * 201}},
        413,
        "payload_too_large",
        "at most 200 characters",
    ),
    (
        "conversation too long",
        {"json": {"messages": [user("x" * 160), user("y" * 160)]}},
        413,
        "payload_too_large",
        "at most 300 characters in all",
    ),
    (
        "max_output_tokens too high",
        {"json": {"message": "hi", "max_output_tokens": 101}},
        422,
        "invalid_request",
        "max_output_tokens may be at most 100",
    ),
]


@pytest.mark.parametrize("path", ["/v1/stream", "/v1/streams"])
@pytest.mark.parametrize(
    ("request_kwargs", "status", "code", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_request_limit_refuses_before_any_model_call(
    serve: Callable[..., RunningServer],
    path: str,
    request_kwargs: dict[str, Any],
    status: int,
    code: str,
    words: str,
) -> None:
    """Each limit answers its 413/422 JSON error, and the model is never called."""
    running = serve(**LIMITS)
    if isinstance(body := request_kwargs.get("content"), bytes):
        request_kwargs = {**request_kwargs, "content": chunked(body)}
    response = httpx.post(f"{running.url}{path}", **request_kwargs)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert words in error["message"]
    assert error["retryable"] is False
    assert error["request_id"] == response.headers["x-request-id"]
    assert running.gateway.provider.stats.started == 0  # type: ignore[attr-defined]
    assert running.gateway.live == set()
    assert len(running.gateway.store) == 0  # type: ignore[arg-type]


def test_requests_at_every_limit_are_served(serve: Callable[..., RunningServer]) -> None:
    """Exactly at each limit (messages, characters, tokens) the stream is served."""
    running = serve(**LIMITS, fake_chunks=1)
    body = {
        "messages": [user("x" * 200), user("y" * 50), user("z" * 50)],
        "max_output_tokens": 100,
    }
    response = httpx.post(f"{running.url}/v1/stream", json=body)
    assert response.status_code == 200
    assert response.text.rstrip().split("\n")[-2] == "event: done"


def test_cors_preflight_allows_configured_origins_with_credentials(
    serve: Callable[..., RunningServer],
) -> None:
    """A listed origin's preflight is allowed with credentials (no key needed); others are not."""
    running = serve(cors_origins=f"{APP},https://admin.example", api_keys="k1")
    asking = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, last-event-id",
    }
    allowed = httpx.options(f"{running.url}/v1/streams", headers={"Origin": APP, **asking})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == APP
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    headers = allowed.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "last-event-id"} <= set(headers.split(", "))

    other = httpx.options(
        f"{running.url}/v1/streams", headers={"Origin": "https://evil.example", **asking}
    )
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers


def test_cors_headers_on_streams_and_on_errors(serve: Callable[..., RunningServer]) -> None:
    """Streams, 401s and 413s carry the CORS headers, so a page on APP can read all of them."""
    running = serve(cors_origins=APP, api_keys="k1", max_body_bytes=4000)
    origin = {"Origin": APP}
    created = httpx.post(
        f"{running.url}/v1/streams",
        json={"message": "hi"},
        headers={**origin, "Authorization": "Bearer k1"},
    )
    assert created.status_code == 201
    events = httpx.get(
        f"{running.url}{created.json()['events_url']}",
        headers={**origin, "Accept": "text/event-stream"},
        timeout=10,
    )
    refused = httpx.post(f"{running.url}/v1/stream", json={"message": "hi"}, headers=origin)
    too_large = httpx.post(f"{running.url}/v1/stream", json={"message": "x" * 5000}, headers=origin)
    assert (created.status_code, events.status_code, refused.status_code) == (201, 200, 401)
    assert too_large.status_code == 413
    assert events.headers["content-type"].startswith("text/event-stream")
    for response in (created, events, refused, too_large):
        assert response.headers["access-control-allow-origin"] == APP
        assert response.headers["access-control-allow-credentials"] == "true"
        exposed = response.headers["access-control-expose-headers"].lower()
        assert {"x-request-id", "retry-after"} <= set(exposed.split(", "))
        assert "origin" in response.headers["vary"].lower()


def test_no_cors_by_default(serve: Callable[..., RunningServer]) -> None:
    """Without GEMINI_SSE_CORS_ORIGINS no response allows another origin."""
    running = serve(fake_chunks=1)
    response = httpx.post(
        f"{running.url}/v1/stream", json={"message": "hi"}, headers={"Origin": APP}
    )
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    preflight = httpx.options(
        f"{running.url}/v1/stream",
        headers={"Origin": APP, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_a_running_stream_is_untouched_by_rejected_requests(
    serve: Callable[..., RunningServer],
) -> None:
    """While refusals of every kind come in, a running stream completes normally and exactly."""
    running = serve(
        api_keys="k1,k2",
        max_streams_per_key=1,
        rate_limit_rpm=4,
        max_body_bytes=2000,
        max_messages=2,
        fake_chunks=20,
        fake_delay_ms=40,
    )
    url = running.url

    def post(body: dict[str, Any], key: str | None) -> int:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(f"{url}/v1/stream", json=body, headers=headers).status_code

    k1 = {"Authorization": "Bearer k1"}
    with httpx.stream("POST", f"{url}/v1/stream", json={"message": "hi"}, headers=k1) as held:
        assert held.status_code == 200
        events = iter_events(held.iter_raw())
        received: list[Received] = [next(events)]
        assert [
            post({"message": "hi"}, None),
            post({"message": "hi"}, "k3"),
            post({"message": "hi"}, "k1"),  # k1 runs its one stream already
            post({"message": "x" * 3000}, "k2"),
            post({"messages": [user("a"), user("b"), user("c")]}, "k2"),
            post({"message": " "}, "k2"),
            post({"message": "hi", "max_output_tokens": 10**6}, "k2"),
            post({"message": "hi", "surprise": True}, "k2"),
            post({"message": "hi"}, "k2"),  # k2's 5th request this minute
        ] == [401, 401, 429, 413, 413, 422, 422, 422, 429]
        assert len(running.gateway.live) == 1
        received.extend(events)
    assert [e.event for e in received] == ["token", "separator"] * 20 + ["done"]
    assert [int(e.id) for e in received] == list(range(1, 42))
    answer = "".join(e.data["text"] for e in received if e.event == "token")
    assert answer == expected_answer(running.gateway.settings, ["hi"])
    assert running.gateway.provider.stats.started == 1  # type: ignore[attr-defined]
