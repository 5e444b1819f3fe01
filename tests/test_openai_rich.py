"""Rich answers on `/v1/chat/completions`, read by the official `openai` SDK: tool calls,
reasoning, citations and media, from the simulated model and, through the `openai`
provider, from an OpenAI-compatible server (the chat-completions emulator)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pydantic
import pytest

from gemini_sse._models import (
    DoneEvent,
    SourceEvent,
    ThinkingOptions,
    ToolCallDeltaEvent,
    ToolCallEvent,
)
from gemini_sse.server.openai.encoding import ChunkEncoder
from gemini_sse.server.openai.models import ChatCompletionRequest
from gemini_sse.server.providers.openai import reasoning_effort
from gemini_sse.server.providers.simulated import expected_answer, simulated_arguments
from gemini_sse.server.providers.simulated import simulated_thoughts as thoughts_of

from .conftest import make_settings
from .emulators.openai_http import TOOL_ARGUMENTS, TOOL_CALL_ID, OpenAIHttpEmulator
from .emulators.scenario import ANSWER, THOUGHT_TOKENS, THOUGHTS, TOOL_CALL, Script
from .openai_sdk import stats_of
from .servers import RunningServer
from .sse import Received, names, parse, text

MODEL = "gemini-2.5-flash"
PROMPT = "Weather in Paris?"
ASK: Any = [{"role": "user", "content": PROMPT}]
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": WEATHER,
        },
    }
]
# What the simulated model calls the tool with, as it writes the arguments.
ARGUMENTS = json.dumps(simulated_arguments(WEATHER, PROMPT), ensure_ascii=False)
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64)).decode()
PDF = base64.b64encode(b"%PDF-1.7\n" + bytes(32)).decode()
WAV = base64.b64encode(b"RIFF" + bytes(40)).decode()


def native(server: RunningServer, body: dict[str, Any]) -> list[Received]:
    """The same answer on `/v1/stream`: what the OpenAI surface must say in its terms."""
    response = httpx.post(f"{server.url}/v1/stream", json={**body, "separators": False})
    assert response.status_code == 200, response.text
    return parse(response.content)


def called(server: RunningServer) -> ToolCallEvent:
    """The call the simulated model makes for `ASK`, on `/v1/stream`."""
    tools = [{"name": "get_weather", "parameters": WEATHER}]
    events = native(server, {"messages": ASK, "tools": tools})
    (call,) = [ToolCallEvent(**e.data) for e in events if e.event == "tool_call"]
    return call


# --- tool calls --------------------------------------------------------------------------


def test_stream_helper_assembles_the_tool_call_with_the_models_arguments(
    server: RunningServer, client: openai.OpenAI
) -> None:
    """`chat.completions.stream` + `get_final_completion()`: one call, the simulated model's
    id, name and arguments, finish_reason `tool_calls`, no content."""
    with client.chat.completions.stream(model=MODEL, messages=ASK, tools=TOOLS) as stream:
        events = [event.type for event in stream]
        completion = stream.get_final_completion()
    (choice,) = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function"
    assert (call.id, call.function.name) == (called(server).call_id, "get_weather")
    assert call.function.arguments == ARGUMENTS
    assert json.loads(call.function.arguments) == simulated_arguments(WEATHER, PROMPT)
    # The helper saw the pieces of call 0 and then its end.
    assert events.count("tool_calls.function.arguments.delta") == 2
    assert events.count("tool_calls.function.arguments.done") == 1
    assert "content.delta" not in events


def test_a_strict_pydantic_tool_from_the_sdk_is_called(client: openai.OpenAI) -> None:
    """`openai.pydantic_function_tool` sets `strict: true`: accepted, and the parsed
    arguments come back as the tool's own model."""

    class GetWeather(pydantic.BaseModel):
        city: str

    tool = openai.pydantic_function_tool(GetWeather, name="get_weather")
    assert tool["function"].get("strict") is True
    completion = client.chat.completions.parse(model=MODEL, messages=ASK, tools=[tool])
    (call,) = completion.choices[0].message.tool_calls or []
    assert isinstance(call.function.parsed_arguments, GetWeather)
    assert (
        call.function.parsed_arguments.city
        == simulated_arguments(GetWeather.model_json_schema(), PROMPT)["city"]
    )


