"""Every way a stream can fail, as the client reports it: one exception tree, nothing hidden."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from gemini_sse import (
    AsyncClient,
    Client,
    ConnectError,
    ConnectTimeout,
    DoneEvent,
    ErrorEvent,
    EventSequenceError,
    EventTooLargeError,
    GeminiSSEError,
    IncompleteStreamError,
    ProtocolError,
    ReadTimeout,
    RequestRejected,
    StreamError,
    TimeoutError,
    TokenEvent,
    TransportError,
)
from gemini_sse._ask import _snake
from gemini_sse.server.providers.simulated import expected_answer

from .conftest import make_settings
from .servers import RunningServer, free_port


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- handcrafted gateways -----------------------------------------------------------------

SSE = {"content-type": "text/event-stream"}
DONE = b'event: done\ndata: {"finish_reason":"stop","model":"m","chunks":1,"duration_ms":1}\n\n'


def token(event_id: int, text: str) -> bytes:
    return f'id: {event_id}\nevent: token\ndata: {{"text":"{text}"}}\n\n'.encode()


def scripted(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Client:
    """A client whose gateway answers every request with exactly `body`."""

    def gateway(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=SSE if headers is None else headers, content=body)

    return Client(
        "http://gateway", http_client=httpx.Client(transport=httpx.MockTransport(gateway))
    )


@contextlib.contextmanager
def tcp_gateway(reply: bytes, *, hang: bool) -> Iterator[str]:
    """A socket on 127.0.0.1 that reads one request, sends `reply`, then hangs or hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    release = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            head, _, body = request.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:  # read it all, so closing sends FIN, not RST
                body += conn.recv(65536)
            conn.sendall(reply)
            if hang:
                release.wait(10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        release.set()
        thread.join(timeout=5)
        listener.close()


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# --- before the stream: RequestRejected ---------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "kwargs", "status", "code"),
    [
        ({}, {"temperature": 5}, 422, "invalid_request"),
        ({}, {"message": " "}, 422, "invalid_request"),
        ({}, {"message": "hi", "model": "gemini-0-nope"}, 400, "model_not_allowed"),
        ({"max_message_chars": 10}, {"message": "x" * 11}, 413, "payload_too_large"),
    ],
)
def test_http_errors_raise_request_rejected_with_the_gateways_error(
    serve: Callable[..., RunningServer],
    settings: dict[str, Any],
    kwargs: dict[str, Any],
    status: int,
    code: str,
) -> None:
    """A 4xx before the stream is `RequestRejected` with the gateway's code and status."""
    running = serve(**settings)
    with Client(running.url) as client, pytest.raises(RequestRejected) as caught:
        list(client.stream(**kwargs))
    assert caught.value.status_code == status
    assert caught.value.code == code
    assert caught.value.message
    assert caught.value.retryable is False
    assert caught.value.info.request_id  # the gateway's id for the request, for support


def test_overloaded_gateway_raises_retryable_rejection_with_retry_after(
    serve: Callable[..., RunningServer],
) -> None:
    """At max_streams, a new stream is a retryable 503 `overloaded` with retry_after."""
    running = serve(max_streams=1)
    with Client(running.url) as client:
        hanging = client.stream("one", simulation={"fault": "hang", "fail_after": 1})
        assert isinstance(next(hanging), TokenEvent)
        with pytest.raises(RequestRejected) as caught:
            client.complete("two")
        hanging.close()
    assert caught.value.status_code == 503
    assert caught.value.code == "overloaded"
    assert caught.value.retryable is True
    assert caught.value.retry_after == 1


def test_a_non_json_error_body_still_gives_a_clear_rejection() -> None:
    """A proxy's HTML 502 becomes `RequestRejected` naming the status; Retry-After is read."""
    html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    client = scripted(html, 502, {"content-type": "text/html", "retry-after": "7"})
    with pytest.raises(RequestRejected) as caught:
        client.complete("hi")
    assert caught.value.status_code == 502
    assert caught.value.code == "internal"
    assert "HTTP 502 Bad Gateway" in caught.value.message
    assert "<h1>502 Bad Gateway</h1>" in caught.value.message
    assert caught.value.retryable is True
    assert caught.value.retry_after == 7


def test_a_success_that_is_not_an_event_stream_is_a_protocol_error() -> None:
    """A 200 with a JSON body (a wrong URL, say) is not silently read as an empty stream."""
    client = scripted(b'{"status":"ok"}', 200, {"content-type": "application/json"})
    with pytest.raises(ProtocolError, match="application/json"):
        client.complete("hi")


# --- inside the stream: StreamError -------------------------------------------------------

