"""Our exceptions: one tree, shared by the gateway and the client.

    GeminiSSEError
    ├── GatewayError              carries an ErrorInfo: code, message, retryable
    │   ├── RequestRejected       the gateway refused the request before streaming (HTTP 4xx/5xx)
    │   └── StreamError           an `error` event ended the stream
    ├── TransportError            the connection to the gateway failed
    │   ├── ConnectError          could not connect
    │   └── TimeoutError          connect or read took too long
    │       ├── ConnectTimeout
    │       └── ReadTimeout
    └── ProtocolError             the gateway's stream broke the protocol
        ├── IncompleteStreamError the stream ended without `done` or `error`
        ├── EventSequenceError    an event id was skipped or repeated
        └── EventTooLargeError    a line or an event outgrew the client's `max_event_size`

Every error speaks the gateway's vocabulary: a stable `code`, a human `message` and
`retryable`. A `GatewayError` takes them from the gateway's `ErrorInfo`; the errors the
client finds by itself carry fixed ones, their class name in snake case (`read_timeout`),
as `gemini-sse ask` prints them.

Foreign errors (httpx, google, langchain) are translated where they enter our code and
re-raised as one of these with `raise ... from exc`.
"""

from __future__ import annotations

from typing import ClassVar

from ._models import ErrorCode, ErrorInfo, Usage


class GeminiSSEError(Exception):
    """Base class of every error this package raises."""


class GatewayError(GeminiSSEError):
    """An error described in the gateway's error vocabulary."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(f"{info.code}: {info.message}")
        self.info = info

    @property
    def code(self) -> str:
        return str(self.info.code)

    @property
    def message(self) -> str:
        return self.info.message

    @property
    def retryable(self) -> bool:
        return self.info.retryable

    @property
    def retry_after(self) -> float | None:
        return self.info.retry_after

    @property
    def category(self) -> str | None:
        """What withheld a `content_blocked` answer, when the model said."""
        return self.info.category


class RequestRejected(GatewayError):
    """The gateway answered with an HTTP error instead of a stream."""

    def __init__(self, info: ErrorInfo, status_code: int) -> None:
        super().__init__(info)
        self.status_code = status_code

    @classmethod
    def of(
        cls,
        status_code: int,
        code: ErrorCode,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> RequestRejected:
        info = ErrorInfo(code=code, message=message, retryable=retryable, retry_after=retry_after)
        return cls(info, status_code)


class StreamError(GatewayError):
    """An `error` event ended the stream; `partial_text` is what arrived before it."""

    def __init__(self, info: ErrorInfo, partial_text: str = "", usage: Usage | None = None) -> None:
        super().__init__(info)
        self.partial_text = partial_text
        self.usage = usage


class TransportError(GeminiSSEError):
    """The connection to the gateway failed; `partial_text` is what arrived before."""

    code: ClassVar[str] = "transport_error"
    retryable: ClassVar[bool] = True  # the next connection may well work

    def __init__(self, message: str, partial_text: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.partial_text = partial_text


class ConnectError(TransportError):
    """The gateway could not be reached."""

    code = "connect_error"


class TimeoutError(TransportError):
    """Connecting to or reading from the gateway took too long."""

    code = "timeout_error"


class ConnectTimeout(TimeoutError):
    """The connection was not established in time."""

    code = "connect_timeout"


class ReadTimeout(TimeoutError):
    """No bytes arrived from the gateway in time."""

    code = "read_timeout"


class ProtocolError(GeminiSSEError):
    """The stream broke the gateway's event protocol; `partial_text` is what arrived before."""

    code: ClassVar[str] = "protocol_error"
    retryable: ClassVar[bool] = False  # the same gateway would break it the same way

    def __init__(self, message: str, partial_text: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.partial_text = partial_text


class IncompleteStreamError(ProtocolError):
    """The stream ended without a `done` or `error` event."""

    code = "incomplete_stream_error"
    retryable = True  # a cut connection, most often: a resumable stream resumes


class EventSequenceError(ProtocolError):
    """An event id was skipped or repeated."""

    code = "event_sequence_error"


class EventTooLargeError(ProtocolError):
    """A line, or an event's data, is longer than the client's `max_event_size`."""

    code = "event_too_large_error"
