"""`Client` and `AsyncClient`: a gateway's answer as typed events, as they arrive.

The two differ only in how they move bytes; what the bytes mean, and when a resumable
stream reconnects, is `_protocol`'s, shared. `_map_httpx_errors` is the one place where
httpx's exceptions become ours. No body is read whole: an event stream is bounded by
`max_event_size` (the decoder's check), any other body by `MAX_BODY_SIZE`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from types import TracebackType
from typing import Any, TypeVar, Unpack

import anyio
import httpx
from pydantic import BaseModel

from ._decoder import DEFAULT_MAX_EVENT_SIZE
from ._exceptions import (
    ConnectError,
    ConnectTimeout,
    GeminiSSEError,
    IncompleteStreamError,
    ReadTimeout,
    TimeoutError,
    TransportError,
)
from ._models import Event, StreamCreated, StreamStatus, TokenEvent
from ._protocol import (
    DEFAULT_RECONNECT,
    MAX_BODY_SIZE,
    Completion,
    EventReader,
    Messages,
    Reconnect,
    Resumption,
    StreamOptions,
    check_response,
    completion,
    parse_json,
    request_body,
)

__all__ = ["DEFAULT_URL", "AsyncClient", "Client"]

DEFAULT_URL = "http://127.0.0.1:8000"

_M = TypeVar("_M", bound=BaseModel)


@contextlib.contextmanager
def _map_httpx_errors(reader: EventReader) -> Iterator[None]:
    """Translate httpx's exceptions into ours (the only place that sees them)."""
    try:
        yield
    except httpx.ConnectTimeout as exc:
        raise ConnectTimeout(f"Connecting to the gateway timed out: {exc}") from exc
    except httpx.ReadTimeout as exc:
        raise ReadTimeout(
            f"The gateway sent nothing for too long: {exc}", reader.partial_text
        ) from exc
    except httpx.TimeoutException as exc:
        raise TimeoutError(f"The gateway took too long: {exc}", reader.partial_text) from exc
    except httpx.ConnectError as exc:
        raise ConnectError(f"Could not connect to the gateway: {exc}") from exc
    except httpx.TransportError as exc:
        if reader.streaming:  # the connection broke mid-stream: keep what arrived
            raise IncompleteStreamError(
                f"The connection closed before the stream ended: {exc}", reader.partial_text
            ) from exc
        raise TransportError(f"The connection to the gateway failed: {exc}") from exc


def _read_body(response: httpx.Response) -> bytes:
    """A body that is not an event stream, read until it ends or passes `MAX_BODY_SIZE`."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > MAX_BODY_SIZE:
            break
    return bytes(body)


async def _aread_body(response: httpx.Response) -> bytes:
    """`_read_body`, async."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_BODY_SIZE:
            break
    return bytes(body)


_HEADERS = {
    "Accept": "text/event-stream",
    # Uncompressed. A proxy that compresses an event stream may hold it back until its
    # compressor's buffer fills (docs/operations.md, "What breaks": gzip), and a compressed
    # read inflates in full before `max_event_size` can look at what it holds.
    "Accept-Encoding": "identity",
}


class _BaseClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        connect_timeout: float | None,
        read_timeout: float | None,
        max_event_size: int | None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        # `read` bounds the silence between two reads, not the whole answer: the
        # gateway's heartbeats keep a slow answer alive.
        self.timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=connect_timeout, pool=connect_timeout
        )
        self.max_event_size = max_event_size

    def _reader(self, raise_on_error: bool, last_event_id: int | str | None = None) -> EventReader:
        return EventReader(
            raise_on_error=raise_on_error,
            last_event_id=int(last_event_id or 0),
            max_event_size=self.max_event_size,
        )

    def _headers(self, **extra: str) -> dict[str, str]:
        headers = {**_HEADERS, **extra}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _request(
        self, messages: Messages | None, options: StreamOptions, path: str = "/v1/stream"
    ) -> dict[str, Any]:
        """Keyword arguments of `httpx.Client.stream` for one answer."""
        return {
            "method": "POST",
            "url": f"{self.base_url}{path}",
            "json": request_body(messages, options),
            "headers": self._headers(),
            "timeout": self.timeout,
        }

    def _follow_request(self, stream_id: str, resumption: Resumption) -> dict[str, Any]:
        """Keyword arguments of `httpx.Client.stream` to read a resumable stream."""
        return {
            "method": "GET",
            "url": f"{self.base_url}/v1/streams/{stream_id}/events",
            "headers": self._headers(**resumption.headers()),
            "timeout": self.timeout,
        }

    def _stream_request(self, method: str, stream_id: str) -> dict[str, Any]:
        return {
            "method": method,
            "url": f"{self.base_url}/v1/streams/{stream_id}",
            "headers": self._headers(Accept="application/json"),
            "timeout": self.timeout,
        }


