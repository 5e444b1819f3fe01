"""Logs and request ids: one JSON line per finished stream, and no private text by default."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import signal
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from gemini_sse.server.logs import log_handler
from gemini_sse.server.providers.simulated import expected_answer

from .conftest import make_settings
from .servers import RunningServer, run_process
from .sse import parse
from .test_stream_live import wait_for

KEY = "log-test-key-0123456789"
STREAM_FIELDS = {
    "fallback",
    "time",
    "level",
    "logger",
    "message",
    "request_id",
    "stream_id",
    "key_id",
    "model",
    "provider",
    "outcome",
    "ttft_ms",
    "duration_ms",
    "chunks",
    "input_tokens",
    "output_tokens",
}


def test_the_served_gateway_logs_json_lines_without_private_text() -> None:
    """Off a terminal, every line is JSON; a stream's line has its ids, timings and counts only."""
    env = {
        "GEMINI_SSE_PROVIDER": "fake",
        "GEMINI_SSE_FAKE_CHUNKS": "3",
        "GEMINI_SSE_FAKE_DELAY_MS": "5",
        "GEMINI_SSE_FAKE_FIRST_DELAY_MS": "5",
        "GEMINI_SSE_API_KEYS": KEY,
    }
    auth = {"Authorization": f"Bearer {KEY}"}
    prompt = "PRIVATE-PROMPT about my secrets"
    with run_process(env) as (url, proc):
        one = httpx.post(
            f"{url}/v1/stream",
            json={"message": prompt},
            headers={**auth, "X-Request-ID": "trace-123"},
        )
        assert one.status_code == 200
        got = httpx.get(f"{url}/v1/stream", params={"message": "PRIVATE-QUERY"}, headers=auth)
        assert got.status_code == 200
        created = httpx.post(f"{url}/v1/streams", json={"message": prompt}, headers=auth).json()
        assert httpx.get(f"{url}{created['events_url']}", timeout=10).status_code == 200
        assert httpx.post(f"{url}/v1/stream", json={"message": prompt}).status_code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
        assert proc.stdout is not None
        output = proc.stdout.read().decode()

    lines = [json.loads(line) for line in output.splitlines()]  # every line is JSON
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    streams = [line for line in lines if line["message"] == "stream finished"]
    assert [s["request_id"] for s in streams][:1] == ["trace-123"]
    assert [s["stream_id"] for s in streams] == [None, None, created["id"]]
    for line in streams:
        assert line.keys() == STREAM_FIELDS
        assert line["logger"] == "gemini_sse.gateway"
        assert line["key_id"] == hashlib.sha256(KEY.encode()).hexdigest()[:8]
        assert (line["model"], line["provider"], line["outcome"]) == (
            "gemini-2.5-flash",
            "fake",
            "done",
        )
        assert (line["chunks"], line["output_tokens"]) == (3, 9)
        assert 0 < line["ttft_ms"] <= line["duration_ms"]
    answer = expected_answer(make_settings(fake_chunks=3), [prompt])
    for private in ("PRIVATE", KEY, answer):
        assert private not in output
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    masked = [line for line in access if line["path"].startswith("/v1/stream?")]
    assert [(line["method"], line["path"], line["status"]) for line in masked] == [
        ("GET", "/v1/stream?message=*", 200)
    ]
    assert [line["status"] for line in access if line["request_id"] == "trace-123"] == [200]


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[RunningServer], io.StringIO]]:
    """`captured(running)`: the gateway's and uvicorn's access lines, formatted as it is set."""
    streams: list[tuple[logging.Logger, logging.Handler]] = []

    def capture(running: RunningServer) -> io.StringIO:
        out = io.StringIO()
        handler = log_handler(running.gateway.settings, out)
        for name in ("gemini_sse", "uvicorn.access"):
            caplog.set_level(logging.INFO, logger=name)
            logger = logging.getLogger(name)
            logger.addHandler(handler)
            streams.append((logger, handler))
        return out

    yield capture
    for logger, handler in streams:
        logger.removeHandler(handler)


def test_content_is_logged_only_when_enabled(
    serve: Callable[..., RunningServer], captured: Callable[[RunningServer], Any]
) -> None:
    """GEMINI_SSE_LOG_CONTENT=true (text format): the prompt, the answer and the query appear."""
    running = serve(log_content=True, log_format="text", fake_chunks=3)
    out = captured(running)
    response = httpx.get(f"{running.url}/v1/stream", params={"message": "hello there"})
    assert response.status_code == 200
    assert wait_for(lambda: not running.gateway.live)
    text = out.getvalue()
    (line,) = [line for line in text.splitlines() if "stream finished" in line]
    assert not line.startswith("{")
    assert " INFO gemini_sse.gateway: stream finished request_id=" in line
    assert "messages=[{'role': 'user', 'content': 'hello there'}]" in line
    answer = expected_answer(running.gateway.settings, ["hello there"])
    assert line.endswith(f"answer={answer}")
    assert '"GET /v1/stream?message=hello+there HTTP/1.1" 200' in text


def test_request_ids_are_taken_or_made_and_returned_everywhere(
    serve: Callable[..., RunningServer], captured: Callable[[RunningServer], Any]
) -> None:
    """X-Request-ID: a client's id is echoed in headers, error events and logs; else one is made."""
    running = serve(log_format="json")
    out = captured(running)
    failing = {"message": "hi", "simulation": {"fault": "bad_request"}}
    given = httpx.post(f"{running.url}/v1/stream", json=failing, headers={"X-Request-ID": "abc-1"})
    assert given.headers["x-request-id"] == "abc-1"
    assert parse(given.content)[-1].data["request_id"] == "abc-1"

    made = httpx.post(f"{running.url}/v1/stream", json=failing)
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert parse(made.content)[-1].data["request_id"] == made.headers["x-request-id"]

    too_long = httpx.post(
        f"{running.url}/v1/stream", json=failing, headers={"X-Request-ID": "x" * 129}
    )
    assert re.fullmatch(r"[0-9a-f]{32}", too_long.headers["x-request-id"])

    created = httpx.post(
        f"{running.url}/v1/streams", json=failing, headers={"X-Request-ID": "abc-2"}
    )
    assert created.headers["x-request-id"] == "abc-2"
    events = httpx.get(f"{running.url}{created.json()['events_url']}", timeout=10)
    assert parse(events.content)[-1].data["request_id"] == "abc-2"

    assert wait_for(lambda: not running.gateway.live)
    logged = [json.loads(line) for line in out.getvalue().splitlines()]
    finished = [line for line in logged if line["message"] == "stream finished"]
    assert [(line["request_id"], line["outcome"]) for line in finished] == [
        ("abc-1", "bad_request"),
        (made.headers["x-request-id"], "bad_request"),
        (too_long.headers["x-request-id"], "bad_request"),
        ("abc-2", "bad_request"),
    ]


def test_access_lines_never_carry_a_whole_stream_id() -> None:
    """A resumable stream's id is the capability to read it: access logs keep 6 characters."""
    from gemini_sse.server.logs import mask_stream_id

    stream_id = "Yk3xQ9abcdefghijklmnopqrstuvwxyz01"
    masked = mask_stream_id(f"/v1/streams/{stream_id}/events?last_event_id=3")
    assert masked == "/v1/streams/Yk3xQ9…/events?last_event_id=3"
    assert stream_id not in masked
    assert mask_stream_id("/v1/stream?message=hi") == "/v1/stream?message=hi"