# Faults of the simulated model after two chunks, and what the client must see.
FAULTS = [
    ("rate_limit", "rate_limited", True, 2.0),
    ("unavailable", "upstream_disconnected", True, None),
    ("bad_request", "bad_request", False, None),
    ("permission_denied", "upstream_auth", False, None),
    ("drop", "upstream_disconnected", True, None),
    ("hang", "timeout", True, None),
    ("safety", "content_blocked", False, None),
]


@pytest.mark.parametrize(("fault", "code", "retryable", "retry_after"), FAULTS)
def test_each_fault_raises_stream_error_with_the_text_before_it(
    serve: Callable[..., RunningServer],
    fault: str,
    code: str,
    retryable: bool,
    retry_after: float | None,
) -> None:
    """An `error` event raises `StreamError`: its code, retryable, and the partial text."""
    running = serve(idle_timeout_s=0.3)
    before = expected_answer(make_settings(), ["hi"])[: 2 * 12]  # two chunks of 12 chars
    received: list[str] = []
    with Client(running.url) as client, pytest.raises(StreamError) as caught:
        for text in client.stream_text("hi", simulation={"fault": fault, "fail_after": 2}):
            received.append(text)
    error = caught.value
    assert (error.code, error.retryable, error.retry_after) == (code, retryable, retry_after)
    assert error.partial_text == "".join(received) == before
    assert error.message


def test_an_empty_answer_raises_content_blocked_with_no_text(
    serve: Callable[..., RunningServer],
) -> None:
    """A model that answers nothing gives `content_blocked` and an empty partial text."""
    running = serve()
    with Client(running.url) as client, pytest.raises(StreamError) as caught:
        client.complete("hi", simulation={"fault": "empty"})
    assert caught.value.code == "content_blocked"
    assert caught.value.partial_text == ""


def test_raise_on_error_false_yields_the_error_event_last(
    serve: Callable[..., RunningServer],
) -> None:
    """With `raise_on_error=False` the `ErrorEvent` is the last event, not an exception."""
    running = serve()
    with Client(running.url) as client:
        events = list(
            client.stream(
                "hi", raise_on_error=False, simulation={"fault": "rate_limit", "fail_after": 1}
            )
        )
    assert [e.event for e in events] == ["token", "separator", "error"]
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert error.code == "rate_limited" and error.retry_after == 2.0 and error.id == 3


@pytest.mark.anyio
async def test_async_client_raises_the_same_stream_error(
    serve: Callable[..., RunningServer],
) -> None:
    """`AsyncClient` reports an `error` event exactly like `Client`."""
    running = serve()
    before = expected_answer(make_settings(), ["hi"])[:12]
    async with AsyncClient(running.url) as client:
        with pytest.raises(StreamError) as caught:
            await client.complete("hi", simulation={"fault": "bad_request", "fail_after": 1})
    assert caught.value.code == "bad_request"
    assert caught.value.partial_text == before


# --- a stream that breaks the protocol ----------------------------------------------------


def test_a_stream_ending_without_done_or_error_is_incomplete() -> None:
    """A body that ends cleanly after some tokens raises `IncompleteStreamError`."""
    client = scripted(token(1, "Hello, ") + token(2, "wor"))
    received: list[str] = []
    with pytest.raises(IncompleteStreamError) as caught:
        received.extend(client.stream_text("hi"))
    assert received == ["Hello, ", "wor"]
    assert caught.value.partial_text == "Hello, wor"


def test_a_gateway_hanging_up_mid_stream_is_incomplete() -> None:
    """A connection closed mid-stream (no final chunk) raises `IncompleteStreamError`."""
    reply = STREAM_HEAD + chunk(token(1, "Hello, ")) + chunk(token(2, "wor"))
    with tcp_gateway(reply, hang=False) as url, Client(url) as client:
        with pytest.raises(IncompleteStreamError) as caught:
            client.complete("hi")
    assert caught.value.partial_text == "Hello, wor"
    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)


@pytest.mark.parametrize(
    ("body", "message", "delivered"),
    [
        (token(1, "a") + token(3, "b") + b"id: 4\n" + DONE, "Expected event id 2, got id '3'", 1),
        (token(1, "a") + token(1, "b") + b"id: 2\n" + DONE, "Expected event id 2, got id '1'", 1),
        (b'event: token\ndata: {"text":"a"}\n\n' + DONE, "Expected event id 1, got no id", 0),
    ],
    ids=["gap", "repeat", "missing"],
)
def test_a_skipped_or_repeated_event_id_raises_event_sequence_error(
    body: bytes, message: str, delivered: int
) -> None:
    """Ids must go 1, 2, 3...: a gap, a repeat or a missing id is an error, not hidden."""
    client = scripted(body)
    received: list[Any] = []
    with pytest.raises(EventSequenceError, match=message):
        received.extend(client.stream("hi"))
    assert [e.id for e in received] == list(range(1, delivered + 1))


