"""`/api/chat` read by the real Vercel AI SDK (`tests/js`, Node.js) against a real gateway.

`tests/js/read_stream.mjs` reads an answer with the SDK's own `DefaultChatTransport` and
`readUIMessageStream`, so every part passes the SDK's schema or the test sees its error;
`tests/js/chat_tools.mjs` runs the SDK's `AbstractChat` (what `useChat` wraps) with a tool
that the page runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from gemini_sse._exceptions import RequestRejected
from gemini_sse._models import (
    Citation,
    DoneEvent,
    ErrorEvent,
    ReasoningEvent,
    SourceEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    Usage,
)
from gemini_sse.server.aisdk.encoding import UIMessageStreamEncoder
from gemini_sse.server.aisdk.models import ChatRequest
from gemini_sse.server.providers.simulated import (
    expected_answer,
    simulated_arguments,
    simulated_thoughts,
)
from gemini_sse.server.settings import Settings

from .conftest import make_settings
from .servers import RunningServer, wait_for

try:
    from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
except ImportError:  # a clear failure in the `browser` fixture, not a collection error
    sync_playwright = None  # type: ignore[assignment]

JS = Path(__file__).resolve().parent / "js"
# Debian's Chromium, started as tests/test_web_page.py starts it.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
]
QUESTION = "What is baseball?"
# Slow enough that an answer is still running while the test acts on it.
PACED = {"fake_chunks": 6, "fake_first_delay_ms": 20, "fake_delay_ms": 400}
# The 8-byte PNG signature, as a page's file input makes it (`readAsDataURL`).
TINY_PNG = "data:image/png;base64,iVBORw0KGgo="
WEATHER: dict[str, Any] = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def user(text: str, message_id: str = "u1") -> dict[str, Any]:
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}


def read(
    running: RunningServer, chat_id: str, *, mode: str = "send", sdk: str = "6", **options: Any
) -> dict[str, Any]:
    """What the AI SDK makes of one answer (see tests/js/read_stream.mjs)."""
    args = {"url": running.url, "chatId": chat_id, "mode": mode, "sdk": sdk, **options}
    args.setdefault("messages", [user(QUESTION)])
    return node_script("read_stream.mjs", args)


def node_script(script: str, args: dict[str, Any]) -> dict[str, Any]:
    """Run one of tests/js's scripts with `args`; what it prints, as JSON."""
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "ai").is_dir():
        pytest.fail("The AI SDK tests need Node.js and tests/js's packages: make js-deps.")
    done = subprocess.run(
        [node, str(JS / script), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def types(result: dict[str, Any]) -> list[str]:
    return [part["type"] for part in result["parts"]]


def text_of(message: dict[str, Any]) -> str:
    return "".join(p["text"] for p in message["parts"] if p["type"] == "text")


def answer(chunks: int, *questions: str) -> str:
    return expected_answer(make_settings(fake_chunks=chunks), list(questions or [QUESTION]))


def body(chat_id: str, *messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": chat_id,
        "messages": list(messages) or [user(QUESTION)],
        "trigger": "submit-message",
        **extra,
    }


def data_lines(lines: Iterator[str]) -> Iterator[Any]:
    """The JSON of each `data:` line of a UI message stream (`[DONE]` as a string)."""
    for line in lines:
        if line.startswith("data: "):
            payload = line.removeprefix("data: ")
            yield payload if payload == "[DONE]" else json.loads(payload)


# --- the encoder ---------------------------------------------------------------------------


def test_encoder_sends_only_the_fields_of_the_configured_sdk_version() -> None:
    """AI SDK 5 gets no `finishReason` on `finish` and no `reason` on `abort`; 6 gets both."""
    done = DoneEvent(finish_reason="stop", model="m", chunks=1, duration_ms=1.0)
    cancelled = ErrorEvent(code="cancelled", message="stopped", usage=Usage(output_tokens=3))

    def parts(version: int, end: DoneEvent | ErrorEvent) -> list[Any]:
        encoder = UIMessageStreamEncoder("m1", version)
        raw = b"".join([*encoder(1, "hi"), *encoder(2, end)])
        return list(data_lines(iter(raw.decode().split("\n"))))

    v5, v6 = parts(5, done), parts(6, done)
    assert [p["type"] for p in v5[:-1]] == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ]
    assert v5[-1] == v6[-1] == "[DONE]"
    assert "finishReason" not in v5[-2] and v6[-2]["finishReason"] == "stop"
    a5, a6 = parts(5, cancelled), parts(6, cancelled)
    assert a5[-3] == {
        "type": "message-metadata",
        "messageMetadata": {"usage": {"inputTokens": 0, "outputTokens": 3, "totalTokens": 0}},
    }
    assert a5[-2] == {"type": "abort"} and a6[-2] == {"type": "abort", "reason": "stopped"}


def test_the_version_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """GEMINI_SSE_AISDK_VERSION takes 5 or 6 (default 6); anything else is refused."""
    assert Settings(_env_file=None).aisdk_version == 6
    monkeypatch.setenv("GEMINI_SSE_AISDK_VERSION", "5")
    assert Settings(_env_file=None).aisdk_version == 5
    monkeypatch.setenv("GEMINI_SSE_AISDK_VERSION", "4")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


def test_encoder_escapes_text_so_that_no_line_can_split() -> None:
    """Non-ASCII (U+2028 among it) and CR travel as JSON escapes in one `data:` line."""
    encoder = UIMessageStreamEncoder("m1", 6)
    frames = encoder(1, "a\u2028b\rc\u00e9")
    assert frames[-1].isascii() and frames[-1].count(b"\n") == 2
    assert json.loads(frames[-1].decode().removeprefix("data: "))["delta"] == "a\u2028b\rc\u00e9"


# --- the SDK reading answers -------------------------------------------------------------


def test_the_sdk_reads_the_answer_as_one_ui_message(serve: Callable[..., RunningServer]) -> None:
    """The SDK's message holds the model's exact answer, in the documented part sequence."""
    running = serve(fake_chunks=5)
    result = read(running, "chat-1")
    assert result["error"] is None
    assert types(result) == [
        "start",
        "start-step",
        "text-start",
        *["text-delta"] * 5,
        "text-end",
        "finish-step",
        "finish",
    ]
    message = result["message"]
    assert text_of(message) == answer(5)
    assert message["id"] == result["parts"][0]["messageId"]
    finish = result["parts"][-1]
    assert finish["finishReason"] == "stop"
    assert message["metadata"]["usage"]["outputTokens"] > 0
    assert message["metadata"]["model"] == "gemini-2.5-flash"


def test_the_response_is_a_ui_message_stream(serve: Callable[..., RunningServer]) -> None:
    """The header the SDK looks for, SSE content type, and `[DONE]` after `finish`."""
    running = serve(fake_chunks=2)
    response = httpx.post(f"{running.url}/api/chat", json=body("chat-h"))
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["content-type"].startswith("text/event-stream")
    parts = list(data_lines(iter(response.text.split("\n"))))
    assert parts[-2]["type"] == "finish" and parts[-1] == "[DONE]"


def test_heartbeats_are_comments_the_sdk_skips(serve: Callable[..., RunningServer]) -> None:
    """`: ping` lines while the model is silent; the SDK reads the answer past them."""
    running = serve(fake_chunks=2, fake_first_delay_ms=400, heartbeat_s=0.05)
    response = httpx.post(f"{running.url}/api/chat", json=body("chat-ping"), timeout=30)
    # The message opens with the model's first event: the silence before it is pinged.
    assert response.text.startswith(": ping\n\n")
    result = read(running, "chat-ping2")
    assert result["error"] is None and text_of(result["message"]) == answer(2)


def test_sdk_5_accepts_the_stream_when_configured_for_it(
    serve: Callable[..., RunningServer],
) -> None:
    """With GEMINI_SSE_AISDK_VERSION=5, ai@5.0.0's strict schema accepts every part."""
    running = serve(fake_chunks=3, aisdk_version=5)
    result = read(running, "chat-5", sdk="5")
    assert result["error"] is None
    assert text_of(result["message"]) == answer(3)
    assert "finishReason" not in result["parts"][-1]


def test_sdk_5_refuses_the_fields_of_sdk_6(serve: Callable[..., RunningServer]) -> None:
    """Why the setting exists: ai@5.0.0 fails the stream on `finishReason`, unknown to it."""
    running = serve(fake_chunks=3)
    result = read(running, "chat-5x", sdk="5")
    assert "Unrecognized key" in result["error"] and "finishReason" in result["error"]


def test_a_model_failure_is_the_sdks_error_with_our_code(
    serve: Callable[..., RunningServer],
) -> None:
    """A rate limit before any text: `error` with `rate_limited` first in its text."""
    running = serve()
    result = read(running, "chat-e", body={"simulation": {"fault": "rate_limit"}})
    assert types(result) == ["start", "start-step", "error"]
    assert result["error"].startswith("rate_limited: ")
    assert result["message"]["parts"] == []


def test_a_failure_after_text_keeps_the_text(serve: Callable[..., RunningServer]) -> None:
    """A dropped upstream after two chunks: their text stands, then the SDK's error."""
    running = serve(fake_chunks=5)
    result = read(running, "chat-d", body={"simulation": {"fault": "drop", "fail_after": 2}})
    assert types(result) == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-delta",
        "message-metadata",
        "error",
    ]
    assert result["error"].startswith("upstream_disconnected: ")
    assert answer(5).startswith(text_of(result["message"])) and text_of(result["message"])


