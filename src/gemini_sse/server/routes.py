"""HTTP routes: requests in, checked, started, and their events out as SSE."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from .._models import ErrorBody, Fault, SimulationOptions, StreamRequest
from .encoding import encode_sse, retry_hint
from .gateway import Gateway
from .pipeline import Generation

router = APIRouter()


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def request_id_of(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


GatewayDep = Annotated[Gateway, Depends(get_gateway)]

_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Model not allowed"),
        (413, "Request too large"),
        (422, "Invalid request"),
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
    try:
        # aclosing: when the response stops early (disconnect, send timeout), the
        # pipeline and the provider call under it are closed now, not at garbage collection.
        async with contextlib.aclosing(generation.events()) as events:
            event_id = 0
            async for event in events:
                event_id += 1
                yield encode_sse(event_id, event, retry_ms=retry_hint(event, retry_ms))
    finally:
        gateway.finish(generation)


def event_stream(
    gateway: Gateway, generation: Generation, request_id: str | None
) -> EventSourceResponse:
    """The SSE response for one generation."""
    s = gateway.settings
    return EventSourceResponse(
        _sse_body(gateway, generation),
        headers={"X-Request-ID": request_id} if request_id else None,
        ping=s.heartbeat_s,
        ping_message_factory=lambda: ServerSentEvent(comment="ping"),
        sep="\n",
        send_timeout=s.send_timeout_s,
        shutdown_event=gateway.shutdown_event,
        shutdown_grace_period=s.drain_s,
        # Runs even when the body never starts (HEAD): the admission slot is freed.
        background=BackgroundTask(gateway.finish, generation),
    )


@router.post(
    "/v1/stream",
    response_class=EventSourceResponse,
    responses=_SSE_RESPONSE,
    summary="Stream an answer as typed server-sent events",
)
async def post_stream(
    body: StreamRequest, request: Request, gateway: GatewayDep
) -> EventSourceResponse:
    request_id = request_id_of(request)
    model_request = gateway.model_request(body)
    generation = gateway.start(model_request, separators=body.separators, request_id=request_id)
    return event_stream(gateway, generation, request_id)


@router.get(
    "/v1/stream",
    response_class=EventSourceResponse,
    responses=_SSE_RESPONSE,
    summary="Stream an answer to one message (for EventSource, which can only GET)",
)
async def get_stream(
    request: Request,
    gateway: GatewayDep,
    message: Annotated[str, Query(description="The user's message.")],
    model: str | None = None,
    separators: bool | None = None,
    system: Annotated[str | None, Query(description="An optional system prompt.")] = None,
    fault: Annotated[Fault | None, Query(description="Simulated model only.")] = None,
    fail_after: Annotated[int | None, Query(ge=0, description="Simulated model only.")] = None,
) -> EventSourceResponse:
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
    return await post_stream(body, request, gateway)


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
