"""Thoughts, tool calls, sources, media and safety through the gateway, for the Gemini providers.

Client -> gateway (`/v1/stream`, a real uvicorn) -> ChatVertexAI (gRPC or REST) or
ChatGoogleGenerativeAI -> the wire-level emulator, all real. Each test asserts the exact
events the client reads and what reached the wire. The options' spelling is ChatVertexAI's
whatever its transport, so those tests run on gRPC and genai; the answers' shapes run on
all three.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gemini_sse.server.providers.google import LEVEL_BUDGETS

from .emulators.adc import PROJECT
from .emulators.certs import shared_tls_identity
from .emulators.genai_http import GenaiHttpEmulator
from .emulators.scenario import (
    ANSWER,
    BLOCK_REASON,
    SAFETY_CATEGORY,
    SOURCES,
    SUPPORTS,
    THOUGHT_SIGNATURE,
    THOUGHT_TOKENS,
    THOUGHTS,
    TOOL_CALL,
    USAGE,
    Emulator,
    Scenario,
    Script,
)
from .emulators.vertex_grpc import VertexGrpcEmulator
from .servers import RunningServer
from .sse import Received, iter_events, names, text

WEATHER = {
    "name": "get_weather",
    "description": "The forecast for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}
CLOCK = {
    "name": "get_time",
    "description": "The time in a zone.",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
}
# WEATHER as every Gemini client declares it: the OpenAPI subset, types in capitals.
DECLARED_WEATHER = {
    "name": "get_weather",
    "description": "The forecast for a city.",
    "parameters": {
        "type": "OBJECT",
        "properties": {"city": {"type": "STRING"}, "days": {"type": "INTEGER"}},
        "required": ["city"],
    },
}
QUESTION = {"role": "user", "content": "Weather in Z\u00fcrich?"}
SIGNATURE = base64.b64encode(THOUGHT_SIGNATURE).decode()
# What a client sends back of a `tool_call` event.
CALL_FIELDS = ("call_id", "name", "arguments", "signature")
PNG = b"\x89PNG\r\n\x1a\n-emulated-image"


@dataclass
class Upstream:
    """A provider (and transport), its emulator, and the gateway settings for both."""

    name: str
    emulator: Emulator
    settings: dict[str, Any]


@pytest.fixture(params=["vertex", "vertex-rest", "genai"])
def upstream(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Upstream:
    name = str(request.param)
    if name == "vertex":
        vertex_emulator: VertexGrpcEmulator = request.getfixturevalue("vertex_emulator")
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(vertex_emulator.account.path))
        monkeypatch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", str(shared_tls_identity().cert_file))
        settings = {"provider": "vertex", "vertex_base_url": vertex_emulator.endpoint}
        emulator: Emulator = vertex_emulator
    else:
        genai_emulator: GenaiHttpEmulator = request.getfixturevalue("genai_emulator")
        assert genai_emulator.account is not None
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(genai_emulator.account.path))
        if name == "vertex-rest":
            settings = {
                "provider": "vertex",
                "vertex_base_url": genai_emulator.base_url,
                "vertex_transport": "rest",
            }
        else:
            settings = {"provider": "genai", "genai_base_url": genai_emulator.base_url}
        emulator = genai_emulator
    emulator.reset()
    return Upstream(name, emulator, settings | {"vertex_project": PROJECT})


# The tests of request options: ChatVertexAI spells them alike on both transports.
on_grpc_and_genai = pytest.mark.parametrize("upstream", ["vertex", "genai"], indirect=True)


@pytest.fixture
def gateway(upstream: Upstream, serve: Callable[..., RunningServer]) -> RunningServer:
    return serve(**upstream.settings)


def stream(
    gateway: RunningServer, upstream: Upstream, scenario: Scenario, body: dict[str, Any]
) -> list[Received]:
    """POST `body` with the emulator playing `scenario`; the events the client read."""
    upstream.emulator.reset(Script(scenario=scenario))
    return post(gateway, body)


def post(gateway: RunningServer, body: dict[str, Any]) -> list[Received]:
    with httpx.stream("POST", f"{gateway.url}/v1/stream", json=body, timeout=10) as response:
        assert response.status_code == 200
        return list(iter_events(response.iter_raw()))


def characters(chunks: tuple[str, ...]) -> int:
    return len("".join(chunks))


# --- thinking ------------------------------------------------------------------------------


def test_thoughts_come_as_reasoning_events_before_the_answer(
    upstream: Upstream, gateway: RunningServer
) -> None:
    """Thought parts stream as `reasoning`, then the tokens; `done` counts the thinking tokens."""
    body = {"messages": [QUESTION], "thinking": {"budget": 1024, "include_thoughts": True}}
    events = stream(gateway, upstream, "thinking", body)
    assert names(events) == (
        ["reasoning"] * len(THOUGHTS) + ["token", "separator"] * len(ANSWER) + ["done"]
    )
    assert [e.data for e in events[: len(THOUGHTS)]] == [{"text": t} for t in THOUGHTS]
    assert text(events) == "".join(ANSWER)
    assert events[-1].data["usage"] == {
        "input_tokens": USAGE["input"],
        "output_tokens": USAGE["output"] + THOUGHT_TOKENS,  # thinking is output too
        "total_tokens": USAGE["total"] + THOUGHT_TOKENS,
        "reasoning_tokens": THOUGHT_TOKENS,
    }
    (seen,) = upstream.emulator.record.seen
    assert seen.thinking_config == {"thinkingBudget": 1024, "includeThoughts": True}


@pytest.mark.parametrize("upstream", ["genai"], indirect=True)
def test_genai_sends_a_gemini_3_thinking_level_and_a_2_5_budget(
    upstream: Upstream, serve: Callable[..., RunningServer]
) -> None:
    """Gemini 3: `thinking.level` goes as thinkingLevel, the budget left out. Gemini 2.5,
    which takes only a budget: the budget, or the level's budget."""
    gateway = serve(**upstream.settings, models=["gemini-3-pro-preview"])
    cases = [
        ("gemini-3-pro-preview", {"level": "high", "budget": 512}, {"thinkingLevel": "HIGH"}),
        ("gemini-2.5-flash", {"level": "high", "budget": 512}, {"thinkingBudget": 512}),
        ("gemini-2.5-flash", {"level": "low"}, {"thinkingBudget": LEVEL_BUDGETS["low"]}),
    ]
    for model, thinking, wire in cases:
        body = {"messages": [QUESTION], "model": model, "thinking": thinking}
        events = stream(gateway, upstream, "normal", body)
        assert names(events) == ["token", "separator"] * len(ANSWER) + ["done"]
        (seen,) = upstream.emulator.record.seen
        assert seen.thinking_config == wire, model


