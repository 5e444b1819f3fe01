"""`Client` and `AsyncClient`: a gateway's answer as typed events, as they arrive.

The two differ only in how they move bytes; what the bytes mean is `_protocol`'s, shared.
`_map_httpx_errors` is the one place where httpx's exceptions become ours.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from types import TracebackType
from typing import Any, Unpack

import httpx

from ._exceptions import (
    ConnectError,
    ConnectTimeout,
    IncompleteStreamError,
    ReadTimeout,
    TimeoutError,
    TransportError,
)
from ._models import Event, TokenEvent
from ._protocol import (
    Completion,
    EventReader,
    Messages,
    StreamOptions,
    check_response,
    completion,
    request_body,
)

__all__ = ["DEFAULT_URL", "AsyncClient", "Client"]

DEFAULT_URL = "http://127.0.0.1:8000"


@contextlib.contextmanager
def _map_httpx_errors(reader: EventReader) -> Iterator[None]:
    """Translate httpx's exceptions into ours (the only place that sees them)."""
    try:
        yield
    except httpx.ConnectTimeout as exc:
        raise ConnectTimeout(f"Connecting to the gateway timed out: {exc}") from exc
    except httpx.ReadTimeout as exc:
        raise ReadTimeout(f"The gateway sent nothing for too long: {exc}") from exc
    except httpx.TimeoutException as exc:
        raise TimeoutError(f"The gateway took too long: {exc}") from exc
    except httpx.ConnectError as exc:
        raise ConnectError(f"Could not connect to the gateway: {exc}") from exc
    except httpx.RemoteProtocolError as exc:
        if reader.streaming:  # the gateway hung up mid-stream
            raise IncompleteStreamError(
                f"The connection closed before the stream ended: {exc}", reader.partial_text
            ) from exc
        raise TransportError(f"The gateway broke the connection: {exc}") from exc
    except httpx.TransportError as exc:
        raise TransportError(f"The connection to the gateway failed: {exc}") from exc


class _BaseClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        connect_timeout: float | None,
        read_timeout: float | None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        # `read` bounds the silence between two reads, not the whole answer: the
        # gateway's heartbeats keep a slow answer alive.
        self.timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=connect_timeout, pool=connect_timeout
        )

    def _request(self, messages: Messages | None, options: StreamOptions) -> dict[str, Any]:
        """Keyword arguments of `httpx.Client.stream` for one answer."""
        headers = {"Accept": "text/event-stream"}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return {
            "method": "POST",
            "url": f"{self.base_url}/v1/stream",
            "json": request_body(messages, options),
            "headers": headers,
            "timeout": self.timeout,
        }


class Client(_BaseClient):
    """A blocking client of a gemini-sse gateway.

    Pass `http_client` to share an `httpx.Client` (its connection pool); it is then
    yours to close. Our timeouts apply to each stream either way.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        connect_timeout: float | None = 5.0,
        read_timeout: float | None = 60.0,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, api_key, connect_timeout, read_timeout)
        self._owns_http = http_client is None
        self._http = httpx.Client() if http_client is None else http_client

    def stream(
        self,
        messages: Messages | None = None,
        *,
        raise_on_error: bool = True,
        **options: Unpack[StreamOptions],
    ) -> Generator[Event, None, None]:
        """Yield the answer's events as they arrive; `done` (or `error`) is the last.

        An `error` event raises `StreamError`, or with `raise_on_error=False` is
        yielded last. Stopping early closes the response; the gateway then cancels.
        """
        reader = EventReader(raise_on_error=raise_on_error)
        with self._chunks(self._request(messages, options), reader) as chunks:
            for chunk in chunks:
                yield from reader.feed(chunk)
                if reader.terminal is not None:
                    return
        reader.end()

    def stream_raw(
        self,
        messages: Messages | None = None,
        *,
        raise_on_error: bool = True,
        **options: Unpack[StreamOptions],
    ) -> Generator[bytes, None, None]:
        """Yield the event stream's bytes exactly as received, checked like `stream`."""
        reader = EventReader(raise_on_error=raise_on_error)
        with self._chunks(self._request(messages, options), reader) as chunks:
            for chunk in chunks:
                yield chunk
                for _ in reader.feed(chunk):
                    pass
                if reader.terminal is not None:
                    return
        reader.end()

    def stream_text(
        self, messages: Messages | None = None, **options: Unpack[StreamOptions]
    ) -> Generator[str, None, None]:
        """Yield only the text of the answer, piece by piece (`st.write_stream` takes it)."""
        with contextlib.closing(self.stream(messages, **options)) as events:
            for event in events:
                if isinstance(event, TokenEvent):
                    yield event.text

    def complete(
        self, messages: Messages | None = None, **options: Unpack[StreamOptions]
    ) -> Completion:
        """Stream the whole answer and return it at once."""
        with contextlib.closing(self.stream(messages, **options)) as events:
            return completion(list(events))

    @contextlib.contextmanager
    def _chunks(self, request: dict[str, Any], reader: EventReader) -> Iterator[Iterator[bytes]]:
        with _map_httpx_errors(reader), self._http.stream(**request) as response:
            if not response.is_success:
                response.read()
            check_response(response)
            reader.streaming = True
            yield response.iter_bytes()

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
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, api_key, connect_timeout, read_timeout)
        self._owns_http = http_client is None
        self._http = httpx.AsyncClient() if http_client is None else http_client

    async def stream(
        self,
        messages: Messages | None = None,
        *,
        raise_on_error: bool = True,
        **options: Unpack[StreamOptions],
    ) -> AsyncGenerator[Event, None]:
        """Yield the answer's events as they arrive; see `Client.stream`."""
        reader = EventReader(raise_on_error=raise_on_error)
        async with self._chunks(self._request(messages, options), reader) as chunks:
            async for chunk in chunks:
                for event in reader.feed(chunk):
                    yield event
                if reader.terminal is not None:
                    return
        reader.end()

    async def stream_raw(
        self,
        messages: Messages | None = None,
        *,
        raise_on_error: bool = True,
        **options: Unpack[StreamOptions],
    ) -> AsyncGenerator[bytes, None]:
        """Yield the event stream's bytes exactly as received, checked like `stream`."""
        reader = EventReader(raise_on_error=raise_on_error)
        async with self._chunks(self._request(messages, options), reader) as chunks:
            async for chunk in chunks:
                yield chunk
                for _ in reader.feed(chunk):
                    pass
                if reader.terminal is not None:
                    return
        reader.end()

    async def stream_text(
        self, messages: Messages | None = None, **options: Unpack[StreamOptions]
    ) -> AsyncGenerator[str, None]:
        """Yield only the text of the answer, piece by piece."""
        async with contextlib.aclosing(self.stream(messages, **options)) as events:
            async for event in events:
                if isinstance(event, TokenEvent):
                    yield event.text

    async def complete(
        self, messages: Messages | None = None, **options: Unpack[StreamOptions]
    ) -> Completion:
        """Stream the whole answer and return it at once."""
        async with contextlib.aclosing(self.stream(messages, **options)) as events:
            return completion([event async for event in events])

    @contextlib.asynccontextmanager
    async def _chunks(
        self, request: dict[str, Any], reader: EventReader
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        with _map_httpx_errors(reader):
            async with self._http.stream(**request) as response:
                if not response.is_success:
                    await response.aread()
                check_response(response)
                reader.streaming = True
                yield response.aiter_bytes()

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
