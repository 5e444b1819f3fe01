"""Fallback before the first token: real providers against their emulators, real uvicorn.

Vertex AI (gRPC) is the primary; a second Vertex location and an OpenAI-compatible server
are the fallback targets. Only a retryable failure before any text moves a generation on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gemini_sse.server.app import create_app

from .conftest import make_settings
from .emulators.adc import PROJECT
from .emulators.certs import shared_tls_identity
from .emulators.openai_http import OpenAIHttpEmulator
from .emulators.scenario import ANSWER, Script
from .emulators.vertex_grpc import VertexGrpcEmulator
from .servers import RunningServer
from .sse import Received, iter_events, names, text

pytestmark = [
    pytest.mark.filterwarnings(r"ignore:Use \[`ChatGoogleGenerativeAI`\]:DeprecationWarning"),
]

OPENAI_TARGET = "openai:gpt-4o-mini"
REGION_TARGET = "gemini-2.5-flash@europe-west1"


@pytest.fixture
def vertex(vertex_emulator: VertexGrpcEmulator) -> VertexGrpcEmulator:
    return vertex_emulator


@pytest.fixture
def openai(openai_emulator: OpenAIHttpEmulator) -> OpenAIHttpEmulator:
    return openai_emulator


@pytest.fixture
def gateway(
    vertex: VertexGrpcEmulator,
    openai: OpenAIHttpEmulator,
    serve: Callable[..., RunningServer],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., RunningServer]:
    """A gateway serving Vertex AI, with fallback targets (both emulators reset)."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(vertex.account.path))
    monkeypatch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", str(shared_tls_identity().cert_file))
    vertex.reset()
    openai.reset()

    def start(fallback: list[str], **settings: Any) -> RunningServer:
        return serve(
            provider="vertex",
            vertex_project=PROJECT,
            vertex_base_url=vertex.endpoint,
            openai_base_url=openai.base_url,
            openai_api_key=openai.api_key,
            fallback=fallback,
            first_token_timeout_s=1.0,
            **settings,
        )

    return start


def ask(running: RunningServer) -> list[Received]:
    body = {"message": "Say hello.", "separators": False}
    with httpx.stream("POST", f"{running.url}/v1/stream", json=body, timeout=30) as response:
        assert response.status_code == 200
        return list(iter_events(response.iter_raw()))


def fallbacks_counted(running: RunningServer) -> dict[tuple[str, str], float]:
    counted = {}
    for family in running.gateway.metrics.registry.collect():
        if family.name == "gemini_sse_fallbacks":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counted[(sample.labels["target"], sample.labels["reason"])] = sample.value
    return counted


def test_a_rate_limited_model_falls_back_to_another_provider(
    gateway: Callable[..., RunningServer],
    vertex: VertexGrpcEmulator,
    openai: OpenAIHttpEmulator,
) -> None:
    """Vertex says 429 before any text: OpenAI answers, and `done` and metrics say so."""
    running = gateway([OPENAI_TARGET])
    vertex.reset(Script(scenario="rate_limit"))
    events = ask(running)
    assert names(events) == ["token"] * len(ANSWER) + ["done"]
    assert text(events) == "".join(ANSWER)
    done = events[-1].data
    assert (done["model"], done["fallback"]) == ("gpt-4o-mini", OPENAI_TARGET)
    assert (vertex.calls, openai.calls) == (1, 1)
    assert openai.record.seen[0].model == "gpt-4o-mini"
    assert fallbacks_counted(running) == {(OPENAI_TARGET, "rate_limited"): 1.0}


def test_an_unavailable_region_falls_back_to_another_region(
    gateway: Callable[..., RunningServer], vertex: VertexGrpcEmulator
) -> None:
    """A 503 in us-central1 moves the call to europe-west1 of the same model."""
    running = gateway([REGION_TARGET])
    vertex.reset(Script(scenario="unavailable", times=1))
    events = ask(running)
    assert events[-1].event == "done" and events[-1].data["fallback"] == REGION_TARGET
    locations = [seen.model.split("/locations/")[1].split("/")[0] for seen in vertex.record.seen]
    assert locations == ["us-central1", "europe-west1"]


def test_a_first_token_timeout_falls_back_and_the_target_gets_its_own_window(
    gateway: Callable[..., RunningServer],
    vertex: VertexGrpcEmulator,
    openai: OpenAIHttpEmulator,
) -> None:
    """A model that never starts is given up after the first-token timeout, then OpenAI answers."""
    running = gateway([OPENAI_TARGET])
    vertex.reset(Script(scenario="hang"))
    openai.reset(Script(first_delay_s=0.5))  # within its own 1 s window, not the rest of ours
    events = ask(running)
    assert events[-1].event == "done"
    assert fallbacks_counted(running) == {(OPENAI_TARGET, "timeout"): 1.0}


def test_targets_are_tried_in_order_until_one_answers(
    gateway: Callable[..., RunningServer],
    vertex: VertexGrpcEmulator,
    openai: OpenAIHttpEmulator,
) -> None:
    """Both Vertex locations rate-limited: the third target, OpenAI, answers."""
    running = gateway([REGION_TARGET, OPENAI_TARGET])
    vertex.reset(Script(scenario="rate_limit"))
    events = ask(running)
    assert events[-1].data["fallback"] == OPENAI_TARGET
    assert (vertex.calls, openai.calls) == (2, 1)


def test_when_every_target_fails_the_last_error_reaches_the_client(
    gateway: Callable[..., RunningServer],
    vertex: VertexGrpcEmulator,
    openai: OpenAIHttpEmulator,
) -> None:
    """Every target rate-limited: one `rate_limited` error, after one call to each."""
    running = gateway([OPENAI_TARGET])
    vertex.reset(Script(scenario="rate_limit"))
    openai.reset(Script(scenario="rate_limit"))
    events = ask(running)
    assert names(events) == ["error"]
    assert events[0].data["code"] == "rate_limited"
    assert (vertex.calls, openai.calls) == (1, 1)


@pytest.mark.parametrize(
    ("scenario", "code"),
    [("drop", "upstream_disconnected"), ("bad_request", "bad_request")],
    ids=["after-text", "not-retryable"],
)
def test_no_fallback_after_text_or_for_a_request_the_model_refused(
    gateway: Callable[..., RunningServer],
    vertex: VertexGrpcEmulator,
    openai: OpenAIHttpEmulator,
    scenario: str,
    code: str,
) -> None:
    """A failure after some text, or a 400, ends the stream; the fallback is never called."""
    running = gateway([OPENAI_TARGET])
    vertex.reset(Script(scenario=scenario))  # type: ignore[arg-type]
    events = ask(running)
    assert events[-1].event == "error" and events[-1].data["code"] == code
    assert openai.calls == 0
    assert fallbacks_counted(running) == {}


@pytest.mark.parametrize("target", ["nope:model", "openai:gpt@us-east1", "vertex:"])
def test_a_bad_fallback_target_fails_the_start(target: str) -> None:
    """A target that cannot be served is refused when the gateway is built, not per request."""
    with pytest.raises(ValueError, match="GEMINI_SSE_FALLBACK"):
        create_app(make_settings(fallback=[target]))
