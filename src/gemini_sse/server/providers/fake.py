"""The simulated model: a real LangChain chat model that needs no account and costs nothing.

Operators use it for load tests and demos, the test suite for everything that is not
about a specific upstream. It streams a deterministic answer derived from the prompt, at
a chosen pace, and can fail in each of the ways a real upstream fails. What it says
(answers, thoughts, tool arguments, sources) is made in `simulated.py`.
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
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from ..._models import Fault, SimulationOptions, ThinkingOptions
from ..settings import Settings
from .base import LangChainProvider, ModelRequest
from .simulated import choose_call, describe, grounding, iter_answer, simulated_thoughts


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
    markdown: bool = False
    thoughts: tuple[str, ...] = ()
    call: tuple[str, str] | None = None  # a tool call to make: name, arguments (JSON)
    grounding: bool = False


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
    markdown: bool = False
    stats: SimulationStats = Field(default_factory=SimulationStats, exclude=True)

    @property
    def _llm_type(self) -> str:
        return "gemini-sse-simulated"

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Any],
        *,
        tool_choice: str | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Tools it can call: it calls one unless the last message is a tool's result."""
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def _plan(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> _Plan:
        o: SimulationOptions = kwargs.get("simulation") or SimulationOptions()
        prompt = "\n".join(describe(m) for m in messages)
        chunks = self.chunks if o.chunks is None else o.chunks
        fault = o.fault if o.fault is not None else self.fault
        fail_after = o.fail_after if o.fail_after is not None else self.fail_after
        thinking: ThinkingOptions | None = kwargs.get("thinking")
        thoughts: tuple[str, ...] = ()
        if thinking is not None and thinking.include_thoughts and thinking.budget != 0:
            thoughts = tuple(simulated_thoughts(prompt))
        call = None
        if not (messages and isinstance(messages[-1], ToolMessage)):
            call = choose_call(kwargs.get("tools") or [], kwargs.get("tool_choice"), prompt)
        return _Plan(
            markdown=self.markdown if o.markdown is None else o.markdown,
            thoughts=thoughts,
            call=call,
            grounding=bool(kwargs.get("grounding")),
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

    def _messages(self, plan: _Plan) -> Iterator[AIMessageChunk]:
        """The answer's chunks, unfinished: thoughts, then the text or a tool call."""
        for thought in plan.thoughts:
            tokens = (len(thought) + 3) // 4
            yield AIMessageChunk(
                content=[{"type": "thinking", "thinking": thought}],
                usage_metadata=UsageMetadata(
                    input_tokens=0,
                    output_tokens=tokens,
                    total_tokens=tokens,
                    output_token_details={"reasoning": tokens},
                ),
            )
        count = plan.chunks
        if plan.fault is not None:
            count = min(count, plan.fail_after)
        if plan.fault == "empty":
            count = 0
        if plan.call is not None:
            # Streamed in two pieces, as OpenAI streams a call's arguments.
            name, arguments = plan.call
            middle = len(arguments) // 2
            call_id = "call_" + hashlib.sha256(plan.prompt.encode()).hexdigest()[:24]
            yield AIMessageChunk(
                content="",
                tool_call_chunks=[
                    {"id": call_id, "name": name, "args": arguments[:middle], "index": 0}
                ],
            )
            yield AIMessageChunk(
                content="",
                tool_call_chunks=[
                    {"id": None, "name": None, "args": arguments[middle:], "index": 0}
                ],
            )
            return
        for text in iter_answer(plan.prompt, count, plan.chunk_chars, markdown=plan.markdown):
            yield AIMessageChunk(content=text)

    def _steps(self, plan: _Plan) -> Iterator[tuple[float, ChatGenerationChunk | Exception | None]]:
        """What to do, in order: (pause in seconds, chunk to emit / error to raise / hang)."""
        rng = random.Random(plan.chunks)
        sent = 0  # chunks so far; the first waits `first_delay_s`, the rest `delay_s`
        answer: list[str] = []  # kept only for grounding's citations
        messages = self._messages(plan)
        message = next(messages, None)
        while message is not None:
            following = next(messages, None)
            pause = plan.first_delay_s if sent == 0 else plan.delay_s
            if plan.jitter_s:
                pause += rng.uniform(0, plan.jitter_s)
            metadata: dict[str, Any] = {}
            if plan.grounding and message.text and len(answer) < 2:
                answer.append(message.text)
            if following is None and plan.fault is None:
                metadata["finish_reason"] = "STOP"
                if plan.grounding:
                    metadata["grounding_metadata"] = grounding(plan.prompt, answer)
            yield pause, self._finished(message, plan.input_tokens if sent == 0 else 0, metadata)
            sent += 1
            message = following
        pause = plan.first_delay_s if not sent else plan.delay_s
        input_tokens = 0 if sent else plan.input_tokens
        match plan.fault:
            case None:
                if not sent:  # zero chunks asked for: an empty answer, like "empty"
                    yield pause, self._chunk("", input_tokens, "STOP")
            case "hang":
                yield pause, None
            case "drop":
                yield pause, SimulatedDisconnect("simulated upstream closed the connection")
            case "safety":
                chunk = self._chunk("", input_tokens, "SAFETY")
                chunk.message.response_metadata["safety_ratings"] = [
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "blocked": True}
                ]
                yield pause, chunk
            case "empty":
                yield pause, self._chunk("", input_tokens, None)
            case _:
                status, message_text, retry_after = _FAULT_ERRORS[plan.fault]
                yield pause, SimulatedUpstreamError(status, message_text, retry_after)

    @staticmethod
    def _finished(
        message: AIMessageChunk, input_tokens: int, metadata: dict[str, Any]
    ) -> ChatGenerationChunk:
        # Usage comes with every chunk as that chunk's share (LangChain's convention:
        # adding up the chunks gives the totals), so usage is known mid-answer too.
        if message.usage_metadata is None:
            arguments = sum(len(c.get("args") or "") for c in message.tool_call_chunks)
            output_tokens = (len(message.text) + arguments + 3) // 4
            message.usage_metadata = UsageMetadata(
                input_tokens=0, output_tokens=output_tokens, total_tokens=output_tokens
            )
        if input_tokens:
            usage = message.usage_metadata
            usage["input_tokens"] = input_tokens
            usage["total_tokens"] += input_tokens
        message.response_metadata.update(metadata)
        return ChatGenerationChunk(message=message)

    @classmethod
    def _chunk(cls, text: str, input_tokens: int, finish_reason: str | None) -> ChatGenerationChunk:
        metadata = {"finish_reason": finish_reason} if finish_reason else {}
        return cls._finished(AIMessageChunk(content=text), input_tokens, metadata)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        plan = self._plan(messages, kwargs)
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
        plan = self._plan(messages, kwargs)
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
        text = "".join(c.message.text for c in self._stream(messages, stop, **kwargs))
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
            markdown=s.fake_markdown,
            stats=self.stats,
        )

    def invoke_options(self, request: ModelRequest) -> dict[str, Any]:
        options = super().invoke_options(request)
        if request.simulation is not None:
            options["simulation"] = request.simulation
        if request.thinking is not None:
            options["thinking"] = request.thinking
        if request.grounding:
            options["grounding"] = True
        return options
