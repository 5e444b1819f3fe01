"""Our own routes: `/v1/stream` (typed SSE), health, readiness and metrics.

Resumable streams are in `streams.py`, the OpenAI-compatible routes in `openai/`; what
all routes share lives in `dependencies.py` (gateway, caller, request id), `errors.py`
(HTTP errors) and `sse.py` (the SSE response).
"""

from __future__ import annotations

import json
import os
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._models import (
    NOT_BLANK,
    ErrorBody,
    Fault,
    SimulationOptions,
    StreamRequest,
)
from .auth import secret_matches, unauthorized
from .dependencies import CallerDep, GatewayDep, authorized, request_id_of
from .encoding import TypedSSE
from .gateway import Gateway
from .sse import EventStream, event_stream

router = APIRouter()
# Served unless GEMINI_SSE_METRICS=false; app.py decides.
metrics_router = APIRouter()


_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Model not allowed"),
        (401, "API key missing or not valid"),
        (413, "Request too large"),
        (422, "Invalid request"),
        (429, "Over the caller's requests, tokens or streams (see Retry-After)"),
        (503, "Overloaded or shutting down (see Retry-After)"),
    )
}
_SSE_RESPONSE: dict[int | str, dict[str, object]] = {
    200: {
        "description": "An event stream: `reasoning`, `token`, `separator` and "
        "`tool_call_delta` as they come, then `tool_call` and `source`, then `done` or "
        "`error` (docs/protocol.md).",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    **_ERRORS,
}


@router.post(
    "/v1/stream",
    response_class=EventStream,
    responses=_SSE_RESPONSE,
    summary="Stream an answer as typed server-sent events",
)
async def post_stream(
    body: StreamRequest, request: Request, gateway: GatewayDep, caller: CallerDep
) -> EventStream:
    request_id = request_id_of(request)
    model_request = gateway.model_request(body)
    generation = await gateway.admit(
        model_request,
        caller=caller,
        separators=body.separators,
        request_id=request_id,
        headers=request.headers,
    )
    # The response reads the generation itself and closes it however it ends (its
    # `generation` argument closes the books): no generator of ours in between, which
    # costs a few us per token (docs/benchmarks.md, "Optimisations made", 9).
    encode = TypedSSE(retry_ms=gateway.settings.retry_hint_ms, separators=generation.separators)
    return event_stream(
        gateway,
        generation.events(),
        encode=encode,
        request_id=request_id,
        generation=generation,
    )


class StreamShortcut:
    """`POST /v1/stream` with a JSON body that validates, served without FastAPI's router
    walk, request handler and dependency solver; every other request goes to `app`.

    That machinery costs about 0.1 ms per stream (docs/benchmarks.md, "Optimisations
    made", 11), spent again for every stream opened. The shortcut runs the same steps
    (the body as JSON, the caller, the same `StreamRequest`, `post_stream`), and raises
    where the route would, so the app's error handlers answer. A body it would refuse
    (not JSON, not valid, not `application/json`, cut short) goes on to the route with
    the messages already received replayed: FastAPI then answers as it always has, in
    its order (the caller first, then the body), and nothing is checked twice.
    """

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != "/v1/stream"
            or scope["method"] != "POST"
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        received: list[Message] = []  # a body trickled in many pieces is joined once
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        request = None
        if message["type"] == "http.request":
            body = b"".join(m.get("body", b"") for m in received)
            request = _valid_request(scope, body)
        if request is None:
            await self.app(scope, _replaying(received, receive), send)
            return
        http = Request(scope, receive, send)
        caller = await authorized(http, self.gateway)
        response = await post_stream(request, http, self.gateway, caller)
        await response(scope, receive, send)


def _valid_request(scope: Scope, body: bytes) -> StreamRequest | None:
    """`body` as a `StreamRequest`, if it is JSON said to be JSON and valid; else None."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            if value.partition(b";")[0].strip().lower() != b"application/json":
                return None
            break
    else:
        return None  # FastAPI reads no JSON without a content type
    try:
        return StreamRequest.model_validate(json.loads(body))
    except Exception:  # not JSON, not UTF-8, nested too deep, not valid: the route says
        return None


def _replaying(received: list[Message], receive: Receive) -> Receive:
    """`receive`, giving back `received` first."""
    pending = list(received)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


@router.get(
    "/v1/stream",
    response_class=EventStream,
    responses={
        **_SSE_RESPONSE,
        204: {"description": "A reconnect (`Last-Event-ID`): this stream cannot resume."},
    },
    summary="Stream an answer to one message (for EventSource, which can only GET)",
    description="With API keys configured this route needs `Authorization` like any other, "
    "which EventSource cannot send: browsers then use `POST /v1/streams` and read its "
    "`events_url`.",
)
async def get_stream(
    request: Request,
    gateway: GatewayDep,
    caller: CallerDep,
    # Short enough that the whole request line fits the HTTP server's 16 KiB limit, even
    # with every character percent-encoded: longer texts go in a POST body.
    message: Annotated[
        str,
        Query(
            description="The user's message (longer ones: POST).",
            min_length=1,
            max_length=1000,
            pattern=NOT_BLANK,
        ),
    ],
    model: str | None = None,
    separators: bool | None = None,
    system: Annotated[
        str | None,
        Query(
            description="An optional system prompt.",
            min_length=1,
            max_length=200,
            pattern=NOT_BLANK,
        ),
    ] = None,
    fault: Annotated[Fault | None, Query(description="Simulated model only.")] = None,
    fail_after: Annotated[
        int | None, Query(ge=0, le=10_000, description="Simulated model only.")
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    if last_event_id is not None:
        # EventSource reconnecting to a stream that died with its connection: a new
        # generation would repeat the answer from id 1 (and bill it twice). 204 tells
        # EventSource to stop; `POST /v1/streams` is the resumable way.
        return Response(status_code=204)
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": message})
    simulation = (
        SimulationOptions(fault=fault, fail_after=fail_after)
        if fault is not None or fail_after is not None
        else None
    )
    try:
        body = StreamRequest.model_validate(
            {
                "messages": messages,
                "model": model,
                "separators": separators,
                "simulation": simulation,
            }
        )
    except ValidationError as exc:  # what the query's own checks cannot see (lone surrogates)
        raise RequestValidationError(exc.errors()) from exc
    return await post_stream(body, request, gateway, caller)


@router.get("/healthz", summary="Liveness, and which provider serves")
async def healthz(gateway: GatewayDep) -> dict[str, object]:
    return {
        "status": "ok",
        "provider": gateway.provider.name,
        "model": gateway.settings.model,
        "streams": len(gateway.live),
        # Which process answered: one of several with GEMINI_SSE_WORKERS.
        "pid": os.getpid(),
    }


@router.get(
    "/readyz", summary="Readiness: 503 while shutting down", responses={503: {"model": ErrorBody}}
)
async def readyz(gateway: GatewayDep) -> JSONResponse:
    if gateway.draining:
        body = {"error": {"code": "shutting_down", "message": "draining", "retryable": True}}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ready"})


@metrics_router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        401: {"model": ErrorBody, "description": "GEMINI_SSE_METRICS_API_KEY is set"},
    },
    summary="Prometheus metrics",
)
async def metrics(request: Request, gateway: GatewayDep) -> Response:
    expected = gateway.settings.metrics_api_key
    if expected is not None and not secret_matches(
        request.headers.get("authorization"), expected.get_secret_value()
    ):
        gateway.metrics.reject("auth")
        raise unauthorized("Metrics need `Authorization: Bearer <GEMINI_SSE_METRICS_API_KEY>`.")
    body, content_type = gateway.metrics.render()
    return Response(body, media_type=content_type)
