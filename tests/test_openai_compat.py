"""The OpenAI-compatible routes, driven by the official `openai` SDK and LangChain's ChatOpenAI
against a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI
from openai.types.chat import ChatCompletionMessageParam

from gemini_sse._models import DoneEvent, Usage
from gemini_sse.server.openai.encoding import ChunkEncoder
from gemini_sse.server.providers.simulated import expected_answer

from .conftest import make_settings
from .openai_sdk import simulate, stats_of
from .servers import RunningServer, wait_for
from .sse import parse, text

MODEL = "gemini-2.5-flash"
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
ANSWER = expected_answer(make_settings(), ["hi"])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- streaming ------------------------------------------------------------------------------


def test_stream_arrives_incrementally_and_says_what_the_native_stream_says(
    server: RunningServer, client: openai.OpenAI
) -> None:
    """Deltas arrive while the model pauses; their text is `/v1/stream`'s answer, in one choice."""
    stats = stats_of(server)
    sim = {"delay_ms": 100}
    stream = client.chat.completions.create(
        model=MODEL, messages=HI, stream=True, **simulate(**sim)
    )
    chunks, first_at = [], None
    for chunk in stream:
        if first_at is None:
            first_at, model_busy = time.monotonic(), stats.completed == 0
        chunks.append(chunk)
    ended_at = time.monotonic()
    assert first_at is not None and model_busy
    # Four more pauses of 100 ms follow the first chunk: however late a busy machine let
    # the client read it, at least one of them came after.
    assert ended_at - first_at >= 0.1
    native = httpx.post(f"{server.url}/v1/stream", json={"messages": HI, "simulation": sim})
    joined = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert joined == text(parse(native.content)) == ANSWER
    assert {(c.id, c.created, c.model, c.object) for c in chunks} == {
        (chunks[0].id, chunks[0].created, MODEL, "chat.completion.chunk")
    }
    assert chunks[0].id.startswith("chatcmpl-")
    assert [c.choices[0].delta.role for c in chunks] == ["assistant"] + [None] * (len(chunks) - 1)
    assert [c.choices[0].finish_reason for c in chunks] == [None] * 5 + ["stop"]
    assert all(c.usage is None for c in chunks)


@pytest.mark.anyio
async def test_usage_chunk_comes_last_only_when_asked_for(server: RunningServer) -> None:
    """`include_usage` adds one chunk with no choices and the token counts; without it, none."""
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0
    ) as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=HI, stream=True, stream_options={"include_usage": True}
        )
        with_usage = [chunk async for chunk in stream]
        stream = await client.chat.completions.create(model=MODEL, messages=HI, stream=True)
        without = [chunk async for chunk in stream]
    *answer, last = with_usage
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens > 0 and last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in answer)
    assert "".join(c.choices[0].delta.content or "" for c in answer) == ANSWER
    assert all(c.usage is None and c.choices for c in without)


def test_wire_is_plain_data_lines_and_comment_heartbeats_ending_in_done(
    serve: Callable[..., RunningServer],
) -> None:
    """No `event:` or `id:` lines, escaped non-ASCII, `: ping` heartbeats, `data: [DONE]` last."""
    server = serve(heartbeat_s=0.02)
    sim = {"delay_ms": 60}
    body = {"model": MODEL, "messages": HI, "stream": True, "simulation": sim}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in response.text.splitlines() if line]  # pings end in CRLF
    assert ": ping" in lines
    data = [line for line in lines if line != ": ping"]
    assert all(line.startswith("data: ") for line in data)
    assert data[-1] == "data: [DONE]"
    assert response.content.isascii()
    payloads = [json.loads(line[6:]) for line in data[:-1]]
    assert "".join(p["choices"][0]["delta"].get("content", "") for p in payloads) == ANSWER
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=HI, stream=True, **simulate(**sim)
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream) == ANSWER


