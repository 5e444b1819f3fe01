"""OpenAI's Responses API (`/v1/responses`), driven by the official `openai` SDK, sync and
async, against a real uvicorn on 127.0.0.1 serving the simulated model."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import ResponseErrorEvent, ResponseStreamEvent

from gemini_sse._models import DoneEvent, ErrorCode, ErrorEvent, Usage
from gemini_sse.server.encoding import encode_sse
from gemini_sse.server.openai.responses import ResponseEncoder, state_of
from gemini_sse.server.openai.responses_models import ResponseObject
from gemini_sse.server.openai.responses_routes import _foreign_end
from gemini_sse.server.providers.simulated import expected_answer
from gemini_sse.server.store import Frame

from .conftest import make_settings
from .openai_sdk import simulate, stats_of
from .servers import RunningServer, wait_for
from .sse import parse

MODEL = "gemini-2.5-flash"
ANSWER = expected_answer(make_settings(), ["hi"])
OPENING = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
CLOSING = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def types_of(events: Iterable[Any]) -> list[str]:
    return [e.type for e in events]


# --- one response ------------------------------------------------------------------------------


def test_create_returns_a_completed_response_with_text_and_usage(client: openai.OpenAI) -> None:
    """`stream: false` answers one `response` object: one message, its text, the usage."""
    response = client.responses.create(model=MODEL, input="hi")
    assert response.id.startswith("resp_") and response.object == "response"
    assert (response.status, response.model, response.error) == ("completed", MODEL, None)
    (message,) = response.output
    assert message.type == "message" and message.id.startswith("msg_")
    assert (message.role, message.status) == ("assistant", "completed")
    (part,) = message.content
    assert part.type == "output_text" and part.annotations == []
    assert response.output_text == ANSWER
    usage = response.usage
    assert usage is not None and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0


def test_stream_helper_sees_every_event_in_order_and_the_whole_text(
    client: openai.OpenAI,
) -> None:
    """`responses.stream` validates the events; `get_final_response()` has the whole answer."""
    with client.responses.stream(model=MODEL, input="hi") as stream:
        events = list(stream)
        final = stream.get_final_response()
    deltas = ["response.output_text.delta"] * 5
    assert types_of(events) == [*OPENING, *deltas, *CLOSING, "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == ANSWER
    assert final.output_text == ANSWER and final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens > 0


def test_wire_names_each_event_by_its_type(server: RunningServer) -> None:
    """Every SSE `event:` equals its payload's `type`; text is escaped to ASCII."""
    body = {"model": MODEL, "input": "hi", "stream": True}
    raw = httpx.post(f"{server.url}/v1/responses", json=body)
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.content.isascii()
    events = parse(raw.content)
    assert all(e.event == e.data["type"] for e in events)
    assert events[-1].event == "response.completed"


@pytest.mark.anyio
async def test_async_client_creates_and_streams(server: RunningServer) -> None:
    """AsyncOpenAI: `create` and the stream helper work unchanged."""
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0
    ) as client:
        response = await client.responses.create(
            model=MODEL, input=[{"role": "user", "content": "hi"}]
        )
        async with client.responses.stream(model=MODEL, input="hi") as stream:
            events = [event async for event in stream]
            final = await stream.get_final_response()
    assert response.output_text == final.output_text == ANSWER
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(set(numbers)) and numbers[0] == 0


def test_instructions_and_message_items_reach_the_model(client: openai.OpenAI) -> None:
    """`instructions` is a system turn; items' text parts are joined by newlines."""
    items: Any = [
        {"role": "developer", "content": "Be brief."},
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}],
        },
    ]
    response = client.responses.create(model=MODEL, input=items, instructions="Hello.")
    assert response.output_text == expected_answer(make_settings(), ["Hello.", "Be brief.", "a\nb"])
    assert response.instructions == "Hello."


# --- failures ----------------------------------------------------------------------------------


def test_failure_mid_answer_ends_in_response_failed_with_our_code(client: openai.OpenAI) -> None:
    """A drop after three chunks: the deltas stand, then `response.failed`; no final response."""
    with client.responses.stream(
        model=MODEL, input="hi", **simulate(fault="drop", fail_after=3)
    ) as stream:
        events = list(stream)
        with pytest.raises(RuntimeError, match="response.completed"):
            stream.get_final_response()
    deltas = ["response.output_text.delta"] * 3
    assert types_of(events) == [*OPENING, *deltas, *CLOSING, "response.failed"]
    last = events[-1]
    assert last.type == "response.failed"
    assert last.response.status == "failed"
    assert last.response.error is not None
    assert last.response.error.code == "upstream_disconnected"  # type: ignore[comparison-overlap]
    assert last.response.output_text == ANSWER[:36] != ""
    response = client.responses.create(
        model=MODEL, input="hi", **simulate(fault="drop", fail_after=3)
    )
    assert response.status == "failed" and response.output_text == ANSWER[:36]


