"""The SSE response every event stream goes out in, whatever its wire format.

`EventStream` sends a body of ready-made SSE frames and keeps the stream healthy around
it: `: ping` heartbeats while the stream is quiet, a send timeout that drops a client who
stopped reading, the end of the body the moment its client disconnects, and a cut after
the drain when the server is told to exit. `event_stream` sets it up the same way for
every route. Event stream format:
https://html.spec.whatwg.org/multipage/server-sent-events.html

Deliberate deviation, measured (docs/benchmarks.md, "Optimisations made", 7): this was
sse-starlette's `EventSourceResponse`, which serves each response with an anyio task group
of four tasks (body, pings, exit signal, disconnect listener), each under a cancel scope.
Those tasks were about half of the gateway's memory per open stream above the bare-ASGI
floor (1.20-1.22x the floor's; 1.11-1.12x with this class). Here one task sends the
body, and the request's own task listens for the disconnect and sends the heartbeats.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from functools import partial
from typing import Any

from starlette.background import BackgroundTask
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from .gateway import Gateway
from .pipeline import Generation
from .ticker import Ticker, tick_period

logger = logging.getLogger("gemini_sse.sse")

HEARTBEAT = b": ping\n\n"  # a comment: EventSource ignores it, proxies see bytes flow

# Where an app whose middleware leaves response bodies alone puts the server's own `send`
# in the scope (`app.GatewayApp`); `EventStream` then sends its frames straight to it.
SERVER_SEND = "gemini_sse.server_send"

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


class EventStream(Response):
    """A `text/event-stream` response over an async iterator of SSE frames.

    The body yields the frames' bytes, or anything `encode` turns into them (an encoder
    may answer `b""`: nothing to send for that item yet).

    How it ends:
    - the body ends: the response is completed;
    - the client disconnects: the body is closed at once (its model call cancelled);
    - a send (a frame or a heartbeat) takes longer than `send_timeout` (as seen at the
      next tick of `ticker`, which also says when a heartbeat is due): the client has
      stopped reading, which is routine: the body is closed, the response abandoned
      and the connection closed, with one info line and no error;
    - `shutdown()` (the server is exiting): the body gets `shutdown_grace` seconds to
      end by itself (a generation ends with `shutting_down`), then it is cut and the
      response completed.
    """

    # None on the class: FastAPI documents a route's JSON error bodies with its response
    # class's media type; each response sets its own (`__init__`).
    media_type = None

    def __init__(
        self,
        body: AsyncIterator[Any],
        status_code: int = 200,  # FastAPI reads the default for its OpenAPI document
        *,
        encode: Callable[[Any], bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        heartbeat: float = 15.0,
        send_timeout: float | None = None,
        shutdown_grace: float = 0.0,
        on_end: Callable[[], None] | None = None,
        ticker: Ticker[EventStream] | None = None,
    ) -> None:
        self.body_iterator = body
        self.encode = encode
        self.status_code = status_code
        # Called once, as soon as the body is over (ended, stopped, or never run), before
        # the response's last write, which may wait on a client that stopped reading.
        self.on_end = on_end
        self.background: BackgroundTask | None = None  # Starlette's: FastAPI may set it
        self.heartbeat = heartbeat
        self.send_timeout = send_timeout
        self.shutdown_grace = shutdown_grace
        self.media_type = "text/event-stream"  # charset utf-8 added by init_headers
        sse_headers = MutableHeaders(headers=dict(headers or {}))
        sse_headers.setdefault("Cache-Control", "no-store")
        sse_headers["Connection"] = "keep-alive"
        sse_headers["X-Accel-Buffering"] = "no"  # nginx: pass each write on at once
        self.init_headers(sse_headers)
        self._task: asyncio.Task[Any] | None = None  # the task sending the body
        self._last_send = 0.0  # loop time of the last send started (heartbeats included)
        self._sending_since: float | None = None  # the body's send in progress began then
        self._ping_due: asyncio.Future[None] | None = None  # set by `tick` for a heartbeat
        # Where the body's task is: "body" (sending frames), "closing" (the body's
        # cleanup), "ending" (sending the response's end) or "over".
        self._phase = "body"
        # Why the body was stopped: "disconnected", "dropped" (the client stopped reading)
        # or "cut" (after the drain grace); None while it runs or if it ended by itself.
        self._stopped: str | None = None
        self._cut_timer: asyncio.TimerHandle | None = None
        self._shutting_down = False
        # The open responses of the server (`Gateway.responses`), which it also tells of
        # its shutdown; otherwise this response's own. Either way the one timer of
        # heartbeats and send timeouts (`ticker.py`).
        if ticker is None:
            ticker = Ticker(tick_period(heartbeat, send_timeout))
        self._ticker = ticker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["method"] == "HEAD":
                # Headers only: a stream on HEAD would never complete.
                await send(self._start())
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await self._respond(receive, send, scope.get(SERVER_SEND, send))
        finally:
            self._body_over()
            if self.background is not None:
                await self.background()

    def shutdown(self) -> None:
        """The server is exiting: cut the body if it has not ended after the grace."""
        self._shutting_down = True
        if self._task is None or self._phase == "over" or self._cut_timer is not None:
            return  # not started yet: `_respond` arms the cut when it starts
        loop = asyncio.get_running_loop()
        self._cut_timer = loop.call_later(self.shutdown_grace, self._stop, "cut")

    async def _respond(self, receive: Receive, send: Send, send_frame: Send) -> None:
        """Send the response: its start and its end through the app's `send`, so that
        the app's middleware sees the response begin and end, and the frames in between
        through `send_frame` (`_send_body`)."""
        loop = asyncio.get_running_loop()
        await send(self._start())
        self._last_send = loop.time()
        # The body goes out from a task of its own. Each chunk from the model wakes the
        # task that waits for it, and resumes every frame on that task's stack: in the
        # request's own task that is a dozen frames of middleware and routing, cold in
        # the cache with a thousand streams open (about 5 us per token, measured: docs/
        # benchmarks.md, "Optimisations made", 9). Meanwhile the request's task listens
        # for the disconnect and sends the heartbeats.
        self._task = sender = loop.create_task(self._send_body(send_frame, send))
        self._ticker.add(self)
        if self._shutting_down:
            self.shutdown()
        try:
            await self._watch(receive, send, sender)
        finally:
            self._ticker.discard(self)
            if self._cut_timer is not None:
                self._cut_timer.cancel()
            if not sender.done():  # stopped just now, or the server cancelled this task
                self._stop("cut")  # (a no-op once stopped for another reason)
                try:
                    await asyncio.wait((sender,))
                finally:
                    if sender.done() and not sender.cancelled():
                        sender.exception()  # retrieved: the request's own error goes first
        sender.result()  # the body's own failure, if any, is the response's
        self._body_over()
        if self._stopped == "cut":  # the body's task ends the response unless it was cut
            end = {"type": "http.response.body", "body": b"", "more_body": False}
            try:
                await asyncio.wait_for(send(end), self.send_timeout)
            except TimeoutError:  # the client stopped reading at the very end
                self._stopped = "dropped"
        if self._stopped == "dropped":
            _dropped_on_purpose.set(True)
            logger.info("a client stopped reading; its stream was dropped after the send timeout")

    def _body_over(self) -> None:
        on_end, self.on_end = self.on_end, None
        if on_end is not None:
            on_end()

    async def _send_body(self, send: Send, send_end: Send) -> None:
        """Send every frame of the body through `send`, then the response's end through
        `send_end` (in a task of its own: `_respond`). `send` is the server's own when the
        app's middleware leaves bodies alone (`SERVER_SEND`): one call per frame instead
        of one per layer; `send_end` is the app's, so that its middleware sees the end.

        The end goes out from here, not from the request's task: that task would take
        two more turns of the loop (and a task for `wait_for`) to send it, each resuming
        the dozen frames of its stack. A stuck end is dropped by `tick` like any send.
        """
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        body, encode = self.body_iterator, self.encode
        try:
            try:
                async for item in body:
                    frame = item if encode is None else encode(item)
                    if not frame:
                        continue
                    # `tick` drops the response if this send is still on after the timeout.
                    self._sending_since = self._last_send = loop.time()
                    try:
                        await send({"type": "http.response.body", "body": frame, "more_body": True})
                    except OSError:  # how ASGI 2.4 servers tell of a client that has gone
                        self._stopped = "disconnected"
                        break
                    self._sending_since = None
            finally:
                self._phase = "closing"
                aclose = getattr(body, "aclose", None)
                if aclose is not None:
                    await aclose()  # the body's cleanup (its model call) runs now
            if self._stopped is None:
                self._body_over()
                self._phase = "ending"
                self._sending_since = self._last_send = loop.time()
                try:
                    await send_end({"type": "http.response.body", "body": b"", "more_body": False})
                except OSError:
                    self._stopped = "disconnected"
        except asyncio.CancelledError:
            # Ours (`_stop`) ends the body quietly; anyone else's goes on.
            if self._stopped is None or task.uncancel() > 0:
                raise
        finally:
            self._sending_since = None
            self._phase = "over"

    def _start(self) -> Message:
        return {
            "type": "http.response.start",
            "status": self.status_code,
            "headers": self.raw_headers,
        }

    async def _watch(self, receive: Receive, send: Send, sender: asyncio.Task[None]) -> None:
        """Until the body's task ends: listen for the disconnect, and send a heartbeat
        whenever `tick` finds that nothing was sent for `heartbeat` seconds."""
        loop = asyncio.get_running_loop()
        receiving: asyncio.Future[Message] | None = None
        # One future wakes this task: the body's end, a message from the client, or
        # `tick` for a heartbeat. (`asyncio.wait` on the three did the same with a waiter,
        # two coroutines and three callbacks added and removed each time.)
        wake: asyncio.Future[None] | None = None

        def woken(_: object) -> None:
            if wake is not None and not wake.done():
                wake.set_result(None)

        sender.add_done_callback(woken)
        try:
            while not sender.done():
                if receiving is None:
                    receiving = asyncio.ensure_future(receive())
                    receiving.add_done_callback(woken)
                self._ping_due = wake = loop.create_future()
                await wake
                if sender.done():
                    return
                if receiving.done():
                    message, receiving = receiving.result(), None
                    if message["type"] == "http.disconnect":
                        self._stop("disconnected")
                        return
                    continue
                self._last_send = loop.time()
                try:
                    ping = {"type": "http.response.body", "body": HEARTBEAT, "more_body": True}
                    await asyncio.wait_for(send(ping), self.send_timeout)
                except TimeoutError:
                    self._stop("dropped")
                    return
        except OSError:  # a send to a client that has gone (ASGI 2.4 servers)
            self._stop("disconnected")
        finally:
            self._ping_due = None
            sender.remove_done_callback(woken)
            if receiving is not None:
                receiving.remove_done_callback(woken)
                receiving.cancel()
                if receiving.done() and not receiving.cancelled():
                    receiving.exception()  # retrieved: the body's end came first

    def tick(self, now: float) -> None:
        """Every `Ticker` period: drop the client if the body's send has been stuck for
        longer than `send_timeout` (it stopped reading), or wake `_watch` for a heartbeat
        if nothing was sent for `heartbeat` seconds."""
        since = self._sending_since
        if since is not None:
            if self.send_timeout is not None and now - since >= self.send_timeout:
                self._stop("dropped")
            return  # bytes are on their way: no heartbeat needed
        # The clock may run a hair early: a thousandth of the beat is quiet enough.
        quiet = self.heartbeat > 0 and now - self._last_send >= self.heartbeat * 0.999
        if quiet and self._ping_due is not None and not self._ping_due.done():
            self._ping_due.set_result(None)

    def _stop(self, why: str) -> None:
        """Stop the body for `why`: "disconnected", "dropped" or "cut"."""
        if self._task is None or self._stopped is not None or self._phase in ("closing", "over"):
            return  # (not while the body cleans up: its model call is being closed)
        if self._phase == "ending" and why == "cut":
            why = "dropped"  # the end was on its way but stuck: nothing is left to send
        self._stopped = why
        self._task.cancel()


def event_stream(
    gateway: Gateway,
    body: AsyncIterator[Any],
    *,
    encode: Callable[[Any], bytes] | None = None,
    request_id: str | None,
    generation: Generation | None = None,
    shutdown_grace_s: float | None = None,
) -> EventStream:
    """The SSE response for `body`, with the gateway's heartbeat, send timeout and drain.

    `body` yields frames, or what `encode` turns into frames (`EventStream`).
    `generation`: the one the body runs, if any; however the response ends, even if its
    body never ran, that generation's books are closed and its admission slot freed.
    """
    s = gateway.settings
    response = EventStream(
        body,
        encode=encode,
        headers={"X-Request-ID": request_id} if request_id else None,
        heartbeat=s.heartbeat_s,
        send_timeout=s.send_timeout_s,
        shutdown_grace=s.drain_s if shutdown_grace_s is None else shutdown_grace_s,
        # An async callable: Starlette would run a plain function in a thread.
        on_end=None if generation is None else partial(gateway.finish, generation),
        ticker=gateway.responses,
    )
    if gateway.draining:  # opened during the drain: cut after the grace like the rest
        response.shutdown()
    return response
