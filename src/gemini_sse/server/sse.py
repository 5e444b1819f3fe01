"""The SSE response every event stream goes out in, whatever its wire format.

sse-starlette's `EventSourceResponse` does the work: heartbeats, the send timeout, the
disconnect listener, and the exit signal (SIGTERM) that starts a drain. `EventStream`
adds two deliberate deviations, and `event_stream` sets it up the same way for every
route. Event stream format: https://html.spec.whatwg.org/multipage/server-sent-events.html
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.background import BackgroundTask
from starlette.types import Message, Receive, Scope, Send

from .deadline import Deadline
from .gateway import Gateway
from .pipeline import Generation

logger = logging.getLogger("gemini_sse.sse")


# Set in the task serving a response that was ended on purpose because its client
# stopped reading; uvicorn logs from that same task once the response returns.
_dropped_on_purpose: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "gemini_sse_dropped_on_purpose", default=False
)


class DroppedResponseFilter(logging.Filter):
    """Drop uvicorn's error line for a response the gateway ended on purpose.

    ASGI has no way to abort a response: one that cannot be completed (its client is
    not reading, so the final write would block) can only be abandoned, and uvicorn then
    logs "ASGI callable returned without completing response" at ERROR and closes the
    connection, which is what we want, without the ERROR. Installed on `uvicorn.error`.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        return not (
            _dropped_on_purpose.get()
            and isinstance(message, str)
            and message.startswith("ASGI callable returned without completing")
        )


class EventStream(EventSourceResponse):
    """sse-starlette's response, with two deliberate deviations.

    - A client that stops reading is routine: sse-starlette ends its stream with
      `SendTimeoutError` (after `send_timeout`; one from each task that was sending, the
      body's and the heartbeat's, in an exception group), which would reach the ASGI
      server as an error with a traceback, so any client could fill the error log by not
      reading. It is logged here at info, once, as what it is.
    - The send timeout itself is enforced more cheaply (see `_send_with_timeout`).
    """

    _deadlines: dict[asyncio.Task[Any], Deadline]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._deadlines = {}
        try:
            await super().__call__(scope, receive, send)
        except* SendTimeoutError:
            _dropped_on_purpose.set(True)
            logger.info("a client stopped reading; its stream was dropped after the send timeout")
        finally:
            for deadline in self._deadlines.values():
                deadline.close()

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        # Deliberate deviation, measured (docs/benchmarks.md, "Where the gateway's CPU
        # goes"): sse-starlette bounds every send with an anyio cancel scope, 5-7 us a send
        # and the largest single cost of a token here. One `Deadline` per sending task
        # bounds each send the same way (`send_timeout`, then `SendTimeoutError`) for a
        # float stored per send.
        if self.send_timeout is None:
            await send(message)
            return
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        deadline = self._deadlines.get(task)
        if deadline is None:
            deadline = self._deadlines[task] = Deadline(loop)
        deadline.wait(loop.time() + self.send_timeout)
        try:
            await send(message)
        except asyncio.CancelledError:
            if deadline.expired():
                raise SendTimeoutError() from None
            raise
        finally:
            deadline.waiting = False


def heartbeat() -> ServerSentEvent:
    """The `: ping` comment sent while a stream is quiet (LF-terminated like our events)."""
    return ServerSentEvent(comment="ping", sep="\n")


def event_stream(
    gateway: Gateway,
    body: AsyncIterator[bytes],
    *,
    request_id: str | None,
    generation: Generation | None = None,
    shutdown_grace_s: float | None = None,
) -> EventStream:
    """The SSE response for `body`, with the gateway's heartbeat, send timeout and drain.

    `generation`: the one the body runs, if any; however the response ends, even if its
    body never ran, that generation's books are closed and its admission slot freed.
    """
    s = gateway.settings
    return EventStream(
        body,
        headers={"X-Request-ID": request_id} if request_id else None,
        ping=s.heartbeat_s,
        ping_message_factory=heartbeat,
        sep="\n",
        send_timeout=s.send_timeout_s,
        shutdown_event=gateway.shutdown_event,
        shutdown_grace_period=s.drain_s if shutdown_grace_s is None else shutdown_grace_s,
        # An async callable: Starlette would run a plain function in a thread.
        background=None if generation is None else BackgroundTask(_release, gateway, generation),
    )


async def _release(gateway: Gateway, generation: Generation) -> None:
    gateway.finish(generation)