@pytest.mark.parametrize("upstream", ["vertex"], indirect=True)
def test_vertex_sends_a_thinking_level_as_a_budget(
    upstream: Upstream, gateway: RunningServer
) -> None:
    """ChatVertexAI has no thinking level: a level goes as its budget; a budget set wins."""
    events = stream(
        gateway, upstream, "normal", {"messages": [QUESTION], "thinking": {"level": "low"}}
    )
    assert names(events) == ["token", "separator"] * len(ANSWER) + ["done"]
    (seen,) = upstream.emulator.record.seen
    assert seen.thinking_config == {"thinkingBudget": LEVEL_BUDGETS["low"]}
    body = {"messages": [QUESTION], "thinking": {"level": "high", "budget": 300}}
    events = stream(gateway, upstream, "normal", body)
    (seen,) = upstream.emulator.record.seen
    assert seen.thinking_config == {"thinkingBudget": 300}


# --- tool calls ----------------------------------------------------------------------------


def test_function_call_comes_as_a_delta_then_the_whole_call(
    upstream: Upstream, gateway: RunningServer
) -> None:
    """A functionCall part: `tool_call_delta`, `tool_call` with its signature, `done` tool_calls."""
    events = stream(gateway, upstream, "tool_call", {"messages": [QUESTION], "tools": [WEATHER]})
    assert names(events) == ["tool_call_delta", "tool_call", "done"]
    delta, call, done = (e.data for e in events)
    assert call["call_id"]
    assert {k: v for k, v in delta.items() if k != "arguments"} == {
        "index": 0,
        "call_id": call["call_id"],
        "name": TOOL_CALL["name"],
    }
    assert json.loads(delta["arguments"]) == TOOL_CALL["args"]
    assert {k: v for k, v in call.items() if k != "arguments"} == {
        "index": 0,
        "call_id": call["call_id"],
        "name": TOOL_CALL["name"],
        "signature": SIGNATURE,
    }
    assert json.loads(call["arguments"]) == TOOL_CALL["args"]
    assert done["finish_reason"] == "tool_calls"
    (seen,) = upstream.emulator.record.seen
    assert seen.tools == [{"functionDeclarations": [DECLARED_WEATHER]}]
    assert seen.tool_config is None


