"""The gateway's per-process state: the provider, the live generations, admission, drain.

One `Gateway` is built by `create_app(settings)` and hangs off `app.state`; nothing here
is module-level, so two apps in one process (as in tests) never share anything.

Admission, in order: who is calling and at what rate (`authorize`, for every API route),
whether the request is within the limits (`model_request`), then whether the gateway and
the caller have room for one more stream (`admit`). Every refusal is counted by reason in
the metrics. A transport reads an admitted generation's events and only encodes them:
through `running` (resumable streams, OpenAI's formats), which closes them however the
transport stops, or, on the typed route, straight from the SSE response, which closes
them itself (`sse.EventStream`). `finish` closes the books on a generation: metrics, the
caller's tokens and stream slot, and one `stream finished` log line; `event_stream`
makes sure it runs for every response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Coroutine,
    KeysView,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._exceptions import RequestRejected
from .._models import ChatMessage, ErrorCode, ErrorInfo, NamedToolChoice, StreamRequest
from .auth import Caller, KeyRing
from .deadline import Deadline
from .media import Media, MediaError, check_media
from .memory import IdleRelease
from .metrics import Metrics
from .pipeline import Generation, PipelineEvent, RetryPolicy, Timeouts
from .providers import Fallback, ModelRequest, Provider
from .ratelimit import Limiter, Slot
from .settings import Settings
from .store import StreamStore
from .telemetry import GenerationTrace, Telemetry
from .ticker import Ticker, tick_period

if TYPE_CHECKING:  # sse.py builds on this module
    from .sse import EventStream

logger = logging.getLogger("gemini_sse.gateway")


@dataclass(eq=False, slots=True)
class Run:
    """What the gateway keeps about one live generation besides the generation itself."""

    caller: Caller | None
    started: float  # time.monotonic()
    stream_id: str | None = None
    slot: Slot | None = None
    answer: list[str] | None = None  # kept only when content is logged
    trace: GenerationTrace | None = None  # with OpenTelemetry on


class _Refusals:
    """A block whose `RequestRejected` is counted in the metrics (`reason`; else by its
    status). A class, not `contextlib.contextmanager`: admission enters three of them
    per stream, and a generator-based one costs ten times the calls."""

    __slots__ = ("metrics", "reason")

    def __init__(self, metrics: Metrics, reason: str | None) -> None:
        self.metrics = metrics
        self.reason = reason

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        if isinstance(exc, RequestRejected):
            code = "too_large" if exc.status_code == 413 else "validation"
            self.metrics.reject(self.reason or code)


class Gateway:
    """Admits requests, starts generations, and ends them all on shutdown."""

    def __init__(
        self,
        settings: Settings,
        provider: Provider,
        store: StreamStore,
        fallbacks: Sequence[Fallback] = (),
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.provider = provider
        self.fallbacks = fallbacks
        self.store = store
        self.keys = KeyRing.from_settings(settings)
        self.limiter = Limiter(settings)
        self.metrics = Metrics()
        # Every generation admitted and not yet finished, with its bookkeeping.
        self.runs: dict[Generation, Run] = {}
        # Resumable streams produced by this process, by stream id.
        self.detached: dict[str, Generation] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Open SSE responses: `drain` tells them, and they cut their body after a grace.
        # One timer ticks them all for their heartbeats and send timeouts.
        self.responses: Ticker[EventStream] = Ticker(
            tick_period(settings.heartbeat_s, settings.send_timeout_s)
        )
        # Gives a burst's freed memory back to the system once no stream is left.
        self.memory = IdleRelease(lambda: not self.runs)
        # Set by `drain` (the server is exiting: SIGTERM); no new generation starts.
        self.draining = False
        self.timeouts = Timeouts(
            first_token=settings.first_token_timeout_s,
            idle=settings.idle_timeout_s,
            total=settings.total_timeout_s,
        )
        # One ticker checks the upstream deadlines of every generation (`deadline.py`).
        timeouts = self.timeouts
        self.clocks: Ticker[Deadline] = Ticker(
            tick_period(timeouts.first_token, timeouts.idle, timeouts.total)
        )
        self.retry = RetryPolicy(
            attempts=settings.upstream_retries, budget_s=settings.upstream_retry_budget_s
        )

    # --- admission --------------------------------------------------------------------

    def _counting(self, reason: str | None = None) -> _Refusals:
        """Count a refusal raised in the block (`reason`; else by its status code)."""
        return _Refusals(self.metrics, reason)

    async def authorize(self, authorization: str | None, client: str | None) -> Caller:
        """Who is calling, within its requests a minute; raise 401 or 429 otherwise.

        With API keys the caller is the key (by id); without, the client's address.
        """
        if self.keys:
            with self._counting("auth"):
                key_id = self.keys.authenticate(authorization)
            caller = Caller(id=f"key:{key_id}", key_id=key_id)
        else:
            caller = Caller(id=f"ip:{client or 'unknown'}")
        with self._counting("rate_limit"):
            await self.limiter.check_request(caller)
        return caller

    def model_request(self, body: StreamRequest) -> ModelRequest:
        """Check a request against the limits; raise `RequestRejected` if it breaks one."""
        with self._counting():
            return self._model_request(body)

    def _model_request(self, body: StreamRequest) -> ModelRequest:
        s = self.settings
        turns = body.conversation()
        if not turns:
            raise _invalid("Send at least one message (`messages` or `message`).")
        if len(turns) > s.max_messages:
            raise _too_large(f"At most {s.max_messages} messages are accepted.")
        total = 0
        for turn in turns:
            # Blank turns were refused when the body was read (`_models.ChatMessage`).
            size = len(turn.text) + sum(len(c.arguments) for c in turn.tool_calls or ())
            if size > s.max_message_chars:
                raise _too_large(f"A message may have at most {s.max_message_chars} characters.")
            total += size
        if total > s.max_total_chars:
            raise _too_large(f"Messages may have at most {s.max_total_chars} characters in all.")
        if not any(turn.role == "user" for turn in turns):
            raise _invalid("The conversation needs at least one user message.")
        media = self._media(turns)
        _check_tools(body, turns)
        model = body.model or s.model
        allowed = s.allowed_models()
        if model not in allowed:
            raise RequestRejected.of(
                400,
                ErrorCode.MODEL_NOT_ALLOWED,
                f"Model {model!r} is not served here; choose one of: {', '.join(allowed)}.",
            )
        if body.max_output_tokens is not None and body.max_output_tokens > s.max_output_tokens:
            raise _invalid(f"max_output_tokens may be at most {s.max_output_tokens}.")
        if body.simulation is not None and self.provider.name != "fake":
            raise _invalid("`simulation` is accepted only while the simulated model serves.")
        request = ModelRequest(
            messages=turns,
            model=model,
            temperature=body.temperature,
            max_output_tokens=body.max_output_tokens,
            top_p=body.top_p,
            stop=body.stop,
            simulation=body.simulation,
            thinking=body.thinking,
            tools=body.tools or (),
            tool_choice=body.tool_choice,
            grounding=bool(body.grounding),
            media=media,
        )
        self.provider.check(request)
        return request

    def _media(self, turns: Sequence[ChatMessage]) -> dict[int, list[Media]]:
        """Every message's images and files, checked: 413 or 422 for one that is not."""
        s = self.settings
        media: dict[int, list[Media]] = {}
        count = 0
        for position, turn in enumerate(turns):
            for part in turn.media:
                count += 1
                if count > s.max_media_parts:
                    raise _too_large(f"At most {s.max_media_parts} images and files are accepted.")
                try:
                    checked = check_media(
                        part,
                        types=s.media_types,
                        schemes=s.media_url_schemes,
                        max_bytes=s.max_media_bytes,
                    )
                except MediaError as exc:
                    raise (_too_large if exc.too_large else _invalid)(str(exc)) from None
                media.setdefault(position, []).append(checked)
        return media

    async def admit(
        self,
        request: ModelRequest,
        *,
        caller: Caller | None,
        separators: bool | None,
        request_id: str | None,
        stream_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Generation:
        """Start one generation for `caller` if the gateway and the caller have room.

        Raises 503 `overloaded` / `shutting_down`, or 429 `too_many_requests` when the
        caller has used its tokens for the minute or runs as many streams as allowed.
        `headers` (the request's) carry the caller's trace context to the telemetry.
        """
        self._check_capacity()
        slot = None
        if caller is not None and self.limiter.enabled:
            with self._counting("rate_limit"):
                await self.limiter.check_tokens(caller)
                slot = await self.limiter.acquire_stream(caller)
        try:
            return self._launch(request, separators, request_id, caller, slot, stream_id, headers)
        except RequestRejected:  # the gateway filled up while we asked Redis
            if slot is not None and caller is not None:
                self.spawn(self.limiter.settle(caller, slot, 0))
            raise

    def _check_capacity(self) -> None:
        """Raise 503 `shutting_down` or `overloaded` if no generation can start now."""
        with self._counting("overload"):
            if self.draining:
                raise RequestRejected.of(
                    503,
                    ErrorCode.SHUTTING_DOWN,
                    "The gateway is shutting down; retry shortly.",
                    retryable=True,
                    retry_after=1,
                )
            if len(self.live) >= self.settings.max_streams:
                raise RequestRejected.of(
                    503,
                    ErrorCode.OVERLOADED,
                    "The gateway is serving as many streams as it can; retry shortly.",
                    retryable=True,
                    retry_after=1,
                )

    def _launch(
        self,
        request: ModelRequest,
        separators: bool | None,
        request_id: str | None,
        caller: Caller | None,
        slot: Slot | None,
        stream_id: str | None,
        headers: Mapping[str, str] | None,
    ) -> Generation:
        self._check_capacity()
        generation = Generation(
            self.provider,
            request,
            self.timeouts,
            separators=self.settings.separators if separators is None else separators,
            retry=self.retry,
            request_id=request_id,
            fallbacks=self.fallbacks,
            clocks=self.clocks,
        )
        run = self.runs[generation] = Run(
            caller,
            time.monotonic(),
            stream_id=stream_id,
            slot=slot,
            answer=[] if self.settings.log_content else None,
        )
        if self.telemetry is not None:
            run.trace = self.telemetry.start(
                request,
                provider=self.provider.name,
                request_id=request_id,
                stream_id=stream_id,
                headers=headers,
            )
        if run.answer is not None:
            generation.on_token = run.answer.append
        self.metrics.stream_started(request.model, self.provider.name)
        return generation

    @property
    def live(self) -> KeysView[Generation]:
        """The generations running now."""
        return self.runs.keys()

    def run_of(self, generation: Generation) -> Run | None:
        """The bookkeeping of a live generation (None once it has finished)."""
        return self.runs.get(generation)

    @contextlib.asynccontextmanager
    async def running(
        self, generation: Generation
    ) -> AsyncIterator[AsyncGenerator[PipelineEvent, None]]:
        """Run an admitted generation: the one way every transport gets its events.

        However the transport stops (the terminal event, its client leaving, a send
        timeout, an error of its own), the model call is closed now, not at garbage
        collection, and the generation's books are closed (`finish`).
        """
        try:
            async with contextlib.aclosing(generation.events()) as events:
                yield events
        finally:
            self.finish(generation)

    def finish(self, generation: Generation) -> None:
        """Close the books on a generation: metrics, the caller's limits, the log line.

        Idempotent: only the first call for a generation counts.
        """
        run = self.runs.pop(generation, None)
        if run is None:
            return
        duration_s = time.monotonic() - run.started
        # No outcome: the generation never ran (a failed store, a response never sent).
        outcome = generation.outcome or "not_started"
        usage = generation.usage
        output_tokens = usage.output_tokens if usage is not None else 0
        model = generation.request.model
        self.metrics.stream_finished(
            model,
            self.provider.name,
            outcome=outcome,
            ttft_s=generation.ttft_s,
            duration_s=duration_s,
            chunks=generation.chunks,
            output_tokens=output_tokens,
            gaps=generation.gaps,
        )
        if run.trace is not None:
            run.trace.end(generation, outcome=outcome, duration_s=duration_s)
        for _source, target, reason in generation.moves:
            self.metrics.fell_back(model, self.provider.name, target=target, reason=reason)
        if run.caller is not None and self.limiter.enabled and (run.slot or output_tokens):
            self.spawn(self.limiter.settle(run.caller, run.slot, output_tokens))
        line: dict[str, object] = {
            "request_id": generation.request_id,
            "stream_id": run.stream_id,
            "key_id": run.caller.key_id if run.caller is not None else None,
            "model": model,
            "provider": self.provider.name,
            "outcome": outcome,
            "ttft_ms": None if generation.ttft_s is None else round(generation.ttft_s * 1000, 1),
            "duration_ms": round(duration_s * 1000, 1),
            "chunks": generation.chunks,
            "fallback": generation.fallback,
            "input_tokens": usage.input_tokens if usage is not None else None,
            "output_tokens": output_tokens if usage is not None else None,
        }
        if run.answer is not None:
            line["messages"] = [_loggable(m) for m in generation.request.messages]
            line["answer"] = "".join(run.answer)
        logger.info("stream finished", extra=line)
        if not self.runs:
            self.memory.schedule()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background, holding on to it until it ends."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_background(self, seconds: float) -> None:
        """Give background work (detached producers) up to `seconds` to end."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=seconds)

    # --- shutdown ---------------------------------------------------------------------

    def drain(self) -> None:
        """The server is exiting: end every live generation with a retryable
        `shutting_down` error, and tell every open SSE response (it cuts its body after
        its grace)."""
        self.draining = True
        info = ErrorInfo(
            code=ErrorCode.SHUTTING_DOWN,
            message="The gateway is restarting; reconnect to continue.",
            retryable=True,
            retry_after=self.settings.retry_hint_ms / 1000,
        )
        for generation in list(self.live):
            generation.interrupt(info)
        for response in list(self.responses):
            response.shutdown()


def _loggable(message: ChatMessage) -> dict[str, Any]:
    """A message for the content log: inline media as its type and size, not its bytes."""
    dumped = message.model_dump(exclude_none=True)
    for part in dumped["content"] if isinstance(dumped.get("content"), list) else ():
        url = part.get("url", "")
        if url.startswith("data:"):
            part["url"] = f"{url.partition(',')[0]},... ({len(url)} characters)"
    return dumped


def _check_tools(body: StreamRequest, turns: Sequence[ChatMessage]) -> None:
    """Tool options that make sense together, and tool results that answer a call."""
    names = [tool.name for tool in body.tools or ()]
    if len(set(names)) != len(names):
        raise _invalid("Each tool needs a name of its own.")
    if body.tool_choice is not None and not names:
        raise _invalid("`tool_choice` needs `tools`.")
    if isinstance(body.tool_choice, NamedToolChoice) and body.tool_choice.name not in names:
        raise _invalid(f"`tool_choice` names {body.tool_choice.name!r}, which is not in `tools`.")
    calls: set[str] = set()
    for turn in turns:
        calls.update(call.call_id for call in turn.tool_calls or ())
        if turn.tool_call_id is not None and turn.tool_call_id not in calls:
            raise _invalid(
                f"The tool result for {turn.tool_call_id!r} answers no earlier assistant "
                "`tool_calls`."
            )


def _invalid(message: str) -> RequestRejected:
    return RequestRejected.of(422, ErrorCode.INVALID_REQUEST, message)


def _too_large(message: str) -> RequestRejected:
    return RequestRejected.of(413, ErrorCode.PAYLOAD_TOO_LARGE, message)
