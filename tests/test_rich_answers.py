"""Rich answers on `/v1/stream` with the simulated model: thoughts, tool calls, sources,
safety categories, media, and the client's typed view of them."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from gemini_sse import Client, ReasoningEvent, SourceEvent, ToolCallEvent
from gemini_sse.server.parts import AnswerParts
from gemini_sse.server.providers.simulated import (
    simulated_answer,
    simulated_arguments,
    simulated_thoughts,
)

from .servers import RunningServer
from .sse import names, parse, post, text

pytestmark = pytest.mark.anyio

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64)).decode()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_thoughts_come_as_reasoning_events_before_the_answer() -> None:
    """`include_thoughts`: the thought summary as `reasoning` events, then the answer, and
    the thinking tokens in usage."""
    body = {"message": "Why?", "thinking": {"include_thoughts": True}, "separators": False}
    response, events = await post(body)
    assert response.status_code == 200
    thoughts = simulated_thoughts("Why?")
    assert names(events) == ["reasoning"] * 3 + ["token"] * 5 + ["done"]
    assert [e.data["text"] for e in events[:3]] == thoughts
    assert text(events) == "".join(simulated_answer("Why?", 5, 12))
    usage = events[-1].data["usage"]
    assert usage["reasoning_tokens"] == sum((len(t) + 3) // 4 for t in thoughts)
    assert [e.id for e in events] == [str(i) for i in range(1, 10)]


async def test_no_reasoning_events_unless_asked_or_with_thinking_off() -> None:
    """Without `include_thoughts`, or with a budget of 0, no `reasoning` events come."""
    for thinking in (None, {"budget": 1024}, {"budget": 0, "include_thoughts": True}):
        body: dict[str, Any] = {"message": "Why?", "separators": False}
        if thinking is not None:
            body["thinking"] = thinking
        _, events = await post(body)
        assert names(events) == ["token"] * 5 + ["done"], thinking


async def test_a_tool_call_streams_in_pieces_then_whole_then_done_tool_calls() -> None:
    """With tools, the model calls one: `tool_call_delta` pieces (the first with id and
    name), one whole `tool_call`, and `done` with finish reason `tool_calls`."""
    response, events = await post({"message": "Weather in Bern?", "tools": [WEATHER]})
    assert response.status_code == 200
    assert names(events) == ["tool_call_delta", "tool_call_delta", "tool_call", "done"]
    first, second, whole, done = (e.data for e in events)
    arguments = simulated_arguments(WEATHER["parameters"], "Weather in Bern?")
    assert json.loads(whole["arguments"]) == arguments
    assert first["arguments"] + second["arguments"] == whole["arguments"]
    assert first["index"] == second["index"] == whole["index"] == 0
    assert first["call_id"] == whole["call_id"] and first["name"] == "get_weather"
    assert "call_id" not in second and "name" not in second
    assert done["finish_reason"] == "tool_calls" and done["chunks"] == 0


async def test_the_tool_result_in_the_next_request_is_answered_with_text() -> None:
    """The call and its result sent back: the model answers with text, no new call."""
    call = {"call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Bern"}'}
    body = {
        "messages": [
            {"role": "user", "content": "Weather in Bern?"},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "clear"}'},
        ],
        "tools": [WEATHER],
        "separators": False,
    }
    response, events = await post(body)
    assert response.status_code == 200
    assert names(events) == ["token"] * 5 + ["done"]
    assert events[-1].data["finish_reason"] == "stop"


async def test_tool_choice_none_and_a_named_tool() -> None:
    """`tool_choice: none` answers with text; a named tool is the one called."""
    other = {"name": "get_time", "parameters": {"type": "object", "properties": {}}}
    _, events = await post(
        {"message": "hi", "tools": [WEATHER, other], "tool_choice": "none", "separators": False}
    )
    assert names(events) == ["token"] * 5 + ["done"]
    _, events = await post(
        {"message": "hi", "tools": [WEATHER, other], "tool_choice": {"name": "get_time"}}
    )
    call = next(e for e in events if e.event == "tool_call")
    assert call.data["name"] == "get_time" and call.data["arguments"] == "{}"


async def test_grounded_answers_end_with_sources_citing_character_spans() -> None:
    """`grounding`: `source` events after the text and before `done`, their cited spans
    indexing the answer by character (the simulated answer has non-ASCII)."""
    prompt = "Cafés?"
    response, events = await post({"message": prompt, "grounding": True, "separators": False})
    assert response.status_code == 200
    assert names(events) == ["token"] * 5 + ["source", "source", "done"]
    answer = text(events)
    sources = [e.data for e in events if e.event == "source"]
    assert [s["index"] for s in sources] == [0, 1]
    assert all(s["url"].startswith("https://example.org/") and s["title"] for s in sources)
    chunks = simulated_answer(prompt, 5, 12)
    assert any(not chunk.isascii() for chunk in chunks[:2])  # so bytes and characters differ
    spans = [(c["start"], c["end"], c["text"]) for c in sources[0]["cited"]]
    assert spans == [
        (0, len(chunks[0]), chunks[0]),
        (len(chunks[0]), len(chunks[0]) + len(chunks[1]), chunks[1]),
    ]
    for start, end, cited in spans:
        assert answer[start:end] == cited


def test_utf8_offsets_in_the_middle_of_a_character_count_as_before_it() -> None:
    """A byte offset that splits a character maps to the character's start."""
    parts = AnswerParts(keep_text=True)
    assert parts.text is not None
    parts.text.append("é!")
    parts.note(
        {
            "grounding_metadata": {
                "grounding_chunks": [{"web": {"uri": "https://a.example", "title": None}}],
                "grounding_supports": [
                    {"segment": {"start_index": 1, "end_index": 3}, "grounding_chunk_indices": [0]}
                ],
            }
        }
    )
    (source,) = parts.closing()
    assert isinstance(source, SourceEvent)
    assert (source.cited[0].start, source.cited[0].end) == (0, 2)
    assert source.title is None


