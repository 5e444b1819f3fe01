"""Rich answers on OpenAI's Responses API (`/v1/responses`): reasoning summaries, function
calls and their results, web search citations and image input, driven by the official
`openai` SDK against a real uvicorn on 127.0.0.1 serving the simulated model."""

from __future__ import annotations

import base64
import json
from typing import Any

import openai
import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from gemini_sse._models import (
    Citation,
    DoneEvent,
    ErrorCode,
    ErrorEvent,
    NamedToolChoice,
    ReasoningEvent,
    SourceEvent,
    ThinkingOptions,
    ToolCall,
    ToolCallDeltaEvent,
    ToolCallEvent,
)
from gemini_sse.server.openai.responses import ResponseEncoder, state_of
from gemini_sse.server.openai.responses_models import ResponseObject, ResponseRequest
from gemini_sse.server.pipeline import PipelineEvent
from gemini_sse.server.providers.simulated import (
    simulated_answer,
    simulated_arguments,
    simulated_thoughts,
)

from .openai_sdk import simulate, stats_of
from .servers import RunningServer
from .sse import parse

MODEL = "gemini-2.5-flash"
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
    "strict": False,
}
TIME: Any = {"type": "function", "name": "get_time", "parameters": None, "strict": None}
SEARCH: Any = {"type": "web_search"}
FUNCTION = {"type": "function"}
CALL_ITEM = {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}
IMAGE_PART = {"type": "input_image", "image_url": "https://x.test/a.png"}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64)).decode()

CREATED = ["response.created", "response.in_progress"]
REASONING = [
    "response.output_item.added",
    "response.reasoning_summary_part.added",
    *["response.reasoning_summary_text.delta"] * 3,
    "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done",
    "response.output_item.done",
]
MESSAGE_OPEN = ["response.output_item.added", "response.content_part.added"]
MESSAGE_DONE = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]
CALL = [
    "response.output_item.added",
    *["response.function_call_arguments.delta"] * 2,
    "response.function_call_arguments.done",
    "response.output_item.done",
]
STREAM_EVENT = TypeAdapter[Any](ResponseStreamEvent)


def answer(prompt: str) -> str:
    return "".join(simulated_answer(prompt, 5, 12))


def types_of(events: list[Any]) -> list[str]:
    return [e.type for e in events]


def streamed(client: openai.OpenAI, **request: Any) -> tuple[list[Any], Any]:
    """Every event of `responses.stream(**request)`, and its final response."""
    with client.responses.stream(model=MODEL, **request) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    return events, final


def without_ids(response: Any) -> list[dict[str, Any]]:
    return [item.model_dump(exclude={"id"}) for item in response.output]


# --- reasoning ----------------------------------------------------------------------------


def test_reasoning_summary_is_a_reasoning_item_before_the_message(client: openai.OpenAI) -> None:
    """`reasoning.summary`: a `reasoning` item (index 0) with the thoughts, then the message."""
    events, final = streamed(client, input="Why?", reasoning={"effort": "low", "summary": "auto"})
    deltas = ["response.output_text.delta"] * 5
    assert types_of(events) == [
        *CREATED, *REASONING, *MESSAGE_OPEN, *deltas, *MESSAGE_DONE, "response.completed",
    ]  # fmt: skip
    thoughts = simulated_thoughts("Why?")
    summary_deltas = [e for e in events if e.type == "response.reasoning_summary_text.delta"]
    assert [e.delta for e in summary_deltas] == thoughts
    assert {(e.output_index, e.summary_index) for e in summary_deltas} == {(0, 0)}
    assert {e.output_index for e in events if e.type == "response.output_text.delta"} == {1}
    reasoning, message = final.output
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_")
    assert [(s.type, s.text) for s in reasoning.summary] == [("summary_text", "".join(thoughts))]
    assert reasoning.status == "completed"
    assert message.type == "message" and final.output_text == answer("Why?")
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens > 0
    assert (final.reasoning.effort, final.reasoning.summary) == ("low", "auto")


def test_reasoning_without_a_summary_or_with_effort_none_shows_no_thoughts(
    client: openai.OpenAI,
) -> None:
    """Only a requested summary is streamed; `effort: none` turns thinking off."""
    reasonings: list[Any] = [{"effort": "high"}, {"effort": "none", "summary": "detailed"}]
    for reasoning in reasonings:
        response = client.responses.create(model=MODEL, input="Why?", reasoning=reasoning)
        assert [item.type for item in response.output] == ["message"]
        assert response.output_text == answer("Why?")