class Client(_BaseClient):
    """A blocking client of a gemini-sse gateway.

    Pass `http_client` to share an `httpx.Client` (its connection pool); it is then
    yours to close. Our timeouts apply to each stream either way. A line or an event
    longer than `max_event_size` characters (None: no limit) raises `EventTooLargeError`.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        connect_timeout: float | None = 5.0,
        read_timeout: float | None = 60.0,
        max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, api_key, connect_timeout, read_timeout, max_event_size)
        self._owns_http = http_client is None
        self._http = httpx.Client() if http_client is None else http_client

    def stream(
        self,
        messages: Messages | None = None,
        *,
        raise_on_error: bool = True,
        resumable: bool = False,
        reconnect: Reconnect | None = DEFAULT_RECONNECT,
        **options: Unpack[StreamOptions],
    ) -> Generator[Event, None, None]:
        """Yield the answer's events as they arrive; `done` (or `error`) is the last.

        An `error` event raises `StreamError`, or with `raise_on_error=False` is
        yielded last. Stopping early closes the response; the gateway then cancels.
        With `resumable=True` the answer is a resumable stream (see `follow`): a dropped
        connection is resumed where it broke, and stopping early does not cancel it.
        """
        if resumable:
            created = self.create_stream(messages, **options)
            yield from self.follow(created.id, raise_on_error=raise_on_error, reconnect=reconnect)
            return
        yield from self._events(self._request(messages, options), self._reader(raise_on_error))

    def stream_raw(
        self,
        messages: Messages | None = None,
        *,
        raise_on_error: bool = True,
        **options: Unpack[StreamOptions],
    ) -> Generator[bytes, None, None]:
        """Yield the event stream's bytes exactly as received, checked like `stream`."""
        reader = self._reader(raise_on_error)
        with self._chunks(self._request(messages, options), reader) as chunks:
            for chunk in chunks:
                yield chunk
                for _ in reader.feed(chunk):
                    pass
                if reader.terminal is not None:
                    return
        reader.end()

    def create_stream(
        self, messages: Messages | None = None, **options: Unpack[StreamOptions]
    ) -> StreamCreated:
        """Start a resumable stream (`POST /v1/streams`); read it with `follow`."""
        return self._json(self._request(messages, options, "/v1/streams"), StreamCreated)

    def follow(
        self,
        stream_id: str,
        *,
        last_event_id: int | str | None = None,
        raise_on_error: bool = True,
        reconnect: Reconnect | None = DEFAULT_RECONNECT,
    ) -> Generator[Event, None, None]:
        """Yield a resumable stream's events after `last_event_id`, then live ones.

        A dropped connection is resumed with `Last-Event-ID` after a backoff (see
        `Reconnect`; None: never): the caller sees one sequence, nothing lost or repeated.
        An unknown or expired stream raises `RequestRejected` with code `not_found`.
        """
        reader = self._reader(raise_on_error, last_event_id)
        resumption = Resumption(reconnect, reader)
        while True:
            try:
                yield from self._events(self._follow_request(stream_id, resumption), reader)
                return
            except GeminiSSEError as exc:
                delay = resumption.failed(exc)
                if delay is None:
                    raise
            time.sleep(delay)

    def cancel(self, stream_id: str) -> StreamStatus:
        """Cancel a resumable stream; it ends with an `error` event `cancelled`."""
        return self._json(self._stream_request("DELETE", stream_id), StreamStatus)

    def stream_status(self, stream_id: str) -> StreamStatus:
        """A resumable stream's status, event count and usage."""
        return self._json(self._stream_request("GET", stream_id), StreamStatus)

    def stream_text(
        self,
        messages: Messages | None = None,
        *,
        resumable: bool = False,
        **options: Unpack[StreamOptions],
    ) -> Generator[str, None, None]:
        """Yield only the text of the answer, piece by piece (`st.write_stream` takes it)."""
        with contextlib.closing(self.stream(messages, resumable=resumable, **options)) as events:
            for event in events:
                if isinstance(event, TokenEvent):
                    yield event.text

    def complete(
        self, messages: Messages | None = None, **options: Unpack[StreamOptions]
    ) -> Completion:
        """Stream the whole answer and return it at once."""
        with contextlib.closing(self.stream(messages, **options)) as events:
            return completion(list(events))

    def _events(self, request: dict[str, Any], reader: EventReader) -> Iterator[Event]:
        """One connection's events, up to the terminal one (then the response is closed)."""
        with self._chunks(request, reader) as chunks:
            for chunk in chunks:
                yield from reader.feed(chunk)
                if reader.terminal is not None:
                    return
        reader.end()

    @contextlib.contextmanager
    def _chunks(self, request: dict[str, Any], reader: EventReader) -> Iterator[Iterator[bytes]]:
        with _map_httpx_errors(reader), self._http.stream(**request) as response:
            body = b"" if response.is_success else _read_body(response)
            check_response(response, body)
            reader.streaming = True
            yield response.iter_bytes()

    def _json(self, request: dict[str, Any], model: type[_M]) -> _M:
        with _map_httpx_errors(EventReader()), self._http.stream(**request) as response:
            body = _read_body(response)
        return parse_json(response, body, model)

    def close(self) -> None:
        """Close the connection pool, unless it was passed in."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient(_BaseClient):
    """An asyncio (anyio) client of a gemini-sse gateway; see `Client`.

    Breaking out of `async for` closes the response when the generator is collected;
    wrap `stream()` in `contextlib.aclosing` to close it at once.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        connect_timeout: float | None = 5.0,
        read_timeout: float | None = 60.0,
        max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, api_key, connect_timeout, read_timeout, max_event_size)
        self._owns_http = http_client is None
        self._http = httpx.AsyncClient() if http_client is None else http_client

    async def stream(
        self,
        messages: Messages | None = None,
        *,
        raise_on_error: bool = True,
        resumable: bool = False,
        reconnect: Reconnect | None = DEFAULT_RECONNECT,
        **options: Unpack[StreamOptions],
    ) -> AsyncGenerator[Event, None]:
        """Yield the answer's events as they arrive; see `Client.stream`."""
        if resumable:
            created = await self.create_stream(messages, **options)
            events = self.follow(created.id, raise_on_error=raise_on_error, reconnect=reconnect)
        else:
            events = self._events(self._request(messages, options), self._reader(raise_on_error))
        async with contextlib.aclosing(events):
            async for event in events:
                yield event

    async def stream_raw(
        self,
        messages: Messages | None = None,
        *,
        raise_on_error: bool = True,
        **options: Unpack[StreamOptions],
    ) -> AsyncGenerator[bytes, None]:
        """Yield the event stream's bytes exactly as received, checked like `stream`."""
        reader = self._reader(raise_on_error)
        async with self._chunks(self._request(messages, options), reader) as chunks:
            async for chunk in chunks:
                yield chunk
                for _ in reader.feed(chunk):
                    pass
                if reader.terminal is not None:
                    return
        reader.end()

    async def create_stream(
        self, messages: Messages | None = None, **options: Unpack[StreamOptions]
    ) -> StreamCreated:
        """Start a resumable stream (`POST /v1/streams`); read it with `follow`."""
        return await self._json(self._request(messages, options, "/v1/streams"), StreamCreated)

    async def follow(
        self,
        stream_id: str,
        *,
        last_event_id: int | str | None = None,
        raise_on_error: bool = True,
        reconnect: Reconnect | None = DEFAULT_RECONNECT,
    ) -> AsyncGenerator[Event, None]:
        """Yield a resumable stream's events, resuming dropped connections; see `Client.follow`."""
        reader = self._reader(raise_on_error, last_event_id)
        resumption = Resumption(reconnect, reader)
        while True:
            events = self._events(self._follow_request(stream_id, resumption), reader)
            try:
                async with contextlib.aclosing(events):
                    async for event in events:
                        yield event
                return
            except GeminiSSEError as exc:
                delay = resumption.failed(exc)
                if delay is None:
                    raise
            await anyio.sleep(delay)

    async def cancel(self, stream_id: str) -> StreamStatus:
        """Cancel a resumable stream; it ends with an `error` event `cancelled`."""
        return await self._json(self._stream_request("DELETE", stream_id), StreamStatus)

    async def stream_status(self, stream_id: str) -> StreamStatus:
        """A resumable stream's status, event count and usage."""
        return await self._json(self._stream_request("GET", stream_id), StreamStatus)

    async def stream_text(
        self,
        messages: Messages | None = None,
        *,
        resumable: bool = False,
        **options: Unpack[StreamOptions],
    ) -> AsyncGenerator[str, None]:
        """Yield only the text of the answer, piece by piece."""
        stream = self.stream(messages, resumable=resumable, **options)
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                if isinstance(event, TokenEvent):
                    yield event.text

    async def complete(
        self, messages: Messages | None = None, **options: Unpack[StreamOptions]
    ) -> Completion:
        """Stream the whole answer and return it at once."""
        async with contextlib.aclosing(self.stream(messages, **options)) as events:
            return completion([event async for event in events])

    async def _events(
        self, request: dict[str, Any], reader: EventReader
    ) -> AsyncGenerator[Event, None]:
        """One connection's events, up to the terminal one (then the response is closed)."""
        async with self._chunks(request, reader) as chunks:
            async for chunk in chunks:
                for event in reader.feed(chunk):
                    yield event
                if reader.terminal is not None:
                    return
        reader.end()

    @contextlib.asynccontextmanager
    async def _chunks(
        self, request: dict[str, Any], reader: EventReader
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        with _map_httpx_errors(reader):
            async with self._http.stream(**request) as response:
                body = b"" if response.is_success else await _aread_body(response)
                check_response(response, body)
                reader.streaming = True
                yield response.aiter_bytes()

    async def _json(self, request: dict[str, Any], model: type[_M]) -> _M:
        with _map_httpx_errors(EventReader()):
            async with self._http.stream(**request) as response:
                body = await _aread_body(response)
        return parse_json(response, body, model)

    async def aclose(self) -> None:
        """Close the connection pool, unless it was passed in."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