def test_earlier_turns_go_to_the_model(serve: Callable[..., RunningServer]) -> None:
    """The conversation's text parts become the model's messages, in order."""
    running = serve(fake_chunks=3)
    messages = [
        user("First?", "u1"),
        {
            "id": "a1",
            "role": "assistant",
            "parts": [{"type": "step-start"}, {"type": "text", "text": "One."}],
        },
        user("Second?", "u2"),
    ]
    result = read(running, "chat-t", messages=messages)
    assert text_of(result["message"]) == answer(3, "First?", "One.", "Second?")


@pytest.mark.parametrize(
    ("part", "why"),
    [
        (
            {"type": "tool-weather", "toolCallId": "t1", "state": "output-available", "input": {}},
            "tool parts belong in assistant messages",
        ),
        ({"type": "dynamic-widget", "value": 1}, "'dynamic-widget' is not supported"),
        ({"type": "file", "mediaType": "image/png"}, "needs `mediaType` and `url`"),
        ({"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,!!"}, "base64"),
        ({"type": "file", "mediaType": "image/png", "url": "ftp://example.org/a.png"}, "scheme"),
        ({"type": "file", "mediaType": "text/x-nope", "url": TINY_PNG}, "contradicts"),
    ],
)
def test_what_cannot_be_honoured_is_refused(
    serve: Callable[..., RunningServer], part: dict[str, Any], why: str
) -> None:
    """Bad files and parts the model cannot be given: 422 `invalid_request` JSON, raised."""
    running = serve()
    message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Look:"}, part]}
    response = httpx.post(f"{running.url}/api/chat", json=body("chat-r", message))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and why in error["message"]
    result = read(running, "chat-r", messages=[message])
    assert result["refused"] and '"invalid_request"' in result["error"]
    assert running.gateway.provider.stats.started == 0  # type: ignore[attr-defined]


