"""OpenAI-compatible routes: a second wire format over the same pipeline.

`POST /v1/chat/completions` turns OpenAI's request into the gateway's own, admits it and
runs one `Generation` as `/v1/stream` does (keys and limits, timeouts, retries,
cancellation on disconnect, drain on shutdown), then encodes its events as a `chat.completion.chunk`
stream (`encoding.ChunkEncoder`) or as one `chat.completion`. `GET /v1/models` lists the allow-list.
Errors take OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with the
gateway's stable code in `code` and the HTTP status OpenAI's SDKs turn into their own
exception classes. The SDKs read the stream as in openai-python's `_streaming.py`.

Deliberate differences from OpenAI's service:
- The response starts once the answer's first event is known, so a failure before any
  text is an HTTP error (`openai.RateLimitError`, ...), never a 200 stream holding one error.
  Except when the model is slow to start: after `GEMINI_SSE_HEARTBEAT_S` of silence the
  stream opens anyway, so that heartbeats keep proxies (60-125 s idle limits are common)
  from cutting a model that thinks for minutes; a failure after that is a
  `data: {"error": ...}` line, which the SDKs raise as `APIError`.
- A failure after some text is one `data: {"error": ...}` line, and the stream ends
  without `data: [DONE]`: the SDKs raise `APIError` on it, and a reader that waits for
  `[DONE]` rightly sees an incomplete answer.
- Heartbeats are SSE comments (`: ping`), which SSE readers skip.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.convertors import Convertor, register_url_convertor
from starlette.types import Receive, Scope, Send

from ..._exceptions import RequestRejected
from ..._models import (
    DoneEvent,
    ErrorCode,
    ErrorEvent,
    ErrorInfo,
    ReasoningEvent,
    SourceEvent,
    ToolCallEvent,
)
from ..dependencies import CallerDep, GatewayDep, request_id_of
from ..errors import OpenAIRoute, openai_error_response
from ..gateway import Gateway
from ..pipeline import Generation, PipelineEvent
from ..sse import event_stream
from .answers import completion_usage, finish_reason, tool_call, url_citations
from .encoding import ChunkEncoder
from .errors import OpenAIErrorBody
from .models import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ModelCard,
    ModelList,
)
from .translate import Refusal

T = TypeVar("T")

# --- one completion -----------------------------------------------------------------------

# How long a stream that ends early waits for its generation to let go of the model.
_CLEANUP_S = 5.0


@dataclass
class _Answer:
    """A whole answer, collected for a `stream: false` request."""

    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: list[ToolCallEvent] = field(default_factory=list)
    sources: list[SourceEvent] = field(default_factory=list)

    def message(self) -> AssistantMessage:
        text = "".join(self.text)
        return AssistantMessage(
            # OpenAI's content is null beside calls when the model wrote nothing.
            content=text if text or not self.calls else None,
            annotations=url_citations(self.sources),
            tool_calls=[tool_call(call) for call in self.calls] or None,
            reasoning_content="".join(self.reasoning) or None,
        )


class _Silent:
    """What `_next_within` returns when the model stays silent."""


_SILENT = _Silent()


async def _unless_disconnected(receive: Receive, work: Callable[[], Awaitable[T]]) -> T | None:
    """`work()`, or None as soon as the client disconnects."""
    result: T | None = None

    async def watch(scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch, tg.cancel_scope)
        result = await work()
        tg.cancel_scope.cancel()
    return result


class _Completion(Response):
    """Runs one generation and answers once enough of it is known.

    The generation runs in a task of its own from its first event to its last (the
    pipeline's clock belongs to the task that iterates it), so the first event can be
    awaited here, before a status line is chosen, and the rest streamed from there.
    """

    def __init__(
        self, gateway: Gateway, generation: Generation, *, stream: bool, include_usage: bool
    ) -> None:
        super().__init__()
        self.gateway = gateway
        self.generation = generation
        self.stream = stream
        self.include_usage = include_usage
        self.completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self._producer = anyio.CancelScope()
        self._produced = anyio.Event()
        self._ended = False  # the terminal event has been taken
        self.answer = _Answer()  # all of it, for `stream: false`

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sender, receiver = anyio.create_memory_object_stream[PipelineEvent]()
        try:
            with sender, receiver:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._produce, sender)
                    response = await self._respond(receiver, receive)
                    if response is not None:
                        await response(scope, receive, send)
                    if not self._ended:
                        self._producer.cancel()
        finally:
            # The producer may never have started (its client left at once).
            self.gateway.finish(self.generation)

    async def _produce(self, sender: MemoryObjectSendStream[PipelineEvent]) -> None:
        try:
            with self._producer:
                async with self.gateway.running(self.generation) as events:
                    async for event in events:
                        await sender.send(event)
        finally:
            self._produced.set()

    async def _next(self, receiver: MemoryObjectReceiveStream[PipelineEvent]) -> PipelineEvent:
        event = await receiver.receive()
        if isinstance(event, DoneEvent | ErrorEvent):
            self._ended = True
        return event

    async def _next_within(
        self, receiver: MemoryObjectReceiveStream[PipelineEvent], seconds: float
    ) -> PipelineEvent | _Silent:
        """The next event, or `_SILENT` once `seconds` pass without one (0: no limit)."""
        if not seconds:
            return await self._next(receiver)
        with anyio.move_on_after(seconds):
            return await self._next(receiver)
        return _SILENT

    async def _respond(
        self, receiver: MemoryObjectReceiveStream[PipelineEvent], receive: Receive
    ) -> Response | None:
        """The response, once enough of the answer is known; None if the client left."""
        if self.stream:
            patience = self.gateway.settings.heartbeat_s
            first = await _unless_disconnected(
                receive, lambda: self._next_within(receiver, patience)
            )
            if first is None:
                return None
            if isinstance(first, ErrorEvent):
                return openai_error_response(first.info)
            body = self._chunks(None if isinstance(first, _Silent) else first, receiver)
            return event_stream(self.gateway, body, request_id=self.generation.request_id)
        collected = await _unless_disconnected(receive, lambda: self._collect(receiver))
        return None if collected is None else self._completion(*collected)

    async def _chunks(
        self, first: PipelineEvent | None, receiver: MemoryObjectReceiveStream[PipelineEvent]
    ) -> AsyncIterator[bytes]:
        encoder = ChunkEncoder(
            self.completion_id, self.created, self.generation.request.model, self.include_usage
        )
        try:
            # Opened before the first event (a model slow to start): heartbeats flow while
            # it is awaited here.
            event = await self._next(receiver) if first is None else first
            while True:
                if data := encoder.encode(event):
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
    ) -> tuple[str, DoneEvent | ErrorEvent]:
        """The answer's text and how it ended; the rest of it is kept in `self.answer`."""
        answer = self.answer
        while True:
            event = await self._next(receiver)
            if isinstance(event, str):
                answer.text.append(event)
            elif isinstance(event, ReasoningEvent):
                answer.reasoning.append(event.text)
            elif isinstance(event, ToolCallEvent):  # whole: its pieces are not needed
                answer.calls.append(event)
            elif isinstance(event, SourceEvent):
                answer.sources.append(event)
            elif isinstance(event, DoneEvent | ErrorEvent):
                return "".join(answer.text), event

    def _completion(self, text: str, end: DoneEvent | ErrorEvent) -> Response:
        # Withheld after some text: OpenAI's answer is the text so far, `content_filter`.
        if isinstance(end, ErrorEvent) and not (end.code == ErrorCode.CONTENT_BLOCKED and text):
            return openai_error_response(end.info)
        completion = ChatCompletion(
            id=self.completion_id,
            created=self.created,
            model=self.generation.request.model,
            choices=[Choice(message=self.answer.message(), finish_reason=finish_reason(end))],
            usage=completion_usage(end.usage),
        )
        return JSONResponse(completion.model_dump(mode="json"))


# --- routes -------------------------------------------------------------------------------

router = APIRouter(route_class=OpenAIRoute, tags=["OpenAI-compatible"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": OpenAIErrorBody, "description": description}
    for status, description in (
        (400, "Invalid or unsupported request"),
        (401, "API key missing or not valid (when the gateway has keys)"),
        (404, "Model not served here"),
        (413, "Request too large"),
        (429, "The model's rate limit (see Retry-After)"),
        (500, "The gateway failed"),
        (502, "The model failed, refused the gateway's credentials, or cut the answer"),
        (503, "Overloaded, shutting down or model unavailable (see Retry-After)"),
        (504, "The model did not answer in time"),
    )
}


class _AnyText(Convertor[str]):
    """A path segment of any characters, newlines too: a model id is the client's text,
    and an odd one must reach `retrieve_model` (and its OpenAI-shaped 404), not miss
    every route (Starlette's `path` stops at a newline)."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anytext", _AnyText())


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses={
        200: {
            "model": ChatCompletion,
            "description": "A `chat.completion`, or with `stream: true` an event stream of "
            "`chat.completion.chunk` objects ending in `[DONE]`.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **_ERRORS,
    },
    summary="Chat completions, as OpenAI's API serves them",
)
async def create_chat_completion(
    body: ChatCompletionRequest, request: Request, gateway: GatewayDep, caller: CallerDep
) -> Response:
    try:
        native = body.to_stream_request()
        limit = gateway.settings.max_output_tokens
        for param in ("max_completion_tokens", "max_tokens"):  # each, though one wins
            asked = getattr(body, param)
            if asked is not None and asked > limit:
                raise Refusal(param, f"`{param}` may be at most {limit}.")
    except Refusal as refused:
        gateway.metrics.reject("validation")
        info = ErrorInfo(code=ErrorCode.INVALID_REQUEST, message=refused.message)
        return openai_error_response(info, 400, refused.param)
    # Its refusals (media too large or of a type not served, ...) take OpenAI's shape in
    # the error handlers, as every error of this route does (`errors.OpenAIRoute`).
    model_request = gateway.model_request(native)
    generation = await gateway.admit(
        model_request,
        caller=caller,
        separators=False,
        request_id=request_id_of(request),
        headers=request.headers,
    )
    stream = bool(body.stream)
    include_usage = stream and bool(body.stream_options and body.stream_options.include_usage)
    return _Completion(gateway, generation, stream=stream, include_usage=include_usage)


def _card(gateway: Gateway, model: str) -> ModelCard:
    return ModelCard(id=model, owned_by=gateway.provider.name)


@router.get(
    "/v1/models",
    responses={401: _ERRORS[401]},
    summary="The models served here, as OpenAI lists them",
)
async def list_models(gateway: GatewayDep) -> ModelList:
    return ModelList(data=[_card(gateway, m) for m in gateway.settings.allowed_models()])


@router.get(
    "/v1/models/{model_id:anytext}",
    responses={401: _ERRORS[401], 404: _ERRORS[404]},
    summary="One model served here",
)
async def retrieve_model(model_id: str, gateway: GatewayDep) -> ModelCard:
    if model_id not in gateway.settings.allowed_models():
        raise RequestRejected.of(
            404, ErrorCode.MODEL_NOT_ALLOWED, f"Model {model_id!r} is not served here."
        )
    return _card(gateway, model_id)
