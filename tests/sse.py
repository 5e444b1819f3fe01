"""Reading our event streams in tests, with the package's own decoder."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from gemini_sse._decoder import ServerSentEvent, SSEDecoder
from gemini_sse.server.app import create_app

from .conftest import make_settings


@dataclass(frozen=True)
class Received:
    """One event as a test sees it."""

    event: str
    id: str
    data: dict[str, Any]
    retry: int | None = None


def _received(sse: ServerSentEvent) -> Received:
    return Received(sse.event, sse.id, json.loads(sse.data), sse.retry)


def parse(body: bytes) -> list[Received]:
    decoder = SSEDecoder()
    return [_received(e) for e in [*decoder.feed(body), *decoder.close()]]


def iter_events(chunks: Iterable[bytes]) -> Iterator[Received]:
    decoder = SSEDecoder()
    for chunk in chunks:
        for sse in decoder.feed(chunk):
            yield _received(sse)


async def aiter_events(response: httpx.Response) -> AsyncIterator[Received]:
    decoder = SSEDecoder()
    async for chunk in response.aiter_bytes():
        for sse in decoder.feed(chunk):
            yield _received(sse)


def names(events: Iterable[Received]) -> list[str]:
    return [e.event for e in events]


def text(events: Iterable[Received]) -> str:
    return "".join(e.data["text"] for e in events if e.event == "token")


async def post(body: dict[str, Any], **settings: Any) -> tuple[httpx.Response, list[Received]]:
    """`POST /v1/stream` to a gateway made for the call (in process): the answer, its events."""
    app = create_app(make_settings(**settings))
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gateway") as client,
    ):
        response = await client.post("/v1/stream", json=body)
        events = parse(response.content) if response.status_code == 200 else []
        return response, events