# --- reasoning, tools, sources and files ----------------------------------------------------


def encoded(version: int, *events: Any, continuation: bool = False) -> list[Any]:
    """The parts the encoder makes of `events`, as JSON."""
    encoder = UIMessageStreamEncoder("m1", version, continuation=continuation)
    raw = b"".join(frame for n, e in enumerate(events) for frame in encoder(n + 1, e))
    return list(data_lines(iter(raw.decode().split("\n"))))


def run_chat(running: RunningServer, chat_id: str, *, sdk: str, **options: Any) -> dict[str, Any]:
    """A useChat turn with a tool the page runs (see tests/js/chat_tools.mjs)."""
    args = {"url": running.url, "chatId": chat_id, "sdk": sdk, "question": QUESTION, **options}
    return node_script("chat_tools.mjs", args)


def streamed_text(running: RunningServer, request: dict[str, Any]) -> str:
    """The answer `/v1/stream` gives to the same conversation in our own shape."""
    response = httpx.post(f"{running.url}/v1/stream", json=request, timeout=30)
    assert response.status_code == 200
    texts, event = [], None
    for line in response.text.split("\n"):
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event == "token":
            texts.append(json.loads(line.removeprefix("data: "))["text"])
    return "".join(texts)


def test_encoder_gives_each_run_of_reasoning_and_text_a_part_of_its_own() -> None:
    """Thoughts among the text: the open part ends, the next one opens under a new id."""
    done = DoneEvent(finish_reason="stop", model="m", chunks=2, duration_ms=1.0)
    parts = encoded(
        6,
        ReasoningEvent(text="a"),
        ReasoningEvent(text="b"),
        "c",
        ReasoningEvent(text="d"),
        "e",
        done,
    )
    assert parts == [
        {"type": "start", "messageId": "m1"},
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "m1-reasoning"},
        {"type": "reasoning-delta", "id": "m1-reasoning", "delta": "a"},
        {"type": "reasoning-delta", "id": "m1-reasoning", "delta": "b"},
        {"type": "reasoning-end", "id": "m1-reasoning"},
        {"type": "text-start", "id": "m1-text"},
        {"type": "text-delta", "id": "m1-text", "delta": "c"},
        {"type": "text-end", "id": "m1-text"},
        {"type": "reasoning-start", "id": "m1-reasoning-2"},
        {"type": "reasoning-delta", "id": "m1-reasoning-2", "delta": "d"},
        {"type": "reasoning-end", "id": "m1-reasoning-2"},
        {"type": "text-start", "id": "m1-text-2"},
        {"type": "text-delta", "id": "m1-text-2", "delta": "e"},
        {"type": "text-end", "id": "m1-text-2"},
        {"type": "finish-step"},
        {
            "type": "finish",
            "finishReason": "stop",
            "messageMetadata": {"model": "m", "finishReason": "stop"},
        },
        "[DONE]",
    ]


