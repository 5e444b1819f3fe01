"""Pipeline events as OpenAI's Responses API stream: a third wire encoder.

Pure, like `encoding.encode_sse` and `openai.encoding.ChunkEncoder`: an event in, the bytes
of its SSE messages out. An answer is a list of output items, each added, filled and done
before the next is added, so that every event belongs to the one open item:

    response.created, response.in_progress,
    a `reasoning` item (thoughts):   response.output_item.added,
        response.reasoning_summary_part.added, response.reasoning_summary_text.delta...,
        response.reasoning_summary_text.done, response.reasoning_summary_part.done,
        response.output_item.done
    a `message` item (text):         response.output_item.added, response.content_part.added,
        response.output_text.delta..., response.output_text.annotation.added...,
        response.output_text.done, response.content_part.done, response.output_item.done
    a `function_call` item per call: response.output_item.added,
        response.function_call_arguments.delta..., response.function_call_arguments.done,
        response.output_item.done
    then one of response.completed / response.incomplete / response.failed

An event of another kind than the open item's closes it and opens the next (thoughts
among the text make a second `message` item). Sources become `url_citation` annotations
of the text they cite; a source that comes after its text's item is done (the model
called a function since) is only in the final response's output.

Every message has `event:` equal to its payload's `type`, and a `sequence_number` that
starts at 0 and grows by one, as OpenAI's SDKs expect (their stream helper resumes "after"
a sequence number, and wants `response.created` first). A failure before any output skips
the items. `state_of` reads a stored stream back into its `response` object.
Reference: https://platform.openai.com/docs/api-reference/responses-streaming
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

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
from .responses_models import (
    IncompleteDetails,
    ItemStatus,
    OutputFunctionCall,
    OutputItem,
    OutputMessage,
    OutputReasoning,
    OutputText,
    ResponseError,
    ResponseObject,
    ResponseStatus,
    ResponseUsage,
    SummaryText,
    UrlCitation,
)

# How a response's last event is named, by its final status.
_CLOSING = {
    "completed": "response.completed",
    "incomplete": "response.incomplete",
    "failed": "response.failed",
    # OpenAI's stream has no event for a cancelled response; `response.failed` carries it,
    # with status `cancelled` and our `cancelled` code, as `/v1/streams` ends with an error.
    "cancelled": "response.failed",
}
_LIFECYCLE = frozenset({"response.created", "response.queued", "response.in_progress"})
_TERMINAL = frozenset(_CLOSING.values())
_ID_PREFIX = {"reasoning": "rs", "function_call": "fc"}

Kind = Literal["reasoning", "message", "function_call"]


def ending(
    end: DoneEvent | ErrorEvent, wrote_text: bool
) -> tuple[ResponseStatus, ResponseError | None, IncompleteDetails | None]:
    """The final status of a response that ended with `end`, and why, in OpenAI's terms."""
    if isinstance(end, DoneEvent):
        if end.finish_reason == "length":
            return "incomplete", None, IncompleteDetails(reason="max_output_tokens")
        return "completed", None, None
    if end.code == ErrorCode.CONTENT_BLOCKED and wrote_text:
        # Withheld after some text: the text stands, as chat completions' `content_filter`.
        return "incomplete", None, IncompleteDetails(reason="content_filter")
    error = ResponseError(code=str(end.code), message=end.message)
    return ("cancelled" if end.code == ErrorCode.CANCELLED else "failed"), error, None


def _message(event_type: str, payload: dict[str, Any]) -> bytes:
    return f"event: {event_type}\ndata: {dumps_ascii(payload)}\n\n".encode()


@dataclass(slots=True)
class _Item:
    """One output item as it is built."""

    kind: Kind
    id: str
    index: int  # its `output_index`
    pieces: list[str] = field(default_factory=list)  # thoughts, text or arguments
    status: ItemStatus | None = None  # set once it is done
    start: int = 0  # a message's: where its text begins in the whole answer
    annotations: list[UrlCitation] = field(default_factory=list)
    call_id: str = ""
    name: str = ""
    arguments: str | None = None  # the whole call's, once `tool_call` tells them
    signature: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def output(self, status: ItemStatus) -> OutputItem:
        """The item as the response's output has it, with `status` unless it is done."""
        status = self.status or status
        if self.kind == "reasoning":
            return OutputReasoning(id=self.id, summary=[SummaryText(text=self.text)], status=status)
        if self.kind == "message":
            text = OutputText(text=self.text, annotations=self.annotations)
            return OutputMessage(id=self.id, status=status, content=[text])
        return OutputFunctionCall(
            id=self.id,
            call_id=self.call_id,
            name=self.name,
            arguments=self.text if self.arguments is None else self.arguments,
            status=status,
            extra_content=OutputFunctionCall.signed(self.signature),
        )


