"""The whole gateway over a real uvicorn, serving each real provider against its emulator.

Client -> gateway (SSE) -> LangChain chat model -> client library -> emulator, all real and
all on 127.0.0.1: the event sequence the client reads is asserted per scenario.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from .emulators.adc import PROJECT
from .emulators.certs import shared_tls_identity
from .emulators.genai_http import GenaiHttpEmulator
from .emulators.openai_http import OpenAIHttpEmulator
from .emulators.scenario import (
    ANSWER,
    ERROR_MESSAGES,
    RETRY_AFTER_S,
    USAGE,
    Emulator,
    Scenario,
    Script,
)
from .emulators.vertex_grpc import VertexGrpcEmulator
from .servers import RunningServer, wait_for
from .sse import Received, iter_events, names, text

pytestmark = [
    pytest.mark.filterwarnings(r"ignore:Use \[`ChatGoogleGenerativeAI`\]:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:Inheritance class AiohttpClientSession from ClientSession is discouraged"
        ":DeprecationWarning"
    ),
    pytest.mark.filterwarnings(
        "ignore:coroutine 'ClientResponse.json' was never awaited:RuntimeWarning"
    ),
]

BODY = {
    "messages": [
        {"role": "system", "content": "Answer in one short line."},
        {"role": "user", "content": "Say hello."},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Again, in French: caf\u00e9?"},
    ],
    "temperature": 0.25,
    "max_output_tokens": 64,
    "top_p": 0.5,
}


@dataclass
class Upstream:
    """A provider's emulator and the gateway settings that point the provider at it."""

    emulator: Emulator
    settings: dict[str, Any]


@pytest.fixture(params=["vertex", "genai", "openai"])
def upstream(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    name = str(request.param)
    common = {"provider": name, "first_token_timeout_s": 1.0}
    if name == "vertex":
        vertex: VertexGrpcEmulator = request.getfixturevalue("vertex_emulator")
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(vertex.account.path))
        monkeypatch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", str(shared_tls_identity().cert_file))
        settings = {"vertex_project": PROJECT, "vertex_base_url": vertex.endpoint}
        yield Upstream(vertex, common | settings)
    elif name == "genai":
        genai: GenaiHttpEmulator = request.getfixturevalue("genai_emulator")
        assert genai.account is not None
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(genai.account.path))
        settings = {"vertex_project": PROJECT, "genai_base_url": genai.base_url}
        yield Upstream(genai, common | settings)
        if genai.script.scenario in ERROR_MESSAGES:
            # On an HTTP error status langchain-core leaves an un-awaited aiohttp coroutine
            # in reference cycles (see test_providers_genai.py): finalize it right here.
            gc.collect()
    else:
        openai: OpenAIHttpEmulator = request.getfixturevalue("openai_emulator")
        settings = {"openai_base_url": openai.base_url, "openai_api_key": openai.api_key}
        yield Upstream(openai, common | settings)


def stream(
    upstream: Upstream, serve: Callable[..., RunningServer], scenario: Scenario
) -> list[Received]:
    """POST one conversation to a fresh gateway; the events, telling the emulator of each text."""
    upstream.emulator.reset(Script(scenario=scenario))
    running = serve(**upstream.settings)
    events: list[Received] = []
    with httpx.stream("POST", f"{running.url}/v1/stream", json=BODY, timeout=10) as response:
        assert response.status_code == 200
        for event in iter_events(response.iter_raw()):
            if event.event == "token":
                upstream.emulator.client_read_text()
            events.append(event)
    return events


def test_answer_is_streamed_as_tokens_then_done(
    upstream: Upstream, serve: Callable[..., RunningServer]
) -> None:
    """Tokens and separators per chunk, then `done` with usage; the first token came first."""
    events = stream(upstream, serve, "normal")
    assert names(events) == ["token", "separator"] * len(ANSWER) + ["done"]
    assert text(events) == "".join(ANSWER)
    done = events[-1].data
    assert done["finish_reason"] == "stop"
    assert done["usage"] == {
        "input_tokens": USAGE["input"],
        "output_tokens": USAGE["output"],
        "total_tokens": USAGE["total"],
    }
    # The emulator held its last chunk until the client had read the first token.
    assert upstream.emulator.record.held_too_long == 0
    (seen,) = upstream.emulator.record.seen
    assert seen.system == "Answer in one short line."
    assert len(seen.contents) == 3