def test_every_streamed_tool_call_delta_has_its_index(client: openai.OpenAI) -> None:
    """Raw chunks: each `tool_calls` entry has `index` 0; id, type and name only on the
    first; the arguments joined are the model's; then finish_reason `tool_calls`."""
    chunks = list(
        client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, stream=True)
    )
    entries = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or []]
    assert [tc.index for tc in entries] == [0, 0]
    first, second = entries
    assert (first.type, first.function and first.function.name) == ("function", "get_weather")
    assert first.id is not None and first.id.startswith("call_")
    assert (second.id, second.type, second.function and second.function.name) == (None,) * 3
    assert "".join(tc.function.arguments or "" for tc in entries if tc.function) == ARGUMENTS
    assert [c.choices[0].finish_reason for c in chunks] == [None, None, "tool_calls"]
    assert [c.choices[0].delta.role for c in chunks] == ["assistant", None, None]


def test_the_tool_result_sent_back_is_answered_with_text(client: openai.OpenAI) -> None:
    """The answer's message sent back as it came, then the tool's result: a text answer
    from the whole conversation, finish_reason `stop`."""
    first = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS)
    message = first.choices[0].message
    (call,) = message.tool_calls or []
    history: Any = [*ASK, message, {"role": "tool", "tool_call_id": call.id, "content": "Sunny."}]
    answer = client.chat.completions.create(model=MODEL, messages=history, tools=TOOLS)
    (choice,) = answer.choices
    assert choice.finish_reason == "stop"
    assert choice.message.tool_calls is None
    # The simulated model reads the turns' texts: the call's turn has none.
    assert choice.message.content == expected_answer(make_settings(), [PROMPT, "", "Sunny."])


def test_tool_choice_none_answers_with_text_and_a_named_tool_is_called(
    client: openai.OpenAI,
) -> None:
    """`tool_choice: none` gets text; `{"type": "function", "function": {"name"}}` gets
    that function called."""
    tools: Any = [*TOOLS, {"type": "function", "function": {"name": "get_time"}}]
    text_only = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=tools, tool_choice="none"
    )
    assert text_only.choices[0].message.content == expected_answer(make_settings(), [PROMPT])
    named = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    (call,) = named.choices[0].message.tool_calls or []
    assert (call.function.name, call.function.arguments) == ("get_time", "{}")


# --- reasoning ---------------------------------------------------------------------------


def test_reasoning_content_streams_the_thoughts_before_the_answer(client: openai.OpenAI) -> None:
    """`reasoning_effort`: `delta.reasoning_content` pieces make the simulated thoughts,
    all before the first content; usage counts the thinking tokens."""
    stream = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        reasoning_effort="low",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    kinds = [
        "reasoning" if getattr(d, "reasoning_content", None) else "content" if d.content else "end"
        for d in deltas
    ]
    assert kinds == ["reasoning"] * 3 + ["content"] * 5 + ["end"]
    thoughts = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    assert thoughts == "".join(thoughts_of(PROMPT))
    assert "".join(d.content or "" for d in deltas) == expected_answer(make_settings(), [PROMPT])
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == sum(
        (len(t) + 3) // 4 for t in thoughts_of(PROMPT)
    )


