"""`POST /api/chat` for the Vercel AI SDK's `useChat`, with resume and stop.

Every answer runs detached, as a resumable stream (`streams.produce`, memory or Redis):
the POST that starts it follows it from the store, and `GET /api/chat/{id}/stream` (the
SDK's `resumeStream()`, e.g. after a reload) replays it from `start` while it runs, on any
replica. `DefaultChatTransport` resumes with `resumeStreamIsReplay: true` (its default),
so a replay of the whole message replaces what the page had: no text is shown twice.

The chat's `id` finds its answer through a small index in the same store: a stream of
its own whose frames are the ids of the chat's answers, newest last. With API keys it is
kept per key, so another key's callers see no active answer for the same chat id. (The
store's interface has no plain key-value entry; an append-only stream serves, on Redis
too, and its `append` settles a race between two answers started at once.)

Stopping: the SDK's `stop()` only aborts its fetch, which the gateway cannot tell from
a reload (both close the connection, and the answer must survive a reload to be
resumed). So closing the connection does not stop the model; the page calls
`POST /api/chat/{id}/stop` as well, which interrupts the producer wherever it runs.
A new message in the same chat stops the chat's previous answer too.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response

from ..._models import ErrorBody, ErrorCode, ErrorInfo
from ..auth import Caller
from ..dependencies import CallerDep, GatewayDep, request_id_of
from ..gateway import Gateway
from ..sse import EventStream, event_stream
from ..store import Frame, StreamInfo, StreamNotFound, StreamStore
from ..streams import _store_errors, new_stream_id, start_detached
from .encoding import DONE, STREAM_HEADER, UIMessageStreamEncoder, error_text, part
from .models import ChatRequest

router = APIRouter(prefix="/api/chat", tags=["Vercel AI SDK"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 413, 422, 429, 503)
}
_STREAM: dict[str, Any] = {
    "description": "The answer as the AI SDK's UI message stream (`data: {part}` lines).",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


def _chat_key(chat_id: str, request: Request, caller: Caller) -> str:
    """The store id of a chat's index: per key, and never a valid stream id.

    Derived from the key itself, not its public id: the index is a stream like any other,
    readable by id without a key (`/v1/streams/{id}/events`), and it names the chat's
    answers, so only the key's holder may be able to work it out. Without keys the chat
    id alone is the capability, as it is for `GET /api/chat/{id}/stream`.
    """
    secret = ""
    if caller.key_id is not None:  # authenticated, so the header holds a valid key
        secret = request.headers.get("authorization", "").split(None, 1)[-1].strip()
    digest = hashlib.sha256(f"{secret}\0{chat_id}".encode()).hexdigest()
    return f"chat.{digest[:40]}"


async def _active(store: StreamStore, chat_key: str) -> str | None:
    """The chat's newest answer if it is still running."""
    index = await store.info(chat_key)
    if index is None or index.events == 0:
        return None
    newest: str | None = None
    frames = store.follow(chat_key, index.events - 1)
    try:
        async with contextlib.aclosing(frames):  # type: ignore[type-var]
            async for frame in frames:
                newest = frame.data.decode()
                break
    except StreamNotFound:
        return None
    if newest is None:
        return None
    info = await store.info(newest)
    return newest if info is not None and info.status == "running" else None


async def _record(
    store: StreamStore, chat_key: str, stream_id: str, owner: str | None, ttl_s: float
) -> None:
    """Make `stream_id` the chat's newest answer."""
    index = await store.info(chat_key)
    if index is None:
        now = time.time()
        await store.create(
            StreamInfo(id=chat_key, model="", owner=owner, created_at=now, expires_at=now + ttl_s)
        )
        events = 0
    else:
        events = index.events
    # Two answers started at once for one chat race for the slot: the later one is newest.
    while not await store.append(chat_key, Frame(events + 1, "chat", stream_id.encode())):
        index = await store.info(chat_key)
        if index is None:
            raise StreamNotFound(chat_key)
        events = index.events
    # Keeps the index `stream_ttl_s` from now, which outlasts the answer when that is at
    # least `total_timeout_s` (both are 300 s by default). The status stays `running`:
    # the index has no end.
    await store.finish(chat_key, "running", None)


