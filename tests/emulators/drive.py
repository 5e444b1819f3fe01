"""Driving a provider against an emulator the way the pipeline does, and keeping score."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from langchain_core.messages import AIMessageChunk

from gemini_sse._models import ChatMessage, ErrorInfo
from gemini_sse.server.providers import ModelRequest, Provider
from gemini_sse.server.upstream import map_upstream_error

from .scenario import Emulator

CONVERSATION = (
    ChatMessage(role="system", content="Answer in one short line."),
    ChatMessage(role="user", content="Say hello."),
    ChatMessage(role="assistant", content="Hello!"),
    ChatMessage(role="user", content="Again, in French: caf\u00e9?"),
)


def request(model: str = "gemini-2.5-flash") -> ModelRequest:
    """The request every provider test sends: multi-turn, with every generation option."""
    return ModelRequest(
        messages=CONVERSATION,
        model=model,
        temperature=0.25,
        max_output_tokens=64,
        top_p=0.5,
        stop=["STOP-HERE"],
    )


@dataclass
class Outcome:
    """What the caller of `provider.astream` got."""

    chunks: list[AIMessageChunk] = field(default_factory=list)
    error: BaseException | None = None
    gave_up: bool = False
    started: float = 0.0
    first_text_at: float | None = None

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.chunks if c.text]

    @property
    def finish_reason(self) -> str | None:
        """The last non-empty finish reason, as the pipeline reads it."""
        reasons = [c.response_metadata.get("finish_reason") for c in self.chunks]
        return next((str(r) for r in reversed(reasons) if r), None)

    @property
    def usage(self) -> dict[str, int] | None:
        found = [c.usage_metadata for c in self.chunks if c.usage_metadata]
        if not found:
            return None
        last = found[-1]
        return {
            "input_tokens": last["input_tokens"],
            "output_tokens": last["output_tokens"],
            "total_tokens": last["total_tokens"],
        }

    @property
    def info(self) -> ErrorInfo | None:
        """The error as the gateway would report it."""
        if self.error is None:
            return None
        return map_upstream_error(self.error, after_text=bool(self.texts))


async def drive(
    provider: Provider,
    emulator: Emulator,
    *,
    give_up_after: float | None = None,
    model: str = "gemini-2.5-flash",
) -> Outcome:
    """Stream one answer; tell the emulator of every text that arrived.

    `give_up_after` plays the pipeline's first-token timeout: the wait for the next chunk
    is cancelled, which must cancel the upstream call.
    """
    outcome = Outcome(started=time.monotonic())
    stream = provider.astream(request(model))
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(anext(stream), give_up_after)
            except StopAsyncIteration:
                break
            if chunk.text:
                if outcome.first_text_at is None:
                    outcome.first_text_at = time.monotonic()
                emulator.client_read_text()
            outcome.chunks.append(chunk)
    except TimeoutError:
        outcome.gave_up = True
    except Exception as exc:
        # Kept without its traceback, whose first frame is this one: outcome -> error ->
        # traceback -> this frame -> outcome would be a cycle only the garbage collector
        # breaks (later, in another test), keeping alive until then the upstream response
        # that the frames below hold.
        outcome.error = exc.with_traceback(None)
    finally:
        await _aclose(stream)
    return outcome


async def _aclose(stream: AsyncIterator[AIMessageChunk]) -> None:
    aclose: Callable[[], object] | None = getattr(stream, "aclose", None)
    if aclose is not None:
        result = aclose()
        if asyncio.iscoroutine(result):
            await result


async def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll `condition` without blocking the loop; False if it still fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


# The longest loop stall the stall tests accept. On a loaded machine other processes and
# threads (holding the CPU or the GIL) cause stalls far below a second; a blocking call in
# the loop waiting for the model causes one as long as the model's pause before its first
# chunk, which these tests make twice the limit.
STALL_LIMIT_S = 1.0
BLOCKING_PAUSE_S = 2 * STALL_LIMIT_S


@dataclass
class StallMeter:
    """The longest time the event loop failed to run a 10 ms ticker."""

    worst: float = 0.0


@asynccontextmanager
async def measure_loop_stalls() -> AsyncIterator[StallMeter]:
    """Run a ticker task on the current loop while the block runs; record its worst lag."""
    meter = StallMeter()
    ticking = asyncio.Event()

    async def tick() -> None:
        loop = asyncio.get_running_loop()
        ticking.set()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            meter.worst = max(meter.worst, loop.time() - before - 0.01)

    task = asyncio.get_running_loop().create_task(tick())
    await ticking.wait()  # the ticker runs before the block starts
    try:
        yield meter
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
