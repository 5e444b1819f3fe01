"""Keepalives from the moment a response opens, over real uvicorn on 127.0.0.1.

A model that thinks for minutes before its first token must not leave the connection
silent: proxies cut idle connections after 60-125 s. Every event stream shows `: ping`
comments while the first token is awaited.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import openai
import pytest

from .servers import RunningServer

SLOW = {"fake_first_delay_ms": 1_200, "heartbeat_s": 0.2}


def pings_before_first_token(response: httpx.Response) -> int:
    pings = 0
    for line in response.iter_lines():
        if line == ": ping":
            pings += 1
        elif line.startswith("data:") and ('"text"' in line or '"content"' in line):
            return pings
    raise AssertionError("the stream ended without text")


def test_typed_streams_ping_while_the_first_token_is_awaited(
    serve: Callable[..., RunningServer],
) -> None:
    """/v1/stream: heartbeats flow before the model's first token."""
    running = serve(**SLOW)
    with httpx.stream("POST", f"{running.url}/v1/stream", json={"message": "hi"}) as response:
        assert response.status_code == 200
        assert pings_before_first_token(response) >= 2


def test_resumable_streams_ping_while_the_first_token_is_awaited(
    serve: Callable[..., RunningServer],
) -> None:
    """/v1/streams/{id}/events: heartbeats flow before the model's first token."""
    running = serve(**SLOW)
    created = httpx.post(f"{running.url}/v1/streams", json={"message": "hi"}).json()
    with httpx.stream("GET", f"{running.url}{created['events_url']}") as response:
        assert pings_before_first_token(response) >= 2


def test_openai_streams_open_and_ping_when_the_model_is_slow_to_start(
    serve: Callable[..., RunningServer],
) -> None:
    """/v1/chat/completions: after one heartbeat of silence the stream opens and pings."""
    running = serve(**SLOW)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    body = {
        "model": "gemini-2.5-flash",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    with httpx.stream("POST", f"{running.url}/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert stats.completed == 0  # the headers came before the model had finished
        assert pings_before_first_token(response) >= 2


def test_openai_streams_answer_fast_failures_with_an_http_error(
    serve: Callable[..., RunningServer],
) -> None:
    """A failure within the first heartbeat is still an HTTP error the SDK maps (429)."""
    running = serve(heartbeat_s=5)
    client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="gemini-2.5-flash",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            extra_body={"simulation": {"fault": "rate_limit"}},
        )


def test_openai_streams_report_a_late_failure_in_the_opened_stream(
    serve: Callable[..., RunningServer],
) -> None:
    """A failure after the stream opened for heartbeats is an error line the SDK raises."""
    running = serve(**SLOW)
    client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model="gemini-2.5-flash",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        extra_body={"simulation": {"fault": "rate_limit"}},
    )
    with pytest.raises(openai.APIError) as raised:
        for _chunk in stream:
            pass
    assert "quota" in str(raised.value) or "rate" in str(raised.value).lower()