def test_stream_helper_and_one_piece_answers_carry_reasoning_content(
    client: openai.OpenAI,
) -> None:
    """The helper's final message and a `stream: false` message hold the whole thought
    summary in `reasoning_content`; `reasoning_effort: none` or none at all, no thoughts."""
    with client.chat.completions.stream(
        model=MODEL, messages=ASK, reasoning_effort="high"
    ) as stream:
        streamed = stream.get_final_completion().choices[0].message
    whole = client.chat.completions.create(model=MODEL, messages=ASK, reasoning_effort="high")
    for message in (streamed, whole.choices[0].message):
        assert getattr(message, "reasoning_content", None) == "".join(thoughts_of(PROMPT))
        assert message.content == expected_answer(make_settings(), [PROMPT])
    for effort in ("none", openai.omit):
        plain = client.chat.completions.create(model=MODEL, messages=ASK, reasoning_effort=effort)
        assert getattr(plain.choices[0].message, "reasoning_content", None) is None
        assert "reasoning_content" not in plain.choices[0].message.model_dump(exclude_none=True)


# --- citations ---------------------------------------------------------------------------


def expected_citations(server: RunningServer) -> list[dict[str, Any]]:
    """The native stream's sources as OpenAI's `url_citation`s, in the order of the text."""
    events = native(server, {"messages": ASK, "grounding": True})
    sources = [SourceEvent(**e.data) for e in events if e.event == "source"]
    assert len(sources) == 2
    cited = [
        {"url": s.url, "title": s.title, "start_index": c.start, "end_index": c.end}
        for s in sources
        for c in s.cited
    ]
    return sorted(cited, key=lambda c: (c["start_index"], c["end_index"]))


def test_web_search_citations_come_as_annotations_after_the_text(
    server: RunningServer, client: openai.OpenAI
) -> None:
    """`web_search_options`: one delta with every `url_citation` (url, title, indices into
    the text) after the last text and before the finish; the helper keeps them."""
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=ASK, web_search_options={}, stream=True
        )
    )
    *texts, cites, end = chunks
    content = "".join(c.choices[0].delta.content or "" for c in texts)
    assert content == expected_answer(make_settings(), [PROMPT])
    assert all(getattr(c.choices[0].delta, "annotations", None) is None for c in texts)
    annotations = getattr(cites.choices[0].delta, "annotations", None)
    assert [a["type"] for a in annotations] == ["url_citation"] * 3
    assert [a["url_citation"] for a in annotations] == expected_citations(server)
    # The indices are characters of the text (the simulated sources cite its first chunks).
    spans = [
        (a["url_citation"]["start_index"], a["url_citation"]["end_index"]) for a in annotations
    ]
    chunk = len(content) // 5
    assert spans == [(0, chunk), (chunk, 2 * chunk), (chunk, 2 * chunk)]
    assert cites.choices[0].delta.content is None
    assert end.choices[0].finish_reason == "stop"
    with client.chat.completions.stream(model=MODEL, messages=ASK, web_search_options={}) as stream:
        message = stream.get_final_completion().choices[0].message
    assert [a.url_citation.model_dump() for a in message.annotations or []] == (
        expected_citations(server)
    )


def test_one_piece_answers_carry_annotations_tool_calls_and_reasoning_together(
    server: RunningServer, client: openai.OpenAI
) -> None:
    """`stream: false`: `annotations` (typed by the SDK), `reasoning_content`, and with
    tools `tool_calls` with content null and finish_reason `tool_calls`."""
    grounded = client.chat.completions.create(
        model=MODEL, messages=ASK, web_search_options={}, reasoning_effort="medium"
    )
    message = grounded.choices[0].message
    assert [a.url_citation.model_dump() for a in message.annotations or []] == (
        expected_citations(server)
    )
    assert getattr(message, "reasoning_content", None) == "".join(thoughts_of(PROMPT))
    assert grounded.choices[0].finish_reason == "stop"
    calling = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS)
    (choice,) = calling.choices
    assert (choice.finish_reason, choice.message.content, choice.message.annotations) == (
        "tool_calls",
        None,
        [],
    )
    (call,) = choice.message.tool_calls or []
    assert (call.id, call.function.arguments) == (called(server).call_id, ARGUMENTS)