async def _stop(gateway: Gateway, stream_id: str) -> None:
    info = ErrorInfo(code=ErrorCode.CANCELLED, message="The answer was stopped.")
    generation = gateway.detached.get(stream_id)
    if generation is not None:
        generation.interrupt(info)
    else:  # produced on another replica: its lease keeper picks the request up
        await gateway.store.request_cancel(stream_id)


async def _parts(store: StreamStore, stream_id: str) -> AsyncIterator[bytes]:
    """The stored parts of an answer from its `start`, then live ones until `[DONE]`."""
    try:
        async with contextlib.aclosing(store.follow(stream_id, 0)) as frames:  # type: ignore[type-var]
            async for frame in frames:
                if frame.terminal and not frame.data.startswith(b"data: "):
                    # The store's own `generation_lost`, written in our typed format
                    # when the producing replica died.
                    lost = error_text(
                        ErrorCode.GENERATION_LOST, "The gateway producing this answer stopped."
                    )
                    yield part({"type": "error", "errorText": lost}) + DONE
                    return
                yield frame.data
    except StreamNotFound:
        return  # expired since we looked


def _response(gateway: Gateway, stream_id: str, request: Request) -> EventStream:
    response = event_stream(
        gateway,
        _parts(gateway.store, stream_id),
        request_id=request_id_of(request),
        # A reader is cheap to cut at shutdown: the page resumes elsewhere.
        shutdown_grace_s=min(1.0, gateway.settings.drain_s),
    )
    response.headers[STREAM_HEADER[0]] = STREAM_HEADER[1]
    return response


@router.post(
    "",
    response_class=EventStream,
    responses={200: _STREAM, **_ERRORS},
    summary="Answer a useChat conversation as a UI message stream",
)
async def chat(
    body: ChatRequest, request: Request, gateway: GatewayDep, caller: CallerDep
) -> Response:
    model_request = gateway.model_request(body.to_stream_request())
    store = gateway.store
    chat_key = _chat_key(body.id, request, caller)
    async with _store_errors():
        previous = await _active(store, chat_key)
    stream_id = new_stream_id()
    generation = await gateway.admit(
        model_request,
        caller=caller,
        separators=False,
        request_id=request_id_of(request),
        stream_id=stream_id,
        headers=request.headers,
    )

    async def index_it() -> None:
        await _record(store, chat_key, stream_id, caller.key_id, gateway.settings.stream_ttl_s)
        if previous is not None:
            await _stop(gateway, previous)  # one answer at a time per chat

    encoder = UIMessageStreamEncoder(
        f"msg-{secrets.token_hex(12)}",
        gateway.settings.aisdk_version,
        continuation=body.continuation,
    )
    await start_detached(
        gateway, generation, stream_id, owner=caller.key_id, encode=encoder, then=index_it
    )
    return _response(gateway, stream_id, request)


@router.get(
    "/{chat_id}/stream",
    response_class=EventStream,
    responses={
        200: {**_STREAM, "description": "The running answer, replayed from its `start`."},
        204: {"description": "No answer of this chat is running."},
        401: {"model": ErrorBody},
    },
    summary="Resume a chat's running answer (the SDK's resumeStream)",
)
async def resume(
    chat_id: str, request: Request, gateway: GatewayDep, caller: CallerDep
) -> Response:
    async with _store_errors():
        stream_id = await _active(gateway.store, _chat_key(chat_id, request, caller))
    if stream_id is None:
        return Response(status_code=204)
    return _response(gateway, stream_id, request)


@router.post(
    "/{chat_id}/stop",
    status_code=204,
    responses={401: {"model": ErrorBody}, 503: {"model": ErrorBody}},
    summary="Stop a chat's running answer (the model call is cancelled)",
)
async def stop(chat_id: str, request: Request, gateway: GatewayDep, caller: CallerDep) -> Response:
    async with _store_errors():
        stream_id = await _active(gateway.store, _chat_key(chat_id, request, caller))
        if stream_id is not None:
            await _stop(gateway, stream_id)
    return Response(status_code=204)
