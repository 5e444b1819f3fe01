"""OpenAI's Responses API: a third wire format over the same pipeline.

`POST /v1/responses` turns OpenAI's request into the gateway's own and runs one
`Generation` as chat completions do (`routes._Completion`: keys and limits, timeouts,
retries, cancellation on disconnect, drain on shutdown), encoded by `responses.ResponseEncoder`.
With `background: true` the generation runs detached, as a resumable stream does
(`streams.produce`, with the Responses events as the stored frames, in memory or Redis):
`GET /v1/responses/{id}` tells its state or, with `stream=true`, replays its events after
`starting_after` and follows the rest, on any replica; `POST /v1/responses/{id}/cancel`
stops it. A stored response belongs to the API key that created it; any other key is told
it does not exist. Only background responses are kept: OpenAI keeps every response with
`store` on, the gateway keeps none it does not run detached.

Deliberate differences from OpenAI's service, as on `/v1/chat/completions`:
- A failure before any text is an HTTP error (`openai.RateLimitError`, ...), not a 200
  stream ending in `response.failed`, unless the model is slow to start (the stream then
  opens after `GEMINI_SSE_HEARTBEAT_S`, with `response.created` and heartbeats).
- A cancelled response's stream ends with `response.failed` (OpenAI's stream has no event
  for it), its response's status `cancelled` and its error code `cancelled`.
- `web_search` is Gemini's grounding in Google Search: its sources are `url_citation`
  annotations, but no `web_search_call` item shows the search.
- A `function_call` item carries Gemini's thought signature in
  `extra_content.google.thought_signature` (Google's own extension): replay it as it came.
- `strict` function schemas are accepted, not enforced; an effort above `high` is `high`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ..._exceptions import RequestRejected
from ..._models import DoneEvent, ErrorCode, ErrorEvent, ErrorInfo
from ..auth import Caller
from ..dependencies import CallerDep, GatewayDep, request_id_of
from ..encoding import dumps_ascii
from ..errors import OpenAIRoute, openai_error_response
from ..gateway import Gateway
from ..pipeline import Generation, PipelineEvent
from ..sse import event_stream
from ..store import Frame, StreamInfo, StreamNotFound
from ..streams import _store_errors, _visible, new_stream_id, start_detached
from .errors import OpenAIErrorBody
from .responses import ResponseEncoder, state_of
from .responses_models import ResponseError, ResponseObject, ResponseRequest
from .routes import _CLEANUP_S, _Completion

logger = logging.getLogger("gemini_sse.responses")

router = APIRouter(route_class=OpenAIRoute, tags=["OpenAI-compatible"])


# --- one response, on this connection -------------------------------------------------------


class _Response(_Completion):
    """Runs one generation as `_Completion` does, answered in the Responses API's shapes."""

    def __init__(
        self, gateway: Gateway, generation: Generation, encoder: ResponseEncoder, *, stream: bool
    ) -> None:
        super().__init__(gateway, generation, stream=stream, include_usage=False)
        self.encoder = encoder

    async def _chunks(
        self, first: PipelineEvent | None, receiver: MemoryObjectReceiveStream[PipelineEvent]
    ) -> AsyncIterator[bytes]:
        try:
            if first is None:  # a model slow to start: say the response exists meanwhile
                yield self.encoder.open()
            event = await self._next(receiver) if first is None else first
            while True:
                if data := self.encoder.encode(event):
                    yield data
                if self._ended:
                    return
                event = await self._next(receiver)
        finally:
            if not self._ended:  # the client left: stop the model before the slot is freed
                self._producer.cancel()
                with anyio.move_on_after(_CLEANUP_S, shield=True):
                    await self._produced.wait()

    async def _collect(
        self, receiver: MemoryObjectReceiveStream[PipelineEvent]
    ) -> tuple[Any, DoneEvent | ErrorEvent]:
        # The answer is the encoder's: built as a stream's items are, the output is the same.
        while True:
            event = await self._next(receiver)
            self.encoder.messages(event)
            if isinstance(event, DoneEvent | ErrorEvent):
                return self.encoder, event

    def _completion(self, answer: object, end: DoneEvent | ErrorEvent) -> Response:
        if isinstance(end, ErrorEvent) and not self.encoder.text:
            return openai_error_response(end.info)
        return JSONResponse(self.encoder.final(end).model_dump(mode="json"))


