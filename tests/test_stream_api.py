"""The stream endpoints through the ASGI protocol: event sequences, faults, validation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gemini_sse._models import ErrorCode, ErrorEvent, SeparatorEvent, TokenEvent, event_data
from gemini_sse.server.app import create_app
from gemini_sse.server.encoding import TypedSSE, encode_sse
from gemini_sse.server.providers.fake import FakeProvider
from gemini_sse.server.providers.simulated import expected_answer

from .conftest import make_settings
from .sse import names, parse, post, text

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_answer_is_tokens_and_separators_then_done() -> None:
    """A normal answer: token/separator per chunk, ids 1..n, one `done` with usage last."""
    response, events = await post({"message": "What is baseball?"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert names(events) == ["token", "separator"] * 5 + ["done"]
    assert [e.id for e in events] == [str(i) for i in range(1, 12)]
    assert [e.data["index"] for e in events if e.event == "separator"] == [0, 1, 2, 3, 4]
    assert text(events) == expected_answer(make_settings(), ["What is baseball?"])
    done = events[-1].data
    assert done["finish_reason"] == "stop"
    assert done["chunks"] == 5
    assert done["model"] == "gemini-2.5-flash"
    assert done["usage"]["output_tokens"] > 0
    assert done["usage"]["total_tokens"] == (
        done["usage"]["input_tokens"] + done["usage"]["output_tokens"]
    )
    assert done["duration_ms"] >= done["ttft_ms"] > 0


async def test_separators_can_be_turned_off_per_request_and_by_default() -> None:
    """`separators=false` (request) or GEMINI_SSE_SEPARATORS=false (settings) drop them."""
    _, events = await post({"message": "hi", "separators": False})
    assert names(events) == ["token"] * 5 + ["done"]
    _, events = await post({"message": "hi"}, separators=False)
    assert names(events) == ["token"] * 5 + ["done"]
    _, events = await post({"message": "hi", "separators": True}, separators=False)
    assert "separator" in names(events)


async def test_get_and_post_give_the_same_answer() -> None:
    """The EventSource GET endpoint streams what the POST endpoint streams."""
    app = create_app(make_settings())
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        got = parse((await client.get("/v1/stream", params={"message": "hello"})).content)
        posted = parse((await client.post("/v1/stream", json={"message": "hello"})).content)
    assert names(got) == names(posted)
    assert text(got) == text(posted) != ""


async def test_multi_turn_conversation_reaches_the_model() -> None:
    """Every turn of `messages` is part of the prompt the model answers."""
    turns = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is SSE?"},
    ]
    _, events = await post({"messages": turns})
    expected = expected_answer(make_settings(), [t["content"] for t in turns])
    assert text(events) == expected


@pytest.mark.parametrize(
    ("fault", "code", "retryable"),
    [
        ("rate_limit", "rate_limited", True),
        ("unavailable", "upstream_disconnected", True),
        ("bad_request", "bad_request", False),
        ("permission_denied", "upstream_auth", False),
        ("drop", "upstream_disconnected", True),
        ("safety", "content_blocked", False),
    ],
)
async def test_fault_after_two_chunks_ends_with_one_error_event(
    fault: str, code: str, retryable: bool
) -> None:
    """Partial text arrives, then exactly one `error` event with the mapped code, nothing after."""
    _, events = await post({"message": "hi", "simulation": {"fault": fault, "fail_after": 2}})
    assert names(events) == ["token", "separator", "token", "separator", "error"]
    error = events[-1]
    assert error.data["code"] == code
    assert error.data["retryable"] is retryable
    assert error.data["message"]
    assert "Traceback" not in error.data["message"]
    assert error.data["request_id"]
    if fault == "rate_limit":
        assert error.data["retry_after"] == 2.0
    if retryable:
        assert error.retry == 1000


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("rate_limit", "rate_limited"),
        ("unavailable", "upstream_unavailable"),
        ("bad_request", "bad_request"),
        ("permission_denied", "upstream_auth"),
        ("drop", "upstream_unavailable"),
        ("safety", "content_blocked"),
        ("empty", "content_blocked"),
    ],
)
async def test_fault_before_any_text_is_a_lone_error_event(fault: str, code: str) -> None:
    """A failure before the first chunk gives one `error` event and no silent empty success."""
    _, events = await post({"message": "hi", "simulation": {"fault": fault, "fail_after": 0}})
    assert names(events) == ["error"]
    assert events[0].data["code"] == code
    assert events[0].id == "1"


async def test_zero_chunk_answer_is_content_blocked_not_done() -> None:
    """An answer with no text never ends in `done`."""
    _, events = await post({"message": "hi", "simulation": {"chunks": 0}})
    assert names(events) == ["error"]
    assert events[0].data["code"] == "content_blocked"


async def test_fault_configured_by_settings_applies_to_every_request() -> None:
    """GEMINI_SSE_FAKE_FAULT / _FAIL_AFTER make every answer fail the same way."""
    _, events = await post({"message": "hi"}, fake_fault="drop", fake_fail_after=1)
    assert names(events) == ["token", "separator", "error"]
    assert events[-1].data["code"] == "upstream_disconnected"


async def test_retryable_error_before_first_chunk_is_retried_within_budget() -> None:
    """The gateway retries `unavailable` before any text, up to GEMINI_SSE_UPSTREAM_RETRIES."""
    settings = make_settings(upstream_retries=2, upstream_retry_budget_s=5)
    provider = FakeProvider(settings)
    app = create_app(settings, provider=provider)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://g") as c:
        body = {"message": "hi", "simulation": {"fault": "unavailable", "fail_after": 0}}
        events = parse((await c.post("/v1/stream", json=body)).content)
    assert names(events) == ["error"]
    assert events[0].data["code"] == "upstream_unavailable"
    assert provider.stats.started == 3  # the first try and two retries


async def test_non_retryable_error_is_never_retried() -> None:
    """A 400 upstream goes straight to the client."""
    settings = make_settings(upstream_retries=3)
    provider = FakeProvider(settings)
    app = create_app(settings, provider=provider)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://g") as c:
        body = {"message": "hi", "simulation": {"fault": "bad_request", "fail_after": 0}}
        events = parse((await c.post("/v1/stream", json=body)).content)
    assert events[0].data["code"] == "bad_request"
    assert provider.stats.started == 1


@pytest.mark.parametrize(
    ("settings", "simulation", "message"),
    [
        ({"first_token_timeout_s": 0.1}, {"first_delay_ms": 2000}, "did not start"),
        ({"idle_timeout_s": 0.1}, {"fault": "hang", "fail_after": 2}, "stopped sending"),
        ({"total_timeout_s": 0.3}, {"chunks": 1000, "delay_ms": 20}, "longer than"),
    ],
    ids=["first-token", "idle", "total"],
)
async def test_timeouts_end_the_stream_with_a_timeout_event(
    settings: dict[str, Any], simulation: dict[str, Any], message: str
) -> None:
    """No first chunk in time, too long between chunks, or too long overall: `timeout`."""
    _, events = await post({"message": "hi", "simulation": simulation}, **settings)
    assert events[-1].event == "error"
    assert events[-1].data["code"] == "timeout"
    assert message in events[-1].data["message"]
    assert names(events).count("error") == 1


async def test_non_ascii_and_line_separators_survive_encoding() -> None:
    """U+2028, U+2029, CR and LF inside a token stay inside one `data:` line."""
    tricky = "a\u2028b\u2029c\rd\ne caf\u00e9 \U0001f600"
    frame = encode_sse(7, tricky)
    assert frame == encode_sse(7, TokenEvent(text=tricky))
    assert frame.count(b"\n\n") == 1 and frame.endswith(b"\n\n")
    assert all(byte < 0x80 for byte in frame)
    (event,) = parse(frame)
    assert event.data["text"] == tricky


@pytest.mark.parametrize(
    "event",
    [
        'quote " slash \\ tab \t nul \x00',
        "",
        SeparatorEvent(index=12),
    ],
)
def test_fast_token_encoding_equals_the_model_encoding(event: str | SeparatorEvent) -> None:
    """The hot-path encoder writes exactly the frame the shared model defines (a token
    comes from the pipeline as its text)."""
    model = TokenEvent(text=event) if isinstance(event, str) else event
    frame = encode_sse(1, event)
    assert frame == encode_sse(1, model)
    lines = frame.decode().splitlines()
    assert lines[1] == f"event: {model.event}"
    assert lines[2] == f"data: {event_data(model)}"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 422, "invalid_request"),
        ({"messages": []}, 422, "invalid_request"),
        ({"message": ""}, 422, "invalid_request"),
        ({"message": "   "}, 422, "invalid_request"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, 422, "invalid_request"),
        (
            {"messages": [{"role": "system", "content": "only a system prompt"}]},
            422,
            "invalid_request",
        ),
        ({"message": "hi", "model": "gpt-4o"}, 400, "model_not_allowed"),
        ({"message": "hi", "temperature": 5}, 422, "invalid_request"),
        ({"message": "hi", "max_output_tokens": 10**6}, 422, "invalid_request"),
        ({"message": "hi", "surprise": True}, 422, "invalid_request"),
        ({"message": "x" * 101}, 413, "payload_too_large"),
        ({"messages": [{"role": "user", "content": "x"}] * 11}, 413, "payload_too_large"),
        ({"messages": [{"role": "user", "content": "x" * 60}] * 3}, 413, "payload_too_large"),
    ],
)
async def test_invalid_requests_get_json_errors_before_any_stream(
    body: dict[str, Any], status: int, code: str
) -> None:
    """Bad input: an HTTP 4xx with `{"error": {code, message, retryable}}`, never a stream."""
    app = create_app(make_settings(max_message_chars=100, max_messages=10, max_total_chars=150))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://g") as c:
        response = await c.post("/v1/stream", json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["retryable"] is False
    assert error["request_id"] == response.headers["x-request-id"]
    assert app.state.gateway.live == set()


async def test_model_from_allow_list_is_served() -> None:
    """A model named in GEMINI_SSE_MODELS may be chosen per request."""
    _, events = await post(
        {"message": "hi", "model": "gemini-2.5-pro"}, models="gemini-2.5-pro,gemini-2.0-flash"
    )
    assert events[-1].data["model"] == "gemini-2.5-pro"


async def test_oversized_bodies_are_rejected_with_413() -> None:
    """A body over GEMINI_SSE_MAX_BODY_BYTES, declared or streamed, gets 413 JSON."""
    app = create_app(make_settings(max_body_bytes=1000))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://g") as c:
        declared = await c.post(
            "/v1/stream",
            content=json.dumps({"message": "x" * 2000}),
            headers={"content-type": "application/json"},
        )

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"message": "'
            for _ in range(20):
                yield b"x" * 100
            yield b'"}'

        streamed = await c.post(
            "/v1/stream", content=chunks(), headers={"content-type": "application/json"}
        )
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"


async def test_simulation_options_are_refused_when_a_real_model_serves() -> None:
    """Per-request faults exist only while the simulated model serves."""
    settings = make_settings()

    class RealLooking(FakeProvider):
        name = "vertex"

    app = create_app(settings, provider=RealLooking(settings))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://g") as c:
        response = await c.post(
            "/v1/stream", json={"message": "hi", "simulation": {"fault": "drop"}}
        )
        fine = await c.post("/v1/stream", json={"message": "hi"})
    assert response.status_code == 422
    assert "simulation" in response.json()["error"]["message"]
    assert fine.status_code == 200


async def test_request_id_is_echoed_and_put_in_error_events() -> None:
    """A client's X-Request-ID comes back in the headers and in `error` events."""
    app = create_app(make_settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://g") as c:
        response = await c.post(
            "/v1/stream",
            json={"message": "hi", "simulation": {"fault": "bad_request", "fail_after": 0}},
            headers={"X-Request-ID": "trace-42"},
        )
    assert response.headers["x-request-id"] == "trace-42"
    assert parse(response.content)[-1].data["request_id"] == "trace-42"


async def test_stream_headers_forbid_caching_buffering_and_compression() -> None:
    """SSE responses say no-store and no proxy buffering, and are never compressed."""
    app = create_app(make_settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://g") as c:
        response = await c.post(
            "/v1/stream", json={"message": "hi"}, headers={"Accept-Encoding": "gzip, br"}
        )
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-accel-buffering"] == "no"
    assert "content-encoding" not in response.headers


async def test_health_and_readiness_report_the_provider() -> None:
    """`/healthz` says which provider serves; `/readyz` is ready until shutdown."""
    app = create_app(make_settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://g") as c:
        health = (await c.get("/healthz")).json()
        ready = await c.get("/readyz")
        app.state.gateway.drain()
        draining = await c.get("/readyz")
        refused = await c.post("/v1/stream", json={"message": "hi"})
    assert health["provider"] == "fake"
    assert health["status"] == "ok"
    assert ready.status_code == 200
    assert draining.status_code == 503
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "shutting_down"


async def test_openapi_schema_describes_the_routes() -> None:
    """`/openapi.json` documents both stream routes, their body and error shapes; `/docs` serves."""
    app = create_app(make_settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://g") as c:
        schema = (await c.get("/openapi.json")).json()
        docs = await c.get("/docs")
    assert docs.status_code == 200
    stream = schema["paths"]["/v1/stream"]
    assert "text/event-stream" in stream["post"]["responses"]["200"]["content"]
    assert stream["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "StreamRequest"
    )
    assert "ErrorBody" in schema["components"]["schemas"]
    assert {p["name"] for p in stream["get"]["parameters"]} >= {"message", "model", "separators"}


class BodyCounter:
    """A pure ASGI middleware that counts the response bodies passing through it."""

    seen: list[int] = []

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counting(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                BodyCounter.seen.append(len(message["body"]))
            await send(message)

        await self.app(scope, receive, counting)


@pytest.mark.parametrize("trusted", [True, False])
async def test_frames_skip_only_middleware_known_to_leave_bodies_alone(trusted: bool) -> None:
    """A stream's frames go straight to the server past the gateway's own middleware; an
    unknown middleware (it might rewrite bodies) gets every frame, and either way the
    client gets the whole stream and the middleware sees it end."""
    app = create_app(make_settings())
    app.add_middleware(BodyCounter)
    if trusted:
        app.BODY_BLIND = app.BODY_BLIND | {BodyCounter}  # type: ignore[attr-defined]
    BodyCounter.seen = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.post("/v1/stream", json={"message": "hi", "separators": False})
    events = parse(response.content)
    assert names(events) == ["token"] * 5 + ["done"]
    assert BodyCounter.seen[-1] == 0  # the end of the response
    assert len(BodyCounter.seen) == (1 if trusted else 7)


def test_typed_sse_numbers_events_and_writes_a_token_with_its_separator() -> None:
    """`TypedSSE`: ids from 1; a token is held until its separator and both go out as
    one frame; a retryable error carries the `retry:` hint, a token never does."""
    encode = TypedSSE(retry_ms=1500, separators=True)
    assert encode("Hi") == b""
    pair = encode(SeparatorEvent(index=0))
    assert pair == encode_sse(1, TokenEvent(text="Hi")) + encode_sse(2, SeparatorEvent(index=0))
    error = ErrorEvent(code=ErrorCode.RATE_LIMITED, message="slow down", retryable=True)
    assert encode(error) == encode_sse(3, error, retry_ms=1500)
    plain = TypedSSE(retry_ms=1500, separators=False)
    assert plain("Hi") == encode_sse(1, TokenEvent(text="Hi"))
    assert b"retry:" not in plain("again")


def _without_shortcut(app: Any) -> Any:
    """The same app with `POST /v1/stream` served by FastAPI's route alone."""
    app.router.middleware_stack = app.router.middleware_stack.app
    return app


async def _pieces(pieces: list[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


_VALID = json.dumps({"message": "hi", "separators": False}).encode()


@pytest.mark.parametrize(
    ("content", "headers", "shortcut"),
    [
        (_VALID, {"content-type": "application/json"}, True),
        ([_VALID[:5], _VALID[5:9], _VALID[9:]], {"content-type": "application/json"}, True),
        (_VALID, {"content-type": "Application/JSON; charset=utf-8"}, True),
        (_VALID, {"content-type": "application/json", "authorization": "Bearer nope"}, True),
        (_VALID, {"content-type": "application/json", "authorization": "Bearer k"}, True),
        (_VALID, {"content-type": "text/plain"}, False),
        (_VALID, {}, False),
        (b'{"message": "hi"', {"content-type": "application/json"}, False),
        (b'{"message": "\xff"}', {"content-type": "application/json"}, False),
        (b"[1, 2]", {"content-type": "application/json"}, False),
        (b"[" * 10_000, {"content-type": "application/json"}, False),  # too deep for json
        (b'{"message": "hi", "surprise": 1}', {"content-type": "application/json"}, False),
        (
            b'{"message": "hi", "surprise": 1}',
            {"content-type": "application/json", "authorization": "Bearer k"},
            False,
        ),
        (b"", {"content-type": "application/json"}, False),
    ],
)
async def test_the_post_stream_shortcut_answers_as_the_route_would(
    content: bytes | list[bytes],
    headers: dict[str, str],
    shortcut: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`POST /v1/stream` with a valid JSON body (in one piece or several) skips FastAPI's
    route; any other body goes to it. Either way the status and body are the route's own
    (a wrong key is refused before a bad body, as FastAPI orders them)."""
    import fastapi.routing

    routed: list[str] = []
    handle = fastapi.routing.APIRoute.handle

    async def counting(route: Any, *args: Any) -> None:
        routed.append(route.path)
        await handle(route, *args)

    monkeypatch.setattr(fastapi.routing.APIRoute, "handle", counting)
    answers = []
    for app in (
        create_app(make_settings(api_keys="k")),
        _without_shortcut(create_app(make_settings(api_keys="k"))),
    ):
        routed.clear()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://g") as c:
            if isinstance(content, list):
                response = await c.post("/v1/stream", content=_pieces(content), headers=headers)
            else:
                response = await c.post("/v1/stream", content=content, headers=headers)
        body = response.json() if response.status_code != 200 else names(parse(response.content))
        if isinstance(body, dict):
            body["error"].pop("request_id")
        answers.append((response.status_code, body, bool(routed)))
    (status, body, used_route), reference = answers
    assert (status, body) == reference[:2]
    assert used_route is not shortcut
    assert reference[2] is True


def test_the_first_separators_are_shared_and_every_one_carries_its_index() -> None:
    """`pipeline.separator`: the same immutable event for an index every stream reaches,
    a new one past the shared few, the right index either way."""
    from gemini_sse.server.pipeline import separator

    assert separator(3) is separator(3)
    assert separator(3) == SeparatorEvent(index=3)
    far = separator(100_000)
    assert far == SeparatorEvent(index=100_000)
    assert far is not separator(100_000)