@pytest.mark.parametrize("version", [5, 6])
def test_encoder_streams_tool_calls_and_sources(version: int) -> None:
    """Call pieces, the whole call (signature kept), then sources with their cited spans."""
    events = [
        ToolCallDeltaEvent(index=0, call_id="c1", name="get_weather", arguments='{"city":'),
        ToolCallDeltaEvent(index=0, arguments=' "Paris"}'),
        ToolCallEvent(
            index=0,
            call_id="c1",
            name="get_weather",
            arguments='{"city": "Paris"}',
            signature="c2ln",
        ),
        SourceEvent(
            index=0,
            url="https://example.org/a",
            title="A",
            cited=[Citation(start=0, end=5, text="hello"), Citation(start=6, end=9)],
        ),
        SourceEvent(index=1, url="https://example.org/b"),
        DoneEvent(finish_reason="tool_calls", model="m", chunks=0, duration_ms=1.0),
    ]
    finish: dict[str, Any] = {"type": "finish"}
    if version == 6:
        finish["finishReason"] = "tool-calls"
    finish["messageMetadata"] = {"model": "m", "finishReason": "tool_calls"}
    assert encoded(version, *events)[2:] == [
        {"type": "tool-input-start", "toolCallId": "c1", "toolName": "get_weather"},
        {"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": '{"city":'},
        {"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": ' "Paris"}'},
        {
            "type": "tool-input-available",
            "toolCallId": "c1",
            "toolName": "get_weather",
            "input": {"city": "Paris"},
            "providerMetadata": {"google": {"thoughtSignature": "c2ln"}},
        },
        {
            "type": "source-url",
            "sourceId": "m1-source-0",
            "url": "https://example.org/a",
            "title": "A",
            "providerMetadata": {
                "gemini_sse": {
                    "cited": [{"start": 0, "end": 5, "text": "hello"}, {"start": 6, "end": 9}]
                }
            },
        },
        {"type": "source-url", "sourceId": "m1-source-1", "url": "https://example.org/b"},
        {"type": "finish-step"},
        finish,
        "[DONE]",
    ]


def test_a_continuation_goes_on_in_the_pages_message() -> None:
    """After the page's tools ran, `start` names no message: the page keeps its own id."""
    parts = encoded(6, "x", continuation=True)
    assert parts[:2] == [{"type": "start"}, {"type": "start-step"}]
    assert parts[2] == {"type": "text-start", "id": "m1-text"}


def test_ui_messages_become_our_messages() -> None:
    """Files become media; answered tool parts become calls and results; the rest is dropped."""
    chat = ChatRequest.model_validate(
        body(
            "c",
            {"id": "s", "role": "system", "parts": [{"type": "text", "text": "Be brief."}]},
            {
                "id": "u1",
                "role": "user",
                "parts": [
                    {"type": "file", "mediaType": "image/png", "url": TINY_PNG, "filename": "a"},
                    {"type": "text", "text": "Look:"},
                ],
            },
            {
                "id": "a1",
                "role": "assistant",
                "parts": [
                    {"type": "step-start"},
                    {"type": "reasoning", "text": "Thinking.", "state": "done"},
                    {"type": "text", "text": "Let me look.", "state": "done"},
                    {
                        "type": "tool-get_weather",
                        "toolCallId": "t1",
                        "state": "output-available",
                        "input": {"city": "Paris"},
                        "output": {"temp": 21},
                        "callProviderMetadata": {"google": {"thoughtSignature": "c2ln"}},
                    },
                    {
                        "type": "dynamic-tool",
                        "toolName": "lookup",
                        "toolCallId": "t2",
                        "state": "output-error",
                        "input": {},
                        "errorText": "no network",
                    },
                    # Never ran (the answer was stopped): the model does not see it.
                    {"type": "tool-get_time", "toolCallId": "t3", "state": "input-streaming"},
                    {"type": "step-start"},
                    {"type": "text", "text": "It is 21.", "state": "done"},
                    {"type": "source-url", "sourceId": "s1", "url": "https://example.org/"},
                ],
            },
            user("Thanks!", "u2"),
            tools=[WEATHER],
            tool_choice={"name": "get_weather"},
            thinking={"include_thoughts": True, "budget": 512},
            grounding=True,
        )
    )
    request = chat.to_stream_request()
    assert [m.model_dump(exclude_none=True) for m in request.conversation()] == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "image", "url": TINY_PNG, "mime_type": "image/png"},
                {"type": "text", "text": "Look:"},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "call_id": "t1",
                    "name": "get_weather",
                    "arguments": '{"city": "Paris"}',
                    "signature": "c2ln",
                },
                {"call_id": "t2", "name": "lookup", "arguments": "{}"},
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "t2", "content": '{"error": "no network"}'},
        {"role": "assistant", "content": "It is 21."},
        {"role": "user", "content": "Thanks!"},
    ]
    assert request.model_dump(include={"tools", "tool_choice", "thinking", "grounding"}) == {
        "tools": [WEATHER],
        "tool_choice": {"name": "get_weather"},
        "thinking": {"budget": 512, "level": None, "include_thoughts": True},
        "grounding": True,
    }
    assert not chat.continuation


