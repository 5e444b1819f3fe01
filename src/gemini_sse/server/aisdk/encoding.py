"""Pipeline events as the Vercel AI SDK's UI message stream: another wire encoder.

Each part is one SSE message, `data: {json}`, and the stream ends with `data: [DONE]`
(the SDK's `DefaultChatTransport` reads it with `parseJsonEventStream` and checks each
part against its `uiMessageChunkSchema`). An answer is one message with one text part:

    start, start-step, text-start, text-delta..., text-end, finish-step, finish, [DONE]

A failure ends it with `error` (our code first in `errorText`), a cancel with `abort`;
either is preceded by `message-metadata` with the usage so far, when the model reported
any. Deliberate deviation: our `separator` events have no place in this format.

AI SDK 5.0's schema is strict (`z.strictObject`): a part with a field it does not know
fails the whole stream. So the fields depend on the SDK's major version: 5 has no
`finishReason` on `finish` and no `reason` on `abort`; 6 has both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._models import DoneEvent, ErrorCode, ErrorEvent, TokenEvent, Usage
from ..encoding import dumps_ascii
from ..pipeline import PipelineEvent

#: The response header by which the SDK's transports recognise the stream.
STREAM_HEADER = ("x-vercel-ai-ui-message-stream", "v1")

DONE = b"data: [DONE]\n\n"

# Our `done` finish reasons to the SDK's `FinishReason` ("stop", "length",
# "content-filter", "tool-calls", "error", "other").
_FINISH = {"stop": "stop", "length": "length"}


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


class UIMessageStreamEncoder:
    """Pipeline events to the parts of one assistant message.

    No I/O: an event in, the SSE messages of its parts out (a `streams.FrameEncoder`);
    it remembers only whether the message and its text part are open. The opening parts
    go out with the first event, so that a stream that fails before any text is still a
    well-formed message.
    """

    def __init__(self, message_id: str, version: int) -> None:
        self.message_id = message_id
        self.version = version
        self._text_id = f"{message_id}-text"
        self._started = False
        self._text_open = False
        # What every token repeats, serialised once.
        self._delta_head = (
            b'data: {"type":"text-delta","id":' + dumps_ascii(self._text_id).encode() + b',"delta":'
        )

    def __call__(self, event_id: int, event: PipelineEvent) -> Sequence[bytes]:
        return self.encode(event)

    def encode(self, event: PipelineEvent) -> list[bytes]:
        out: list[bytes] = []
        if not self._started:
            self._started = True
            out.append(part({"type": "start", "messageId": self.message_id}))
            out.append(part({"type": "start-step"}))
        if type(event) is TokenEvent:
            if not self._text_open:
                self._text_open = True
                out.append(part({"type": "text-start", "id": self._text_id}))
            out.append(self._delta_head + dumps_ascii(event.text).encode() + b"}\n\n")
        elif isinstance(event, DoneEvent):
            out.extend(self._done(event))
        elif isinstance(event, ErrorEvent):
            out.extend(self._failed(event))
        return out

    def _done(self, event: DoneEvent) -> list[bytes]:
        out = []
        if self._text_open:
            out.append(part({"type": "text-end", "id": self._text_id}))
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