class ResponseEncoder:
    """Pipeline events to the SSE messages of one Responses API stream.

    `head` is the response as it was created (no output yet, status `queued` for a
    background response, else `in_progress`); `item_id` names its (first) message item,
    and the other items' ids are made from it.
    """

    def __init__(self, head: ResponseObject, item_id: str) -> None:
        self.head = head
        self.item_id = item_id
        self.sequence = 0  # the next message's sequence_number
        self._suffix = item_id.removeprefix("msg_")
        self._opened = False
        self._items: list[_Item] = []
        self._open: _Item | None = None
        self._calls: dict[int, _Item] = {}  # by the call's index among the answer's calls
        self._answer = 0  # characters of answer text so far
        self._delta_head = ""

    @property
    def text(self) -> str:
        """The answer text so far, of every message item."""
        return "".join(item.text for item in self._items if item.kind == "message")

    def encode(self, event: PipelineEvent) -> bytes:
        """Every message `event` becomes, as one piece of bytes."""
        return b"".join(self.messages(event))

    def messages(self, event: PipelineEvent) -> list[bytes]:
        """The SSE messages `event` becomes, one per sequence number (separators: none)."""
        out = [] if self._opened else self._opening()
        if type(event) is str:  # answer text
            if self._open is None or self._open.kind != "message":
                out += self._switch("message")
            self._items[-1].pieces.append(event)  # the open item is the last one
            self._answer += len(event)
            # The hot path: one string encoding per token.
            data = f'{self._delta_head}{dumps_ascii(event)},"sequence_number":{self._next()}}}'
            out.append(f"event: response.output_text.delta\ndata: {data}\n\n".encode())
        elif isinstance(event, ReasoningEvent):
            out += self._reason(event)
        elif isinstance(event, ToolCallDeltaEvent | ToolCallEvent):
            out += self._call(event)
        elif isinstance(event, SourceEvent):
            out += self._cite(event)
        elif isinstance(event, DoneEvent | ErrorEvent):
            out += self._closing(event)
        return out

    def open(self) -> bytes:
        """`response.created` and `response.in_progress`, unless they were sent already."""
        return b"" if self._opened else b"".join(self._opening())

    def snapshot(self, status: ResponseStatus) -> ResponseObject:
        """The response as it stands, with the output so far."""
        return self.head.model_copy(
            update={"status": status, "output": self._output("in_progress")}
        )

    def final(self, end: DoneEvent | ErrorEvent) -> ResponseObject:
        """The response as `end` leaves it, with the output encoded so far."""
        status, error, incomplete = ending(end, bool(self.text))
        return self.head.model_copy(
            update={
                "status": status,
                "error": error,
                "incomplete_details": incomplete,
                "output": self._output(_item_status(status)),
                "usage": ResponseUsage.of(end.usage),
            }
        )

    def _output(self, open_status: ItemStatus) -> list[OutputItem]:
        return [item.output(open_status) for item in self._items]

    def _next(self) -> int:
        number = self.sequence
        self.sequence += 1
        return number

    def _emit(self, payload: dict[str, Any]) -> bytes:
        """`payload`, numbered, as one SSE message named by its type."""
        payload["sequence_number"] = self._next()
        return _message(payload["type"], payload)

    def _lifecycle(self, event_type: str, response: ResponseObject) -> bytes:
        return self._emit({"type": event_type, "response": response.model_dump(mode="json")})

    def _opening(self) -> list[bytes]:
        self._opened = True
        return [
            self._lifecycle("response.created", self.head),
            self._lifecycle("response.in_progress", self.snapshot("in_progress")),
        ]

    # --- items ---------------------------------------------------------------------------

    def _switch(self, kind: Kind, call_id: str = "", name: str = "") -> list[bytes]:
        """Close the open item, and open one of `kind` (a call's: with its id and name)."""
        out = self._close("completed")
        index = len(self._items)
        if kind == "message":
            first = not any(item.kind == "message" for item in self._items)
            item_id = self.item_id if first else f"{self.item_id}_{index}"
        else:
            item_id = f"{_ID_PREFIX[kind]}_{self._suffix}_{index}"
        item = _Item(kind, item_id, index, start=self._answer, call_id=call_id, name=name)
        self._items.append(item)
        self._open = item
        out.append(self._emit(self._added(item)))
        where = {"item_id": item.id, "output_index": index}
        if kind == "message":
            part = OutputText(text="").model_dump(mode="json")
            added = {"type": "response.content_part.added", **where, "content_index": 0}
            out.append(self._emit({**added, "part": part}))
            # What every delta of this item repeats, serialised once.
            self._delta_head = (
                '{"type":"response.output_text.delta","item_id":'
                + dumps_ascii(item.id)
                + f',"output_index":{index},"content_index":0,"logprobs":[],"delta":'
            )
        elif kind == "reasoning":
            part = SummaryText(text="").model_dump(mode="json")
            added = {"type": "response.reasoning_summary_part.added", **where, "summary_index": 0}
            out.append(self._emit({**added, "part": part}))
        return out

    def _added(self, item: _Item) -> dict[str, Any]:
        shown = item.output("in_progress").model_dump(mode="json")
        if item.kind == "message":
            shown["content"] = []  # its part is added next
        elif item.kind == "reasoning":
            shown["summary"] = []
        return {"type": "response.output_item.added", "output_index": item.index, "item": shown}

    def _close(self, status: ItemStatus) -> list[bytes]:
        """The events that end the open item (none if there is none)."""
        item = self._open
        if item is None:
            return []
        self._open = None
        item.status = status
        where = {"item_id": item.id, "output_index": item.index}
        done = item.output(status)
        payloads: list[dict[str, Any]]
        if isinstance(done, OutputMessage):
            where["content_index"] = 0
            part = done.content[0].model_dump(mode="json")
            payloads = [
                {"type": "response.output_text.done", **where, "text": item.text, "logprobs": []},
                {"type": "response.content_part.done", **where, "part": part},
            ]
        elif isinstance(done, OutputReasoning):
            where["summary_index"] = 0
            part = done.summary[0].model_dump(mode="json")
            payloads = [
                {"type": "response.reasoning_summary_text.done", **where, "text": item.text},
                {"type": "response.reasoning_summary_part.done", **where, "part": part},
            ]
        else:
            arguments = {"arguments": done.arguments}
            payloads = [{"type": "response.function_call_arguments.done", **where, **arguments}]
        item_done = {"output_index": item.index, "item": done.model_dump(mode="json")}
        payloads.append({"type": "response.output_item.done", **item_done})
        return [self._emit(payload) for payload in payloads]

    def _reason(self, event: ReasoningEvent) -> list[bytes]:
        out = [] if self._open and self._open.kind == "reasoning" else self._switch("reasoning")
        item = self._items[-1]
        item.pieces.append(event.text)
        delta = {"type": "response.reasoning_summary_text.delta", "item_id": item.id}
        where = {"output_index": item.index, "summary_index": 0}
        out.append(self._emit({**delta, **where, "delta": event.text}))
        return out

    def _call(self, event: ToolCallDeltaEvent | ToolCallEvent) -> list[bytes]:
        out = []
        item = self._calls.get(event.index)
        if item is None:
            # A call's first piece names it (`ToolCallDeltaEvent`); a whole call, too.
            out += self._switch("function_call", event.call_id or "", event.name or "")
            item = self._calls[event.index] = self._items[-1]
        piece = event.arguments
        whole = isinstance(event, ToolCallEvent)
        if isinstance(event, ToolCallEvent):
            item.arguments = event.arguments
            item.signature = event.signature
            # The whole call repeats its pieces: it adds to the stream only what none said.
            piece = "" if item.pieces else piece
        if piece:
            item.pieces.append(piece)
            if item is self._open:  # else already done: its whole call tells the rest
                delta = {"type": "response.function_call_arguments.delta", "item_id": item.id}
                out.append(self._emit({**delta, "output_index": item.index, "delta": piece}))
        if whole and item is self._open:
            out += self._close("completed")
        return out

    def _cite(self, source: SourceEvent) -> list[bytes]:
        """`source` as `url_citation` annotations of the message items whose text it cites."""
        messages = [item for item in self._items if item.kind == "message"]
        if not messages:
            return []
        # A source that cites no span stands for the whole answer: marked at its end.
        spans = [(c.start, c.end) for c in source.cited] or [(self._answer, self._answer)]
        out = []
        for start, end in spans:
            item = next(m for m in reversed(messages) if m.start <= start or m is messages[0])
            length = len(item.text)
            annotation = UrlCitation(
                url=source.url,
                title=source.title or source.url,
                start_index=min(max(start - item.start, 0), length),
                end_index=min(max(end - item.start, 0), length),
            )
            item.annotations.append(annotation)
            if item is self._open:
                added = {"type": "response.output_text.annotation.added", "item_id": item.id}
                where = {"output_index": item.index, "content_index": 0}
                number = {"annotation_index": len(item.annotations) - 1}
                dumped = {"annotation": annotation.model_dump(mode="json")}
                out.append(self._emit({**added, **where, **number, **dumped}))
        return out

    def _closing(self, end: DoneEvent | ErrorEvent) -> list[bytes]:
        status = ending(end, bool(self.text))[0]
        out = self._close(_item_status(status))
        final = self.final(end)
        out.append(self._lifecycle(_CLOSING[final.status], final))
        return out


