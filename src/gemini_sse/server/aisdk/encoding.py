"""Pipeline events as the Vercel AI SDK's UI message stream: another wire encoder.

Each part is one SSE message, `data: {json}`, and the stream ends with `data: [DONE]`
(the SDK's `DefaultChatTransport` reads it with `parseJsonEventStream` and checks each
part against its `uiMessageChunkSchema`). An answer is one message, one step:

    start, start-step,
      reasoning-start, reasoning-delta..., reasoning-end      (thought summaries)
      text-start, text-delta..., text-end                     (the answer)
      tool-input-start, tool-input-delta...                   (tool calls, among the text)
      tool-input-available..., source-url...                  (after the text)
    finish-step, finish, [DONE]

Reasoning and text alternate as the model sends them: each run is a part of its own, so
the page shows them in the order they came. A failure ends the stream with `error` (our
code first in `errorText`), a cancel with `abort`; either is preceded by
`message-metadata` with the usage so far, when the model reported any. Deliberate
deviation: our `separator` events have no place in this format.

AI SDK 5.0's schema is strict (`z.strictObject`): a part with a field it does not know
fails the whole stream. So the fields depend on the SDK's major version: 5 has no
`finishReason` on `finish` and no `reason` on `abort`; 6 has both. The other parts and
fields sent here are in both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..._models import (
    DoneEvent,
    ErrorCode,
    ErrorEvent,
    ReasoningEvent,
    SourceEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    Usage,
)
from ..encoding import dumps_ascii
from ..pipeline import PipelineEvent

#: The response header by which the SDK's transports recognise the stream.
STREAM_HEADER = ("x-vercel-ai-ui-message-stream", "v1")

DONE = b"data: [DONE]\n\n"

#: Where a tool call's Gemini thought signature travels: the `providerMetadata` key
#: that the SDK's own Google provider uses, kept by the page in the tool part's
#: `callProviderMetadata` and so sent back with the call (see `models`).
SIGNATURE_METADATA = ("google", "thoughtSignature")

#: The `providerMetadata` namespace of what only this gateway sends (sources' spans).
METADATA_NAMESPACE = "gemini_sse"

# Our `done` finish reasons to the SDK's `FinishReason` ("stop", "length",
# "content-filter", "tool-calls", "error", "other").
_FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "content_filter": "content-filter",
}


def part(value: dict[str, Any]) -> bytes:
    """One UI message stream part as its SSE message (ASCII JSON: no line can split)."""
    return b"data: " + dumps_ascii(value).encode() + b"\n\n"


def usage_of(usage: Usage | None) -> dict[str, int] | None:
    """Our usage in the names of the SDK's `LanguageModelUsage`."""
    if usage is None:
        return None
    out = {
        "inputTokens": usage.input_tokens,
        "outputTokens": usage.output_tokens,
        "totalTokens": usage.total_tokens,
    }
    if usage.cached_tokens is not None:
        out["cachedInputTokens"] = usage.cached_tokens
    if usage.reasoning_tokens is not None:
        out["reasoningTokens"] = usage.reasoning_tokens
    return out


def error_text(code: str, message: str) -> str:
    """The `errorText` of an `error` part: our stable code first, then the message."""
    return f"{code}: {message}"


def tool_input(arguments: str) -> Any:
    """A call's `input`: its arguments parsed, or as text when they are not JSON."""
    try:
        return json.loads(arguments)
    except ValueError:
        # A model can emit broken JSON; the page still sees what it asked for.
        return arguments


