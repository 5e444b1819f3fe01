"""Resumable streams: generations that outlive the connection that asked for them.

`POST /v1/streams` starts a generation whose events go to the store (memory or Redis);
`GET /v1/streams/{id}/events` replays them after `Last-Event-ID` and follows the rest,
on any replica; `DELETE` cancels; `GET /v1/streams/{id}` tells the status.

With API keys, a stream belongs to the key that created it. Reading its events needs no
key, because EventSource cannot send one: the unguessable, short-lived id is the
capability. Status and cancel need the owner's key; any other key is told the stream
does not exist, so that ids cannot be probed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Annotated, TypeVar

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from .._exceptions import RequestRejected
from .._models import (
    DoneEvent,
    ErrorBody,
    ErrorCode,
    ErrorEvent,
    ErrorInfo,
    StreamCreated,
    StreamRequest,
    StreamStatus,
)
from .auth import Caller
from .dependencies import CallerDep, GatewayDep, request_id_of
from .encoding import encode_sse, retry_hint
from .gateway import Gateway
from .pipeline import Generation, PipelineEvent, event_name
from .settings import Settings
from .sse import EventStream, event_stream
from .store import Frame, Status, StreamInfo, StreamNotFound, StreamStore

logger = logging.getLogger("gemini_sse.streams")

router = APIRouter(prefix="/v1/streams", tags=["resumable streams"])

T = TypeVar("T")


def new_stream_id() -> str:
    """192 random bits, URL-safe: the id is also the capability to read the stream."""
    return secrets.token_urlsafe(24)


class StoreGaveOut(Exception):
    """The store kept failing for longer than a producer waits (`stream_store_retry_s`)."""


# How `produce` stores events: (the id of the event's first frame, the event) to its SSE
# messages, one frame each. Our typed SSE makes one message of an event; another wire
# format may make several (OpenAI's Responses API) or none.
FrameEncoder = Callable[[int, PipelineEvent], Sequence[bytes]]


def _typed_sse(retry_ms: int, event_id: int, event: PipelineEvent) -> Sequence[bytes]:
    return (encode_sse(event_id, event, retry_ms=retry_hint(event, retry_ms)),)


async def produce(
    gateway: Gateway, stream_id: str, generation: Generation, encode: FrameEncoder | None = None
) -> None:
    """Run a detached generation, appending each encoded event to the store.

    `encode` is the wire format of the stored frames (our typed SSE unless told).
    A failing store (Redis restarting, paused, or briefly unreachable) holds the
    generation back rather than ending it: each write is retried until it lands or the
    store has failed for `stream_store_retry_s`. The model's stream waits meanwhile, so
    nothing is dropped and nothing is reordered.
    """
    store = gateway.store
    s = gateway.settings
    encode = encode or partial(_typed_sse, s.retry_hint_ms)
    event_id = 0
    stored_bytes = 0
    lease = asyncio.create_task(_keep_lease(store, stream_id, generation, s.stream_lease_s))
    ended = False
    try:
        async with gateway.running(generation) as events:
            async for event in events:
                terminal = isinstance(event, DoneEvent | ErrorEvent)
                if not terminal and (
                    event_id + 1 >= s.stream_max_events or stored_bytes >= s.stream_max_bytes
                ):
                    # Keep one slot for the terminal event the interruption produces.
                    generation.interrupt(
                        ErrorInfo(
                            code=ErrorCode.STREAM_LIMIT,
                            message="The answer exceeded the gateway's per-stream limit.",
                        )
                    )
                    continue
                messages = encode(event_id + 1, event)
                for index, data in enumerate(messages):
                    event_id += 1
                    # Only an event's last frame may end the stream (`Frame.terminal`).
                    kind = event_name(event) if index == len(messages) - 1 else "part"
                    stored_bytes += len(data)
                    frame = Frame(event_id, kind, data)
                    appended = await _persist(partial(store.append, stream_id, frame), s)
                    if not appended:
                        # Declared lost by a reader (this replica looked dead) or expired.
                        logger.warning("stream %s was closed under its producer", stream_id)
                        generation.abandon(ErrorCode.GENERATION_LOST)
                        return
                if isinstance(event, DoneEvent | ErrorEvent):
                    status = _status_of(event)
                    await _persist(partial(store.finish, stream_id, status, event.usage), s)
                    ended = True
    except StoreGaveOut:
        # Nothing more can be written; readers see the stream as lost once the lease,
        # no longer renewed, lapses.
        logger.warning("stream %s was given up: the store failed for too long", stream_id)
        generation.abandon(ErrorCode.STORE_UNAVAILABLE)
    except Exception:
        logger.exception("producer of stream %s failed", stream_id)
        generation.abandon(ErrorCode.INTERNAL)
        if not ended:
            failed = ErrorEvent(code=ErrorCode.INTERNAL, message="The gateway failed unexpectedly.")
            with contextlib.suppress(Exception):
                messages = encode(event_id + 1, failed)
                for index, data in enumerate(messages):
                    event_id += 1
                    kind = "error" if index == len(messages) - 1 else "part"
                    if not await store.append(stream_id, Frame(event_id, kind, data)):
                        break
                else:
                    await store.finish(stream_id, "error", generation.usage)
    finally:
        lease.cancel()
        gateway.detached.pop(stream_id, None)


async def _persist(write: Callable[[], Awaitable[T]], settings: Settings) -> T:
    """`write()`, retried with backoff while the store fails, up to `stream_store_retry_s`.

    Writes are idempotent (an event's id is its slot), so a write that landed although
    its reply was lost is safe to repeat.
    """
    loop = asyncio.get_running_loop()
    give_up = loop.time() + settings.stream_store_retry_s
    delay = 0.05
    failures = 0
    while True:
        try:
            result = await write()
        except Exception as exc:
            failures += 1
            if loop.time() + delay > give_up:
                raise StoreGaveOut() from exc
            if failures == 1:
                logger.warning("the stream store failed (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            continue
        if failures:
            logger.info("the stream store is back after %d failed writes", failures)
        return result


async def _keep_lease(
    store: StreamStore, stream_id: str, generation: Generation, lease_s: float
) -> None:
    """Renew the producer's lease, and pick up cancel requests made on other replicas
    that `stop_cancelled_producers` missed (made while it was reconnecting)."""
    while True:
        await asyncio.sleep(lease_s / 3)
        try:
            if store.needs_lease:
                await store.renew_lease(stream_id)
            if await store.cancel_requested(stream_id):
                generation.interrupt(_cancelled())
        except Exception as exc:
            # The writes say the same louder (`_persist`); a stack trace per renewal of
            # every stream during an outage would drown the log.
            logger.info("could not renew the lease of stream %s: %s", stream_id, exc)


async def stop_cancelled_producers(gateway: Gateway) -> None:
    """Interrupt this replica's producers as soon as any replica asks one to stop (the
    store's `cancellations`), instead of at the lease keeper's next look at the flag:
    a third of the lease later, 1.7 s with the default lease."""
    async for stream_id in gateway.store.cancellations():
        generation = gateway.detached.get(stream_id)
        if generation is not None:
            generation.interrupt(_cancelled())


def _cancelled() -> ErrorInfo:
    return ErrorInfo(code=ErrorCode.CANCELLED, message="The stream was cancelled.")


def _status_of(event: DoneEvent | ErrorEvent) -> Status:
    if isinstance(event, DoneEvent):
        return "done"
    return "cancelled" if event.code == ErrorCode.CANCELLED else "error"


def _visible(info: StreamInfo | None, caller: Caller) -> StreamInfo | None:
    """The stream if this caller may see it: its owner's key, or keys were not in use."""
    if info is None or info.owner is None or caller.key_id is None:
        return info
    return info if info.owner == caller.key_id else None


#: What a `Last-Event-ID` may be (the OpenAPI document says the same).
LAST_EVENT_ID_PATTERN = r"^[ \t]*([0-9]{1,18})?[ \t]*$"


def _bad_last_event_id() -> RequestRejected:
    return RequestRejected.of(
        422, ErrorCode.INVALID_REQUEST, "Last-Event-ID must be an event id from this stream."
    )


def _not_found(stream_id: str) -> RequestRejected:
    return RequestRejected.of(
        404, ErrorCode.NOT_FOUND, f"No stream {stream_id!r}: it never existed or has expired."
    )


@router.post(
    "",
    status_code=201,
    responses={
        400: {"model": ErrorBody},
        401: {"model": ErrorBody},
        413: {"model": ErrorBody},
        422: {"model": ErrorBody},
        429: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
    summary="Start a generation that outlives the connection",
)
async def create_stream(
    body: StreamRequest, request: Request, gateway: GatewayDep, caller: CallerDep
) -> JSONResponse:
    model_request = gateway.model_request(body)
    stream_id = new_stream_id()
    generation = await gateway.admit(
        model_request,
        caller=caller,
        separators=body.separators,
        request_id=request_id_of(request),
        stream_id=stream_id,
        headers=request.headers,
    )
    info = await start_detached(gateway, generation, stream_id, owner=caller.key_id)
    created = StreamCreated(
        id=stream_id, events_url=f"/v1/streams/{stream_id}/events", expires_at=info.expires_at
    )
    return JSONResponse(
        created.model_dump(), status_code=201, headers={"Location": created.events_url}
    )


async def start_detached(
    gateway: Gateway,
    generation: Generation,
    stream_id: str,
    *,
    owner: str | None,
    encode: FrameEncoder | None = None,
    created_at: float | None = None,
    then: Callable[[], Awaitable[None]] | None = None,
) -> StreamInfo:
    """Record an admitted generation as a stream in the store, and produce it detached.

    The one way every route starts a generation that outlives its request (resumable
    streams, background responses, AI SDK chats). `then` runs after the stream is recorded,
    still before the generation starts (the AI SDK's index of a chat's answers). If the
    store fails (503 `store_unavailable`) or anything else goes wrong first, the
    generation's books are closed and its admission slot freed.
    """
    s = gateway.settings
    now = time.time()
    info = StreamInfo(
        id=stream_id,
        model=generation.request.model,
        owner=owner,
        created_at=now if created_at is None else created_at,
        expires_at=now + s.total_timeout_s + s.stream_ttl_s,
    )
    try:
        async with _store_errors():
            await gateway.store.create(info)
            if then is not None:
                await then()
    except BaseException:
        gateway.finish(generation)
        raise
    gateway.detached[stream_id] = generation
    gateway.spawn(produce(gateway, stream_id, generation, encode))
    return info


@contextlib.asynccontextmanager
async def _store_errors() -> AsyncIterator[None]:
    """The store (Redis) failing becomes a retryable 503, not a 500."""
    try:
        yield
    except RequestRejected:
        raise
    except Exception as exc:
        logger.warning("the stream store failed: %s", exc, exc_info=True)
        raise RequestRejected.of(
            503,
            ErrorCode.STORE_UNAVAILABLE,
            "The stream store is unavailable; retry shortly.",
            retryable=True,
            retry_after=1,
        ) from exc


async def _frames(frames: AsyncIterator[Frame], retry_ms: int) -> AsyncIterator[bytes]:
    # A reader of a resumable stream is meant to come back: tell EventSource how soon
    # (its own default is a few seconds). A `retry` field alone dispatches no event.
    yield f"retry: {retry_ms}\n\n".encode()
    try:
        async with contextlib.aclosing(frames):  # type: ignore[type-var]
            async for frame in frames:
                yield frame.data
    except StreamNotFound:
        return  # expired since we looked: the reconnect gets 204
    except Exception:
        # The store failed mid-stream: end the response; the reader reconnects with
        # Last-Event-ID and gets either the rest or a clear 503.
        logger.warning("reading a stream from the store failed", exc_info=True)


@router.get(
    "/{stream_id}/events",
    response_class=EventStream,
    responses={
        200: {
            "description": "The stream's events after Last-Event-ID, then live ones.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        204: {"description": "Unknown or expired stream, to an EventSource (it stops)."},
        404: {"model": ErrorBody, "description": "Unknown or expired stream, to other clients."},
    },
    summary="Read a stream from where the reader left off",
    description="Needs no API key: the stream id, returned only to the key that created "
    "it, is the capability to read it (EventSource cannot send headers).",
)
async def stream_events(
    stream_id: str,
    request: Request,
    gateway: GatewayDep,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[str | None, Query(description="For the first connect")] = None,
) -> Response:
    raw = last_event_id_header if last_event_id_header is not None else last_event_id
    after = 0
    if raw is not None:
        # ASCII digits only (str.isdigit also takes "²"), no longer than an id can be;
        # blank means none, as EventSource sends it before it has seen an id.
        found = re.fullmatch(LAST_EVENT_ID_PATTERN, raw)
        if found is None:
            raise _bad_last_event_id()
        after = int(found[1] or 0)
    async with _store_errors():
        info = await gateway.store.info(stream_id)
    if info is None:
        if "text/event-stream" in request.headers.get("accept", ""):
            return Response(status_code=204)  # EventSource stops reconnecting on 204
        raise _not_found(stream_id)
    if after > info.events:
        raise _bad_last_event_id()  # an id this stream never sent
    return event_stream(
        gateway,
        _frames(gateway.store.follow(stream_id, after), gateway.settings.retry_hint_ms),
        request_id=request_id_of(request),
        # A reader is cheap to cut at shutdown: it reconnects with Last-Event-ID. The short
        # grace lets a local producer's `shutting_down` event through first.
        shutdown_grace_s=min(1.0, gateway.settings.drain_s),
    )


@router.get(
    "/{stream_id}",
    response_model=StreamStatus,
    response_model_exclude_none=True,
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}},
    summary="A stream's status, event count and usage",
)
async def stream_status(stream_id: str, gateway: GatewayDep, caller: CallerDep) -> StreamStatus:
    async with _store_errors():
        info = _visible(await gateway.store.info(stream_id), caller)
    if info is None:
        raise _not_found(stream_id)
    return StreamStatus(
        id=info.id,
        status=info.status,
        model=info.model,
        events=info.events,
        usage=info.usage,
        created_at=info.created_at,
        expires_at=info.expires_at,
    )


@router.delete(
    "/{stream_id}",
    status_code=202,
    response_model=StreamStatus,
    response_model_exclude_none=True,
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}},
    summary="Cancel a running stream",
)
async def cancel_stream(stream_id: str, gateway: GatewayDep, caller: CallerDep) -> StreamStatus:
    async with _store_errors():
        if _visible(await gateway.store.info(stream_id), caller) is None:
            raise _not_found(stream_id)
        generation = gateway.detached.get(stream_id)
        if generation is not None:
            generation.interrupt(_cancelled())
        elif not await gateway.store.request_cancel(stream_id):
            raise _not_found(stream_id)
    return await stream_status(stream_id, gateway, caller)
