"""The simulated model: a real LangChain chat model that needs no account and costs nothing.

Operators use it for load tests and demos, the test suite for everything that is not
about a specific upstream. It streams a deterministic answer derived from the prompt, at
a chosen pace, and can fail in each of the ways a real upstream fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from ..._models import Fault, SimulationOptions
from ..settings import Settings
from .base import LangChainProvider, ModelRequest

# Words the answers are made of; a few non-ASCII ones keep encoders honest.
_WORDS = (
    "the stream carries every token as it arrives while the gateway keeps order "
    "and time for each answer gemini answers quickly caf\u00e9 na\u00efve \u00fcber "
    "model chunk event client server browser reads writes waits"
).split()


def iter_answer(prompt: str, chunks: int, chunk_chars: int) -> Iterator[str]:
    """The chunks the simulated model streams for `prompt`, made as they are asked for.

    Same prompt, same chunks; a shorter answer is a prefix of a longer one. Lazy, so that a
    long answer costs memory for one chunk at a time, not for the whole text.
    """
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    text = ""  # made but not yet sent: the words joined by single spaces
    started = False
    for _ in range(max(0, chunks)):
        while len(text) < chunk_chars:
            word = rng.choice(_WORDS)
            text = f"{text} {word}" if started else word
            started = True
        yield text[:chunk_chars]
        text = text[chunk_chars:]


def simulated_answer(prompt: str, chunks: int, chunk_chars: int) -> list[str]:
    """Every chunk of the simulated answer to `prompt` (for tests and small answers)."""
    return list(iter_answer(prompt, chunks, chunk_chars))


class SimulatedUpstreamError(Exception):
    """An HTTP-style failure of the simulated upstream (mapped like a real one)."""

    def __init__(self, status_code: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class SimulatedDisconnect(ConnectionResetError):
    """The simulated upstream dropped the connection mid-answer."""


_FAULT_ERRORS: dict[str, tuple[int, str, float | None]] = {
    "rate_limit": (429, "Resource exhausted: quota exceeded for simulated model", 2.0),
    "unavailable": (503, "The simulated service is currently unavailable", None),
    "bad_request": (400, "Request contains an invalid argument", None),
    "permission_denied": (403, "Permission denied on simulated resource", None),
}


@dataclass
class SimulationStats:
    """What the simulated model did, for tests and operators' sanity checks."""

    started: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class _Plan:
    prompt: str
    chunks: int
    chunk_chars: int
    delay_s: float
    first_delay_s: float
    jitter_s: float
    fault: Fault | None
    fail_after: int
    input_tokens: int