# --- media -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "ours"),
    [
        ({"type": "image_url", "image_url": {"url": PNG, "detail": "low"}}, {"url": PNG}),
        (
            {"type": "file", "file": {"file_data": PDF, "filename": "report.pdf"}},
            {"type": "file", "url": f"data:application/pdf;base64,{PDF}"},
        ),
        (
            {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}"}},
            {"type": "file", "url": f"data:application/pdf;base64,{PDF}"},
        ),
        (
            {"type": "input_audio", "input_audio": {"data": WAV, "format": "wav"}},
            {"type": "file", "url": f"data:audio/wav;base64,{WAV}"},
        ),
    ],
    ids=["image_url", "file_base64", "file_data_url", "input_audio"],
)
def test_media_parts_reach_the_model_as_the_native_parts_do(
    server: RunningServer, client: openai.OpenAI, part: dict[str, Any], ours: dict[str, Any]
) -> None:
    """An image, a file (data URL or base64 named by `filename`) or audio: the same answer
    as `/v1/stream` gives for the same bytes."""
    text_part = {"type": "text", "text": "What is this?"}
    messages: Any = [{"role": "user", "content": [text_part, part]}]
    completion = client.chat.completions.create(model=MODEL, messages=messages)
    media = {"type": "image", **ours}
    reference = native(server, {"messages": [{"role": "user", "content": [text_part, media]}]})
    assert completion.choices[0].message.content == text(reference)
    # The media changed the answer: the model read it.
    assert text(reference) != expected_answer(make_settings(), ["What is this?"])


def test_bad_media_is_refused_in_openais_shape_before_the_model(
    serve: Callable[..., RunningServer],
) -> None:
    """Bad base64 is a 400 `invalid_request`, an image over `max_media_bytes` a 413
    `payload_too_large`, both as OpenAI's error body; the model is never called."""
    server = serve(max_media_bytes=32)
    broken = PNG[: PNG.index(",") + 1] + "not base64!"
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        for url, error, status, code in (
            (broken, openai.BadRequestError, 400, "invalid_request"),
            (PNG, openai.APIStatusError, 413, "payload_too_large"),
        ):
            image: Any = {"type": "image_url", "image_url": {"url": url}}
            with pytest.raises(error) as caught:
                client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": [image]}], stream=True
                )
            assert caught.value.status_code == status
            assert caught.value.code == code
            assert caught.value.type == "invalid_request_error"
            body = caught.value.body
            assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}
    assert stats_of(server).started == 0


# --- refusals and translation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"tools": [{"type": "custom", "custom": {"name": "f"}}]}, "tools[0].type"),
        (
            {"tool_choice": {"type": "allowed_tools", "allowed_tools": {}}, "tools": TOOLS},
            "tool_choice",
        ),
        ({"reasoning_effort": "xhigh"}, "reasoning_effort"),
        (
            {"web_search_options": {"user_location": {"type": "approximate"}}},
            "web_search_options.user_location",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "file", "file": {"file_id": "file-abc"}}],
                    }
                ]
            },
            "messages[0].content[0].file.file_id",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "file", "file": {"file_data": PDF}}]}
                ]
            },
            "messages[0].content[0].file.filename",
        ),
        (
            {
                "messages": [
                    {
                        "role": "system",
                        "content": [{"type": "image_url", "image_url": {"url": PNG}}],
                    },
                    *ASK,
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {"messages": [*ASK, {"role": "function", "name": "f", "content": "1"}]},
            "messages[1].role",
        ),
        (
            {
                "messages": [
                    *ASK,
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "[1]"},
                            }
                        ],
                    },
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
    ],
)
def test_what_cannot_be_served_is_refused_by_name(
    server: RunningServer, client: openai.OpenAI, options: dict[str, Any], param: str
) -> None:
    """Tool types, strict schemas, tool choices, locations, uploaded files and parts the
    gateway cannot serve are 400s naming the parameter; the model is never called."""
    request: dict[str, Any] = {"model": MODEL, "messages": ASK, **options}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**request)
    assert (caught.value.code, caught.value.param) == ("invalid_request", param)
    assert stats_of(server).started == 0