def test_an_invalid_tool_part_names_the_ui_message() -> None:
    """Our own message numbers differ from the page's: the error names the UI message."""
    answer_part = {"type": "tool-bad name", "toolCallId": "t1", "state": "output-available"}
    chat = ChatRequest.model_validate(
        body(
            "c",
            user("Hi"),
            {"id": "a1", "role": "assistant", "parts": [answer_part]},
        )
    )
    assert chat.continuation
    with pytest.raises(RequestRejected) as refused:
        chat.to_stream_request()
    assert refused.value.info.message.startswith("messages.1.parts: String should match")


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"tools": [{"name": "bad name"}]}, "tools.0.name"),
        ({"tools": [WEATHER], "tool_choice": {"name": "other"}}, "not in `tools`"),
        ({"tool_choice": "auto"}, "`tool_choice` needs `tools`"),
        ({"thinking": {"budget": "5"}}, "thinking.budget"),
        ({"thinking": {"effort": "high"}}, "thinking.effort"),
        ({"grounding": 1}, "grounding"),
    ],
)
def test_bad_options_are_refused(
    serve: Callable[..., RunningServer], options: dict[str, Any], why: str
) -> None:
    """The transport's `body` options pass our own checks: 422 before any model call."""
    running = serve()
    response = httpx.post(f"{running.url}/api/chat", json=body("chat-o", **options))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and why in error["message"]
    assert running.gateway.provider.stats.started == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("sdk", ["5", "6"])
def test_the_sdk_reads_the_reasoning_before_the_answer(
    serve: Callable[..., RunningServer], sdk: str
) -> None:
    """`thinking.include_thoughts`: a reasoning part with the model's thoughts, then the text."""
    running = serve(fake_chunks=3, aisdk_version=int(sdk))
    result = read(running, "chat-think", sdk=sdk, body={"thinking": {"include_thoughts": True}})
    assert result["error"] is None
    assert types(result) == [
        "start",
        "start-step",
        "reasoning-start",
        *["reasoning-delta"] * 3,
        "reasoning-end",
        "text-start",
        *["text-delta"] * 3,
        "text-end",
        "finish-step",
        "finish",
    ]
    message = result["message"]
    assert [p["type"] for p in message["parts"]] == ["step-start", "reasoning", "text"]
    reasoning = message["parts"][1]
    assert reasoning["text"] == "".join(simulated_thoughts(QUESTION))
    assert reasoning["state"] == "done"
    assert text_of(message) == answer(3)
    assert message["metadata"]["usage"]["reasoningTokens"] > 0


@pytest.mark.parametrize("sdk", ["5", "6"])
def test_the_sdk_reads_a_tool_call(serve: Callable[..., RunningServer], sdk: str) -> None:
    """`tools`: the call streams as tool input; the page's tool part awaits its result."""
    running = serve(aisdk_version=int(sdk))
    result = read(running, "chat-tool", sdk=sdk, body={"tools": [WEATHER]})
    assert result["error"] is None
    assert types(result) == [
        "start",
        "start-step",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-delta",
        "tool-input-available",
        "finish-step",
        "finish",
    ]
    (step, call) = result["message"]["parts"]
    assert step == {"type": "step-start"}
    assert call["type"] == "tool-get_weather" and call["state"] == "input-available"
    assert call["input"] == simulated_arguments(WEATHER["parameters"], QUESTION)
    assert call["toolCallId"] == result["parts"][2]["toolCallId"]
    finish = result["parts"][-1]
    assert finish.get("finishReason") == ("tool-calls" if sdk == "6" else None)
    assert finish["messageMetadata"]["finishReason"] == "tool_calls"