class SimulatedChatModel(BaseChatModel):
    """A LangChain chat model that streams a deterministic answer at a set pace."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_name: str = "simulated"
    chunks: int = 20
    chunk_chars: int = 12
    delay_ms: float = 20.0
    first_delay_ms: float = 100.0
    jitter_ms: float = 0.0
    fault: Fault | None = None
    fail_after: int = 0
    stats: SimulationStats = Field(default_factory=SimulationStats, exclude=True)

    @property
    def _llm_type(self) -> str:
        return "gemini-sse-simulated"

    def _plan(self, messages: list[BaseMessage], options: SimulationOptions | None) -> _Plan:
        o = options or SimulationOptions()
        prompt = "\n".join(str(m.content) for m in messages)
        chunks = self.chunks if o.chunks is None else o.chunks
        fault = o.fault if o.fault is not None else self.fault
        fail_after = o.fail_after if o.fail_after is not None else self.fail_after
        return _Plan(
            prompt=prompt,
            chunks=chunks,
            chunk_chars=self.chunk_chars,
            delay_s=(self.delay_ms if o.delay_ms is None else o.delay_ms) / 1000,
            first_delay_s=(self.first_delay_ms if o.first_delay_ms is None else o.first_delay_ms)
            / 1000,
            jitter_s=self.jitter_ms / 1000,
            fault=fault,
            fail_after=fail_after,
            input_tokens=max(1, len(prompt) // 4),
        )

    def _steps(self, plan: _Plan) -> Iterator[tuple[float, ChatGenerationChunk | Exception | None]]:
        """What to do, in order: (pause in seconds, chunk to emit / error to raise / hang)."""
        rng = random.Random(plan.chunks)
        count = plan.chunks
        if plan.fault is not None:
            count = min(count, plan.fail_after)
        if plan.fault == "empty":
            count = 0
        texts = iter_answer(plan.prompt, count, plan.chunk_chars)
        for index, text in enumerate(texts):
            pause = plan.first_delay_s if index == 0 else plan.delay_s
            if plan.jitter_s:
                pause += rng.uniform(0, plan.jitter_s)
            last = index == count - 1 and plan.fault is None
            input_tokens = plan.input_tokens if index == 0 else 0
            yield pause, self._chunk(text, input_tokens, "STOP" if last else None)
        pause = plan.first_delay_s if not count else plan.delay_s
        input_tokens = 0 if count else plan.input_tokens
        match plan.fault:
            case None:
                if not count:  # zero chunks asked for: an empty answer, like "empty"
                    yield pause, self._chunk("", input_tokens, "STOP")
            case "hang":
                yield pause, None
            case "drop":
                yield pause, SimulatedDisconnect("simulated upstream closed the connection")
            case "safety":
                yield pause, self._chunk("", input_tokens, "SAFETY")
            case "empty":
                yield pause, self._chunk("", input_tokens, None)
            case _:
                status, message, retry_after = _FAULT_ERRORS[plan.fault]
                yield pause, SimulatedUpstreamError(status, message, retry_after)

    @staticmethod
    def _chunk(text: str, input_tokens: int, finish_reason: str | None) -> ChatGenerationChunk:
        # Usage comes with every chunk as that chunk's share (LangChain's convention:
        # adding up the chunks gives the totals), so usage is known mid-answer too.
        output_tokens = (len(text) + 3) // 4
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content=text,
                usage_metadata=UsageMetadata(
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    total_tokens=input_tokens + output_tokens,
                ),
                response_metadata={"finish_reason": finish_reason} if finish_reason else {},
            )
        )

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        plan = self._plan(messages, kwargs.get("simulation"))
        self.stats.started += 1
        try:
            for pause, step in self._steps(plan):
                if pause:
                    await asyncio.sleep(pause)
                if step is None:
                    await asyncio.Event().wait()  # hang until cancelled
                elif isinstance(step, Exception):
                    self.stats.failed += 1
                    raise step
                else:
                    yield step
        except (asyncio.CancelledError, GeneratorExit):
            self.stats.cancelled += 1
            raise
        self.stats.completed += 1

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        # The synchronous path exists for the original threadpool pattern the
        # benchmark compares against; the gateway itself only uses `_astream`.
        plan = self._plan(messages, kwargs.get("simulation"))
        self.stats.started += 1
        for pause, step in self._steps(plan):
            if pause:
                time.sleep(pause)
            if step is None:
                raise SimulatedUpstreamError(504, "simulated upstream hung")
            if isinstance(step, Exception):
                self.stats.failed += 1
                raise step
            yield step
        self.stats.completed += 1

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = "".join(str(c.message.content) for c in self._stream(messages, stop, **kwargs))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


class FakeProvider(LangChainProvider):
    """The `fake` provider: the simulated model, configured by `GEMINI_SSE_FAKE_*`."""

    name = "fake"

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.stats = SimulationStats()

    def build_model(self, model: str) -> SimulatedChatModel:
        s = self.settings
        return SimulatedChatModel(
            model_name=model,
            chunks=s.fake_chunks,
            chunk_chars=s.fake_chunk_chars,
            delay_ms=s.fake_delay_ms,
            first_delay_ms=s.fake_first_delay_ms,
            jitter_ms=s.fake_jitter_ms,
            fault=s.fake_fault,
            fail_after=s.fake_fail_after,
            stats=self.stats,
        )

    def invoke_options(self, request: ModelRequest) -> dict[str, Any]:
        options = super().invoke_options(request)
        if request.simulation is not None:
            options["simulation"] = request.simulation
        return options


def expected_answer(settings: Settings, messages: Sequence[str]) -> str:
    """The full text the `fake` provider answers to these message contents."""
    return "".join(
        simulated_answer("\n".join(messages), settings.fake_chunks, settings.fake_chunk_chars)
    )