def _item_status(status: ResponseStatus) -> ItemStatus:
    """The status of the item a response ended in, by the response's."""
    return "completed" if status == "completed" else "incomplete"


def _payload(message: bytes) -> dict[str, Any] | None:
    """The JSON of a stored message's `data:` line (None for a message of another format)."""
    if not message.startswith(b"event: response."):
        return None
    for line in message.split(b"\n"):
        if line.startswith(b"data: "):
            payload: dict[str, Any] = json.loads(line[6:])
            return payload
    return None


# Where a delta's text goes in its item: the list of parts and the part's index field (a
# part's `text`), or None (the item's own `arguments`).
_DELTAS: dict[str, tuple[str, str] | None] = {
    "response.output_text.delta": ("content", "content_index"),
    "response.reasoning_summary_text.delta": ("summary", "summary_index"),
    "response.function_call_arguments.delta": None,
}


def state_of(messages: Iterable[bytes]) -> ResponseObject | None:
    """The `response` object a stored stream's messages add up to; None before the first.

    A terminal event carries the whole response; before it, the last lifecycle event's
    response is brought up to date with the items since: each done item as it was done,
    each open one as its added item plus the parts, deltas and annotations since.
    """
    response: dict[str, Any] | None = None
    items: dict[int, dict[str, Any]] = {}
    # The deltas of open items, joined once at the end: (output index, list, place) to pieces.
    texts: dict[tuple[int, str | None, int], list[str]] = {}
    for message in messages:
        payload = _payload(message)
        if payload is None:
            continue
        kind = payload["type"]
        if kind in _TERMINAL:
            return ResponseObject.model_validate(payload["response"])
        if kind in _LIFECYCLE:
            response = payload["response"]
            continue
        index = payload.get("output_index", -1)
        if kind in ("response.output_item.added", "response.output_item.done"):
            items[index] = payload["item"]
            for key in [key for key in texts if key[0] == index]:
                del texts[key]
        elif kind == "response.content_part.added":
            items[index]["content"].append(payload["part"])
        elif kind == "response.reasoning_summary_part.added":
            items[index]["summary"].append(payload["part"])
        elif kind == "response.output_text.annotation.added":
            part = items[index]["content"][payload["content_index"]]
            part["annotations"] = [*part["annotations"], payload["annotation"]]
        elif kind in _DELTAS:
            part = _DELTAS[kind]
            key = (index, None, 0) if part is None else (index, part[0], payload[part[1]])
            texts.setdefault(key, []).append(payload["delta"])
    if response is None:
        return None
    for (index, parts, place), pieces in texts.items():
        if parts is None:
            items[index]["arguments"] = "".join(pieces)
        else:
            items[index][parts][place]["text"] = "".join(pieces)
    output = [items[index] for index in sorted(items)]
    return ResponseObject.model_validate({**response, "output": output})