# --- routes -----------------------------------------------------------------------------------

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": OpenAIErrorBody, "description": description}
    for status, description in (
        (400, "Invalid or unsupported request"),
        (401, "A missing or wrong API key"),
        (404, "Model not served here, or no such response"),
        (413, "Request too large"),
        (429, "A rate limit (see Retry-After)"),
        (503, "Overloaded, shutting down, model or store unavailable (see Retry-After)"),
    )
}
_EVENTS = {"text/event-stream": {"schema": {"type": "string"}}}


def _refused(gateway: Gateway, param: str, message: str) -> JSONResponse:
    gateway.metrics.reject("validation")
    info = ErrorInfo(code=ErrorCode.INVALID_REQUEST, message=message)
    return openai_error_response(info, 400, param)


@router.post(
    "/v1/responses",
    response_model=None,
    responses={
        200: {
            "model": ResponseObject,
            "description": "A `response`, or with `stream: true` an event stream of the "
            "Responses API's events.",
            "content": _EVENTS,
        },
        **_ERRORS,
    },
    summary="A response, as OpenAI's Responses API serves it",
)
async def create_response(
    body: ResponseRequest, request: Request, gateway: GatewayDep, caller: CallerDep
) -> Response:
    refused = body.refusal()
    limit = gateway.settings.max_output_tokens
    if refused is None and body.max_output_tokens is not None and body.max_output_tokens > limit:
        refused = "max_output_tokens", f"`max_output_tokens` may be at most {limit}."
    if refused is not None:
        return _refused(gateway, *refused)
    try:
        native = body.to_stream_request()
    except ValidationError as exc:  # a blank message, invalid Unicode, too many tools
        error = exc.errors()[0]
        param = "tools" if error["loc"][:1] == ("tools",) else "input"
        return _refused(gateway, param, f"{param}: {error['msg']}")
    model_request = gateway.model_request(native)
    background = bool(body.background)
    response_id = f"resp_{new_stream_id()}" if background else f"resp_{uuid.uuid4().hex}"
    head = ResponseObject(
        id=response_id,
        created_at=int(time.time()),
        status="queued" if background else "in_progress",
        background=background,
        instructions=body.instructions,
        max_output_tokens=body.max_output_tokens,
        model=model_request.model,
        output=[],
        store=background,
        temperature=body.temperature,
        top_p=body.top_p,
        user=body.user,
        metadata=body.metadata or {},
        **body.echoed(),
    )
    encoder = ResponseEncoder(head, item_id=f"msg_{uuid.uuid4().hex}")
    generation = await gateway.admit(
        model_request,
        caller=caller,
        separators=False,
        request_id=request_id_of(request),
        stream_id=response_id if background else None,
        headers=request.headers,
    )
    if not background:
        return _Response(gateway, generation, encoder, stream=bool(body.stream))
    await start_detached(
        gateway,
        generation,
        response_id,
        owner=caller.key_id,
        # One frame per Responses event: frame id N holds sequence_number N - 1.
        encode=lambda _id, event: encoder.messages(event),
        created_at=head.created_at,
    )
    if body.stream:
        return _follow(gateway, request, response_id, 0)
    return JSONResponse(head.model_dump(mode="json"))


def _not_found(response_id: str) -> RequestRejected:
    return RequestRejected.of(
        404,
        ErrorCode.NOT_FOUND,
        f"No response with id {response_id!r}: only background responses are kept, "
        "for a while after they end.",
    )


async def _visible_info(gateway: Gateway, response_id: str, caller: Caller) -> StreamInfo:
    """The stored response if this caller may see it; 404 otherwise, ids cannot be probed."""
    async with _store_errors():
        info = _visible(await gateway.store.info(response_id), caller)
    # The store also holds `/v1/streams`' streams: those are not responses.
    if info is None or not response_id.startswith("resp_"):
        raise _not_found(response_id)
    return info