# --- function calls -----------------------------------------------------------------------


def test_function_call_streams_as_a_function_call_item(client: openai.OpenAI) -> None:
    """A call: item added with call_id and name, its arguments in pieces, then done."""
    events, final = streamed(client, input="Weather in Bern?", tools=[WEATHER])
    assert types_of(events) == [*CREATED, *CALL, "response.completed"]
    (call,) = final.output
    arguments = json.dumps(
        simulated_arguments(WEATHER["parameters"], "Weather in Bern?"), ensure_ascii=False
    )
    assert (call.type, call.name, call.arguments, call.status) == (
        "function_call", "get_weather", arguments, "completed",
    )  # fmt: skip
    assert call.call_id.startswith("call_") and call.id is not None and call.id.startswith("fc_")
    added = events[2]
    assert added.type == "response.output_item.added" and added.item.type == "function_call"
    assert (added.item.call_id, added.item.name, added.item.arguments) == (
        call.call_id, "get_weather", "",
    )  # fmt: skip
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert "".join(pieces) == arguments and len(pieces) == 2
    assert events[-3].type == "response.function_call_arguments.done"
    assert events[-3].arguments == arguments
    assert final.status == "completed" and final.output_text == ""
    assert final.tools[0].type == "function" and final.tool_choice == "auto"


def test_function_call_output_follow_up_is_answered_with_text(client: openai.OpenAI) -> None:
    """The SDK's loop: replay `response.output`, add the call's output; the model answers."""
    prompt = "Weather in Bern?"
    first = client.responses.create(model=MODEL, input=prompt, tools=[WEATHER])
    (call,) = first.output
    assert call.type == "function_call"
    follow_up: Any = [
        {"role": "user", "content": prompt},
        *first.output,
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"},
    ]
    # Stateless loops ask for encrypted reasoning: accepted, Gemini's state rides the calls.
    include: Any = ["reasoning.encrypted_content"]
    events, final = streamed(client, input=follow_up, tools=[WEATHER], include=include)
    deltas = ["response.output_text.delta"] * 5
    assert types_of(events) == [
        *CREATED,
        *MESSAGE_OPEN,
        *deltas,
        *MESSAGE_DONE,
        "response.completed",
    ]
    # The model read the question, its own (textless) call, and the call's output.
    assert final.output_text == answer(f"{prompt}\n\nSunny, 21 C")


@pytest.mark.parametrize(
    ("tool_choice", "called"),
    [
        ("none", None),
        ("required", "get_weather"),
        ({"type": "function", "name": "get_time"}, "get_time"),
    ],
)
def test_tool_choice_decides_whether_and_which_function_is_called(
    client: openai.OpenAI, tool_choice: Any, called: str | None
) -> None:
    """`none` answers in text; `required` calls; a named function is the one called."""
    response = client.responses.create(
        model=MODEL, input="Weather?", tools=[WEATHER, TIME], tool_choice=tool_choice
    )
    calls = [item.name for item in response.output if item.type == "function_call"]
    assert calls == ([] if called is None else [called])
    echoed = response.tool_choice
    assert (
        echoed if isinstance(echoed, str) else echoed.model_dump(exclude_none=True)
    ) == tool_choice


# --- web search ---------------------------------------------------------------------------


def test_web_search_sources_are_url_citations_of_the_text(client: openai.OpenAI) -> None:
    """`web_search`: Gemini's grounding; each cited span is a `url_citation` on the text."""
    events, final = streamed(client, input="Cafés?", tools=[SEARCH])
    deltas = ["response.output_text.delta"] * 5
    added = ["response.output_text.annotation.added"] * 3
    assert types_of(events) == [
        *CREATED, *MESSAGE_OPEN, *deltas, *added, *MESSAGE_DONE, "response.completed",
    ]  # fmt: skip
    chunks = simulated_answer("Cafés?", 5, 12)
    (message,) = final.output
    annotations = message.content[0].annotations
    spans = [(a.url, a.start_index, a.end_index) for a in annotations]
    first, second = sorted({a.url for a in annotations}, key=[a.url for a in annotations].index)
    assert spans == [(first, 0, 12), (first, 12, 24), (second, 12, 24)]
    for a in annotations:
        assert a.type == "url_citation" and a.url.startswith("https://example.org/")
        assert a.title == "About " + a.url.rsplit("/", 1)[1]
    assert final.output_text[12:24] == chunks[1]
    streamed_annotations = [e for e in events if e.type == "response.output_text.annotation.added"]
    assert [e.annotation_index for e in streamed_annotations] == [0, 1, 2]
    assert [e.annotation.model_dump() for e in streamed_annotations] == [
        a.model_dump() for a in annotations
    ]