def test_chunk_encoder_escapes_line_separators_and_names_the_role_once() -> None:
    """Tokens with U+2028, CR or LF stay on one `data:` line; only the first delta has a role."""
    encoder = ChunkEncoder("chatcmpl-x", 7, MODEL, include_usage=True)
    first = encoder.encode("a\u2028b\r\nc\u00e9")
    second = encoder.encode("d")
    assert first.count(b"\n") == 2 and first.endswith(b"\n\n") and first.isascii()
    assert json.loads(first[6:])["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "a\u2028b\r\nc\u00e9",
    }
    assert json.loads(second[6:])["choices"][0]["delta"] == {"content": "d"}
    done = DoneEvent(
        finish_reason="length",
        usage=Usage(input_tokens=1, output_tokens=2, total_tokens=3),
        model=MODEL,
        chunks=2,
        duration_ms=1.0,
    )
    final, usage, end = [m for m in encoder.encode(done).decode().split("\n\n") if m]
    assert json.loads(final[6:])["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "length",
    }
    assert json.loads(usage[6:])["usage"] == {
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "total_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert end == "data: [DONE]"


def test_cached_and_reasoning_tokens_take_openais_names() -> None:
    """`cached_tokens` and `reasoning_tokens` become OpenAI's usage details."""
    encoder = ChunkEncoder("chatcmpl-x", 7, MODEL, include_usage=True)
    usage = Usage(
        input_tokens=10, output_tokens=30, total_tokens=40, cached_tokens=8, reasoning_tokens=25
    )
    done = DoneEvent(finish_reason="stop", usage=usage, model=MODEL, chunks=1, duration_ms=1.0)
    messages = [m for m in encoder.encode(done).decode().split("\n\n") if m]
    sent = json.loads(messages[1][6:])["usage"]
    assert sent["prompt_tokens_details"] == {"cached_tokens": 8}
    assert sent["completion_tokens_details"] == {"reasoning_tokens": 25}


# --- non-streaming ---------------------------------------------------------------------------


def test_non_streaming_completion_has_text_finish_reason_and_usage(client: openai.OpenAI) -> None:
    """`stream: false` answers one `chat.completion` with the whole answer and its usage."""
    completion = client.chat.completions.create(model=MODEL, messages=HI)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == MODEL
    (choice,) = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == ANSWER
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_developer_role_and_text_parts_reach_the_model(client: openai.OpenAI) -> None:
    """`developer` is a system turn and text parts are joined by newlines."""
    messages: Any = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    ]
    completion = client.chat.completions.create(model=MODEL, messages=messages, stop="zzz")
    assert completion.choices[0].message.content == expected_answer(
        make_settings(), ["Be brief.", "a\nb"]
    )


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
def test_rate_limit_before_any_text_is_the_sdks_rate_limit_error(
    client: openai.OpenAI, stream: bool
) -> None:
    """A 429 upstream before the first token is an HTTP 429 with Retry-After, not a 200 stream."""
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=HI, stream=stream, **simulate(fault="rate_limit", fail_after=0)
        )
    assert caught.value.code == "rate_limited"
    assert caught.value.type == "rate_limit_error"
    assert caught.value.response.headers["retry-after"] == "2"


def test_failure_after_some_text_is_an_api_error_mid_stream(client: openai.OpenAI) -> None:
    """Text already sent stands; then the SDK raises `APIError` carrying our code."""
    stream = client.chat.completions.create(
        model=MODEL, messages=HI, stream=True, **simulate(fault="drop", fail_after=2)
    )
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert not isinstance(caught.value, openai.APIStatusError)
    assert caught.value.code == "upstream_disconnected"
    assert "".join(received) == ANSWER[: len("".join(received))] != ""
    with pytest.raises(openai.InternalServerError) as non_streaming:
        client.chat.completions.create(
            model=MODEL, messages=HI, **simulate(fault="drop", fail_after=2)
        )
    assert non_streaming.value.status_code == 502


