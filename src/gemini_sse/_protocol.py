"""The client's side of the stream protocol, without I/O.

`Client` and `AsyncClient` differ only in how they move bytes; what the bytes mean is
decided here, once: the request body (`request_body`), an HTTP answer that is not a
stream (`check_response`, `parse_json`), the stream itself (`EventReader`: bytes in;
typed, id-checked events out), and when a resumable stream reconnects (`Resumption`).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from ._decoder import DEFAULT_MAX_EVENT_SIZE, ServerSentEvent, SSEDecoder
from ._exceptions import (
    EventSequenceError,
    EventTooLargeError,
    GeminiSSEError,
    IncompleteStreamError,
    ProtocolError,
    RequestRejected,
    StreamError,
    TransportError,
)
from ._models import (
    EVENT_TYPES,
    ChatMessage,
    DoneEvent,
    ErrorBody,
    ErrorCode,
    ErrorEvent,
    ErrorInfo,
    Event,
    ReasoningEvent,
    SimulationOptions,
    SourceEvent,
    ThinkingOptions,
    TokenEvent,
    Tool,
    ToolCallEvent,
    Usage,
    parse_event,
)

_M = TypeVar("_M", bound=BaseModel)

#: The most of a body that is not an event stream (an error, a JSON answer) the client
#: reads. The gateway's are a few hundred bytes; a proxy's error page may be longer, and
#: its start says what it is. The I/O side stops reading once it holds more than this.
MAX_BODY_SIZE = 64 * 1024

#: A conversation: one user message as a str, or turns as `ChatMessage`s or dicts.
Messages = str | Sequence[ChatMessage | Mapping[str, Any]]


class StreamOptions(TypedDict, total=False):
    """Generation options of one request; what is left unset the gateway decides."""

    message: str | None  # one more user turn, after `messages`
    model: str | None
    temperature: float | None
    max_output_tokens: int | None
    top_p: float | None
    stop: Sequence[str] | None
    separators: bool | None  # send `separator` events (the gateway's setting if None)
    simulation: SimulationOptions | Mapping[str, Any] | None  # the simulated model only
    thinking: ThinkingOptions | Mapping[str, Any] | None  # budget, level, include_thoughts
    tools: Sequence[Tool | Mapping[str, Any]] | None  # functions the model may call
    tool_choice: str | Mapping[str, Any] | None  # auto, none, required, or {"name": ...}
    grounding: bool | None  # ground the answer in Google Search (`source` events)


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole answer: its text, the `done` event that ended it, and every event."""

    text: str
    done: DoneEvent
    events: list[Event]

    @property
    def usage(self) -> Usage | None:
        return self.done.usage

    @property
    def reasoning(self) -> str:
        """The thought summary (`reasoning` events), joined; empty without one."""
        return "".join(e.text for e in self.events if isinstance(e, ReasoningEvent))

    @property
    def tool_calls(self) -> list[ToolCallEvent]:
        """The tool calls the model made, to run and answer in the next request."""
        return [e for e in self.events if isinstance(e, ToolCallEvent)]

    @property
    def sources(self) -> list[SourceEvent]:
        """The sources the answer is grounded in."""
        return [e for e in self.events if isinstance(e, SourceEvent)]


def request_body(messages: Messages | None, options: StreamOptions) -> dict[str, Any]:
    """The JSON of `POST /v1/stream`.

    Not validated here: the gateway has the one set of rules, and its `invalid_request`
    answer (a `RequestRejected`) says what is wrong.
    """
    unknown = set(options) - StreamOptions.__optional_keys__
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    body: dict[str, Any] = {name: value for name, value in options.items() if value is not None}
    if isinstance(messages, str):
        body["messages"] = [{"role": "user", "content": messages}]
    elif messages is not None:
        body["messages"] = [
            m.model_dump(exclude_none=True) if isinstance(m, ChatMessage) else dict(m)
            for m in messages
        ]
    for name in ("simulation", "thinking", "tool_choice"):
        if isinstance(value := body.get(name), BaseModel):
            body[name] = value.model_dump(exclude_none=True)
    if "tools" in body:
        body["tools"] = [
            t.model_dump(exclude_none=True) if isinstance(t, Tool) else dict(t)
            for t in body["tools"]
        ]
    if "stop" in body:
        body["stop"] = list(body["stop"])
    return body


