"""HTTP routes: requests in, checked, started, and their events out as SSE."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.background import BackgroundTask
from starlette.types import Message, Receive, Scope, Send

from .._models import ErrorBody, ErrorInfo, Fault, SimulationOptions, StreamRequest, TokenEvent
from .auth import Caller, secret_matches, unauthorized
from .deadline import Deadline
from .encoding import encode_sse, retry_hint
from .gateway import Gateway
from .pipeline import Generation

logger = logging.getLogger("gemini_sse.routes")

router = APIRouter()
# Served unless GEMINI_SSE_METRICS=false; app.py decides.
metrics_router = APIRouter()


async def get_gateway(request: Request) -> Gateway:
    # async: FastAPI would run a plain function in its thread pool, for every request.
    gateway: Gateway = request.app.state.gateway
    return gateway


def error_headers(status_code: int, info: ErrorInfo) -> dict[str, str]:
    """The headers every HTTP error carries, in our error shape or OpenAI's."""
    headers = {}
    if info.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(info.retry_after)))
    if status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"  # RFC 6750 section 3
    return headers


def request_id_of(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


async def authorized(request: Request, gateway: GatewayDep) -> Caller:
    """The caller of an API route: its key checked (when keys are set), its request counted.

    Also in `request.state` (`caller`, `key_id`) for code that does not declare it.
    """
    client = request.client.host if request.client is not None else None
    caller = await gateway.authorize(request.headers.get("authorization"), client)
    request.state.caller = caller
    request.state.key_id = caller.key_id
    return caller


CallerDep = Annotated[Caller, Depends(authorized)]

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
        "description": "An event stream of `token`, `separator`, then `done` or `error`.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    **_ERRORS,
}


async def _sse_body(gateway: Gateway, generation: Generation) -> AsyncIterator[bytes]:
    retry_ms = gateway.settings.retry_hint_ms
    run = gateway.run_of(generation)
    try:
        # aclosing: when the response stops early (disconnect, send timeout), the
        # pipeline and the provider call under it are closed now, not at garbage collection.
        async with contextlib.aclosing(generation.events()) as events:
            event_id = 0
            async for event in events:
                event_id += 1
                if type(event) is TokenEvent and run is not None:
                    run.token(event.text)
                yield encode_sse(event_id, event, retry_ms=retry_hint(event, retry_ms))
    finally:
        gateway.finish(generation)


# Set in the task serving a response that was ended on purpose because its client
# stopped reading; uvicorn logs from that same task once the response returns.
_dropped_on_purpose: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "gemini_sse_dropped_on_purpose", default=False
)


class DroppedResponseFilter(logging.Filter):
    """Drop uvicorn's error line for a response the gateway ended on purpose.

    ASGI has no way to abort a response: one that cannot be completed (its client is
    not reading, so the final write would block) can only be abandoned, and uvicorn then
    logs "ASGI callable returned without completing response" at ERROR and closes the
    connection, which is what we want, without the ERROR. Installed on `uvicorn.error`.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        return not (
            _dropped_on_purpose.get()
            and isinstance(message, str)
            and message.startswith("ASGI callable returned without completing")
        )


class EventStream(EventSourceResponse):
    """sse-starlette's response, with two deliberate deviations.

    - A client that stops reading is routine: sse-starlette ends its stream with
      `SendTimeoutError` (after `send_timeout`; one from each task that was sending, the
      body's and the heartbeat's, in an exception group), which would reach the ASGI
      server as an error with a traceback, so any client could fill the error log by not
      reading. It is logged here at info, once, as what it is.
    - The send timeout itself is enforced more cheaply (see `_send_with_timeout`).
    """

    _deadlines: dict[asyncio.Task[Any], Deadline]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._deadlines = {}
        try:
            await super().__call__(scope, receive, send)
        except* SendTimeoutError:
            _dropped_on_purpose.set(True)
            logger.info("a client stopped reading; its stream was dropped after the send timeout")
        finally:
            for deadline in self._deadlines.values():
                deadline.close()

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        # Deliberate deviation, measured (docs/benchmarks.md, "Where the gateway's CPU
        # goes"): sse-starlette bounds every send with an anyio cancel scope, 5-7 us a send
        # and the largest single cost of a token here. One `Deadline` per sending task
        # bounds each send the same way (`send_timeout`, then `SendTimeoutError`) for a
        # float stored per send.
        if self.send_timeout is None:
            await send(message)
            return
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        deadline = self._deadlines.get(task)
        if deadline is None:
            deadline = self._deadlines[task] = Deadline(loop)
        deadline.wait(loop.time() + self.send_timeout)
        try:
            await send(message)
        except asyncio.CancelledError:
            if deadline.expired():
                raise SendTimeoutError() from None
            raise
        finally:
            deadline.waiting = False


def heartbeat() -> ServerSentEvent:
    """The `: ping` comment sent while a stream is quiet (LF-terminated like our events)."""
    return ServerSentEvent(comment="ping", sep="\n")


def event_stream(
    gateway: Gateway,
    generation: Generation,
    request_id: str | None,
    body: AsyncIterator[bytes] | None = None,
) -> EventSourceResponse:
    """The SSE response for one generation; `body` replaces our typed events (OpenAI's)."""
    s = gateway.settings
    return EventStream(
        _sse_body(gateway, generation) if body is None else body,
        headers={"X-Request-ID": request_id} if request_id else None,
        ping=s.heartbeat_s,
        ping_message_factory=heartbeat,
        sep="\n",
        send_timeout=s.send_timeout_s,
        shutdown_event=gateway.shutdown_event,
        shutdown_grace_period=s.drain_s,
        # However the response ends (even if its body never ran), the admission slot is
        # freed. An async callable: Starlette would run a plain function in a thread.
        background=BackgroundTask(_release, gateway, generation),
    )


async def _release(gateway: Gateway, generation: Generation) -> None:
    gateway.finish(generation)


@router.post(
    "/v1/stream",
    response_class=EventSourceResponse,
    responses=_SSE_RESPONSE,
    summary="Stream an answer as typed server-sent events",
)
async def post_stream(
    body: StreamRequest, request: Request, gateway: GatewayDep, caller: CallerDep
) -> EventSourceResponse:
    request_id = request_id_of(request)
    model_request = gateway.model_request(body)
    generation = await gateway.admit(
        model_request, caller=caller, separators=body.separators, request_id=request_id
    )
    return event_stream(gateway, generation, request_id)


@router.get(
    "/v1/stream",
    response_class=EventSourceResponse,
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
    message: Annotated[str, Query(description="The user's message.")],
    model: str | None = None,
    separators: bool | None = None,
    system: Annotated[str | None, Query(description="An optional system prompt.")] = None,
    fault: Annotated[Fault | None, Query(description="Simulated model only.")] = None,
    fail_after: Annotated[int | None, Query(ge=0, description="Simulated model only.")] = None,
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
    body = StreamRequest.model_validate(
        {"messages": messages, "model": model, "separators": separators, "simulation": simulation}
    )
    return await post_stream(body, request, gateway, caller)


@router.get("/healthz", summary="Liveness, and which provider serves")
async def healthz(gateway: GatewayDep) -> dict[str, object]:
    return {
        "status": "ok",
        "provider": gateway.provider.name,
        "model": gateway.settings.model,
        "streams": len(gateway.live),
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
