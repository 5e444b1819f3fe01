"""One generation, from provider chunks to internal events.

`Generation.events()` drives a provider and yields the shared event models without ids
(the wire encoder numbers them), with one exception: a text delta is the `str` itself,
the `TokenEvent` the encoders write (every event of a stream but a few is one, and a
model per token cost about 1 us in validation and collection). `SeparatorEvent` after each
upstream chunk that carried text, and exactly one terminal event, `DoneEvent` or
`ErrorEvent`, whatever happens upstream. What chunks carry besides text (`parts.py`)
comes as `ReasoningEvent`s and `ToolCallDeltaEvent`s where it arrives, and as whole
`ToolCallEvent`s and `SourceEvent`s just before `done`. It owns the stream's clock:
first-token, idle and total timeouts, interruption (shutdown, cancel), and the retry of
retryable upstream errors before the first chunk.

The per-chunk path is the gateway's hot path (docs/benchmarks.md): per chunk it stores a
deadline instead of rescheduling a timer, adds usage as plain ints, and builds only the
event models it yields.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import repeat
from typing import Any, cast

from langchain_core.messages import AIMessageChunk
from langchain_core.messages.ai import UsageMetadata

from .._models import (
    AnyEvent,
    DoneEvent,
    ErrorCode,
    ErrorEvent,
    ErrorInfo,
    SeparatorEvent,
    Usage,
)
from .deadline import Deadline
from .metrics import ChunkGaps
from .parts import AnswerParts, blocked_category
from .providers import Fallback, ModelRequest, Provider
from .ticker import Ticker, tick_period
from .upstream import map_upstream_error

logger = logging.getLogger("gemini_sse.pipeline")

# The events a generation yields: every event model, still without an id, and answer
# text as a plain `str` (what `TokenEvent(text=...)` would carry).
PipelineEvent = str | AnyEvent


def event_name(event: PipelineEvent) -> str:
    """The wire name of a pipeline event (`token` for text)."""
    return "token" if type(event) is str else cast(AnyEvent, event).event


# Finish reasons that mean the answer was withheld, not finished (Gemini and OpenAI names).
_BLOCKED = frozenset(
    {
        "safety",
        "prohibited_content",
        "blocklist",
        "spii",
        "recitation",
        "content_filter",
        "image_safety",
        "language",
    }
)
# Failures that send a generation to its next fallback target (before any text).
_FALLBACK_CODES = frozenset(
    {
        ErrorCode.RATE_LIMITED,
        ErrorCode.UPSTREAM_UNAVAILABLE,
        ErrorCode.UPSTREAM_DISCONNECTED,
        ErrorCode.TIMEOUT,
    }
)
# Most chunks a generation handles without letting other tasks run (see `events`): a
# few milliseconds of work. Counting is cheaper than reading a clock, and a wall-clock
# rule would also fire after every real wait, since other streams ran meanwhile.
_YIELD_EVERY = 64
# Provider finish reasons to the few values clients see in `done`.
_FINISH = {"stop": "stop", "max_tokens": "length", "length": "length", "end_turn": "stop"}


# Separators are immutable and the same for every stream: the first ones are made once
# and shared (a model per chunk cost about 1 us; 512 of them are about 250 KB).
_SEPARATORS: list[SeparatorEvent] = []
_SHARED_SEPARATORS = 512


def separator(index: int) -> SeparatorEvent:
    """The `SeparatorEvent` after chunk `index`."""
    if index < len(_SEPARATORS):
        return _SEPARATORS[index]
    event = SeparatorEvent(index=index)
    if index == len(_SEPARATORS) and index < _SHARED_SEPARATORS:
        _SEPARATORS.append(event)
    return event


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long a generation may take (seconds)."""

    first_token: float
    idle: float
    total: float


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of retryable upstream errors, only before anything reached the client."""

    attempts: int = 0
    budget_s: float = 0.0
    base_delay_s: float = 0.25


class Generation:
    """One run of the model for one request; iterate `events()` once."""

    def __init__(
        self,
        provider: Provider,
        request: ModelRequest,
        timeouts: Timeouts,
        *,
        separators: bool = True,
        retry: RetryPolicy = RetryPolicy(),
        request_id: str | None = None,
        fallbacks: Sequence[Fallback] = (),
        clocks: Ticker[Deadline] | None = None,
    ) -> None:
        self.provider = provider
        self.request = request
        self.fallbacks = fallbacks
        self.timeouts = timeouts
        self.separators = separators
        self.retry = retry
        self.request_id = request_id
        # Filled in as the stream runs; read by routes, logs and metrics.
        self.chunks = 0
        self.ttft_s: float | None = None
        self.outcome: str | None = None  # "done", an error code, or "client_disconnect"
        # The fallback target that is answering (its label), once one is; and every move
        # to a fallback as (from, to, error code), for the metrics.
        self.fallback: str | None = None
        self.moves: list[tuple[str, str, str]] = []
        self._upstream = (provider, request)
        # The gaps between text chunks, tallied for the metrics.
        self.gaps = ChunkGaps()
        # Told of each piece of text as it is yielded (the gateway keeps it to log).
        self.on_token: Callable[[str], None] | None = None
        # Each chunk's share of the usage, added up when `usage` is read: a chunk only
        # appends (summing per chunk cost ~70 bytecodes of the token path; a pydantic
        # `Usage` per chunk ~0.8 us). The chunks themselves are kept by LangChain anyway.
        self._usages: list[UsageMetadata] = []
        self._usage: tuple[int, Usage] | None = None  # `usage` as last read, of how many
        self.finish_reason: str | None = None  # as in `done`, once the model said it
        # Thoughts, tool calls and sources (the text too, when sources may cite it).
        self.parts = AnswerParts(keep_text=request.grounding)
        self._interrupt: ErrorInfo | None = None
        self._clock: Deadline | None = None
        # What checks the deadlines of the upstream waits: the gateway's, for all its
        # generations; otherwise this generation's own.
        if clocks is None:
            clocks = Ticker(tick_period(timeouts.first_token, timeouts.idle, timeouts.total))
        self._clocks = clocks
        self._woken = asyncio.Event()  # set by `interrupt`: ends a retry's wait early

    @property
    def usage(self) -> Usage | None:
        """Token counts reported so far; None until a chunk reported any."""
        if not self._usages:
            return None
        if self._usage is not None and self._usage[0] == len(self._usages):
            return self._usage[1]  # read again (done, metrics, logs): nothing new since
        # Chunks carry their share of the usage (LangChain adds chunks up the same way).
        usages = cast(list[dict[str, Any]], self._usages)
        inputs, outputs = (
            _present(usages, "input_token_details"),
            _present(usages, "output_token_details"),
        )
        input_tokens = _total(usages, "input_tokens")
        output_tokens = _total(usages, "output_tokens")
        total_tokens = _total(usages, "total_tokens")
        cached, reasoning = _total(inputs, "cache_read"), _total(outputs, "reasoning")
        usage_so_far = Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=total_tokens,
            cached_tokens=cached or None,
            reasoning_tokens=reasoning or None,
        )
        self._usage = (len(self._usages), usage_so_far)
        return usage_so_far

    def interrupt(self, info: ErrorInfo) -> None:
        """End the generation early with `info` as its `error` event (shutdown, cancel).

        Safe to call from any task on the loop; the upstream call is cancelled at once
        if the generation is waiting for it.
        """
        if self._interrupt is not None or self.outcome is not None:
            return
        self._interrupt = info
        if self._clock is not None:
            self._clock.expire_now()
        self._woken.set()

    def abandon(self, outcome: str) -> None:
        """Record why the generation's events stop being read, if not its client leaving.

        Call before closing `events()`; the first recorded outcome stands.
        """
        if self.outcome is None:
            self.outcome = outcome

    async def events(self) -> AsyncGenerator[PipelineEvent, None]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        total_deadline = started + self.timeouts.total
        finish_reason: str | None = None
        finish_metadata: dict[str, object] = {}  # the chunk's that said why it finished
        parts = self.parts
        usages, gaps, idle = self._usages, self.gaps, self.timeouts.idle
        attempt = 0
        attempt_started = started  # a fallback target gets a first-token window of its own
        unyielded = 0  # chunks handled since this generation last let the loop run
        try:
            while True:
                retry_in: float | None = None
                failed: ErrorInfo | None = None  # before any text, and a fallback is left
                provider, request = self._upstream
                stream = provider.astream(request)
                # Retries happen only before the first text, so the first-token clock holds.
                deadline = min(attempt_started + self.timeouts.first_token, total_deadline)
                self._clock = clock = Deadline(self._clocks)
                try:
                    while self._interrupt is None:
                        # The clock runs only while we wait for upstream, not while the
                        # client is being served (between our yields). `clock.wait`, inline.
                        clock.deadline, clock.waiting = deadline, True
                        try:
                            chunk: AIMessageChunk = await anext(stream)
                        except StopAsyncIteration:
                            break
                        except asyncio.CancelledError:
                            if clock.expired():
                                raise TimeoutError from None
                            raise
                        finally:
                            clock.waiting = False
                        metadata = chunk.response_metadata
                        if reason := metadata.get("finish_reason"):
                            finish_reason = str(reason)
                            finish_metadata = metadata
                        if "grounding_metadata" in metadata:
                            parts.note(metadata)
                        if usage := chunk.usage_metadata:
                            usages.append(usage)
                        content = chunk.content
                        if type(content) is str and not chunk.tool_call_chunks:
                            text = content  # most chunks: plain text and nothing else
                        else:
                            text, extra = parts.read(chunk)
                            for event in extra:
                                if self.ttft_s is None:
                                    self.ttft_s = loop.time() - started
                                yield event
                        if text:
                            now = loop.time()
                            if self.ttft_s is None:
                                self.ttft_s = now - started
                            gaps.tick(now)
                            if self.on_token is not None:
                                self.on_token(text)
                            if parts.text is not None:
                                parts.text.append(text)
                            yield text
                            if self.separators:
                                yield separator(self.chunks)
                            self.chunks += 1
                        unyielded += 1
                        if unyielded == _YIELD_EVERY:
                            # A provider with chunks ready (and a client that reads fast)
                            # never suspends; give the loop a turn so that no stream starves
                            # the others, health checks or the disconnect listener.
                            unyielded = 0
                            await asyncio.sleep(0)
                        deadline = min(loop.time() + idle, total_deadline)
                except TimeoutError:
                    if self._interrupt is None:
                        info = self._timeout_info(loop.time() >= total_deadline)
                        if loop.time() < total_deadline and self._may_fall_back(info):
                            failed = info
                        else:
                            yield self._error(info)
                            return
                except Exception as exc:
                    info = map_upstream_error(exc, after_text=self.ttft_s is not None)
                    if self._may_fall_back(info):
                        failed = info
                    else:
                        retry_in = self._retry_delay(info, attempt, loop.time() - started)
                        if retry_in is None:
                            yield self._error(info)
                            return
                finally:
                    clock.close()
                    self._clock = None
                    await stream.aclose()  # type: ignore[attr-defined]
                if failed is not None:
                    self._fall_back(failed)
                    attempt, attempt_started = 0, loop.time()
                    continue
                if retry_in is None:
                    break
                attempt += 1
                logger.info(
                    "upstream failed before the first chunk; retry %d in %.2fs", attempt, retry_in
                )
                # An interruption (cancel, shutdown) must not wait out the backoff.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._woken.wait(), retry_in)

            if self._interrupt is not None:
                yield self._error(self._interrupt)
            else:
                end = self._finish(finish_reason, finish_metadata, loop.time() - started)
                if type(end) is DoneEvent:
                    for closing in parts.closing():
                        yield closing
                yield end
        except (asyncio.CancelledError, GeneratorExit):
            if self.outcome is None:
                self.outcome = "client_disconnect"
            raise

    def _may_fall_back(self, info: ErrorInfo) -> bool:
        """Whether `info` moves the generation to its next fallback target.

        Only before any text (a second model's answer must not be glued to the first's),
        only for failures another model or region may not share, and only while a
        target is left. A fallback comes before retries of the same target.
        """
        return (
            self.ttft_s is None
            and self._interrupt is None
            and len(self.moves) < len(self.fallbacks)
            and info.code in _FALLBACK_CODES
        )

    def _fall_back(self, info: ErrorInfo) -> None:
        target = self.fallbacks[len(self.moves)]
        source = self.fallback or f"{self.provider.name}:{self.request.model}"
        logger.info(
            "upstream failed (%s) before the first chunk; falling back to %s",
            info.code,
            target.label,
        )
        self.moves.append((source, target.label, str(info.code)))
        self.fallback = target.label
        self._upstream = (target.provider, replace(self.request, model=target.model))

    def _timeout_info(self, total_exceeded: bool) -> ErrorInfo:
        if total_exceeded:
            message = "The answer took longer than the gateway allows."
        elif self.ttft_s is None:
            message = "The model did not start answering in time."
        else:
            message = "The model stopped sending for too long."
        return ErrorInfo(code=ErrorCode.TIMEOUT, message=message, retryable=True)

    def _retry_delay(self, info: ErrorInfo, attempt: int, elapsed: float) -> float | None:
        """Seconds to wait before trying again, or None to give up."""
        if self.ttft_s is not None or not info.retryable or attempt >= self.retry.attempts:
            return None
        if info.code not in (ErrorCode.RATE_LIMITED, ErrorCode.UPSTREAM_UNAVAILABLE):
            return None
        delay = info.retry_after or self.retry.base_delay_s * 2**attempt
        delay *= random.uniform(0.8, 1.2)
        if elapsed + delay > min(self.retry.budget_s, self.timeouts.first_token):
            return None
        return delay

    def _finish(
        self, finish_reason: str | None, metadata: dict[str, object], elapsed: float
    ) -> DoneEvent | ErrorEvent:
        reason = (finish_reason or "").lower().removeprefix("finish_reason_")
        answered = self.chunks > 0 or self.parts.tool_calls > 0
        if reason in _BLOCKED or not answered:
            category = None
            if reason in _BLOCKED:
                why = "The model's safety filters withheld the answer."
                category = blocked_category(metadata, reason)
            elif _FINISH.get(reason) == "length":
                # Thinking models spend output tokens before they write: a small budget
                # can run out with nothing to show.
                why = "The model reached max_output_tokens before writing any text; raise it."
            else:
                why = "The model returned no text; the prompt may have been blocked."
            info = ErrorInfo(code=ErrorCode.CONTENT_BLOCKED, message=why, category=category)
            return self._error(info)
        self.outcome = "done"
        self.finish_reason = _FINISH.get(reason, reason or "stop")
        if self.parts.tool_calls and self.finish_reason == "stop":
            self.finish_reason = "tool_calls"  # the client has calls to run
        return DoneEvent(
            finish_reason=self.finish_reason,
            usage=self.usage,
            model=self._upstream[1].model,
            chunks=self.chunks,
            fallback=self.fallback,
            ttft_ms=None if self.ttft_s is None else round(self.ttft_s * 1000, 1),
            duration_ms=round(elapsed * 1000, 1),
        )

    def _error(self, info: ErrorInfo) -> ErrorEvent:
        self.outcome = str(info.code)
        return ErrorEvent(
            code=info.code,
            message=info.message,
            retryable=info.retryable,
            retry_after=info.retry_after,
            request_id=self.request_id or info.request_id,
            usage=self.usage,
            category=info.category,
        )


def _present(counts: Iterable[dict[str, Any]], key: str) -> Iterator[Any]:
    """The values of `key` in each dict that has a value for it (a mapped `dict.get`:
    the loop runs in C, and a long answer has a usage dict per chunk)."""
    return filter(None, map(dict.get, counts, repeat(key)))


def _total(counts: Iterable[dict[str, Any]], key: str) -> int:
    """The sum of `key` over usage dicts; missing or None counts as 0."""
    return sum(_present(counts, key))