def test_withheld_answer_is_content_filter_after_text_and_400_before(
    client: openai.OpenAI,
) -> None:
    """Safety after text ends the choice with `content_filter`; before any text it is a 400."""
    stream = client.chat.completions.create(
        model=MODEL, messages=HI, stream=True, **simulate(fault="safety", fail_after=2)
    )
    assert [c.choices[0].finish_reason for c in stream] == [None, None, "content_filter"]
    completion = client.chat.completions.create(
        model=MODEL, messages=HI, **simulate(fault="safety", fail_after=2)
    )
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.choices[0].message.content == ANSWER[:24]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=HI, stream=True, **simulate(fault="safety", fail_after=0)
        )
    assert caught.value.code == "content_blocked"


def test_first_token_timeout_is_a_504_before_the_stream(
    serve: Callable[..., RunningServer],
) -> None:
    """The pipeline's first-token timeout holds here too, answered as an HTTP 504."""
    server = serve(first_token_timeout_s=0.3)
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(
                model=MODEL, messages=HI, stream=True, **simulate(fault="hang", fail_after=0)
            )
    assert caught.value.status_code == 504
    assert caught.value.code == "timeout"


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"tools": [{"type": "custom", "custom": {"name": "f"}}]}, "tools[0].type"),
        ({"n": 2}, "n"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "what is this?"},
                            {"type": "file", "file": {"file_id": "file-abc"}},
                        ],
                    }
                ]
            },
            "messages[0].content[1].file.file_id",
        ),
        (
            {"messages": [{"role": "function", "name": "f", "content": "42"}]},
            "messages[0].role",
        ),
        ({"extra_body": {"frobnicate": True}}, "frobnicate"),
        ({"temperature": 5}, "temperature"),
        ({"max_tokens": 10**9}, "max_tokens"),
    ],
)
def test_unsupported_or_invalid_requests_are_bad_requests(
    server: RunningServer, client: openai.OpenAI, options: dict[str, Any], param: str
) -> None:
    """What the gateway cannot honour is refused by name with a 400, never ignored."""
    request: dict[str, Any] = {"model": MODEL, "messages": HI, **options}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**request)
    assert caught.value.code == "invalid_request"
    assert caught.value.type == "invalid_request_error"
    assert caught.value.param == param
    assert stats_of(server).started == 0


def test_unknown_model_is_not_found_and_models_lists_the_allow_list(
    serve: Callable[..., RunningServer],
) -> None:
    """`/v1/models` lists the allow-list; any other model is the SDK's `NotFoundError`."""
    server = serve(models=["gemini-2.5-pro"])
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        assert [m.id for m in client.models.list()] == [MODEL, "gemini-2.5-pro"]
        assert client.models.retrieve("gemini-2.5-pro").owned_by == "fake"
        with pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(model="gpt-4o", messages=HI)
        assert (caught.value.code, caught.value.param) == ("model_not_allowed", "model")
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("gpt-4o")
        assert client.chat.completions.create(model="gemini-2.5-pro", messages=HI).model == (
            "gemini-2.5-pro"
        )


def test_api_keys_are_checked_from_the_sdks_bearer_header(
    serve: Callable[..., RunningServer],
) -> None:
    """With API keys set, the SDK's `api_key` is the gateway key; a wrong one is a 401."""
    server = serve(api_keys=["sekret"])
    url = f"{server.url}/v1"
    with openai.OpenAI(base_url=url, api_key="sekret", max_retries=0) as client:
        assert client.chat.completions.create(model=MODEL, messages=HI).choices[0].message.content
    with openai.OpenAI(base_url=url, api_key="wrong", max_retries=0) as client:
        for call in (
            client.models.list,
            lambda: client.chat.completions.create(model=MODEL, messages=HI),
        ):
            with pytest.raises(openai.AuthenticationError) as caught:
                call()
            assert caught.value.code == "unauthorized"
            assert caught.value.type == "authentication_error"
            assert caught.value.response.headers["www-authenticate"] == "Bearer"