@pytest.mark.parametrize(
    "options",
    [
        {"input": "Why?", "reasoning": {"summary": "concise"}},
        {"input": "Weather in Bern?", "tools": [WEATHER]},
        {"input": "Cafés?", "tools": [SEARCH], "reasoning": {"summary": "auto"}},
    ],
    ids=["reasoning", "function_call", "citations"],
)
def test_create_has_the_same_output_items_as_the_stream(
    client: openai.OpenAI, options: dict[str, Any]
) -> None:
    """`stream: false` answers the output items the stream's final response has."""
    with client.responses.create(model=MODEL, stream=True, **options) as stream:
        *_, completed = stream
    assert completed.type == "response.completed"
    final = completed.response
    response = client.responses.create(model=MODEL, **options)
    assert response.status == final.status == "completed"
    assert without_ids(response) == without_ids(final)
    assert response.usage == final.usage


# --- images and files ---------------------------------------------------------------------


def test_an_image_data_url_and_a_file_reach_the_model(client: openai.OpenAI) -> None:
    """`input_image` and `input_file` data: the model reads them beside the text."""
    pdf = base64.b64encode(b"%PDF-1.4 tiny").decode()
    content: Any = [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "auto"},
        {"type": "input_file", "file_data": pdf, "filename": "a.pdf"},
    ]
    response = client.responses.create(model=MODEL, input=[{"role": "user", "content": content}])
    prompt = (
        f"What is this?\n[image image/png: {len(PNG) * 3 // 4} bytes]"
        f"\n[file application/pdf: {len(pdf) * 3 // 4} bytes]"
    )
    assert response.output_text == answer(prompt)


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "input_image", "image_url": "data:image/png;base64,@@@"}, None),
        ({"type": "input_image", "image_url": "ftp://x.test/a.png"}, None),
        ({"type": "input_image", "file_id": "file_1"}, "input[0].content[1]"),
        ({"type": "input_file", "file_data": "AAAA"}, "input[0].content[1]"),
        ({"type": "input_audio", "input_audio": {"data": "AAAA"}}, "input[0].content[1]"),
    ],
)
def test_a_bad_image_or_file_is_refused_before_the_model(
    server: RunningServer, client: openai.OpenAI, part: dict[str, Any], param: str | None
) -> None:
    """Bad base64, a scheme not served, uploads, untyped data, audio: a 400, no model call."""
    content = [{"type": "input_text", "text": "What is this?"}, part]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input=[{"role": "user", "content": content}])  # type: ignore[misc,list-item]
    assert (caught.value.code, caught.value.param) == ("invalid_request", param)
    assert stats_of(server).started == 0


