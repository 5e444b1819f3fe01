"""The client's memory is bounded: an endless line, an endless event or a huge body cannot grow it.

A raw gateway on 127.0.0.1 offers far more than the client's limits, until the client hangs
up; the client's transport counts the bytes it actually took in.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from gemini_sse import (
    AsyncClient,
    Client,
    EventTooLargeError,
    ProtocolError,
    RequestRejected,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


LIMIT = 64 * 1024  # the client's max_event_size in these tests
ONE_READ = 64 * 1024  # httpcore takes at most this from the socket at once
OFFER = 32 * 1024 * 1024  # far more than the socket buffers of both ends can hold

STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
FIRST = b'id: 1\nevent: token\ndata: {"text":"Hello"}\n\n'
ENDLESS_LINE = (FIRST + b'id: 2\nevent: token\ndata: {"text":"', b"x" * 4096)
ENDLESS_EVENT = (FIRST + b"id: 2\nevent: token\n", b"data: " + b"x" * 1000 + b"\n")
BODIES = pytest.mark.parametrize(
    ("first", "block"), [ENDLESS_LINE, ENDLESS_EVENT], ids=["endless-line", "endless-event"]
)


@dataclass
class Offer:
    """What the gateway managed to send, and whether the client hung up before the end."""

    sent: int = 0
    hung_up: bool = False


def _read_request(conn: socket.socket) -> None:
    request = b""
    while b"\r\n\r\n" not in request:
        request += conn.recv(65536)
    head, _, body = request.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        body += conn.recv(65536)


@contextlib.contextmanager
def endless_gateway(head: bytes, first: bytes, block: bytes) -> Iterator[tuple[str, Offer]]:
    """Answer one request with `head`, then `first` and `block` again and again, up to OFFER."""
    listener = socket.create_server(("127.0.0.1", 0))
    offer = Offer()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            # A client that stops reading without closing fails here instead of hanging.
            conn.settimeout(30)
            _read_request(conn)
            conn.sendall(head + b"content-length: %d\r\n\r\n" % OFFER)
            piece = first
            try:
                while offer.sent < OFFER:
                    piece = piece[: OFFER - offer.sent]
                    conn.sendall(piece)
                    offer.sent += len(piece)
                    piece = block
            except ConnectionError:
                offer.hung_up = True

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", offer
    finally:
        thread.join(timeout=30)
        listener.close()


class _Counted(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, transport: CountingTransport) -> None:
        self.inner = inner
        self.transport = transport

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            self.transport.received += len(chunk)
            yield chunk

    def close(self) -> None:
        self.inner.close()


class CountingTransport(httpx.HTTPTransport):
    """httpx's own transport, counting the body bytes it hands to the client."""

    received = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _Counted(response.stream, self)
        return response


class _ACounted(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, transport: AsyncCountingTransport) -> None:
        self.inner = inner
        self.transport = transport

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            self.transport.received += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class AsyncCountingTransport(httpx.AsyncHTTPTransport):
    """`CountingTransport` for `httpx.AsyncClient`."""

    received = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _ACounted(response.stream, self)
        return response


# --- the event stream: max_event_size ------------------------------------------------------


@BODIES
def test_an_endless_line_or_event_stops_at_max_event_size(first: bytes, block: bytes) -> None:
    """`Client` raises `EventTooLargeError` after reading at most the limit and one read more."""
    transport = CountingTransport()
    with endless_gateway(STREAM_HEAD, first, block) as (url, offer):
        http = httpx.Client(transport=transport)
        with Client(url, max_event_size=LIMIT, http_client=http) as client:
            received: list[str] = []
            with pytest.raises(EventTooLargeError) as caught:
                received.extend(client.stream_text("hi"))
        http.close()
    assert received == ["Hello"]
    assert caught.value.partial_text == "Hello"
    assert f"max_event_size ({LIMIT:,} characters)" in caught.value.message
    assert (caught.value.code, caught.value.retryable) == ("event_too_large_error", False)
    assert transport.received <= len(first) + LIMIT + ONE_READ
    assert offer.hung_up and offer.sent < OFFER


@BODIES
@pytest.mark.anyio
async def test_async_an_endless_line_or_event_stops_at_max_event_size(
    first: bytes, block: bytes
) -> None:
    """`AsyncClient` raises `EventTooLargeError` after reading at most the limit and one read."""
    transport = AsyncCountingTransport()
    with endless_gateway(STREAM_HEAD, first, block) as (url, offer):
        async with httpx.AsyncClient(transport=transport) as http:
            async with AsyncClient(url, max_event_size=LIMIT, http_client=http) as client:
                received: list[str] = []
                with pytest.raises(EventTooLargeError) as caught:
                    async for text in client.stream_text("hi"):
                        received.append(text)
    assert received == ["Hello"]
    assert caught.value.partial_text == "Hello"
    assert transport.received <= len(first) + LIMIT + ONE_READ
    assert offer.hung_up and offer.sent < OFFER