@pytest.mark.parametrize("sdk", ["5", "6"])
def test_the_sdk_reads_the_sources(serve: Callable[..., RunningServer], sdk: str) -> None:
    """`grounding`: source-url parts after the text, their spans cut from that text."""
    running = serve(fake_chunks=3, aisdk_version=int(sdk))
    result = read(running, "chat-src", sdk=sdk, body={"grounding": True})
    assert result["error"] is None
    assert types(result) == [
        "start",
        "start-step",
        "text-start",
        *["text-delta"] * 3,
        "text-end",
        "source-url",
        "source-url",
        "finish-step",
        "finish",
    ]
    message = result["message"]
    text = text_of(message)
    assert text == answer(3)
    sources = [p for p in message["parts"] if p["type"] == "source-url"]
    assert [p["type"] for p in message["parts"]] == ["step-start", "text", *["source-url"] * 2]
    for source in sources:
        topic = source["url"].removeprefix("https://example.org/")
        assert topic != source["url"] and source["title"] == f"About {topic}"
    first, second = (s["providerMetadata"]["gemini_sse"]["cited"] for s in sources)
    assert len(first) == 2 and len(second) == 1
    for span in first + second:
        assert text[span["start"] : span["end"]] == span["text"]


@pytest.mark.parametrize("sdk", ["5", "6"])
def test_use_chat_runs_the_pages_tool_and_continues(
    serve: Callable[..., RunningServer], sdk: str
) -> None:
    """onToolCall + addToolResult: sent again, the result gets an answer in the same message."""
    running = serve(fake_chunks=3, aisdk_version=int(sdk))
    output = {"temperature": 21}
    result = run_chat(running, "chat-loop", sdk=sdk, body={"tools": [WEATHER]}, output=output)
    assert result["status"] == "ready" and result["error"] is None
    arguments = simulated_arguments(WEATHER["parameters"], QUESTION)
    assert [c["input"] for c in result["calls"]] == [arguments]
    first, second = result["posted"]
    assert first["tools"] == second["tools"] == [WEATHER]
    sent = second["messages"][-1]
    assert sent["role"] == "assistant"
    (sent_call,) = [p for p in sent["parts"] if p["type"] == "tool-get_weather"]
    assert sent_call["state"] == "output-available" and sent_call["output"] == output
    question, reply = result["messages"]
    assert question["role"] == "user" and reply["role"] == "assistant"
    assert reply["id"] == sent["id"]  # one message, not a copy of it
    assert [p["type"] for p in reply["parts"]] == [
        "step-start",
        "tool-get_weather",
        "step-start",
        "text",
    ]
    assert reply["parts"][1]["input"] == arguments
    # The model read the question, its call (no text) and the result.
    assert text_of(reply) == answer(3, QUESTION, "", json.dumps(output))
    assert running.gateway.provider.stats.completed == 2  # type: ignore[attr-defined]


def test_file_parts_reach_the_model(serve: Callable[..., RunningServer]) -> None:
    """A data URL image and an https PDF: the model's answer is the one to our media parts."""
    running = serve(fake_chunks=3)
    pdf = "https://example.org/report.pdf"
    message = {
        "id": "u1",
        "role": "user",
        "parts": [
            {"type": "file", "mediaType": "image/png", "url": TINY_PNG, "filename": "a.png"},
            {"type": "file", "mediaType": "application/pdf", "url": pdf},
            {"type": "text", "text": "What are these?"},
        ],
    }
    result = read(running, "chat-file", messages=[message])
    assert result["error"] is None
    ours = [
        {"type": "image", "url": TINY_PNG, "mime_type": "image/png"},
        {"type": "file", "url": pdf, "mime_type": "application/pdf"},
        {"type": "text", "text": "What are these?"},
    ]
    expected = streamed_text(
        running, {"messages": [{"role": "user", "content": ours}], "separators": False}
    )
    assert text_of(result["message"]) == expected
    assert expected != answer(3, "What are these?")


# --- resume and stop ------------------------------------------------------------------------


def test_resume_is_204_when_no_answer_runs(serve: Callable[..., RunningServer]) -> None:
    """Nothing running for the chat (never started, or finished): 204, the SDK gets null."""
    running = serve(fake_chunks=2)
    assert httpx.get(f"{running.url}/api/chat/nobody/stream").status_code == 204
    read(running, "chat-f")
    assert read(running, "chat-f", mode="resume") == {
        "resumed": False,
        "parts": [],
        "message": None,
        "error": None,
    }


def _start_and_leave(running: RunningServer, chat_id: str) -> str:
    """Start an answer, read up to its first text, and drop the connection (a reload)."""
    with httpx.stream("POST", f"{running.url}/api/chat", json=body(chat_id)) as response:
        for data in data_lines(response.iter_lines()):
            if data["type"] == "start":
                message_id: str = data["messageId"]
            if data["type"] == "text-delta":
                return message_id
    raise AssertionError("no text arrived")