# --- what is refused ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "param"),
    [
        # (Other hosted tools, `reasoning.mode` and an answer to no call: test_responses_api.)
        ({"tools": [{**WEATHER, "name": "get weather"}]}, "tools[0].name"),
        ({"tools": [{**SEARCH, "filters": {"allowed_domains": ["a.org"]}}]}, "tools[0].filters"),
        ({"tools": [SEARCH], "tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
        ({"tools": [SEARCH], "tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {**FUNCTION, "name": "no"}}, "tool_choice.name"),
        ({"tools": [WEATHER], "parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"input": [{**CALL_ITEM, "arguments": "[1]"}]}, "input[0].arguments"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
        ({"input": [{"role": "assistant", "content": [IMAGE_PART]}]}, "input[0].content[0]"),
    ],
)  # fmt: skip
def test_what_cannot_be_honoured_is_still_a_bad_request(
    server: RunningServer, client: openai.OpenAI, options: dict[str, Any], param: str
) -> None:
    """Hosted tools, domain filters, unknown calls, media from the assistant: a 400 naming it."""
    request: dict[str, Any] = {"model": MODEL, "input": "hi", **options}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(**request)
    assert (caught.value.code, caught.value.param) == ("invalid_request", param)
    assert stats_of(server).started == 0


def test_request_becomes_the_gateways_own() -> None:
    """Tools, choice, reasoning and the call loop map onto `StreamRequest` field by field."""
    body = ResponseRequest.model_validate(
        {
            "model": MODEL,
            "instructions": "Be brief.",
            "input": [
                {"role": "developer", "content": "Use tools."},
                {"role": "user", "content": "Weather?"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"role": "assistant", "content": [{"type": "output_text", "text": "Let me look."}]},
                {**CALL_ITEM, "call_id": "c1", "name": "get_weather",
                 "extra_content": {"google": {"thought_signature": "c2ln"}}},
                {**CALL_ITEM, "call_id": "c2", "name": "get_time", "arguments": ""},
                {"type": "function_call_output", "call_id": "c1",
                 "output": [{"type": "input_text", "text": "Sunny"}]},
                {"type": "function_call_output", "call_id": "c2", "output": "noon"},
            ],
            "tools": [WEATHER, TIME, SEARCH],
            "tool_choice": {"type": "function", "name": "get_time"},
            "reasoning": {"effort": "xhigh", "generate_summary": "auto"},
        }
    )  # fmt: skip
    assert body.refusal() is None
    native = body.to_stream_request()
    assert [(m.role, m.text) for m in native.conversation()] == [
        ("system", "Be brief."), ("system", "Use tools."), ("user", "Weather?"),
        ("assistant", "Let me look."), ("tool", "Sunny"), ("tool", "noon"),
    ]  # fmt: skip
    assert native.conversation()[3].tool_calls == [
        ToolCall(call_id="c1", name="get_weather", arguments="{}", signature="c2ln"),
        ToolCall(call_id="c2", name="get_time", arguments="{}"),
    ]
    assert [t.name for t in native.tools or ()] == ["get_weather", "get_time"]
    assert native.tool_choice == NamedToolChoice(name="get_time")
    assert native.grounding is True
    assert native.thinking == ThinkingOptions(level="high", include_thoughts=True)


# --- the encoder --------------------------------------------------------------------------


def head() -> ResponseObject:
    return ResponseObject(
        id="resp_x", created_at=1, status="in_progress", background=False, model=MODEL, output=[],
        store=False,
    )  # fmt: skip


def test_encoder_keeps_items_sequential_when_kinds_interleave() -> None:
    """Text, thoughts, text, a call, a source: four items one after another, SDK-typed."""
    # The late source annotates the finished text in the final response only, and the
    # call's thought signature rides in `extra_content`.
    encoder = ResponseEncoder(head(), item_id="msg_x")
    done = DoneEvent(finish_reason="tool_calls", model=MODEL, chunks=3, duration_ms=1.0)
    wire = b"".join(
        encoder.encode(event)
        for event in (
            "Hello ",
            ReasoningEvent(text="Hmm."),
            "world",
            ToolCallDeltaEvent(index=0, call_id="c1", name="f", arguments='{"a":'),
            ToolCallEvent(index=0, call_id="c1", name="f", arguments='{"a": 1}', signature="c2ln"),
            SourceEvent(index=0, url="https://a.org", cited=[Citation(start=6, end=11)]),
            done,
        )
    )
    events = parse(wire)
    for event in events:
        STREAM_EVENT.validate_python(event.data)
    opened = [
        (e.data["output_index"], e.data["item"]["type"])
        for e in events
        if e.event == "response.output_item.added"
    ]
    closed = [e.data["output_index"] for e in events if e.event == "response.output_item.done"]
    assert opened == [(0, "message"), (1, "reasoning"), (2, "message"), (3, "function_call")]
    assert closed == [0, 1, 2, 3]
    kinds = [e.event for e in events]
    for index in range(4):  # nothing of an item before it is added or after it is done
        mine = [i for i, e in enumerate(events) if e.data.get("output_index") == index]
        assert kinds[mine[0]] == "response.output_item.added"
        assert kinds[mine[-1]] == "response.output_item.done"
        assert mine == list(range(mine[0], mine[-1] + 1))
    assert "response.output_text.annotation.added" not in kinds
    final = events[-1].data["response"]
    assert [item["id"] for item in final["output"]] == ["msg_x", "rs_x_1", "msg_x_2", "fc_x_3"]
    assert final["output"][2]["content"][0]["annotations"] == [
        {"type": "url_citation", "url": "https://a.org", "title": "https://a.org",
         "start_index": 0, "end_index": 5},
    ]  # fmt: skip
    assert final["output"][3]["extra_content"] == {"google": {"thought_signature": "c2ln"}}
    assert final["output"][3]["arguments"] == '{"a": 1}'
    assert [e.data["delta"] for e in events if e.event.endswith("arguments.delta")] == ['{"a":']


def test_stored_events_read_back_into_the_response_at_every_point() -> None:
    """`state_of` any prefix of a stream: the items so far, the open one with its deltas."""
    encoder = ResponseEncoder(head(), item_id="msg_x")
    stream: list[PipelineEvent] = [
        ReasoningEvent(text="Think "),
        ReasoningEvent(text="more."),
        "Hi ",
        "there",
        SourceEvent(index=0, url="https://a.org", title="A", cited=[Citation(start=0, end=2)]),
        ToolCallDeltaEvent(index=0, call_id="c1", name="f", arguments="{"),
        ToolCallDeltaEvent(index=0, arguments="}"),
        ErrorEvent(code=ErrorCode.CONTENT_BLOCKED, message="withheld"),
    ]
    stored: list[bytes] = []
    seen: list[tuple[str, ...]] = []
    for event in stream:
        for message in encoder.messages(event):
            stored.append(message)
            state = state_of(stored)
            assert state is not None
            seen.append(tuple(_summary(item) for item in state.model_dump()["output"]))
    assert seen[-1] == ("reasoning:completed:Think more.", "message:completed:Hi there:1",
                        "function_call:incomplete:{}")  # fmt: skip
    assert ("reasoning:in_progress:Think ",) in seen
    assert ("reasoning:completed:Think more.", "message:in_progress:Hi there:1") in seen
    assert seen[-4][-1] == "function_call:in_progress:{}"  # before its done, then the end
    final = state_of(stored)
    assert final is not None and final.status == "incomplete"
    assert final.incomplete_details is not None
    assert final.incomplete_details.reason == "content_filter"


def _summary(item: dict[str, Any]) -> str:
    if item["type"] == "reasoning":
        text = "".join(part["text"] for part in item["summary"])
    elif item["type"] == "message":
        part = item["content"][0] if item["content"] else {"text": "", "annotations": []}
        text = f"{part['text']}:{len(part['annotations'])}"
    else:
        text = item["arguments"]
    return f"{item['type']}:{item['status']}:{text}"


# --- background responses -----------------------------------------------------------------


def test_background_rich_response_resumes_after_any_event(client: openai.OpenAI) -> None:
    """Reasoning, text and citations stored: resumed after a thought, no gaps, same output."""
    created = client.responses.create(
        model=MODEL,
        input="Cafés?",
        background=True,
        tools=[SEARCH],
        reasoning={"summary": "auto"},
        **simulate(delay_ms=20),
    )
    first: list[ResponseStreamEvent] = []
    with client.responses.retrieve(created.id, stream=True) as stream:
        for event in stream:
            first.append(event)
            if event.type == "response.reasoning_summary_text.delta":
                break
    rest = list(
        client.responses.retrieve(created.id, stream=True, starting_after=first[-1].sequence_number)
    )
    events = first + rest
    assert [e.sequence_number for e in events] == list(range(len(events)))
    added = ["response.output_text.annotation.added"] * 3
    deltas = ["response.output_text.delta"] * 5
    assert types_of(events) == [
        *CREATED, *REASONING, *MESSAGE_OPEN, *deltas, *added, *MESSAGE_DONE, "response.completed",
    ]  # fmt: skip
    done = client.responses.retrieve(created.id)
    last = events[-1]
    assert last.type == "response.completed"
    assert done.output == last.response.output
    assert [item.type for item in done.output] == ["reasoning", "message"]
    assert len(done.output[1].content[0].annotations) == 3  # type: ignore[union-attr,index]
