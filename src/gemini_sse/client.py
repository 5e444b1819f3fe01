"""The gemini-sse client: stream a gateway's answer as typed events.

    from gemini_sse.client import Client

    with Client("http://127.0.0.1:8000") as client:
        for text in client.stream_text("What is baseball?"):
            print(text, end="", flush=True)

Needs only httpx and pydantic: the gateway's dependencies are never imported.
"""

from ._client import DEFAULT_URL, AsyncClient, Client
from ._decoder import ServerSentEvent, SSEDecoder
from ._exceptions import (
    ConnectError,
    ConnectTimeout,
    EventSequenceError,
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
]