def test_resume_replays_the_running_answer_from_its_start(
    serve: Callable[..., RunningServer],
) -> None:
    """After a drop mid-answer, resuming replays the whole message once, then follows it."""
    running = serve(**PACED)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    message_id = _start_and_leave(running, "chat-resume")
    assert stats.completed == 0  # the answer is still being written
    result = read(running, "chat-resume", mode="resume")
    assert result["resumed"] and result["error"] is None
    assert result["parts"][0] == {"type": "start", "messageId": message_id}
    assert types(result).count("text-delta") == 6 and types(result)[-1] == "finish"
    assert text_of(result["message"]) == answer(6)
    assert wait_for(lambda: stats.completed == 1) and stats.cancelled == 0
    # The stream is marked finished just after its last part is stored.
    assert wait_for(
        lambda: httpx.get(f"{running.url}/api/chat/chat-resume/stream").status_code == 204
    )


def test_resume_works_on_another_replica(
    serve: Callable[..., RunningServer], redis_url: str
) -> None:
    """With Redis, an answer started on one replica is resumed from another."""
    first = serve(redis_url=redis_url, **PACED)
    second = serve(redis_url=redis_url, **PACED)
    message_id = _start_and_leave(first, "chat-replicas")
    result = read(second, "chat-replicas", mode="resume")
    assert result["parts"][0] == {"type": "start", "messageId": message_id}
    assert text_of(result["message"]) == answer(6)
    # The stream is marked finished just after its last part is stored.
    assert wait_for(
        lambda: httpx.get(f"{second.url}/api/chat/chat-replicas/stream").status_code == 204
    )


def test_stop_cancels_the_model_and_keeps_the_partial_usage(
    serve: Callable[..., RunningServer],
) -> None:
    """The stop endpoint interrupts the producer: the model call is cancelled, `abort` ends."""
    running = serve(**PACED)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    result = read(running, "chat-stop", mode="stop")
    assert result["error"] is None
    assert types(result)[-2:] == ["message-metadata", "abort"]
    assert result["parts"][-1]["reason"] == "The answer was stopped."
    partial = text_of(result["message"])
    assert partial and answer(6).startswith(partial) and partial != answer(6)
    assert result["message"]["metadata"]["usage"]["outputTokens"] > 0
    assert wait_for(lambda: stats.cancelled == 1)
    assert stats.completed == 0
    assert wait_for(lambda: not running.gateway.live)


def test_stop_on_another_replica_reaches_the_producer(
    serve: Callable[..., RunningServer], redis_url: str
) -> None:
    """A stop sent to any replica cancels the model call where the answer runs."""
    first = serve(redis_url=redis_url, **PACED)
    second = serve(redis_url=redis_url, **PACED)
    stats = first.gateway.provider.stats  # type: ignore[attr-defined]
    with httpx.stream("POST", f"{first.url}/api/chat", json=body("chat-stop2")) as response:
        seen = []
        for data in data_lines(response.iter_lines()):
            seen.append(data if data == "[DONE]" else data["type"])
            if seen.count("text-delta") == 1:
                assert httpx.post(f"{second.url}/api/chat/chat-stop2/stop").status_code == 204
    assert seen[-2:] == ["abort", "[DONE]"]
    assert wait_for(lambda: stats.cancelled == 1)
    assert stats.completed == 0


def test_a_new_message_stops_the_chats_running_answer(serve: Callable[..., RunningServer]) -> None:
    """One answer at a time per chat: sending again cancels the answer still running."""
    running = serve(**PACED)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    _start_and_leave(running, "chat-again")
    result = read(running, "chat-again", messages=[user("Another?")])
    assert text_of(result["message"]) == answer(6, "Another?")
    assert wait_for(lambda: stats.completed == 1) and stats.cancelled == 1


def test_chats_are_kept_per_api_key(serve: Callable[..., RunningServer]) -> None:
    """With keys, another key sees no running answer for the same chat id, nor stops it."""
    running = serve(api_keys="k1,k2", **PACED)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    one, two = ({"Authorization": f"Bearer {k}"} for k in ("k1", "k2"))
    assert httpx.post(f"{running.url}/api/chat", json=body("c")).status_code == 401
    with httpx.stream("POST", f"{running.url}/api/chat", json=body("c"), headers=one) as response:
        for data in data_lines(response.iter_lines()):
            if data != "[DONE]" and data["type"] == "text-delta":
                assert httpx.get(f"{running.url}/api/chat/c/stream", headers=two).status_code == 204
                assert httpx.post(f"{running.url}/api/chat/c/stop", headers=two).status_code == 204
                resumed = httpx.get(f"{running.url}/api/chat/c/stream", headers=one, timeout=30)
                assert resumed.status_code == 200 and "[DONE]" in resumed.text
                break
    assert stats.completed == 1 and stats.cancelled == 0


