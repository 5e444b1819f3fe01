"""Wire encodings of the pipeline's events: our typed SSE today.

An encoder is a pure function from (event id, event) to the bytes of one SSE message;
`TypedSSE` applies it to one stream's events in order (numbering them, and writing a
chunk's token and separator in one send). Other wire formats (an OpenAI-compatible
stream, say) are other encoders over the same events; the pipeline and providers do not
change for them.

Event stream format: https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
"""

from __future__ import annotations

import json

from .._models import ErrorEvent, SeparatorEvent, event_data
from .pipeline import PipelineEvent

# Tokens are most of the traffic: encode them without going through pydantic. The output
# is byte-for-byte what `event_data` gives (a test holds the two together). json.dumps
# escapes non-ASCII by default, so U+2028/U+2029 and CR in text cannot split a line.
dumps_ascii = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def encode_sse(event_id: int, event: PipelineEvent, *, retry_ms: int | None = None) -> bytes:
    """One SSE message: `id:`, `event:`, optional `retry:`, one `data:` line.

    Answer text (a `str`, as the pipeline yields it) is a `token` event.
    """
    if isinstance(event, str):
        return f'id: {event_id}\nevent: token\ndata: {{"text":{dumps_ascii(event)}}}\n\n'.encode()
    if type(event) is SeparatorEvent:
        data = f'{{"index":{event.index}}}'
    else:
        data = event_data(event)
    retry = f"retry: {retry_ms}\n" if retry_ms is not None else ""
    return f"id: {event_id}\nevent: {event.event}\n{retry}data: {data}\n\n".encode()


class TypedSSE:
    """Our typed SSE for one stream's events, in order: `encode(event)` is its bytes.

    Events are numbered from 1. With `separators`, a `token` is held back and goes out
    with the `separator` the pipeline yields right after it, in one write: a send costs
    more than the bytes it carries. A held token encodes to `b""` (nothing to send yet).
    """

    __slots__ = ("retry_ms", "separators", "_event_id", "_held")

    def __init__(self, *, retry_ms: int, separators: bool) -> None:
        self.retry_ms = retry_ms
        self.separators = separators
        self._event_id = 0
        self._held = b""

    def __call__(self, event: PipelineEvent) -> bytes:
        self._event_id += 1
        if type(event) is str:  # a token, most events: no retry hint to look for
            data = encode_sse(self._event_id, event)
            if self.separators:
                self._held = data
                return b""
            return data
        data = encode_sse(self._event_id, event, retry_ms=retry_hint(event, self.retry_ms))
        if self._held:
            data, self._held = self._held + data, b""
        return data


def retry_hint(event: PipelineEvent, retry_ms: int) -> int | None:
    """The `retry:` hint worth sending with `event`: only with retryable errors."""
    if isinstance(event, ErrorEvent) and event.retryable:
        return retry_ms
    return None