def test_requests_translate_to_the_gateways_own() -> None:
    """Calls (with Gemini's thought signature), results, media, tools, a named choice,
    reasoning effort and web search become `StreamRequest`'s fields."""
    body = {
        "model": MODEL,
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Hi"},
                    {"type": "image_url", "image_url": {"url": PNG}},
                ],
            },
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                        "extra_content": {"google": {"thought_signature": "c2ln"}},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "Sunny."}]},
        ],
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "reasoning_effort": "minimal",
        "web_search_options": {"search_context_size": "low"},
    }
    ours = ChatCompletionRequest.model_validate(body).to_stream_request()
    assert ours.model_dump(exclude_none=True, include={"messages", "tools", "tool_choice"}) == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hi"}, {"type": "image", "url": PNG}],
            },
            {
                "role": "assistant",
                "tool_calls": [
                    {"call_id": "c1", "name": "get_weather", "arguments": "{}", "signature": "c2ln"}
                ],
            },
            {"role": "tool", "content": "Sunny.", "tool_call_id": "c1"},
        ],
        "tools": [
            {"name": "get_weather", "description": "The weather in a city.", "parameters": WEATHER}
        ],
        "tool_choice": {"name": "get_weather"},
    }
    assert ours.thinking is not None
    assert (ours.thinking.level, ours.thinking.include_thoughts) == ("minimal", True)
    assert ours.grounding is True
    # `tool_choice: none` without tools asks for nothing, as before tools were served.
    plain = ChatCompletionRequest.model_validate(
        {"model": MODEL, "messages": ASK, "tool_choice": "none"}
    ).to_stream_request()
    assert (plain.tool_choice, plain.thinking, plain.grounding) == (None, None, None)


def test_whole_calls_add_only_what_their_pieces_did_not_say() -> None:
    """A call already streamed in pieces adds its thought signature as `extra_content`
    (nothing without one); a call that came with no pieces is sent whole."""
    encoder = ChunkEncoder("chatcmpl-x", 7, MODEL, include_usage=False)

    def delta(event: Any) -> Any:
        data = encoder.encode(event)
        return json.loads(data[6:])["choices"][0]["delta"] if data else None

    piece = ToolCallDeltaEvent(index=0, call_id="c0", name="f", arguments='{"a":')
    assert delta(piece) == {
        "role": "assistant",
        "tool_calls": [
            {
                "index": 0,
                "id": "c0",
                "type": "function",
                "function": {"name": "f", "arguments": '{"a":'},
            }
        ],
    }
    assert delta(ToolCallDeltaEvent(index=0, arguments="1}")) == {
        "tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]
    }
    assert delta(ToolCallEvent(index=0, call_id="c0", name="f", arguments='{"a":1}')) is None
    signed = ToolCallEvent(index=0, call_id="c0", name="f", arguments='{"a":1}', signature="c2ln")
    assert delta(signed) == {
        "tool_calls": [{"index": 0, "extra_content": {"google": {"thought_signature": "c2ln"}}}]
    }
    assert delta(ToolCallEvent(index=1, call_id="c1", name="g", arguments="{}")) == {
        "tool_calls": [
            {
                "index": 1,
                "id": "c1",
                "type": "function",
                "function": {"name": "g", "arguments": "{}"},
            }
        ]
    }
    done = DoneEvent(finish_reason="tool_calls", model=MODEL, chunks=0, duration_ms=1.0)
    assert b'"finish_reason":"tool_calls"' in encoder.encode(done)


# --- the `openai` provider against an OpenAI-compatible server ---------------------------