@pytest.mark.parametrize("content", ['{"temp_c": 21}', ""], ids=["json", "empty"])
def test_the_call_and_its_result_go_back_as_function_call_and_response(
    upstream: Upstream, gateway: RunningServer, content: str
) -> None:
    """A `tool_call` sent back with its result: functionCall + signature, functionResponse
    (a tool that returned nothing too: each integration wraps text that is not JSON in a
    field of its own)."""
    if content:
        response: dict[str, Any] = json.loads(content)
    else:
        response = {"output" if upstream.name == "genai" else "content": ""}
    upstream.emulator.reset(Script(scenario="tool_call", times=1))
    first = post(gateway, {"messages": [QUESTION], "tools": [WEATHER]})
    call = next(e.data for e in first if e.event == "tool_call")
    assistant = {"role": "assistant", "tool_calls": [{k: call[k] for k in CALL_FIELDS}]}
    result = {"role": "tool", "tool_call_id": call["call_id"], "content": content}
    events = post(gateway, {"messages": [QUESTION, assistant, result], "tools": [WEATHER]})
    assert names(events) == ["token", "separator"] * len(ANSWER) + ["done"]
    assert events[-1].data["finish_reason"] == "stop"
    _, seen = upstream.emulator.record.seen
    assert seen.parts == [
        ("user", [{"text": QUESTION["content"]}]),
        (
            "model",
            [
                {
                    "functionCall": {"name": TOOL_CALL["name"], "args": TOOL_CALL["args"]},
                    "thoughtSignature": SIGNATURE,
                }
            ],
        ),
        ("user", [{"functionResponse": {"name": TOOL_CALL["name"], "response": response}}]),
    ]


@on_grpc_and_genai
@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY", "allowedFunctionNames": ["get_weather", "get_time"]}),
        ({"name": "get_time"}, {"mode": "ANY", "allowedFunctionNames": ["get_time"]}),
    ],
    ids=["auto", "none", "required", "named"],
)
def test_tool_choice_is_the_function_calling_mode(
    upstream: Upstream, gateway: RunningServer, choice: Any, config: dict[str, Any]
) -> None:
    """`tool_choice` reaches the wire as toolConfig.functionCallingConfig (mode, allowed names)."""
    body = {"messages": [QUESTION], "tools": [WEATHER, CLOCK], "tool_choice": choice}
    events = stream(gateway, upstream, "normal", body)
    assert names(events)[-1] == "done"
    (seen,) = upstream.emulator.record.seen
    assert seen.tool_config == {"functionCallingConfig": config}
    (declarations,) = (tool["functionDeclarations"] for tool in seen.tools)
    assert [d["name"] for d in declarations] == ["get_weather", "get_time"]


# --- grounding -----------------------------------------------------------------------------


def test_grounding_sources_cite_spans_in_characters(
    upstream: Upstream, gateway: RunningServer
) -> None:
    """Grounding metadata becomes `source` events before `done`, its byte spans in characters."""
    events = stream(gateway, upstream, "grounding", {"messages": [QUESTION], "grounding": True})
    assert names(events) == ["token", "separator"] * len(ANSWER) + ["source"] * 2 + ["done"]
    spans = {
        index: {
            "start": characters(ANSWER[:index]),
            "end": characters(ANSWER[: index + 1]),
            "text": ANSWER[index],
        }
        for index, _ in SUPPORTS
    }
    # Bytes and characters differ before the last span: a test of offsets, not of copying.
    assert len("".join(ANSWER[:3]).encode()) != spans[3]["start"]
    (cafes_url, cafes_title), (world_url, world_title) = SOURCES
    assert [e.data for e in events[-3:-1]] == [
        {"index": 0, "url": cafes_url, "title": cafes_title, "cited": [spans[1], spans[3]]},
        {"index": 1, "url": world_url, "title": world_title, "cited": [spans[3]]},
    ]
    assert events[-1].data["finish_reason"] == "stop"
    (seen,) = upstream.emulator.record.seen
    assert seen.tools == [{"googleSearch": {}}]


