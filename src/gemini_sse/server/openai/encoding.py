"""Pipeline events as OpenAI's `chat.completion.chunk` stream: a second wire encoder.

Pure, like `encoding.encode_sse`: an event in, the bytes of its `data:` lines out. The
stream's shape is the one OpenAI's SDKs read (openai-python's `_streaming.py`), and the
deltas are the ones their stream helpers accumulate (`lib/streaming/_deltas.py`): a list
entry with an `index` is merged into the entry of that index, any other list is taken
whole the first time. So a tool call's pieces carry their `index`, and a message's
annotations come in one delta, after the text they cite, as OpenAI's search models send them.
"""

from __future__ import annotations

from typing import Any

from ..._models import (
    DoneEvent,
    ErrorCode,
    ErrorEvent,
    ReasoningEvent,
    SourceEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
)
from ..encoding import dumps_ascii
from ..pipeline import PipelineEvent
from .answers import (
    completion_usage,
    finish_reason,
    signature_content,
    tool_call,
    url_citations,
)
from .errors import error_detail

# json.dumps escapes non-ASCII by default, so U+2028/U+2029 and CR cannot split a line.


class ChunkEncoder:
    """Pipeline events to the `data:` lines of one OpenAI chat completion stream.

    Pure, like `encode_sse`: an event in, bytes out. What every chunk repeats (id,
    created, model) is serialised once; a token costs one `json` string encoding.
    """

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        self._head = (
            f'data: {{"id":{dumps_ascii(completion_id)},"object":"chat.completion.chunk",'
            f'"created":{created},"model":{dumps_ascii(model)},'
        )
        self._delta = self._head + '"choices":[{"index":0,"delta":{'
        self._include_usage = include_usage
        self._role_sent = False
        self._calls: set[int] = set()  # the calls whose first piece was sent, by index
        self._sources: list[SourceEvent] = []

    def encode(self, event: PipelineEvent) -> bytes:
        if type(event) is str:  # answer text
            return self._choice('"content":' + dumps_ascii(event), "null")
        if isinstance(event, ReasoningEvent):
            return self._choice('"reasoning_content":' + dumps_ascii(event.text), "null")
        if isinstance(event, ToolCallDeltaEvent):
            return self._tool_calls(self._piece(event))
        if isinstance(event, ToolCallEvent):
            return self._whole(event)
        if isinstance(event, SourceEvent):
            self._sources.append(event)  # sent together, just before the end
            return b""
        if isinstance(event, DoneEvent):
            return self._end(event)
        if isinstance(event, ErrorEvent):
            if event.code == ErrorCode.CONTENT_BLOCKED and self._role_sent:
                return self._end(event)
            return f"data: {dumps_ascii({'error': error_detail(event.info)})}\n\n".encode()
        return b""  # separators have no place in this format

    def _piece(self, event: ToolCallDeltaEvent) -> dict[str, Any]:
        """A tool call's piece: its id, type and name come with its first piece only."""
        if event.index in self._calls:
            return {"index": event.index, "function": {"arguments": event.arguments}}
        self._calls.add(event.index)
        piece: dict[str, Any] = {"index": event.index}
        if event.call_id is not None:
            piece["id"] = event.call_id
        piece["type"] = "function"
        piece["function"] = {"name": event.name or "", "arguments": event.arguments}
        return piece

    def _whole(self, event: ToolCallEvent) -> bytes:
        """A whole call: already sent in pieces, only its signature is news."""
        if event.index not in self._calls:  # a call that came whole, with no pieces
            self._calls.add(event.index)
            return self._tool_calls({"index": event.index, **tool_call(event).model_dump()})
        if event.signature is None:
            return b""
        extra = signature_content(event.signature)
        return self._tool_calls({"index": event.index, "extra_content": extra})

    def _tool_calls(self, entry: dict[str, Any]) -> bytes:
        return self._choice('"tool_calls":' + dumps_ascii([entry]), "null")

    def _choice(self, delta: str, finish: str) -> bytes:
        if not self._role_sent:
            self._role_sent = True
            delta = '"role":"assistant"' + ("," + delta if delta else "")
        tail = '},"logprobs":null,"finish_reason":' + finish + "}]}\n\n"
        return (self._delta + delta + tail).encode()

    def _end(self, end: DoneEvent | ErrorEvent) -> bytes:
        out = b""
        if self._sources:
            cited = [a.model_dump() for a in url_citations(self._sources)]
            out += self._choice('"annotations":' + dumps_ascii(cited), "null")
        # OpenAI's last choice chunk has an empty delta; the usage chunk has no choices.
        out += self._choice("", dumps_ascii(finish_reason(end)))
        if self._include_usage:
            usage = completion_usage(end.usage)
            usage_json = "null" if usage is None else usage.model_dump_json()
            out += f'{self._head}"choices":[],"usage":{usage_json}}}\n\n'.encode()
        return out + b"data: [DONE]\n\n"
