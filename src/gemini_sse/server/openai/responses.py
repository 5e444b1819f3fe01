"""Pipeline events as OpenAI's Responses API stream: a third wire encoder.

Pure, like `encoding.encode_sse` and `openai.encoding.ChunkEncoder`: an event in, the bytes
of its SSE messages out. One answer is one `message` output item with one `output_text`
part, so a stream reads:

    response.created, response.in_progress,
    response.output_item.added, response.content_part.added,
    response.output_text.delta (one per token),
    response.output_text.done, response.content_part.done, response.output_item.done,
    then one of response.completed / response.incomplete / response.failed

Every message has `event:` equal to its payload's `type`, and a `sequence_number` that
starts at 0 and grows by one, as OpenAI's SDKs expect (their stream helper resumes "after"
a sequence number, and wants `response.created` first). A failure before any text skips
the item and its part. `state_of` reads a stored stream back into its `response` object.
Reference: https://platform.openai.com/docs/api-reference/responses-streaming
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..._models import DoneEvent, ErrorCode, ErrorEvent, TokenEvent
from ..encoding import dumps_ascii
from ..pipeline import PipelineEvent
from .responses_models import (
    IncompleteDetails,
    OutputMessage,
    OutputText,
    ResponseError,
    ResponseObject,
    ResponseStatus,
    ResponseUsage,
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


class ResponseEncoder:
    """Pipeline events to the SSE messages of one Responses API stream.

    `head` is the response as it was created (no output yet, status `queued` for a
    background response, else `in_progress`); `item_id` names its message item.
    """

    def __init__(self, head: ResponseObject, item_id: str) -> None:
        self.head = head
        self.item_id = item_id
        self.sequence = 0  # the next message's sequence_number
        self._opened = False
        self._item_open = False
        self._text: list[str] = []
        # What every delta repeats, serialised once: a token costs one string encoding.
        self._delta_head = (
            '{"type":"response.output_text.delta","item_id":'
            + dumps_ascii(item_id)
            + ',"output_index":0,"content_index":0,"logprobs":[],"delta":'
        )

    @property
    def text(self) -> str:
        return "".join(self._text)

    def encode(self, event: PipelineEvent) -> bytes:
        """Every message `event` becomes, as one piece of bytes."""
        return b"".join(self.messages(event))

    def messages(self, event: PipelineEvent) -> list[bytes]:
        """The SSE messages `event` becomes, one per sequence number (separators: none)."""
        out = [] if self._opened else self._opening()
        if type(event) is TokenEvent:
            if not self._item_open:
                out += self._open_item()
            self._text.append(event.text)
            data = f'{self._delta_head}{dumps_ascii(event.text)},"sequence_number":{self._next()}}}'
            out.append(f"event: response.output_text.delta\ndata: {data}\n\n".encode())
        elif isinstance(event, DoneEvent | ErrorEvent):
            out += self._closing(event)
        return out

    def open(self) -> bytes:
        """`response.created` and `response.in_progress`, unless they were sent already."""
        return b"" if self._opened else b"".join(self._opening())

    def snapshot(self, status: ResponseStatus) -> ResponseObject:
        """The response as it stands, with the text so far."""
        output = self._output(self.text, "in_progress")
        return self.head.model_copy(update={"status": status, "output": output})

    def final(self, end: DoneEvent | ErrorEvent, text: str | None = None) -> ResponseObject:
        """The response as `end` leaves it, with the text encoded so far (or `text`)."""
        text = self.text if text is None else text
        status, error, incomplete = ending(end, bool(text))
        item_status = "completed" if status == "completed" else "incomplete"
        return self.head.model_copy(
            update={
                "status": status,
                "error": error,
                "incomplete_details": incomplete,
                "output": self._output(text, item_status),
                "usage": ResponseUsage.of(end.usage),
            }
        )

    def _next(self) -> int:
        number = self.sequence
        self.sequence += 1
        return number

    def _lifecycle(self, event_type: str, response: ResponseObject) -> bytes:
        payload = {
            "type": event_type,
            "sequence_number": self._next(),
            "response": response.model_dump(mode="json"),
        }
        return _message(event_type, payload)

    def _opening(self) -> list[bytes]:
        self._opened = True
        return [
            self._lifecycle("response.created", self.head),
            self._lifecycle("response.in_progress", self.snapshot("in_progress")),
        ]

    def _item(self, status: str) -> dict[str, Any]:
        return {"id": self.item_id, "type": "message", "role": "assistant", "status": status}

    def _open_item(self) -> list[bytes]:
        self._item_open = True
        where = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
        added = {
            "type": "response.output_item.added",
            "sequence_number": self._next(),
            "output_index": 0,
            "item": {**self._item("in_progress"), "content": []},
        }
        part = {
            "type": "response.content_part.added",
            "sequence_number": self._next(),
            **where,
            "part": OutputText(text="").model_dump(mode="json"),
        }
        return [
            _message("response.output_item.added", added),
            _message("response.content_part.added", part),
        ]

    def _closing(self, end: DoneEvent | ErrorEvent) -> list[bytes]:
        final = self.final(end)
        out = []
        if self._item_open:
            where = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
            item = final.output[0]
            done: list[dict[str, Any]] = [
                {"type": "response.output_text.done", **where, "text": self.text, "logprobs": []},
                {
                    "type": "response.content_part.done",
                    **where,
                    "part": item.content[0].model_dump(mode="json"),
                },
                {
                    "type": "response.output_item.done",
                    "output_index": 0,
                    "item": item.model_dump(mode="json"),
                },
            ]
            for payload in done:
                payload["sequence_number"] = self._next()
                out.append(_message(payload["type"], payload))
        out.append(self._lifecycle(_CLOSING[final.status], final))
        return out

    def _output(self, text: str, item_status: str) -> list[OutputMessage]:
        # The message item exists from the first token on (tokens are never empty).
        if not text:
            return []
        return [
            OutputMessage.model_validate({**self._item(item_status), "content": [{"text": text}]})
        ]


def _payload(message: bytes) -> dict[str, Any] | None:
    """The JSON of a stored message's `data:` line (None for a message of another format)."""
    if not message.startswith(b"event: response."):
        return None
    for line in message.split(b"\n"):
        if line.startswith(b"data: "):
            payload: dict[str, Any] = json.loads(line[6:])
            return payload
    return None


def state_of(messages: Iterable[bytes]) -> ResponseObject | None:
    """The `response` object a stored stream's messages add up to; None before the first.

    A terminal event carries the whole response; before it, the last lifecycle event's
    response is brought up to date with the text of the deltas since.
    """
    response: dict[str, Any] | None = None
    item: dict[str, Any] | None = None
    text: list[str] = []
    for message in messages:
        payload = _payload(message)
        if payload is None:
            continue
        kind = payload["type"]
        if kind in _TERMINAL:
            return ResponseObject.model_validate(payload["response"])
        if kind in _LIFECYCLE:
            response = payload["response"]
        elif kind == "response.output_item.added":
            item = payload["item"]
        elif kind == "response.output_text.delta":
            text.append(payload["delta"])
    if response is None:
        return None
    output = [] if item is None else [{**item, "content": [OutputText(text="".join(text))]}]
    return ResponseObject.model_validate({**response, "output": output})