def test_rate_limit_is_one_error_event_with_retry_after(
    upstream: Upstream, serve: Callable[..., RunningServer]
) -> None:
    """429 before any text: a lone `error` event, rate_limited, retryable, with retry_after."""
    events = stream(upstream, serve, "rate_limit")
    assert names(events) == ["error"]
    error = events[0].data
    assert (error["code"], error["retryable"]) == ("rate_limited", True)
    assert error["retry_after"] == RETRY_AFTER_S


def test_cut_connection_keeps_the_text_and_ends_in_upstream_disconnected(
    upstream: Upstream, serve: Callable[..., RunningServer]
) -> None:
    """Two chunks, then the connection drops: their tokens, then `upstream_disconnected`."""
    events = stream(upstream, serve, "drop")
    assert names(events) == ["token", "separator"] * 2 + ["error"]
    assert text(events) == "".join(ANSWER[:2])
    assert (events[-1].data["code"], events[-1].data["retryable"]) == (
        "upstream_disconnected",
        True,
    )


def test_safety_stop_ends_in_content_blocked(
    upstream: Upstream, serve: Callable[..., RunningServer]
) -> None:
    """An answer stopped by the safety filter ends with `content_blocked`, never `done`."""
    events = stream(upstream, serve, "safety")
    assert names(events) == ["token", "separator", "error"]
    assert events[-1].data["code"] == "content_blocked"


def test_blocked_prompt_is_content_blocked(
    upstream: Upstream, serve: Callable[..., RunningServer]
) -> None:
    """A prompt the upstream refuses to answer gives one `content_blocked` event."""
    events = stream(upstream, serve, "prompt_block")
    assert names(events) == ["error"]
    assert events[0].data["code"] == "content_blocked"


def test_hung_upstream_times_out_and_is_cancelled(
    upstream: Upstream, serve: Callable[..., RunningServer]
) -> None:
    """No first chunk within the first-token timeout: `timeout`, and the upstream call ends."""
    events = stream(upstream, serve, "hang")
    assert names(events) == ["error"]
    assert events[0].data["code"] == "timeout"
    record = upstream.emulator.record
    assert wait_for(lambda: record.client_gone == 1)


def test_the_gateway_retries_a_failure_before_the_first_chunk(
    upstream: Upstream, serve: Callable[..., RunningServer]
) -> None:
    """503 on the first call, then an answer: the client sees only the answer (one retry)."""
    upstream.emulator.reset(Script(scenario="unavailable", times=1))
    running = serve(**upstream.settings, upstream_retries=2, upstream_retry_budget_s=5)
    with httpx.stream("POST", f"{running.url}/v1/stream", json=BODY, timeout=10) as response:
        events = list(iter_events(response.iter_raw()))
    assert names(events) == ["token", "separator"] * len(ANSWER) + ["done"]
    assert text(events) == "".join(ANSWER)
    assert upstream.emulator.calls == 2


def test_the_gateway_never_retries_a_bad_request(
    upstream: Upstream, serve: Callable[..., RunningServer]
) -> None:
    """A 400 is the client's to fix: one call upstream, one `bad_request` event."""
    upstream.emulator.reset(Script(scenario="bad_request", times=1))
    running = serve(**upstream.settings, upstream_retries=2, upstream_retry_budget_s=5)
    with httpx.stream("POST", f"{running.url}/v1/stream", json=BODY, timeout=10) as response:
        events = list(iter_events(response.iter_raw()))
    assert names(events) == ["error"]
    assert events[0].data["code"] == "bad_request"
    assert upstream.emulator.calls == 1