def check_response(response: httpx.Response, body: bytes) -> None:
    """Raise unless `response` opens an event stream; `body` is an error's body, as read."""
    if response.status_code == 204:
        # The gateway's word to EventSource that a resumable stream is unknown or expired.
        info = ErrorInfo(code=ErrorCode.NOT_FOUND, message="The stream is unknown or expired.")
        raise RequestRejected(info, 204)
    if not response.is_success:
        raise _rejection(response, body)
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        raise ProtocolError(f"Expected an event stream, got {content_type or 'no content type'}.")


def parse_json(response: httpx.Response, body: bytes, model: type[_M]) -> _M:
    """The JSON answer (`body`, as read) of a non-streaming call, or the rejection raised."""
    if not response.is_success:
        raise _rejection(response, body)
    if len(body) > MAX_BODY_SIZE:
        raise ProtocolError(f"The gateway's answer is longer than {MAX_BODY_SIZE:,} bytes.")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise ProtocolError(f"The gateway's answer is not a valid {model.__name__}.") from exc


# Codes for an error that did not come with the gateway's JSON (a proxy's page, say).
_CODE_BY_STATUS = {
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.UNAUTHORIZED,
    404: ErrorCode.NOT_FOUND,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    429: ErrorCode.TOO_MANY_REQUESTS,
    503: ErrorCode.OVERLOADED,
}


def _rejection(response: httpx.Response, body: bytes) -> RequestRejected:
    status = response.status_code
    truncated = len(body) > MAX_BODY_SIZE  # never the gateway's JSON, which is short
    info = None if truncated else _gateway_error(body)
    if info is None:
        fallback = ErrorCode.INVALID_REQUEST if status < 500 else ErrorCode.INTERNAL
        snippet = " ".join(_text(response, body[:MAX_BODY_SIZE])[:200].split())
        message = f"HTTP {status} {response.reason_phrase}" + (f": {snippet}" if snippet else "")
        if truncated:
            message += f" (the body is longer than {MAX_BODY_SIZE:,} bytes; the rest was not read)"
        info = ErrorInfo(
            code=_CODE_BY_STATUS.get(status, fallback),
            message=message,
            retryable=status in (429, 502, 503, 504),
        )
    if info.retry_after is None:
        retry_after = _retry_after(response.headers.get("retry-after"))
        if retry_after is not None:
            info = info.model_copy(update={"retry_after": retry_after})
    return RequestRejected(info, status)


def _gateway_error(body: bytes) -> ErrorInfo | None:
    """The gateway's JSON error in `body`; None for anything else (a proxy's page, say)."""
    try:
        return ErrorBody.model_validate_json(body).error
    except ValidationError:
        return None