@pytest.mark.parametrize("stream", [True, False])
def test_rate_limit_before_any_text_is_the_sdks_rate_limit_error(
    client: openai.OpenAI, stream: bool
) -> None:
    """An upstream 429 before the first token is an HTTP 429 with Retry-After."""
    with pytest.raises(openai.RateLimitError) as caught:
        client.responses.create(
            model=MODEL, input="hi", stream=stream, **simulate(fault="rate_limit", fail_after=0)
        )
    assert caught.value.code == "rate_limited"
    assert caught.value.response.headers["retry-after"] == "2"


def test_encoder_ends_at_the_token_limit_with_response_incomplete() -> None:
    """A `length` finish is `response.incomplete` for `max_output_tokens`, the text kept."""
    head = ResponseObject(
        id="resp_x", created_at=1, status="in_progress", background=False, model=MODEL,
        output=[], store=False,
    )  # fmt: skip
    encoder = ResponseEncoder(head, item_id="msg_x")
    usage = Usage(input_tokens=1, output_tokens=2, total_tokens=3)
    done = DoneEvent(finish_reason="length", usage=usage, model=MODEL, chunks=1, duration_ms=1.0)
    wire = encoder.encode("caf\u00e9\u2028") + encoder.encode(done)
    events = parse(wire)
    assert [e.event for e in events] == [
        *OPENING, "response.output_text.delta", *CLOSING, "response.incomplete",
    ]  # fmt: skip
    final = events[-1].data["response"]
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["status"] == "incomplete"
    assert final["output"][0]["content"][0]["text"] == "caf\u00e9\u2028"
    assert final["usage"]["input_tokens_details"]["cached_tokens"] == 0
    assert wire.isascii()
    stored = [m + b"\n\n" for m in wire.split(b"\n\n") if m]
    restored = state_of(stored)
    assert restored is not None and restored.status == "incomplete"


def test_encoder_without_text_ends_with_failed_and_no_item() -> None:
    """An error before any text, once the stream is open, skips the item: created to failed."""
    head = ResponseObject(
        id="resp_x", created_at=1, status="queued", background=True, model=MODEL, output=[],
        store=True,
    )  # fmt: skip
    encoder = ResponseEncoder(head, item_id="msg_x")
    events = parse(encoder.encode(ErrorEvent(code=ErrorCode.TIMEOUT, message="late")))
    assert [(e.event, e.data["sequence_number"]) for e in events] == [
        ("response.created", 0), ("response.in_progress", 1), ("response.failed", 2),
    ]  # fmt: skip
    assert events[0].data["response"]["status"] == "queued"
    assert events[-1].data["response"]["error"] == {"code": "timeout", "message": "late"}


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0].type"),
        ({"reasoning": {"effort": "high", "mode": "pro"}}, "reasoning.mode"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"text": {"format": {"type": "json_object"}}}, "text.format"),
        (
            {
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "what is this?"},
                            {"type": "input_image", "file_id": "file_1"},
                        ],
                    }
                ]
            },
            "input[0].content[1]",
        ),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": "42"}]}, "input[0]"),
        ({"background": True, "store": False}, "store"),
        ({"extra_body": {"frobnicate": True}}, "frobnicate"),
        ({"max_output_tokens": 10**9}, "max_output_tokens"),
    ],
)
def test_what_cannot_be_honoured_is_a_bad_request(
    server: RunningServer, client: openai.OpenAI, options: dict[str, Any], param: str
) -> None:
    """Hosted tools, uploads, unknown fields: a 400 naming the field, no model call."""
    request: dict[str, Any] = {"model": MODEL, "input": "hi", **options}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(**request)
    assert (caught.value.code, caught.value.param) == ("invalid_request", param)
    assert stats_of(server).started == 0


# --- background responses ------------------------------------------------------------------------


def test_background_response_can_be_retrieved_and_resumed_without_gaps(
    server: RunningServer, client: openai.OpenAI
) -> None:
    """Leave after a few events, resume `starting_after` the last: every number once, in order."""
    created = client.responses.create(
        model=MODEL, input="hi", background=True, **simulate(chunks=8, delay_ms=40)
    )
    assert created.status == "queued" and created.background and created.output == []
    first: list[ResponseStreamEvent] = []
    with client.responses.retrieve(created.id, stream=True) as stream:
        for event in stream:
            first.append(event)
            if event.type == "response.output_text.delta":
                break
    assert client.responses.retrieve(created.id).status in ("in_progress", "completed")
    last_seen = first[-1].sequence_number
    rest = list(client.responses.retrieve(created.id, stream=True, starting_after=last_seen))
    numbers = [e.sequence_number for e in first + rest]
    assert numbers == list(range(len(numbers)))
    assert types_of(first + rest)[-1] == "response.completed"
    expected = expected_answer(make_settings(fake_chunks=8), ["hi"])
    done = client.responses.retrieve(created.id)
    assert (done.status, done.output_text) == ("completed", expected)
    # The SDK's helper replays from the start and skips what the caller has seen.
    with client.responses.stream(response_id=created.id, starting_after=last_seen) as again:
        assert [e.sequence_number for e in again] == numbers[last_seen + 1 :]
        assert again.get_final_response().output_text == expected


