"""The gateway's per-process state: the provider, the live generations, admission, drain.

One `Gateway` is built by `create_app(settings)` and hangs off `app.state`; nothing here
is module-level, so two apps in one process (as in tests) never share anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import anyio

from .._exceptions import RequestRejected
from .._models import ErrorCode, ErrorInfo, StreamRequest
from .pipeline import Generation, RetryPolicy, Timeouts
from .providers import ModelRequest, Provider
from .settings import Settings
from .store import StreamStore

logger = logging.getLogger("gemini_sse.gateway")


class Gateway:
    """Admits requests, starts generations, and ends them all on shutdown."""

    def __init__(self, settings: Settings, provider: Provider, store: StreamStore) -> None:
        self.settings = settings
        self.provider = provider
        self.store = store
        self.live: set[Generation] = set()
        # Resumable streams produced by this process, by stream id.
        self.detached: dict[str, Generation] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Set by sse-starlette when the server is told to exit (SIGTERM); `drain` then
        # ends every live generation with `shutting_down`.
        self.shutdown_event = anyio.Event()
        self.draining = False
        self.timeouts = Timeouts(
            first_token=settings.first_token_timeout_s,
            idle=settings.idle_timeout_s,
            total=settings.total_timeout_s,
        )
        self.retry = RetryPolicy(
            attempts=settings.upstream_retries, budget_s=settings.upstream_retry_budget_s
        )

    # --- admission --------------------------------------------------------------------

    def model_request(self, body: StreamRequest) -> ModelRequest:
        """Check a request against the limits; raise `RequestRejected` if it breaks one."""
        s = self.settings
        turns = body.conversation()
        if not turns:
            raise _invalid("Send at least one message (`messages` or `message`).")
        if len(turns) > s.max_messages:
            raise _too_large(f"At most {s.max_messages} messages are accepted.")
        total = 0
        for turn in turns:
            if not turn.content.strip():
                raise _invalid(f"A {turn.role} message is empty.")
            if len(turn.content) > s.max_message_chars:
                raise _too_large(f"A message may have at most {s.max_message_chars} characters.")
            total += len(turn.content)
        if total > s.max_total_chars:
            raise _too_large(f"Messages may have at most {s.max_total_chars} characters in all.")
        if not any(turn.role == "user" for turn in turns):
            raise _invalid("The conversation needs at least one user message.")
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
        return ModelRequest(
            messages=turns,
            model=model,
            temperature=body.temperature,
            max_output_tokens=body.max_output_tokens,
            top_p=body.top_p,
            stop=body.stop,
            simulation=body.simulation,
        )

    def start(
        self, request: ModelRequest, *, separators: bool | None, request_id: str | None
    ) -> Generation:
        """Admit one generation, or raise 503 `overloaded` / `shutting_down`."""
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
        generation = Generation(
            self.provider,
            request,
            self.timeouts,
            separators=self.settings.separators if separators is None else separators,
            retry=self.retry,
            request_id=request_id,
        )
        self.live.add(generation)
        return generation

    def finish(self, generation: Generation) -> None:
        """Forget a generation (idempotent)."""
        if generation in self.live:
            self.live.discard(generation)
            logger.info(
                "stream finished",
                extra={
                    "request_id": generation.request_id,
                    "model": generation.request.model,
                    "provider": self.provider.name,
                    "outcome": generation.outcome,
                    "chunks": generation.chunks,
                    "ttft_ms": None if generation.ttft_s is None else generation.ttft_s * 1000,
                },
            )

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

    async def watch_shutdown(self) -> None:
        """Wait for the server's exit signal, then drain."""
        await self.shutdown_event.wait()
        self.drain()

    def drain(self) -> None:
        """End every live generation with a retryable `shutting_down` error."""
        self.draining = True
        info = ErrorInfo(
            code=ErrorCode.SHUTTING_DOWN,
            message="The gateway is restarting; reconnect to continue.",
            retryable=True,
            retry_after=self.settings.retry_hint_ms / 1000,
        )
        for generation in list(self.live):
            generation.interrupt(info)


def _invalid(message: str) -> RequestRejected:
    return RequestRejected.of(422, ErrorCode.INVALID_REQUEST, message)


def _too_large(message: str) -> RequestRejected:
    return RequestRejected.of(413, ErrorCode.PAYLOAD_TOO_LARGE, message)