@pytest.fixture
def emulator(openai_emulator: OpenAIHttpEmulator) -> OpenAIHttpEmulator:
    return openai_emulator


@pytest.fixture
def upstream(
    serve: Callable[..., RunningServer], emulator: OpenAIHttpEmulator
) -> Callable[[Script], RunningServer]:
    """A gateway with the `openai` provider in front of the emulator, playing `script`."""

    def start(script: Script) -> RunningServer:
        emulator.reset(script)
        return serve(
            provider="openai", openai_base_url=emulator.base_url, openai_api_key=emulator.api_key
        )

    return start


def test_a_call_streamed_in_pieces_upstream_is_one_tool_call_event(
    upstream: Callable[[Script], RunningServer], emulator: OpenAIHttpEmulator
) -> None:
    """ChatOpenAI's pieces of call 0 are `tool_call_delta`s (id and name on the first),
    then one `tool_call` with the joined arguments, then `done` with `tool_calls`; the
    server got the tools and the choice in OpenAI's format."""
    server = upstream(Script(scenario="tool_call"))
    tools = [{"name": "get_weather", "description": "The weather.", "parameters": WEATHER}]
    events = native(
        server, {"message": PROMPT, "tools": tools, "tool_choice": {"name": "get_weather"}}
    )
    pieces = -(-len(TOOL_ARGUMENTS) // 8)  # the emulator's pieces of 8 characters
    assert names(events) == ["tool_call_delta"] * (1 + pieces) + ["tool_call", "done"]
    deltas = [ToolCallDeltaEvent(**e.data) for e in events if e.event == "tool_call_delta"]
    assert {d.index for d in deltas} == {0}
    assert (deltas[0].call_id, deltas[0].name) == (TOOL_CALL_ID, TOOL_CALL["name"])
    assert all(d.call_id is None and d.name is None for d in deltas[1:])
    call = ToolCallEvent(**events[-2].data)
    assert (call.index, call.call_id, call.name) == (0, TOOL_CALL_ID, "get_weather")
    assert call.arguments == "".join(d.arguments for d in deltas) == TOOL_ARGUMENTS
    assert events[-1].data["finish_reason"] == "tool_calls"
    (seen,) = emulator.record.seen
    assert seen.body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather.",
                "parameters": WEATHER,
            },
        }
    ]
    assert seen.body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_the_sdk_gets_the_upstream_call_through_the_gateway(
    upstream: Callable[[Script], RunningServer],
) -> None:
    """OpenAI SDK -> gateway -> ChatOpenAI -> server and back: the server's call, whole."""
    server = upstream(Script(scenario="tool_call"))
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        with client.chat.completions.stream(model=MODEL, messages=ASK, tools=TOOLS) as stream:
            completion = stream.get_final_completion()
    (choice,) = completion.choices
    (call,) = choice.message.tool_calls or []
    assert (call.id, call.function.name, call.function.arguments) == (
        TOOL_CALL_ID,
        "get_weather",
        TOOL_ARGUMENTS,
    )
    assert choice.finish_reason == "tool_calls"


