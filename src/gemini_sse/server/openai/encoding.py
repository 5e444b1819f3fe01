"""Pipeline events as OpenAI's `chat.completion.chunk` stream: a second wire encoder.

Pure, like `encoding.encode_sse`: an event in, the bytes of its `data:` lines out. The
stream's shape is the one OpenAI's SDKs read (openai-python's `_streaming.py`).
"""

from __future__ import annotations

from ..._models import DoneEvent, ErrorCode, ErrorEvent, TokenEvent
from ..encoding import dumps_ascii
from ..pipeline import PipelineEvent
from .models import completion_usage, error_detail, finish_reason

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

    def encode(self, event: PipelineEvent) -> bytes:
        if type(event) is TokenEvent:
            return self._choice('"content":' + dumps_ascii(event.text), "null")
        if isinstance(event, DoneEvent):
            return self._end(event)
        if isinstance(event, ErrorEvent):
            if event.code == ErrorCode.CONTENT_BLOCKED and self._role_sent:
                return self._end(event)
            return f"data: {dumps_ascii({'error': error_detail(event.info)})}\n\n".encode()
        return b""  # separators have no place in this format

    def _choice(self, delta: str, finish: str) -> bytes:
        if not self._role_sent:
            self._role_sent = True
            delta = '"role":"assistant"' + ("," + delta if delta else "")
        tail = '},"logprobs":null,"finish_reason":' + finish + "}]}\n\n"
        return (self._delta + delta + tail).encode()

    def _end(self, end: DoneEvent | ErrorEvent) -> bytes:
        # OpenAI's last choice chunk has an empty delta; the usage chunk has no choices.
        out = self._choice("", dumps_ascii(finish_reason(end)))
        if self._include_usage:
            usage = completion_usage(end.usage)
            usage_json = "null" if usage is None else usage.model_dump_json()
            out += f'{self._head}"choices":[],"usage":{usage_json}}}\n\n'.encode()
        return out + b"data: [DONE]\n\n"