# --- a useChat page in Chromium --------------------------------------------------------------

PAGE = (
    '<!doctype html><meta charset="utf-8"><title>useChat</title>'
    '<div id="root"></div><script type="module" src="/aisdk-test/chat.js"></script>'
)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """tests/js/chat_page.jsx bundled with esbuild (React, @ai-sdk/react, ai) for a browser."""
    esbuild = JS / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists():
        pytest.fail("The useChat page needs tests/js's packages: make js-deps.")
    out = tmp_path_factory.mktemp("aisdk") / "chat.js"
    subprocess.run(
        [
            str(esbuild),
            str(JS / "chat_page.jsx"),
            "--bundle",
            "--format=esm",
            "--jsx=automatic",
            "--define:process.env.NODE_ENV='production'",
            f"--outfile={out}",
            "--log-level=warning",
        ],
        check=True,
        timeout=120,
    )
    return out.read_bytes()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium under Playwright, headless; fails (never skips) if it is missing."""
    if sync_playwright is None or not Path(CHROMIUM).exists():
        pytest.fail(f"The useChat page needs Playwright and {CHROMIUM}: make system-deps.")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def chat_page(browser: Browser, bundle: bytes) -> Iterator[Callable[[RunningServer, str], Page]]:
    """`chat_page(running, chat_id)`: the useChat page, served on the gateway's origin."""
    contexts: list[BrowserContext] = []

    def start(running: RunningServer, chat_id: str) -> Page:
        context = browser.new_context()
        contexts.append(context)
        # The page and its script come from the test; everything else is the gateway.
        context.route(
            f"{running.url}/aisdk-test/chat.html*",
            lambda route: route.fulfill(body=PAGE, content_type="text/html"),
        )
        context.route(
            f"{running.url}/aisdk-test/chat.js",
            lambda route: route.fulfill(body=bundle, content_type="text/javascript"),
        )
        page = context.new_page()
        page.goto(f"{running.url}/aisdk-test/chat.html?chat={chat_id}")
        page.locator("#status").wait_for()
        return page

    yield start
    for context in contexts:
        context.close()


def ask_page(page: Page, question: str) -> None:
    page.fill("#question", question)
    page.click("#send")


def shown_answers(page: Page) -> list[str]:
    return [str(t) for t in page.locator("#log li.assistant").all_text_contents()]


@pytest.mark.browser
def test_use_chat_shows_text_while_the_model_still_writes(
    serve: Callable[..., RunningServer], chat_page: Callable[[RunningServer, str], Page]
) -> None:
    """Text is on the page before the model's last chunk exists; then exactly the answer."""
    running = serve(**PACED)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    page = chat_page(running, "page-1")
    ask_page(page, QUESTION)
    page.wait_for_function("document.querySelector('#log li.assistant')?.textContent.length > 0")
    assert stats.completed == 0
    page.wait_for_function("document.querySelector('#status').textContent === 'ready'")
    assert shown_answers(page) == [answer(6)]
    assert page.locator("#error").count() == 0


@pytest.mark.browser
def test_use_chat_stop_cancels_the_model(
    serve: Callable[..., RunningServer], chat_page: Callable[[RunningServer, str], Page]
) -> None:
    """The page's Stop (stop() and the stop endpoint) cancels the model call upstream."""
    running = serve(**PACED)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    page = chat_page(running, "page-stop")
    ask_page(page, QUESTION)
    page.wait_for_function("document.querySelector('#log li.assistant')?.textContent.length > 0")
    page.click("#stop")
    assert wait_for(lambda: stats.cancelled == 1)
    page.wait_for_function("document.querySelector('#status').textContent === 'ready'")
    assert stats.completed == 0
    (partial,) = shown_answers(page)
    assert partial and answer(6).startswith(partial) and partial != answer(6)


@pytest.mark.browser
def test_use_chat_reload_resumes_without_repeating_text(
    serve: Callable[..., RunningServer], chat_page: Callable[[RunningServer, str], Page]
) -> None:
    """A reload mid-answer resumes it (no second model call) and shows the text once."""
    running = serve(**PACED)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    page = chat_page(running, "page-reload")
    ask_page(page, QUESTION)
    page.wait_for_function("document.querySelector('#log li.assistant')?.textContent.length > 0")
    page.reload()
    page.wait_for_function(
        "document.querySelector('#log li.assistant')?.textContent === " + json.dumps(answer(6))
    )
    page.wait_for_function("document.querySelector('#status').textContent === 'ready'")
    assert shown_answers(page) == [answer(6)]
    assert page.locator("#log li.user").all_text_contents() == [QUESTION]
    assert stats.started == 1 and stats.completed == 1 and stats.cancelled == 0
