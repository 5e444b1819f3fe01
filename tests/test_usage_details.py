"""Cached input and reasoning tokens reported by the model reach `done` and the telemetry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from langchain_core.messages import AIMessageChunk
from langchain_core.messages.ai import UsageMetadata

from gemini_sse._models import ChatMessage, DoneEvent
from gemini_sse.server.pipeline import Generation, Timeouts
from gemini_sse.server.providers import ModelRequest

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class DetailedUsage:
    """A provider whose model reports usage details, as Gemini's and OpenAI's do."""

    name = "detailed"

    def __init__(self, details: bool) -> None:
        self.details = details

    async def astream(self, request: ModelRequest) -> AsyncIterator[AIMessageChunk]:
        yield AIMessageChunk(
            content="Hello",
            usage_metadata=UsageMetadata(input_tokens=10, output_tokens=2, total_tokens=12),
        )
        last = UsageMetadata(input_tokens=0, output_tokens=30, total_tokens=30)
        if self.details:
            last["input_token_details"] = {"cache_read": 8}
            last["output_token_details"] = {"reasoning": 25}
        yield AIMessageChunk(
            content=" world",
            usage_metadata=last,
            response_metadata={"finish_reason": "STOP"},
        )

    async def aclose(self) -> None:
        return None


async def _done(provider: DetailedUsage) -> DoneEvent:
    request = ModelRequest(messages=[ChatMessage(role="user", content="hi")], model="m")
    generation = Generation(provider, request, Timeouts(first_token=5, idle=5, total=10))
    events = [event async for event in generation.events()]
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert generation.finish_reason == "stop"
    return done


async def test_cached_and_reasoning_tokens_are_added_up_into_usage() -> None:
    """The details' counts are summed over chunks and sent with the totals."""
    done = await _done(DetailedUsage(details=True))
    assert done.usage is not None
    assert done.usage.model_dump() == {
        "input_tokens": 10,
        "output_tokens": 32,
        "total_tokens": 42,
        "cached_tokens": 8,
        "reasoning_tokens": 25,
    }


async def test_usage_without_details_leaves_them_out_of_the_wire() -> None:
    """No details reported: the `done` payload has no cached or reasoning fields at all."""
    done = await _done(DetailedUsage(details=False))
    assert done.usage is not None
    assert done.usage.cached_tokens is None and done.usage.reasoning_tokens is None
    assert "cached_tokens" not in done.usage.model_dump_json(exclude_none=True)