def test_unknown_event_types_and_comments_are_skipped() -> None:
    """A newer gateway's event type (ids still counted) and `: ping` comments are ignored."""
    body = (
        b": ping\n\n"
        + token(1, "a")
        + b'id: 2\nevent: citation\ndata: {"url":"https://example.com"}\n\n'
        + b": ping\n\n"
        + token(3, "b")
        + b"id: 4\n"
        + DONE
    )
    events = list(scripted(body).stream("hi"))
    assert [(e.event, e.id) for e in events] == [("token", 1), ("token", 3), ("done", 4)]
    assert isinstance(events[-1], DoneEvent)


def test_an_invalid_event_payload_is_a_protocol_error() -> None:
    """A `token` event without `text` is reported, not turned into an empty token."""
    with pytest.raises(ProtocolError, match="not a valid `token` event"):
        list(scripted(b'id: 1\nevent: token\ndata: {"txt":"a"}\n\n').stream("hi"))


# --- the connection -----------------------------------------------------------------------


def test_a_closed_port_raises_connect_error() -> None:
    """Nothing listening: `ConnectError`, from httpx's error."""
    with Client(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(ConnectError) as caught:
            client.complete("hi")
    assert isinstance(caught.value, TransportError)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


@pytest.mark.anyio
async def test_async_closed_port_raises_connect_error() -> None:
    """`AsyncClient` maps a refused connection to `ConnectError` too."""
    async with AsyncClient(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(ConnectError):
            await client.complete("hi")


def test_a_silent_gateway_raises_read_timeout() -> None:
    """Headers, then nothing for longer than the read timeout: `ReadTimeout`."""
    with tcp_gateway(STREAM_HEAD, hang=True) as url:
        with Client(url, read_timeout=0.2) as client, pytest.raises(ReadTimeout) as caught:
            client.complete("hi")
    assert isinstance(caught.value, TimeoutError)
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (httpx.ConnectTimeout("slow"), ConnectTimeout),
        (httpx.PoolTimeout("busy"), TimeoutError),
        (httpx.ReadError("reset"), TransportError),
        (httpx.RemoteProtocolError("no response"), TransportError),
    ],
)
def test_other_httpx_errors_become_ours(raised: Exception, expected: type[Exception]) -> None:
    """Each httpx transport error is raised as ours, with httpx's as its cause."""

    def gateway(request: httpx.Request) -> httpx.Response:
        raise raised

    http = httpx.Client(transport=httpx.MockTransport(gateway))
    with Client(http_client=http) as client, pytest.raises(expected) as caught:
        client.complete("hi")
    assert type(caught.value) is expected
    assert caught.value.__cause__ is raised


def test_a_reset_mid_stream_keeps_the_partial_text() -> None:
    """A connection reset after some text is `IncompleteStreamError` with that text."""
    event = b'id: 1\nevent: token\ndata: {"text":"half an ans"}\n\n'
    listener = socket.create_server(("127.0.0.1", 0))
    client_has_text = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(65536)
        conn.sendall(STREAM_HEAD + chunk(event))
        # A reset drops what the client has not read yet: reset once it holds the text.
        client_has_text.wait(5)
        # SO_LINGER 0: close with a reset (RST), as a crashed proxy would.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    try:
        with Client(f"http://127.0.0.1:{port}") as client:
            with pytest.raises(IncompleteStreamError) as caught:
                for _event in client.stream("hi"):
                    client_has_text.set()
    finally:
        thread.join(5)
        listener.close()
    assert caught.value.partial_text == "half an ans"


def test_a_proxys_plain_429_reads_as_too_many_requests() -> None:
    """A 429 without the gateway's JSON (a proxy's limit) is `too_many_requests`, retryable."""
    client = scripted(b"slow down", 429, {"content-type": "text/plain", "retry-after": "3"})
    with pytest.raises(RequestRejected) as caught:
        client.complete("hi")
    assert (caught.value.status_code, caught.value.code) == (429, "too_many_requests")
    assert caught.value.retryable is True
    assert caught.value.retry_after == 3


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (TransportError("reset"), True),
        (ConnectError("refused"), True),
        (TimeoutError("slow"), True),
        (ConnectTimeout("slow"), True),
        (ReadTimeout("silent"), True),
        (ProtocolError("not a stream"), False),
        (IncompleteStreamError("cut"), True),
        (EventSequenceError("gap"), False),
        (EventTooLargeError("too long"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_client_side_errors_speak_the_gateways_vocabulary(
    error: TransportError | ProtocolError, retryable: bool
) -> None:
    """Errors the client finds itself carry `code` (as `ask` prints it), `message`, `retryable`."""
    assert isinstance(error, GeminiSSEError)
    assert error.code == _snake(type(error).__name__)
    assert error.message == str(error)
    assert error.retryable is retryable
    assert error.partial_text == ""