@on_grpc_and_genai
def test_grounding_goes_with_function_tools(upstream: Upstream, gateway: RunningServer) -> None:
    """Google Search and function declarations together, as each client library puts them."""
    body = {"messages": [QUESTION], "tools": [WEATHER], "grounding": True}
    events = stream(gateway, upstream, "normal", body)
    assert names(events)[-1] == "done"
    (seen,) = upstream.emulator.record.seen
    if upstream.name == "vertex":  # ChatVertexAI: one Tool holding both
        assert seen.tools == [{"functionDeclarations": [DECLARED_WEATHER], "googleSearch": {}}]
    else:  # ChatGoogleGenerativeAI: a Tool each
        assert seen.tools == [{"googleSearch": {}}, {"functionDeclarations": [DECLARED_WEATHER]}]


# --- media ---------------------------------------------------------------------------------


@dataclass
class Listener:
    """A TCP port that hangs up on whoever connects, and counts them."""

    port: int
    connections: int = 0


@pytest.fixture
def listener() -> Iterator[Listener]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        found = Listener(port=sock.getsockname()[1])

        def hang_up() -> None:
            while True:
                try:
                    connection, _ = sock.accept()
                except OSError:  # the socket was closed: the test is over
                    return
                found.connections += 1
                connection.close()  # a fetch fails at once instead of hanging

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        yield found
        sock.shutdown(socket.SHUT_RDWR)
    thread.join(timeout=5)


@on_grpc_and_genai
def test_media_goes_inline_or_by_uri_and_no_url_is_fetched(
    upstream: Upstream, gateway: RunningServer, listener: Listener
) -> None:
    """Inline bytes as inlineData, URLs as fileData with their type; nobody fetches a URL."""
    document = f"https://127.0.0.1:{listener.port}/report.pdf"
    content = [
        {"type": "text", "text": "What do these show?"},
        {"type": "image", "url": f"data:image/png;base64,{base64.b64encode(PNG).decode()}"},
        {"type": "file", "url": document},
        {"type": "image", "url": "gs://emulated-bucket/cat.jpg"},
    ]
    events = stream(
        gateway, upstream, "normal", {"messages": [{"role": "user", "content": content}]}
    )
    assert names(events) == ["token", "separator"] * len(ANSWER) + ["done"]
    (seen,) = upstream.emulator.record.seen
    assert seen.parts == [
        (
            "user",
            [
                {"text": "What do these show?"},
                {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}},
                {"fileData": {"mimeType": "application/pdf", "fileUri": document}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://emulated-bucket/cat.jpg"}},
            ],
        )
    ]
    assert listener.connections == 0  # nobody fetched the document


# --- safety --------------------------------------------------------------------------------


def test_blocked_answer_is_content_blocked_with_the_harm_category(
    upstream: Upstream, gateway: RunningServer
) -> None:
    """A SAFETY finish with a blocking rating: the text so far, `content_blocked` + category."""
    events = stream(gateway, upstream, "safety", {"messages": [QUESTION]})
    assert names(events) == ["token", "separator", "error"]
    error = events[-1].data
    assert (error["code"], error["category"]) == ("content_blocked", SAFETY_CATEGORY)


def test_blocked_prompt_is_content_blocked_with_the_block_reason(
    upstream: Upstream, gateway: RunningServer
) -> None:
    """promptFeedback.blockReason: one `content_blocked` event whose category is the reason."""
    events = stream(gateway, upstream, "prompt_block", {"messages": [QUESTION]})
    assert names(events) == ["error"]
    error = events[0].data
    assert (error["code"], error["category"]) == ("content_blocked", BLOCK_REASON)
