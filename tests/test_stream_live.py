"""The gateway over a real uvicorn on 127.0.0.1: delivery, disconnects, load, shutdown."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from .servers import RunningServer, run_process, wait_for
from .sse import iter_events, names


def test_first_token_arrives_while_the_model_is_still_pausing(
    serve: Callable[..., RunningServer],
) -> None:
    """Incremental: the first token reaches the client long before the last chunk exists."""
    running = serve(fake_chunks=4, fake_first_delay_ms=10, fake_delay_ms=300)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    seen: list[tuple[float, str, bool]] = []
    with httpx.stream("POST", f"{running.url}/v1/stream", json={"message": "hi"}) as response:
        for event in iter_events(response.iter_raw()):
            seen.append((time.monotonic(), event.event, stats.completed == 0))
    first_token = next(s for s in seen if s[1] == "token")
    done = seen[-1]
    assert done[1] == "done"
    assert first_token[2], "the model had already finished when the first token arrived"
    # Three more pauses of 300 ms separate the first chunk from the end: however late a
    # busy machine let the client read the first token, at least one of them came after.
    assert done[0] - first_token[0] >= 0.3


def test_client_disconnect_cancels_the_upstream_generation(
    serve: Callable[..., RunningServer],
) -> None:
    """When the client goes away mid-answer, the model call is cancelled, not run to its end."""
    running = serve(fake_chunks=50, fake_first_delay_ms=10, fake_delay_ms=200)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    with httpx.stream("POST", f"{running.url}/v1/stream", json={"message": "hi"}) as response:
        for event in iter_events(response.iter_raw()):
            if event.event == "token":
                break
    # The answer takes 10 s (50 chunks, 200 ms apart): cancelled within 5 s, it was
    # cancelled because the client left, however slow the machine.
    assert wait_for(lambda: stats.cancelled == 1, seconds=5)
    assert wait_for(lambda: not running.gateway.live)
    assert stats.completed == 0


def test_over_max_streams_new_requests_get_503_and_running_ones_finish(
    serve: Callable[..., RunningServer],
) -> None:
    """At GEMINI_SSE_MAX_STREAMS, a new stream gets 503 + Retry-After; the others are untouched."""
    running = serve(max_streams=2, fake_chunks=3, fake_first_delay_ms=10, fake_delay_ms=300)
    url = f"{running.url}/v1/stream"
    with (
        httpx.stream("POST", url, json={"message": "one"}) as first,
        httpx.stream("POST", url, json={"message": "two"}) as second,
    ):
        assert wait_for(lambda: len(running.gateway.live) == 2)
        refused = httpx.post(url, json={"message": "three"})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        error = refused.json()["error"]
        assert error["code"] == "overloaded"
        assert error["retryable"] is True
        for response in (first, second):
            events = list(iter_events(response.iter_raw()))
            assert names(events) == ["token", "separator"] * 3 + ["done"]
    assert wait_for(lambda: not running.gateway.live)
    assert httpx.post(url, json={"message": "four"}).status_code == 200


def test_heartbeat_comments_keep_a_quiet_stream_alive(serve: Callable[..., RunningServer]) -> None:
    """While the model is silent, `: ping` comments arrive at the heartbeat interval."""
    running = serve(heartbeat_s=0.1, fake_chunks=1, fake_first_delay_ms=1500)
    with httpx.stream("POST", f"{running.url}/v1/stream", json={"message": "hi"}) as response:
        body = b"".join(response.iter_raw())
    assert body.count(b": ping") >= 3
    assert body.rstrip().split(b"\n\n")[-1].startswith(b"id: 3\nevent: done")


def test_a_client_that_stops_reading_is_dropped_and_its_generation_cancelled(
    serve: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture
) -> None:
    """A reader that never reads cannot make the server buffer without bound (send timeout)."""
    running = serve(
        send_timeout_s=0.5,
        fake_chunks=5000,
        fake_chunk_chars=4096,
        fake_delay_ms=0,
        fake_first_delay_ms=0,
        total_timeout_s=60,
    )
    caplog.set_level(logging.INFO, logger="gemini_sse")
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    port = int(running.url.rsplit(":", 1)[1])
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        body = b'{"message": "flood"}'
        sock.sendall(
            b"POST /v1/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        # Never read: the socket buffers fill and every send blocks.
        assert wait_for(lambda: stats.cancelled == 1, seconds=10)
        assert wait_for(lambda: not running.gateway.live)
    assert stats.completed == 0
    # Routine, not an error: no traceback in the error log.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # Logged as the response unwinds, a moment after the generation is gone.
    assert wait_for(lambda: any("stopped reading" in r.getMessage() for r in caplog.records))


def test_sigterm_ends_streams_with_shutting_down_and_exits(tmp_path: Any) -> None:
    """On SIGTERM a live stream gets a retryable `shutting_down` event and the process exits."""
    env = {
        "GEMINI_SSE_PROVIDER": "fake",
        "GEMINI_SSE_FAKE_CHUNKS": "1000",
        "GEMINI_SSE_FAKE_DELAY_MS": "100",
        "GEMINI_SSE_FAKE_FIRST_DELAY_MS": "10",
        # Far longer than the bounds below: a stream left to the drain, or an exit that
        # waits it out, fails them on any machine.
        "GEMINI_SSE_DRAIN_S": "60",
    }
    with run_process(env) as (url, proc):
        with httpx.stream("POST", f"{url}/v1/stream", json={"message": "hi"}) as response:
            events = []
            for event in iter_events(response.iter_raw()):
                events.append(event)
                if event.event == "token" and len(events) == 1:
                    proc.send_signal(signal.SIGTERM)
                    signalled = time.monotonic()
        ended = time.monotonic()
        # uvicorn re-raises the signal once it has shut down cleanly.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        exited = time.monotonic()
    last = events[-1]
    assert last.event == "error"
    assert last.data["code"] == "shutting_down"
    assert last.data["retryable"] is True
    assert last.retry == 1000
    assert names(events).count("error") == 1
    assert ended - signalled < 15
    assert exited - signalled < 30


def test_auto_provider_without_google_credentials_serves_the_simulated_model() -> None:
    """`auto` with no Google project or credentials falls back to `fake`, loudly."""
    with run_process({"GEMINI_SSE_PROVIDER": "auto"}) as (url, proc):
        health = httpx.get(f"{url}/healthz").json()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        output = proc.stdout.read().decode() if proc.stdout else ""
    assert health["provider"] == "fake"
    assert "SIMULATED" in output


def test_sigterm_answers_requests_that_are_not_streams_yet() -> None:
    """A request still waiting for its answer (no SSE response open) gets 503 shutting_down."""
    env = {
        "GEMINI_SSE_PROVIDER": "fake",
        "GEMINI_SSE_FAKE_CHUNKS": "1000",
        "GEMINI_SSE_FAKE_DELAY_MS": "100",
        "GEMINI_SSE_FAKE_FIRST_DELAY_MS": "10",
        # Far longer than the bound below: an answer that waits out the drain fails it.
        "GEMINI_SSE_DRAIN_S": "60",
    }
    body = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}
    with run_process(env) as (url, proc):
        result: list[httpx.Response] = []
        thread = threading.Thread(
            target=lambda: result.append(
                httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
            )
        )
        thread.start()
        # The answer is being collected, nothing sent yet.
        assert wait_for(lambda: httpx.get(f"{url}/healthz").json()["streams"] == 1)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        thread.join(timeout=30)
        answered = time.monotonic() - signalled
        proc.wait(timeout=30)
    (response,) = result
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "shutting_down"
    # Well inside the 60 s drain: the gateway did not wait for uvicorn's timeout.
    assert answered < 15