def _text(response: httpx.Response, body: bytes) -> str:
    """`body` decoded as its `Content-Type` says, UTF-8 if it names no known charset."""
    try:
        return body.decode(response.charset_encoding or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def _retry_after(value: str | None) -> float | None:
    """Seconds from `Retry-After`: delay-seconds or an HTTP-date (RFC 9110, 10.2.3)."""
    if not value:
        return None
    if value.strip().isascii() and value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class EventReader:
    """Feed it the bytes of one stream; it gives back checked, typed events.

    It holds the gateway to its promises: ids 1, 2, 3... with no gap or repeat, and a
    `done` or `error` event last. Unknown event types (a newer gateway's) are skipped
    once their id is checked; comments such as `: ping` never get here (the decoder
    drops them). A line or an event longer than `max_event_size` raises
    `EventTooLargeError` (see `SSEDecoder`).
    """

    def __init__(
        self,
        *,
        raise_on_error: bool = True,
        last_event_id: int = 0,
        max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE,
    ) -> None:
        self.raise_on_error = raise_on_error
        self.streaming = False  # set by the I/O side once the event stream is open
        self.terminal: DoneEvent | ErrorEvent | None = None
        self._decoder = SSEDecoder(max_event_size=max_event_size)
        self._next_id = last_event_id + 1
        self._text: list[str] = []

    @property
    def last_event_id(self) -> int:
        """The id of the last event read (0 before any)."""
        return self._next_id - 1

    @property
    def retry_ms(self) -> int | None:
        """The gateway's `retry:` hint, if it sent one."""
        return self._decoder.retry

    def reconnected(self) -> None:
        """A new connection continues the same stream: drop the half-read event."""
        self._decoder.close()
        self.streaming = False

    @property
    def partial_text(self) -> str:
        """The text of every `token` event so far."""
        return "".join(self._text)

    def feed(self, chunk: bytes) -> Iterator[Event]:
        """The events `chunk` completes, in order, and nothing after the terminal one.

        A generator, so that the events before a failure reach the caller before it raises.
        """
        try:
            decoded = self._decoder.feed(chunk)
        except EventTooLargeError as exc:
            exc.partial_text = self.partial_text  # the decoder never sees the text
            raise
        for sse in decoded:
            if self.terminal is not None:
                return
            event = self._parse(sse)
            if event is None:
                continue
            if isinstance(event, TokenEvent):
                self._text.append(event.text)
            elif isinstance(event, DoneEvent | ErrorEvent):
                self.terminal = event
                if isinstance(event, ErrorEvent) and self.raise_on_error:
                    raise StreamError(event.info, self.partial_text, event.usage)
            yield event

    def end(self) -> None:
        """The body is over: raise `IncompleteStreamError` unless a terminal event came."""
        if self.terminal is None:
            raise IncompleteStreamError(
                "The stream ended without a `done` or `error` event.", self.partial_text
            )

    def _parse(self, sse: ServerSentEvent) -> Event | None:
        expected = self._next_id
        if sse.id != str(expected):
            got = f"id {sse.id!r}" if sse.id else "no id"
            raise EventSequenceError(f"Expected event id {expected}, got {got}.")
        self._next_id += 1
        if sse.event not in EVENT_TYPES:
            return None  # forward compatible: an event type from a newer gateway
        try:
            return parse_event(sse.event, sse.data, expected)
        except ValidationError as exc:
            raise ProtocolError(f"Event {expected} is not a valid `{sse.event}` event.") from exc


def completion(events: list[Event]) -> Completion:
    """The `Completion` of a stream read to its `done` event."""
    done = events[-1] if events else None
    if not isinstance(done, DoneEvent):  # the reader raises first; this is for mypy
        raise ProtocolError("The stream did not end with `done`.")
    text = "".join(e.text for e in events if isinstance(e, TokenEvent))
    return Completion(text=text, done=done, events=events)


@dataclass(frozen=True, slots=True)
class Reconnect:
    """How a resumable stream comes back after a dropped connection.

    The n-th consecutive failed attempt waits `base` (or the gateway's `retry:` hint)
    times 2**(n-1), at most `max_delay`, then a random 50-100 % of that; a refusal with
    `Retry-After` (a 503 while the gateway is full or draining) waits at least that long,
    at most `max_delay`. After `max_attempts` consecutive failures the last error is
    raised. Any event received resets the count.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 10.0

    def delay(self, attempt: int, retry_ms: int | None) -> float:
        base = retry_ms / 1000 if retry_ms is not None else self.base_delay
        return float(random.uniform(0.5, 1.0) * min(self.max_delay, base * 2 ** (attempt - 1)))


class Resumption:
    """When and how a resumable stream reconnects: the policy, without the I/O.

    The client reads each connection into `reader`, sends `headers()` with the next
    request, and when a connection fails asks `failed(exc)` how long to wait; it only
    sleeps and connects. Reconnecting can help when the connection broke, or when the
    gateway refused with a retryable error (503); an `error` event, a protocol error or
    an unknown stream end it. The waits follow `reconnect` and the gateway's `retry:`.
    """

    def __init__(self, reconnect: Reconnect | None, reader: EventReader) -> None:
        self.reconnect = reconnect
        self.reader = reader
        self.attempt = 0  # connections failed in a row
        self._connected_at = reader.last_event_id  # where the current connection began

    def headers(self) -> dict[str, str]:
        """The next request's `Last-Event-ID`: the gateway sends only the events after it."""
        last = self.reader.last_event_id
        return {"Last-Event-ID": str(last)} if last else {}

    def failed(self, exc: GeminiSSEError) -> float | None:
        """Seconds to wait before connecting again after `exc`; None to give up and raise."""
        if self.reader.last_event_id != self._connected_at:
            self.attempt = 0  # this connection delivered events: it was not a failure in a row
        self.attempt += 1
        reconnect = self.reconnect
        if reconnect is None or self.attempt > reconnect.max_attempts:
            return None
        broken = isinstance(exc, TransportError | IncompleteStreamError)
        if not broken and not (isinstance(exc, RequestRejected) and exc.retryable):
            return None
        self.reader.reconnected()
        self._connected_at = self.reader.last_event_id
        delay = reconnect.delay(self.attempt, self.reader.retry_ms)
        if isinstance(exc, RequestRejected) and exc.retry_after is not None:
            # The gateway said when it expects to have room: sooner would be refused again.
            delay = max(delay, min(exc.retry_after, reconnect.max_delay))
        return delay


DEFAULT_RECONNECT = Reconnect()
