"""Memory a burst freed goes back to the system once no stream is left."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from gemini_sse.server import memory
from gemini_sse.server.app import create_app

from .conftest import make_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_memory_is_released_once_after_the_last_stream_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Streams that end together give one release, after the quiet time, none while one runs."""
    releases: list[Any] = []
    monkeypatch.setattr(memory, "release_memory", releases.append)
    app = create_app(make_settings(fake_chunks=3, fake_delay_ms=0, fake_first_delay_ms=0))
    app.state.gateway.memory.idle_s = 0.2
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        bodies = [{"message": f"hi {n}"} for n in range(3)]
        answers = await asyncio.gather(*(client.post("/v1/stream", json=b) for b in bodies))
        assert all(a.status_code == 200 for a in answers)
        assert releases == []  # not before the quiet time
        slow = asyncio.create_task(
            client.post("/v1/stream", json={"message": "slow", "simulation": {"delay_ms": 150}})
        )
        await asyncio.sleep(0.4)
        assert releases == []  # a stream is running
        await slow
        await asyncio.sleep(0.4)
    assert len(releases) == 1