def test_history_with_calls_and_results_reaches_the_server_in_openais_format(
    upstream: Callable[[Script], RunningServer], emulator: OpenAIHttpEmulator
) -> None:
    """An assistant turn's calls go as `tool_calls` (content null), a result as a `tool`
    message with its call's id; the answer streams back as text."""
    server = upstream(Script())
    history = [
        {"role": "user", "content": PROMPT},
        {
            "role": "assistant",
            "tool_calls": [{"call_id": "c1", "name": "get_weather", "arguments": '{"city":"Z"}'}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "Sunny."},
    ]
    events = native(server, {"messages": history, "tools": [{"name": "get_weather"}]})
    assert text(events) == "".join(ANSWER)
    (seen,) = emulator.record.seen
    assert seen.body["messages"] == [
        {"content": PROMPT, "role": "user"},
        {
            "content": None,
            "role": "assistant",
            "tool_calls": [
                {
                    "type": "function",
                    "id": "c1",
                    "function": {"name": "get_weather", "arguments": '{"city": "Z"}'},
                }
            ],
        },
        {"content": "Sunny.", "role": "tool", "tool_call_id": "c1"},
    ]


def test_thinking_is_reasoning_effort_and_upstream_thoughts_are_reasoning(
    upstream: Callable[[Script], RunningServer], emulator: OpenAIHttpEmulator
) -> None:
    """`thinking.level` is sent as `reasoning_effort`; the server's `reasoning_content`
    deltas come back as `reasoning` events before the answer, its reasoning tokens in usage."""
    server = upstream(Script(scenario="thinking"))
    events = native(server, {"message": PROMPT, "thinking": {"level": "low"}})
    assert names(events) == ["reasoning"] * len(THOUGHTS) + ["token"] * len(ANSWER) + ["done"]
    assert [e.data["text"] for e in events[: len(THOUGHTS)]] == list(THOUGHTS)
    assert text(events) == "".join(ANSWER)
    assert events[-1].data["usage"]["reasoning_tokens"] == THOUGHT_TOKENS
    assert emulator.record.seen[0].body["reasoning_effort"] == "low"


@pytest.mark.parametrize(
    ("thinking", "effort"),
    [
        (None, None),
        ({"level": "minimal"}, "minimal"),
        ({"level": "high", "budget": 0}, "high"),
        ({"budget": 0}, "none"),
        ({"budget": -1}, None),
        ({"budget": 1024}, "low"),
        ({"budget": 2048}, "medium"),
        ({"budget": 2049}, "high"),
    ],
)
def test_thinking_options_as_reasoning_effort(
    thinking: dict[str, Any] | None, effort: str | None
) -> None:
    """A level is the effort; a budget of 0 is `none`, -1 the default, others by size."""
    options = None if thinking is None else ThinkingOptions(**thinking)
    assert reasoning_effort(options) == effort


def test_media_goes_inline_and_a_file_by_url_is_refused(
    upstream: Callable[[Script], RunningServer], emulator: OpenAIHttpEmulator
) -> None:
    """An image goes as an `image_url` data URL, a file as a named `file` with its data;
    a file by URL (which chat completions cannot take) is a 422, without an upstream call."""
    server = upstream(Script())
    pdf = f"data:application/pdf;base64,{PDF}"
    content = [
        {"type": "text", "text": "Compare."},
        {"type": "image", "url": PNG},
        {"type": "file", "url": pdf},
    ]
    events = native(server, {"messages": [{"role": "user", "content": content}]})
    assert text(events) == "".join(ANSWER)
    (seen,) = emulator.record.seen
    assert seen.body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare."},
                {"type": "image_url", "image_url": {"url": PNG}},
                {"type": "file", "file": {"file_data": pdf, "filename": "file.pdf"}},
            ],
        }
    ]
    by_url = [
        {"type": "text", "text": "Read this."},
        {"type": "file", "url": "https://x.test/a.pdf"},
    ]
    refused = httpx.post(
        f"{server.url}/v1/stream", json={"messages": [{"role": "user", "content": by_url}]}
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_request"
    assert len(emulator.record.seen) == 1


def test_grounding_is_refused_without_an_upstream_call(
    upstream: Callable[[Script], RunningServer], emulator: OpenAIHttpEmulator
) -> None:
    """Google Search is Gemini's: `grounding` through the `openai` provider is a 422
    `invalid_request` before any stream, and the server is never asked."""
    server = upstream(Script())
    refused = httpx.post(f"{server.url}/v1/stream", json={"message": PROMPT, "grounding": True})
    assert refused.status_code == 422
    assert "Gemini" in refused.json()["error"]["message"]
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model=MODEL, messages=ASK, web_search_options={})
    assert caught.value.code == "invalid_request"
    assert emulator.record.seen == []