def test_overload_is_a_503_with_retry_after(serve: Callable[..., RunningServer]) -> None:
    """A full gateway answers 503 `overloaded` with Retry-After, as `/v1/stream` does."""
    server = serve(max_streams=1)
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        held = client.chat.completions.create(
            model=MODEL, messages=HI, stream=True, **simulate(chunks=50, delay_ms=50)
        )
        with held:
            next(held)
            with pytest.raises(openai.InternalServerError) as caught:
                client.chat.completions.create(model=MODEL, messages=HI)
    assert caught.value.status_code == 503
    assert caught.value.code == "overloaded"
    assert caught.value.response.headers["retry-after"] == "1"


# --- cancellation -----------------------------------------------------------------------------


def test_closing_the_stream_cancels_the_generation(
    server: RunningServer, client: openai.OpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """`stream.close()` after the first chunk stops the model within a second, logged as such."""
    caplog.set_level(logging.INFO, logger="gemini_sse.gateway")
    stats = stats_of(server)
    stream = client.chat.completions.create(
        model=MODEL, messages=HI, stream=True, **simulate(chunks=50, delay_ms=50)
    )
    next(stream)
    stream.close()
    assert wait_for(lambda: stats.cancelled == 1 and not server.gateway.live)
    assert stats.completed == 0
    finished = [r for r in caplog.records if r.getMessage() == "stream finished"]
    assert [getattr(r, "outcome", None) for r in finished] == ["client_disconnect"]


@pytest.mark.anyio
async def test_closing_the_async_stream_cancels_the_generation(server: RunningServer) -> None:
    """`await stream.close()` from AsyncOpenAI stops the model too."""
    stats = stats_of(server)
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0
    ) as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=HI, stream=True, **simulate(chunks=50, delay_ms=50)
        )
        await stream.__anext__()
        await stream.close()
    assert wait_for(lambda: stats.cancelled == 1 and not server.gateway.live)


@pytest.mark.parametrize("stream", [True, False])
def test_leaving_before_the_first_token_cancels_the_generation(
    server: RunningServer, stream: bool
) -> None:
    """A client that gives up while the gateway awaits the first event stops the model."""
    stats = stats_of(server)
    body = {"model": MODEL, "messages": HI, "stream": stream, "simulation": {"fault": "hang"}}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=0.3)
    assert wait_for(lambda: stats.cancelled == 1 and not server.gateway.live)


# --- LangChain --------------------------------------------------------------------------------


def chat_openai(server: RunningServer) -> ChatOpenAI:
    return ChatOpenAI(
        model=MODEL,
        base_url=f"{server.url}/v1",
        api_key="unused",
        max_retries=0,
    )


def test_langchain_chat_openai_streams_and_invokes(server: RunningServer) -> None:
    """ChatOpenAI's `stream` and `invoke` get the gateway's answer."""
    chat = chat_openai(server)
    assert "".join(str(chunk.content) for chunk in chat.stream("hi")) == ANSWER
    answer = chat.invoke("hi")
    assert answer.content == ANSWER
    assert answer.response_metadata["finish_reason"] == "stop"


@pytest.mark.anyio
async def test_langchain_chat_openai_astreams_and_ainvokes(server: RunningServer) -> None:
    """ChatOpenAI's `astream` and `ainvoke` get the gateway's answer."""
    chat = chat_openai(server)
    assert "".join([str(chunk.content) async for chunk in chat.astream("hi")]) == ANSWER
    assert (await chat.ainvoke("hi")).content == ANSWER


def test_an_empty_stop_sequence_is_dropped_not_sent() -> None:
    """`"stop": ""` (or an empty one in a list) stops nothing, so it never reaches the model."""
    from gemini_sse.server.openai.models import ChatCompletionRequest

    def stop_of(stop: object) -> list[str] | None:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stop": stop}
        return ChatCompletionRequest.model_validate(body).to_stream_request().stop

    assert stop_of("") is None
    assert stop_of(["", "END"]) == ["END"]
    assert stop_of("END") == ["END"]