class UIMessageStreamEncoder:
    """Pipeline events to the parts of one assistant message.

    No I/O: an event in, the SSE messages of its parts out (a `streams.FrameEncoder`);
    it remembers which parts are open. The opening parts go out with the first event, so
    that a stream that fails before any text is still a well-formed message.

    `message_id` names the message and its parts. A `continuation` (the answer after the
    page ran the model's tools) goes on in the page's own last assistant message, as the
    SDK's servers do: its `start` names no message, so the page keeps that one's id
    (another id would make it a second message, repeating the first one's parts).
    """

    def __init__(self, message_id: str, version: int, *, continuation: bool = False) -> None:
        self.message_id = message_id
        self.version = version
        self.continuation = continuation
        self._started = False
        self._text_id: str | None = None  # the open text part
        self._reasoning_id: str | None = None  # the open reasoning part
        self._opened = {"text": 0, "reasoning": 0}
        self._calls: dict[int, str] = {}  # tool call index -> its id
        self._delta_head = b""  # what every token of the open text part repeats

    def __call__(self, event_id: int, event: PipelineEvent) -> Sequence[bytes]:
        return self.encode(event)

    def encode(self, event: PipelineEvent) -> list[bytes]:
        out: list[bytes] = []
        if not self._started:
            self._started = True
            start: dict[str, Any] = {"type": "start"}
            if not self.continuation:
                start["messageId"] = self.message_id
            out.append(part(start))
            out.append(part({"type": "start-step"}))
        if type(event) is str:  # answer text
            if self._text_id is None:
                out.extend(self._open_text())
            out.append(self._delta_head + dumps_ascii(event).encode() + b"}\n\n")
        elif isinstance(event, ReasoningEvent):
            if self._reasoning_id is None:
                out.extend(self._open_reasoning())
            delta = {"type": "reasoning-delta", "id": self._reasoning_id, "delta": event.text}
            out.append(part(delta))
        elif isinstance(event, ToolCallDeltaEvent):
            out.extend(self._tool_delta(event))
        elif isinstance(event, ToolCallEvent | SourceEvent):
            # They come after the answer's last words: its parts end first.
            out.extend(self._close_reasoning() + self._close_text())
            if isinstance(event, ToolCallEvent):
                out.append(self._tool_call(event))
            else:
                out.append(self._source(event))
        elif isinstance(event, DoneEvent):
            out.extend(self._done(event))
        elif isinstance(event, ErrorEvent):
            out.extend(self._failed(event))
        return out

    def _new_id(self, kind: str) -> str:
        self._opened[kind] += 1
        count = self._opened[kind]
        return f"{self.message_id}-{kind}" + (f"-{count}" if count > 1 else "")

    def _open_text(self) -> list[bytes]:
        out = self._close_reasoning()
        self._text_id = text_id = self._new_id("text")
        self._delta_head = (
            b'data: {"type":"text-delta","id":' + dumps_ascii(text_id).encode() + b',"delta":'
        )
        out.append(part({"type": "text-start", "id": text_id}))
        return out

    def _open_reasoning(self) -> list[bytes]:
        out = self._close_text()
        self._reasoning_id = reasoning_id = self._new_id("reasoning")
        out.append(part({"type": "reasoning-start", "id": reasoning_id}))
        return out

    def _close_text(self) -> list[bytes]:
        if self._text_id is None:
            return []
        text_id, self._text_id = self._text_id, None
        return [part({"type": "text-end", "id": text_id})]

    def _close_reasoning(self) -> list[bytes]:
        if self._reasoning_id is None:
            return []
        reasoning_id, self._reasoning_id = self._reasoning_id, None
        return [part({"type": "reasoning-end", "id": reasoning_id})]

    def _tool_delta(self, event: ToolCallDeltaEvent) -> list[bytes]:
        out = []
        call_id = self._calls.get(event.index)
        if call_id is None:
            # The first piece of a call names it (the pipeline always gives it an id).
            call_id = self._calls[event.index] = event.call_id or ""
            start = {
                "type": "tool-input-start",
                "toolCallId": call_id,
                "toolName": event.name or "",
            }
            out.append(part(start))
        if event.arguments:
            delta = {
                "type": "tool-input-delta",
                "toolCallId": call_id,
                "inputTextDelta": event.arguments,
            }
            out.append(part(delta))
        return out

    def _tool_call(self, event: ToolCallEvent) -> bytes:
        available: dict[str, Any] = {
            "type": "tool-input-available",
            "toolCallId": event.call_id,
            "toolName": event.name,
            "input": tool_input(event.arguments),
        }
        if event.signature is not None:
            namespace, key = SIGNATURE_METADATA
            available["providerMetadata"] = {namespace: {key: event.signature}}
        return part(available)

    def _source(self, event: SourceEvent) -> bytes:
        source: dict[str, Any] = {
            "type": "source-url",
            "sourceId": f"{self.message_id}-source-{event.index}",
            "url": event.url,
        }
        if event.title is not None:
            source["title"] = event.title
        if event.cited:
            # The spans of the answer text it supports: character offsets into the
            # message's text parts, joined.
            cited = [c.model_dump(exclude_none=True) for c in event.cited]
            source["providerMetadata"] = {METADATA_NAMESPACE: {"cited": cited}}
        return part(source)

    def _done(self, event: DoneEvent) -> list[bytes]:
        out = self._close_reasoning() + self._close_text()
        out.append(part({"type": "finish-step"}))
        metadata: dict[str, Any] = {"model": event.model, "finishReason": event.finish_reason}
        if (usage := usage_of(event.usage)) is not None:
            metadata["usage"] = usage
        finish: dict[str, Any] = {"type": "finish"}
        if self.version >= 6:
            finish["finishReason"] = _FINISH.get(event.finish_reason, "other")
        finish["messageMetadata"] = metadata
        out.append(part(finish))
        out.append(DONE)
        return out

    def _failed(self, event: ErrorEvent) -> list[bytes]:
        out = []
        if (usage := usage_of(event.usage)) is not None:
            # The usage so far: `abort` and `error` parts cannot carry metadata.
            out.append(part({"type": "message-metadata", "messageMetadata": {"usage": usage}}))
        if event.code == ErrorCode.CANCELLED:
            abort: dict[str, Any] = {"type": "abort"}
            if self.version >= 6:
                abort["reason"] = event.message
            out.append(part(abort))
        else:
            out.append(part({"type": "error", "errorText": error_text(event.code, event.message)}))
        out.append(DONE)
        return out