async def test_a_safety_stop_is_content_blocked_with_its_category() -> None:
    """A SAFETY finish: an `error` of `content_blocked` naming the harm category."""
    _, events = await post({"message": "x", "simulation": {"fault": "safety"}})
    assert names(events) == ["error"]
    assert events[0].data["code"] == "content_blocked"
    assert events[0].data["category"] == "HARM_CATEGORY_DANGEROUS_CONTENT"


async def test_markdown_answers_on_request() -> None:
    """`simulation.markdown`: the simulated answer is Markdown (heading, code, link)."""
    body = {"message": "md", "simulation": {"markdown": True, "chunks": 30}, "separators": False}
    _, events = await post(body)
    answer = text(events)
    assert answer == "".join(simulated_answer("md", 30, 12, markdown=True))
    assert answer.startswith("## ") and "**" in answer and "```python\n" in answer
    assert "](https://example.org/" in answer


async def test_images_and_files_are_accepted_and_reach_the_model() -> None:
    """A data-URL image, an https PDF and a gs:// image: 200, and the model saw each."""
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "url": f"data:image/png;base64,{PNG}"},
        {"type": "file", "url": "https://example.com/paper.pdf"},
        {"type": "image", "url": "gs://bucket/cat.jpg"},
    ]
    response, events = await post({"messages": [{"role": "user", "content": content}]})
    assert response.status_code == 200 and names(events)[-1] == "done"
    # The simulated model's answer depends on what it read: the media changed it.
    _, plain = await post({"message": "What is this?"})
    assert text(events) != text(plain)


