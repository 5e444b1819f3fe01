"""A deliberately small HTTP/1.1 server for the emulators: every byte on the wire is ours.

One request per connection (`Connection: close`), bodies by Content-Length, streamed
answers in chunked encoding. Writing it by hand is what lets a scenario stop halfway
through a chunked body, or keep a connection open and silent, the way a broken upstream
does, which a full web framework would tidy up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .scenario import HANG_LIMIT_S


@dataclass
class HttpRequest:
    """A parsed request."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class HttpExchange:
    """The response side of one connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._streaming = False

    async def send_json(
        self, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        payload = json.dumps(body).encode()
        head = {
            "content-type": "application/json",
            "content-length": str(len(payload)),
            **(headers or {}),
        }
        await self._write_head(status, head)
        self._writer.write(payload)
        await self._writer.drain()

    async def start_stream(self, content_type: str = "text/event-stream") -> None:
        await self._write_head(200, {"content-type": content_type, "transfer-encoding": "chunked"})
        self._streaming = True

    async def send_chunk(self, data: bytes) -> None:
        self._writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await self._writer.drain()

    async def end_stream(self) -> None:
        self._writer.write(b"0\r\n\r\n")
        await self._writer.drain()

    def cut(self) -> None:
        """Close the connection now, in the middle of the chunked body."""
        self._writer.close()

    async def wait_for_client_to_leave(self) -> bool:
        """Keep the connection open and silent; True once the client has closed it."""
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(HANG_LIMIT_S):
                while await self._reader.read(1024):
                    pass
                return True
        return False

    async def _write_head(self, status: int, headers: dict[str, str]) -> None:
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
        lines += [f"{name}: {value}" for name, value in {**headers, "connection": "close"}.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await self._writer.drain()


Handler = Callable[[HttpRequest, HttpExchange], Awaitable[None]]


class HttpServer:
    """Serves `handler` on 127.0.0.1 (random port) on the running loop."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            request = await _read_request(reader)
            if request is not None:
                await self._handler(request, HttpExchange(reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.close()


async def _read_request(reader: asyncio.StreamReader) -> HttpRequest | None:
    head = await reader.readuntil(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    if not request_line:
        return None
    method, target, _ = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in header_lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    url = urlsplit(target)
    return HttpRequest(method, url.path, parse_qs(url.query), headers, body)
