"""The client against a real gateway on 127.0.0.1: events, text, incremental delivery, closing."""

from __future__ import annotations

import contextlib
import gzip
import json
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from gemini_sse import (
    AsyncClient,
    ChatMessage,
    Client,
    DoneEvent,
    SeparatorEvent,
    SimulationOptions,
    TokenEvent,
)
from gemini_sse.server.providers.simulated import expected_answer

from .conftest import make_settings
from .servers import RunningServer
from .sse import names, parse, text


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


async def await_for(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        await anyio.sleep(0.01)
    return condition()


# A slow answer: the first chunk at once, then three pauses of 300 ms.
SLOW = {"chunks": 4, "delay_ms": 300, "first_delay_ms": 10}


def test_stream_yields_typed_events_with_ids_and_done_last(
    serve: Callable[..., RunningServer],
) -> None:
    """`stream` gives token/separator pairs, ids 1..n, and one `done` last."""
    running = serve()
    with Client(running.url) as client:
        events = list(client.stream("What is baseball?"))
    assert [e.event for e in events] == ["token", "separator"] * 5 + ["done"]
    assert isinstance(events[0], TokenEvent) and isinstance(events[1], SeparatorEvent)
    assert [e.id for e in events] == list(range(1, 12))
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert done.chunks == 5 and done.finish_reason == "stop"
    assert done.usage is not None and done.usage.output_tokens > 0


def test_stream_text_and_complete_give_exactly_the_answer(
    serve: Callable[..., RunningServer],
) -> None:
    """`stream_text` and `complete` give exactly the text the model answered."""
    running = serve()
    answer = expected_answer(make_settings(), ["What is baseball?"])
    with Client(running.url) as client:
        assert "".join(client.stream_text("What is baseball?")) == answer
        result = client.complete("What is baseball?")
    assert result.text == answer
    assert result.done.chunks == 5
    assert result.usage == result.done.usage
    assert result.events[-1] == result.done


def test_messages_may_be_chat_messages_dicts_or_the_message_shorthand(
    serve: Callable[..., RunningServer],
) -> None:
    """Every turn reaches the model, however the conversation is spelled."""
    running = serve()
    turns = ["Be brief.", "What is baseball?"]
    answer = expected_answer(make_settings(), turns)
    system = {"role": "system", "content": turns[0]}
    with Client(running.url) as client:
        as_models = [
            ChatMessage(role="system", content=turns[0]),
            ChatMessage(role="user", content=turns[1]),
        ]
        assert client.complete(as_models).text == answer
        assert client.complete([system, {"role": "user", "content": turns[1]}]).text == answer
        assert client.complete([system], message=turns[1]).text == answer


def test_options_reach_the_gateway(serve: Callable[..., RunningServer]) -> None:
    """`separators=False` and `simulation` change what the gateway streams."""
    running = serve()
    with Client(running.url) as client:
        events = list(client.stream("hi", separators=False, simulation=SimulationOptions(chunks=2)))
    assert [e.event for e in events] == ["token", "token", "done"]


def test_a_stream_compressed_although_the_client_asked_for_none_is_read_all_the_same() -> None:
    """A server that gzips the stream anyway (ignoring `identity`) is decoded as usual."""
    done = b'{"finish_reason":"stop","model":"m","chunks":1,"duration_ms":1}'
    body = (
        b'id: 1\nevent: token\ndata: {"text":"hi"}\n\nid: 2\nevent: done\ndata: ' + done + b"\n\n"
    )

    def gateway(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
        return httpx.Response(200, headers=headers, content=gzip.compress(body))

    http = httpx.Client(transport=httpx.MockTransport(gateway))
    with Client("http://gateway/", http_client=http) as client:
        events = list(client.stream("hi"))
    token, end = events
    assert isinstance(token, TokenEvent) and token.text == "hi"
    assert isinstance(end, DoneEvent) and end.chunks == 1


def test_request_is_a_json_post_with_the_api_key_as_bearer_token() -> None:
    """The client POSTs the StreamRequest JSON to /v1/stream with `Authorization: Bearer`."""
    seen: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        done = b'{"finish_reason":"stop","model":"m","chunks":0,"duration_ms":1}'
        body = b"id: 1\nevent: done\ndata: " + done + b"\n\n"
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    http = httpx.Client(transport=httpx.MockTransport(gateway))
    with Client("http://gateway/", api_key="s3cret", http_client=http) as client:
        list(client.stream("hi", model="m", temperature=0.5, stop=("x",)))
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "http://gateway/v1/stream"
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["accept-encoding"] == "identity"
    assert json.loads(request.content) == {
        "messages": [{"role": "user", "content": "hi"}],
        "model": "m",
        "temperature": 0.5,
        "stop": ["x"],
    }


def test_unknown_keyword_is_a_type_error() -> None:
    """A misspelt option fails before anything is sent."""
    with Client() as client, pytest.raises(TypeError, match="temprature"):
        list(client.stream("hi", temprature=1))  # type: ignore[call-arg]


def test_sync_first_token_arrives_while_the_model_is_still_pausing(
    serve: Callable[..., RunningServer],
) -> None:
    """Incremental: `Client.stream` yields the first token long before the model finishes."""
    running = serve()
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    seen: list[tuple[float, object, bool]] = []
    with Client(running.url) as client:
        for event in client.stream("hi", simulation=SLOW):
            generating = stats.completed == 0 and bool(running.gateway.live)
            seen.append((time.monotonic(), event, generating))
    first_at, first, generating = next(s for s in seen if isinstance(s[1], TokenEvent))
    assert generating, "the model had already finished when the first token arrived"
    assert isinstance(seen[-1][1], DoneEvent)
    assert seen[-1][0] - first_at >= 3 * 0.3 * 0.8


@pytest.mark.anyio
async def test_async_first_token_arrives_while_the_model_is_still_pausing(
    serve: Callable[..., RunningServer],
) -> None:
    """Incremental: `AsyncClient.stream` yields the first token long before the model finishes."""
    running = serve()
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    seen: list[tuple[float, object, bool]] = []
    async with AsyncClient(running.url) as client:
        async for event in client.stream("hi", simulation=SLOW):
            generating = stats.completed == 0 and bool(running.gateway.live)
            seen.append((time.monotonic(), event, generating))
    first_at, first, generating = next(s for s in seen if isinstance(s[1], TokenEvent))
    assert generating, "the model had already finished when the first token arrived"
    assert isinstance(seen[-1][1], DoneEvent)
    assert seen[-1][0] - first_at >= 3 * 0.3 * 0.8


@pytest.mark.anyio
async def test_async_stream_text_and_complete_give_exactly_the_answer(
    serve: Callable[..., RunningServer],
) -> None:
    """The async `stream_text` and `complete` give exactly the model's answer."""
    running = serve()
    answer = expected_answer(make_settings(), ["What is baseball?"])
    async with AsyncClient(running.url) as client:
        assert "".join([t async for t in client.stream_text("What is baseball?")]) == answer
        assert (await client.complete("What is baseball?")).text == answer


def test_breaking_out_of_the_loop_makes_the_gateway_cancel(
    serve: Callable[..., RunningServer],
) -> None:
    """Leaving `for event in client.stream(...)` early closes it; the model is cancelled."""
    running = serve(fake_chunks=50, fake_first_delay_ms=10, fake_delay_ms=200)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    with Client(running.url) as client:
        for event in client.stream("hi"):
            if isinstance(event, TokenEvent):
                break
        assert wait_for(lambda: stats.cancelled == 1, seconds=1)
        assert wait_for(lambda: not running.gateway.live, seconds=1)
    assert stats.completed == 0


@pytest.mark.anyio
async def test_async_closing_the_stream_makes_the_gateway_cancel(
    serve: Callable[..., RunningServer],
) -> None:
    """Closing an async stream early (aclosing + break) cancels the model within a second."""
    running = serve(fake_chunks=50, fake_first_delay_ms=10, fake_delay_ms=200)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    async with AsyncClient(running.url) as client:
        async with contextlib.aclosing(client.stream("hi")) as events:
            async for event in events:
                if isinstance(event, TokenEvent):
                    break
        assert await await_for(lambda: stats.cancelled == 1, seconds=1)
        assert await await_for(lambda: not running.gateway.live, seconds=1)
    assert stats.completed == 0


def test_a_shared_http_client_stays_open_and_our_own_is_closed(
    serve: Callable[..., RunningServer],
) -> None:
    """`close` closes only the httpx client we made; a shared one is the caller's."""
    running = serve()
    with httpx.Client() as http:
        with Client(running.url, http_client=http) as client:
            assert client.complete("hi").text
        assert not http.is_closed
        assert http.get(f"{running.url}/healthz").status_code == 200
    with Client(running.url) as own:
        own.complete("hi")
    assert own._http.is_closed


@pytest.mark.anyio
async def test_async_shared_http_client_stays_open_and_our_own_is_closed(
    serve: Callable[..., RunningServer],
) -> None:
    """`aclose` closes only the httpx client we made; a shared one is the caller's."""
    running = serve()
    async with httpx.AsyncClient() as http:
        async with AsyncClient(running.url, http_client=http) as client:
            assert (await client.complete("hi")).text
        assert not http.is_closed
    async with AsyncClient(running.url) as own:
        await own.complete("hi")
    assert own._http.is_closed


def test_stream_raw_gives_the_bytes_as_sent(serve: Callable[..., RunningServer]) -> None:
    """`stream_raw` yields the event stream's bytes unchanged, ids and all."""
    running = serve()
    with Client(running.url) as client:
        raw = b"".join(client.stream_raw("hi", separators=False))
    with httpx.Client() as http:
        direct = http.post(
            f"{running.url}/v1/stream", json={"message": "hi", "separators": False}
        ).content
    # Everything but the `done` payload (its timings differ run to run) is byte-identical.
    cut = b"event: done\n"
    assert raw.split(cut)[0] == direct.split(cut)[0]
    assert raw.startswith(b"id: 1\nevent: token\ndata: ")


@pytest.mark.anyio
async def test_async_stream_raw_gives_a_complete_event_stream(
    serve: Callable[..., RunningServer],
) -> None:
    """The async `stream_raw` yields bytes that decode to the whole, checked stream."""
    running = serve()
    async with AsyncClient(running.url) as client:
        raw = b"".join([chunk async for chunk in client.stream_raw("hi")])
    events = parse(raw)
    assert names(events) == ["token", "separator"] * 5 + ["done"]
    assert text(events) == expected_answer(make_settings(), ["hi"])


def test_events_serialize_with_their_type_and_id(serve: Callable[..., RunningServer]) -> None:
    """A client event dumps to JSON with `event` and `id`, as `--json` prints it."""
    running = serve()
    with Client(running.url) as client:
        first = next(iter(client.stream("hi")))
    data: dict[str, Any] = json.loads(first.model_dump_json())
    assert data["event"] == "token" and data["id"] == 1 and data["text"]