@pytest.mark.anyio
async def test_background_stream_true_follows_the_stored_events(server: RunningServer) -> None:
    """`background` with `stream`: the events as stored, and the response outlives the reader."""
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0
    ) as client:
        async with client.responses.stream(model=MODEL, input="hi", background=True) as stream:
            final = await stream.get_final_response()
        retrieved = await client.responses.retrieve(final.id)
    assert final.output_text == retrieved.output_text == ANSWER
    assert retrieved.status == "completed" and retrieved.background


def test_cancel_stops_the_model_and_the_response_ends_cancelled(
    server: RunningServer, client: openai.OpenAI
) -> None:
    """`cancel` interrupts the producer: the model is cancelled, the stream ends `cancelled`."""
    stats = stats_of(server)
    created = client.responses.create(
        model=MODEL, input="hi", background=True, **simulate(chunks=500, delay_ms=20)
    )
    with client.responses.retrieve(created.id, stream=True) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                break
    cancelled = client.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    assert cancelled.error is not None and cancelled.error.code == "cancelled"  # type: ignore[comparison-overlap]
    assert cancelled.output_text != ""
    assert wait_for(lambda: stats.cancelled == 1 and not server.gateway.live)
    assert stats.completed == 0
    events = list(client.responses.retrieve(created.id, stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.status == "cancelled"
    assert client.responses.retrieve(created.id).status == "cancelled"


def test_unknown_and_foreign_responses_are_not_found(
    serve: Callable[..., RunningServer],
) -> None:
    """An unknown id, a stream's id, or another key's response: the SDK's NotFoundError."""
    server = serve(api_keys=["alice", "bob"])
    url = f"{server.url}/v1"
    with (
        openai.OpenAI(base_url=url, api_key="alice", max_retries=0) as alice,
        openai.OpenAI(base_url=url, api_key="bob", max_retries=0) as bob,
    ):
        created = alice.responses.create(model=MODEL, input="hi", background=True)
        stream = httpx.post(
            f"{server.url}/v1/streams",
            json={"message": "hi"},
            headers={"Authorization": "Bearer alice"},
        ).json()
        for call in (
            lambda: bob.responses.retrieve(created.id),
            lambda: bob.responses.retrieve(created.id, stream=True),
            lambda: bob.responses.cancel(created.id),
            lambda: alice.responses.retrieve("resp_nope"),
            lambda: alice.responses.retrieve(stream["id"]),
        ):
            with pytest.raises(openai.NotFoundError) as caught:
                call()
            assert caught.value.code == "not_found"
        assert alice.responses.retrieve(created.id).id == created.id


def test_background_responses_move_between_replicas_through_redis(
    serve: Callable[..., RunningServer], redis_url: str
) -> None:
    """Started on one replica, resumed and cancelled on another: the producer stops."""
    a = serve(redis_url=redis_url)
    b = serve(redis_url=redis_url)
    with (
        openai.OpenAI(base_url=f"{a.url}/v1", api_key="unused", max_retries=0) as on_a,
        openai.OpenAI(base_url=f"{b.url}/v1", api_key="unused", max_retries=0) as on_b,
    ):
        created = on_a.responses.create(
            model=MODEL, input="hi", background=True, **simulate(chunks=500, delay_ms=20)
        )
        seen: list[int] = []
        with on_b.responses.retrieve(created.id, stream=True) as stream:
            for event in stream:
                seen.append(event.sequence_number)
                if len(seen) == 6:
                    break
        cancelled = on_b.responses.cancel(created.id)
        rest = list(on_b.responses.retrieve(created.id, stream=True, starting_after=seen[-1]))
    assert cancelled.status == "cancelled"
    assert seen + [e.sequence_number for e in rest] == list(range(len(seen) + len(rest)))
    assert rest[-1].type == "response.failed" and rest[-1].response.status == "cancelled"
    assert wait_for(lambda: stats_of(a).cancelled == 1)
    assert json.loads(rest[-1].response.model_dump_json())["error"]["code"] == "cancelled"


def test_a_lost_producer_reads_as_an_error_event_the_sdk_parses() -> None:
    """The store's own `generation_lost` frame reaches Responses readers as an `error` event."""
    lost = ErrorEvent(code=ErrorCode.GENERATION_LOST, message="gone", retryable=True)
    frame = Frame(9, "error", encode_sse(9, lost, retry_ms=1000))
    (event,) = parse(_foreign_end(frame))
    parsed = ResponseErrorEvent.model_validate(event.data)
    assert event.event == parsed.type == "error"
    assert (parsed.code, parsed.message, parsed.sequence_number) == ("generation_lost", "gone", 8)