@pytest.mark.parametrize(
    ("part", "status", "words"),
    [
        ({"type": "image", "url": "ftp://example.com/a.png"}, 422, "schemes"),
        ({"type": "image", "url": "http://example.com/a.png"}, 422, "schemes"),
        ({"type": "image", "url": "https://example.com/a"}, 422, "mime_type"),
        ({"type": "image", "url": "data:image/png;base64,%%%"}, 422, "base64"),
        ({"type": "image", "url": "data:image/png,plain"}, 422, "base64"),
        ({"type": "image", "url": "data:application/x-sh;base64,AAAA"}, 422, "not accepted"),
        ({"type": "image", "url": "data:application/pdf;base64,AAAA"}, 422, "as `file`"),
        (
            {"type": "image", "url": f"data:image/png;base64,{PNG}", "mime_type": "image/jpeg"},
            422,
            "contradicts",
        ),
        ({"type": "image", "url": "data:image/png;base64," + "A" * 200}, 413, "at most"),
    ],
)
async def test_bad_media_is_refused_before_any_model_call(
    part: dict[str, Any], status: int, words: str
) -> None:
    """Each bad media part: its own status and a message that says what is wrong."""
    content = [{"type": "text", "text": "look"}, part]
    response, _ = await post(
        {"messages": [{"role": "user", "content": content}]}, max_media_bytes=100
    )
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]


async def test_too_many_media_parts_are_413() -> None:
    """More parts than `max_media_parts`: 413 before any model call."""
    image = {"type": "image", "url": f"data:image/png;base64,{PNG}"}
    response, _ = await post(
        {"messages": [{"role": "user", "content": [image] * 3}]}, max_media_parts=2
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"message": "x", "tool_choice": "auto"}, "needs `tools`"),
        ({"message": "x", "tools": [WEATHER], "tool_choice": {"name": "nope"}}, "not in `tools`"),
        ({"message": "x", "tools": [WEATHER, WEATHER]}, "name of its own"),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "tool", "tool_call_id": "c9", "content": "r"},
                ]
            },
            "answers no earlier",
        ),
        ({"message": "x", "tools": [{"name": "bad name"}]}, "name"),
        ({"message": "x", "tools": [{"name": "f", "parameters": {"type": "array"}}]}, "object"),
        ({"messages": [{"role": "tool", "content": "r"}]}, "tool_call_id"),
        ({"messages": [{"role": "assistant"}]}, "content"),
        (
            {"messages": [{"role": "system", "content": [{"type": "image", "url": "x"}]}]},
            "only a user",
        ),
        ({"message": "x", "thinking": {"level": "extreme"}}, "level"),
        ({"message": "x", "thinking": {"budget": -2}}, "budget"),
    ],
)
async def test_bad_tool_and_thinking_options_are_422(body: dict[str, Any], words: str) -> None:
    """Inconsistent tools, tool results, roles or thinking options: 422 that names them."""
    response, _ = await post(body)
    assert response.status_code == 422, response.text
    assert words in json.dumps(response.json())


def test_the_client_sees_typed_rich_events_and_a_rich_completion(server: RunningServer) -> None:
    """Over real uvicorn: `Client.complete` gives the reasoning, calls and sources typed."""
    with Client(server.url) as client:
        done = client.complete(
            "Cafés?", thinking={"include_thoughts": True}, grounding=True, separators=False
        )
        assert done.reasoning == "".join(simulated_thoughts("Cafés?"))
        assert [type(e) for e in done.events[:3]] == [ReasoningEvent] * 3
        assert [s.index for s in done.sources] == [0, 1]
        assert done.text == "".join(simulated_answer("Cafés?", 5, 12))
        called = client.complete("Weather?", tools=[WEATHER])
        (call,) = called.tool_calls
        assert isinstance(call, ToolCallEvent) and call.name == "get_weather"
        assert called.done.finish_reason == "tool_calls" and called.text == ""


def test_resumable_streams_replay_rich_events_exactly(server: RunningServer) -> None:
    """`POST /v1/streams`: the stored stream carries every rich event, resumable mid-way."""
    body = {
        "message": "Cafés?",
        "thinking": {"include_thoughts": True},
        "grounding": True,
        "separators": False,
    }
    created = httpx.post(f"{server.url}/v1/streams", json=body).json()
    whole = parse(httpx.get(f"{server.url}{created['events_url']}", timeout=10).content)
    assert names(whole) == ["reasoning"] * 3 + ["token"] * 5 + ["source", "source", "done"]
    rest = parse(
        httpx.get(
            f"{server.url}{created['events_url']}", headers={"Last-Event-ID": "2"}, timeout=10
        ).content
    )
    assert rest == whole[2:]