@router.get(
    "/v1/responses/{response_id}",
    response_model=None,
    responses={
        200: {
            "model": ResponseObject,
            "description": "The response as it stands, or with `stream=true` its events "
            "after `starting_after`, then live ones.",
            "content": _EVENTS,
        },
        **{status: _ERRORS[status] for status in (400, 401, 404, 429, 503)},
    },
    summary="A background response: its state, or its events",
)
async def retrieve_response(
    response_id: str,
    request: Request,
    gateway: GatewayDep,
    caller: CallerDep,
    stream: bool = False,
    starting_after: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    info = await _visible_info(gateway, response_id, caller)
    if stream:
        after = 0 if starting_after is None else starting_after + 1
        if after > info.events:
            raise RequestRejected.of(
                400,
                ErrorCode.INVALID_REQUEST,
                f"`starting_after` is past the last event of response {response_id!r}.",
            )
        return _follow(gateway, request, response_id, after)
    return JSONResponse((await _state(gateway, info)).model_dump(mode="json"))


@router.post(
    "/v1/responses/{response_id}/cancel",
    response_model=ResponseObject,
    responses={status: _ERRORS[status] for status in (401, 404, 429, 503)},
    summary="Stop a background response",
)
async def cancel_response(
    response_id: str, gateway: GatewayDep, caller: CallerDep
) -> ResponseObject:
    info = await _visible_info(gateway, response_id, caller)
    if info.status == "running":
        cancelled = ErrorInfo(code=ErrorCode.CANCELLED, message="The response was cancelled.")
        async with _store_errors():
            generation = gateway.detached.get(response_id)
            if generation is not None:
                generation.interrupt(cancelled)
            else:  # produced on another replica: its producer picks the flag up
                await gateway.store.request_cancel(response_id)
            # Answer with the response as the cancellation left it, if it ends in time.
            with (
                anyio.move_on_after(gateway.settings.stream_lease_s + 1),
                contextlib.suppress(
                    StreamNotFound  # expired meanwhile: the 404 below says so
                ),
            ):
                frames = gateway.store.follow(response_id, info.events)
                async with contextlib.aclosing(frames):  # type: ignore[type-var]
                    async for frame in frames:
                        if frame.terminal:
                            break
            info = await _visible_info(gateway, response_id, caller)
    return await _state(gateway, info)


async def _state(gateway: Gateway, info: StreamInfo) -> ResponseObject:
    """The response as its stored events tell it (`info.events` of them, read at once)."""
    messages: list[bytes] = []
    if info.events:
        async with _store_errors():
            frames = gateway.store.follow(info.id, 0)
            try:
                async with contextlib.aclosing(frames):  # type: ignore[type-var]
                    async for frame in frames:
                        messages.append(frame.data)
                        if len(messages) == info.events:
                            break
            except StreamNotFound:  # expired since `info` was read
                raise _not_found(info.id) from None
    state = state_of(messages)
    if state is None:  # its producer has not written yet
        return ResponseObject(
            id=info.id,
            created_at=int(info.created_at),
            status="queued",
            background=True,
            model=info.model,
            output=[],
            store=True,
        )
    if info.status != "running" and state.status in ("queued", "in_progress"):
        # Ended without a Responses event: its replica died (the store's `generation_lost`).
        lost = ResponseError(
            code=ErrorCode.GENERATION_LOST, message="The response was lost; ask again."
        )
        return state.model_copy(update={"status": "failed", "error": lost})
    return state


def _follow(gateway: Gateway, request: Request, response_id: str, after: int) -> Response:
    return event_stream(
        gateway,
        _messages(gateway.store.follow(response_id, after)),
        request_id=request_id_of(request),
        # A reader is cheap to cut at shutdown: it resumes with `starting_after`.
        shutdown_grace_s=min(1.0, gateway.settings.drain_s),
    )


async def _messages(frames: AsyncIterator[Frame]) -> AsyncIterator[bytes]:
    """Stored frames as the Responses API's events.

    Unlike `/v1/streams` no `retry:` goes first: the OpenAI SDKs' readers parse a message
    that holds only `retry:` as an event with empty data, and fail on it.
    """
    try:
        async with contextlib.aclosing(frames):  # type: ignore[type-var]
            async for frame in frames:
                if frame.data.startswith(b"event: response."):
                    yield frame.data
                elif frame.terminal:
                    yield _foreign_end(frame)
    except StreamNotFound:
        return  # expired since we looked
    except Exception:
        # The store failed mid-stream: end the response; the reader resumes with
        # `starting_after` and gets the rest or a clear 503.
        logger.warning("reading a response's events from the store failed", exc_info=True)


def _foreign_end(frame: Frame) -> bytes:
    """The store's own terminal event (a replica lost: `generation_lost`) as an `error` event."""
    error: dict[str, Any] = {}
    for line in frame.data.split(b"\n"):
        if line.startswith(b"data: "):
            with contextlib.suppress(ValueError):
                error = json.loads(line[6:])
    payload = {
        "type": "error",
        "code": str(error.get("code", ErrorCode.GENERATION_LOST)),
        "message": str(error.get("message", "The response was lost; ask again.")),
        "param": None,
        "sequence_number": frame.id - 1,
    }
    return f"event: error\ndata: {dumps_ascii(payload)}\n\n".encode()