def test_stream_raw_is_bounded_too() -> None:
    """`stream_raw` checks what it passes on: an endless line raises there as well."""
    transport = CountingTransport()
    first, block = ENDLESS_LINE
    with endless_gateway(STREAM_HEAD, first, block) as (url, offer):
        http = httpx.Client(transport=transport)
        with Client(url, max_event_size=LIMIT, http_client=http) as client:
            with pytest.raises(EventTooLargeError):
                for _ in client.stream_raw("hi"):
                    pass
        http.close()
    assert transport.received <= len(first) + LIMIT + ONE_READ
    assert offer.hung_up


# --- bodies that are not event streams: MAX_BODY_SIZE (64 KiB) ---------------------------

ERROR_HEAD = b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\n"
JSON_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
BODY_CAP = 64 * 1024


def test_a_huge_error_body_is_read_only_up_to_the_cap() -> None:
    """A 502 with an endless body is `RequestRejected`, read to 64 KiB and one read, no more."""
    transport = CountingTransport()
    with endless_gateway(ERROR_HEAD, b"<html><h1>Bad Gateway</h1>", b"x" * 4096) as (url, offer):
        http = httpx.Client(transport=transport)
        with Client(url, http_client=http) as client, pytest.raises(RequestRejected) as caught:
            client.complete("hi")
        http.close()
    assert (caught.value.status_code, caught.value.code) == (502, "internal")
    assert caught.value.message.startswith("HTTP 502 Bad Gateway: <html><h1>Bad Gateway</h1>")
    assert "the rest was not read" in caught.value.message
    assert caught.value.retryable is True
    assert transport.received <= BODY_CAP + ONE_READ
    assert offer.hung_up and offer.sent < OFFER


@pytest.mark.anyio
async def test_async_a_huge_error_body_is_read_only_up_to_the_cap() -> None:
    """`AsyncClient` reads an endless error body to 64 KiB and one read, no more."""
    transport = AsyncCountingTransport()
    with endless_gateway(ERROR_HEAD, b"<html>", b"x" * 4096) as (url, offer):
        async with httpx.AsyncClient(transport=transport) as http:
            async with AsyncClient(url, http_client=http) as client:
                with pytest.raises(RequestRejected) as caught:
                    await client.complete("hi")
    assert caught.value.status_code == 502
    assert transport.received <= BODY_CAP + ONE_READ
    assert offer.hung_up and offer.sent < OFFER


def test_a_huge_json_answer_is_a_protocol_error() -> None:
    """`create_stream` reads a JSON answer to 64 KiB at most, then reports it too long."""
    transport = CountingTransport()
    with endless_gateway(JSON_HEAD, b'{"id":"', b"x" * 4096) as (url, offer):
        http = httpx.Client(transport=transport)
        with Client(url, http_client=http) as client:
            with pytest.raises(ProtocolError, match="longer than 65,536 bytes"):
                client.create_stream("hi")
        http.close()
    assert transport.received <= BODY_CAP + ONE_READ
    assert offer.hung_up


@pytest.mark.anyio
async def test_async_a_huge_json_answer_is_a_protocol_error() -> None:
    """`AsyncClient.stream_status` reads a JSON answer to 64 KiB at most."""
    transport = AsyncCountingTransport()
    with endless_gateway(JSON_HEAD, b'{"id":"', b"x" * 4096) as (url, offer):
        async with httpx.AsyncClient(transport=transport) as http:
            async with AsyncClient(url, http_client=http) as client:
                with pytest.raises(ProtocolError, match="longer than 65,536 bytes"):
                    await client.stream_status("s")
    assert transport.received <= BODY_CAP + ONE_READ
    assert offer.hung_up


# --- the defaults --------------------------------------------------------------------------


def test_the_default_limit_lets_a_large_real_event_through() -> None:
    """A 1.5 MB token (a whole long answer in one chunk) passes the default 4 MiB limit."""
    text = "é" * 250_000  # escaped as \u00e9: 6 bytes each, 1.5 MB of JSON
    data = '{"text":"' + "\\u00e9" * 250_000 + '"}'
    done = '{"finish_reason":"stop","model":"m","chunks":1,"duration_ms":1}'
    body = f"id: 1\nevent: token\ndata: {data}\n\nid: 2\nevent: done\ndata: {done}\n\n"

    def gateway(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    http = httpx.Client(transport=httpx.MockTransport(gateway))
    with Client(http_client=http) as client:
        assert client.max_event_size == 4 * 1024 * 1024
        assert client.complete("hi").text == text
