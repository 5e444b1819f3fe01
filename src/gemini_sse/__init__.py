"""gemini-sse: stream LLM answers as typed server-sent events.

This package is the client side (httpx and pydantic only): `Client`, `AsyncClient`, the
event models, the errors, and the SSE decoder. The gateway is `gemini_sse.server`, which
needs the `server` extra and is never imported from here.
"""

from ._client import DEFAULT_URL, AsyncClient, Client
from ._decoder import ServerSentEvent, SSEDecoder
from ._exceptions import (
    ConnectError,
    ConnectTimeout,
    EventSequenceError,
    EventTooLargeError,
    GatewayError,
    GeminiSSEError,
    IncompleteStreamError,
    ProtocolError,
    ReadTimeout,
    RequestRejected,
    StreamError,
    TimeoutError,
    TransportError,
)
from ._models import (
    ChatMessage,
    DoneEvent,
    ErrorCode,
    ErrorEvent,
    ErrorInfo,
    Event,
    SeparatorEvent,
    SimulationOptions,
    StreamCreated,
    StreamStatus,
    TokenEvent,
    Usage,
)
from ._protocol import Completion, Messages, Reconnect, StreamOptions

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "ChatMessage",
    "Client",
    "Completion",
    "ConnectError",
    "ConnectTimeout",
    "DEFAULT_URL",
    "DoneEvent",
    "ErrorCode",
    "ErrorEvent",
    "ErrorInfo",
    "Event",
    "EventSequenceError",
    "EventTooLargeError",
    "GatewayError",
    "GeminiSSEError",
    "IncompleteStreamError",
    "Messages",
    "ProtocolError",
    "ReadTimeout",
    "Reconnect",
    "RequestRejected",
    "SSEDecoder",
    "SeparatorEvent",
    "ServerSentEvent",
    "SimulationOptions",
    "StreamCreated",
    "StreamError",
    "StreamOptions",
    "StreamStatus",
    "TimeoutError",
    "TokenEvent",
    "TransportError",
    "Usage",
    "__version__",
]
