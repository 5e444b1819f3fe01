"""`EventStream`, the SSE response under every stream, driven directly as an ASGI app:
how it ends (body done, disconnect, slow reader, shutdown) and when it sends heartbeats."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gemini_sse.server.sse import HEARTBEAT, SERVER_SEND, EventStream
from gemini_sse.server.ticker import Ticker

SCOPE = {"type": "http", "method": "POST", "headers": []}


class Client:
    """The ASGI side of one response: what it was sent, and a disconnect on demand."""

    def __init__(self, *, block_on: int | None = None) -> None:
        self.messages: list[dict[str, Any]] = []
        self.gone = asyncio.Event()
        self.block_on = block_on  # the body send (1-based) that never completes
        self.sent = asyncio.Event()  # set on every send

    async def wait_for_bodies(self, n: int) -> None:
        while len(self.bodies) < n:
            self.sent.clear()
            await self.sent.wait()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        self.sent.set()
        if self.block_on is not None and len(self.bodies) == self.block_on:
            await asyncio.Event().wait()

    @property
    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.messages if m["type"] == "http.response.body"]

    @property
    def completed(self) -> bool:
        last = self.messages[-1]
        return last["type"] == "http.response.body" and not last.get("more_body", False)


class Body:
    """Frames `n` of them `every` seconds apart, then waits forever; records its ending."""

    def __init__(self, n: int, every: float = 0.0) -> None:
        self.n, self.every = n, every
        self.closed = False
        self.started = False

    async def frames(self) -> AsyncIterator[bytes]:
        self.started = True
        try:
            for i in range(self.n):
                yield f"data: {i}\n\n".encode()
                await asyncio.sleep(self.every)
            await asyncio.Event().wait()
        finally:
            self.closed = True


def run(response: EventStream, client: Client, until: Any = None) -> None:
    async def main() -> None:
        task = asyncio.create_task(response(SCOPE, client.receive, client.send))
        if until is not None:
            await until(client)
        await asyncio.wait_for(task, 5)

    asyncio.run(main())


def test_a_disconnect_closes_the_body_at_once() -> None:
    """The client leaving ends the body (its cleanup runs) and nothing more is sent."""
    body, client = Body(3), Client()

    async def leave(client: Client) -> None:
        await client.wait_for_bodies(3)
        client.gone.set()

    run(EventStream(body.frames(), heartbeat=0), client, leave)
    assert body.closed
    assert client.bodies == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]
    assert not client.completed


def test_a_client_that_stops_reading_is_dropped_after_the_send_timeout() -> None:
    """A send that does not complete in time abandons the response and closes the body."""
    body, client = Body(5), Client(block_on=2)
    run(EventStream(body.frames(), heartbeat=0, send_timeout=0.1), client)
    assert body.closed
    assert len(client.bodies) == 2  # the second never completed, and none came after
    assert not client.completed


def test_a_body_still_running_after_the_drain_grace_is_cut_and_completed() -> None:
    """`shutdown()`: the body gets its grace, then is cut, and the response ends cleanly."""
    body, client = Body(2), Client()
    responses: Ticker[EventStream] = Ticker(1.0)
    response = EventStream(body.frames(), heartbeat=0, shutdown_grace=0.05, ticker=responses)

    async def shut_down(client: Client) -> None:
        await client.wait_for_bodies(2)
        assert list(responses) == [response]
        for open_response in responses:
            open_response.shutdown()

    run(response, client, shut_down)
    assert body.closed
    assert client.completed
    assert len(responses) == 0


def test_a_drain_cut_while_the_end_is_stuck_drops_the_stream_and_sends_no_second_end() -> None:
    """The body's task sends the end; if that send is stuck when the drain grace runs out,
    the cut gives it up (the client stopped reading) rather than send the end again."""
    client = Client(block_on=3)  # the third body is the final, empty one

    async def two_frames() -> AsyncIterator[bytes]:
        for i in range(2):
            yield f"data: {i}\n\n".encode()

    response = EventStream(two_frames(), heartbeat=0, shutdown_grace=0.05)

    async def shut_down_once_the_end_is_stuck(client: Client) -> None:
        await client.wait_for_bodies(3)
        response.shutdown()

    run(response, client, shut_down_once_the_end_is_stuck)
    assert client.bodies == [b"data: 0\n\n", b"data: 1\n\n", b""]


def test_heartbeats_go_out_only_while_the_stream_is_quiet() -> None:
    """No `: ping` between frames that come faster than the heartbeat; pings once quiet."""
    body, client = Body(30, every=0.01), Client()

    async def quiet_for_a_while(client: Client) -> None:
        await client.wait_for_bodies(30)
        await asyncio.sleep(1.3)
        client.gone.set()

    run(EventStream(body.frames(), heartbeat=0.5), client, quiet_for_a_while)
    frames = [b for b in client.bodies if b != HEARTBEAT]
    assert len(frames) == 30
    last_frame = max(i for i, b in enumerate(client.bodies) if b != HEARTBEAT)
    assert HEARTBEAT not in client.bodies[:last_frame]
    assert client.bodies[last_frame + 1 :].count(HEARTBEAT) >= 2


def test_head_sends_the_headers_and_never_starts_the_body() -> None:
    """HEAD gets the event-stream headers and an empty body; the stream is not run."""
    body, client = Body(1), Client()

    async def main() -> None:
        response = EventStream(body.frames())
        await response({**SCOPE, "method": "HEAD"}, client.receive, client.send)

    asyncio.run(main())
    start = dict(client.messages[0]["headers"])
    assert start[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert start[b"x-accel-buffering"] == b"no"
    assert client.bodies == [b""] and client.completed
    assert not body.started


def test_the_server_cancelling_the_request_closes_the_body() -> None:
    """A server that cancels the request's task (a forced shutdown) ends the body too."""
    body, client = Body(2), Client()

    async def main() -> None:
        task = asyncio.create_task(
            EventStream(body.frames(), heartbeat=0)(SCOPE, client.receive, client.send)
        )
        await client.wait_for_bodies(2)
        task.cancel()
        done, _ = await asyncio.wait((task,), timeout=5)
        assert task in done and task.cancelled()

    asyncio.run(main())
    assert body.closed


def test_a_failing_body_fails_the_response() -> None:
    """An exception from the body reaches the server (which logs it and closes the
    connection); the response is not completed as if the stream had ended."""
    client = Client()

    async def broken() -> AsyncIterator[bytes]:
        yield b"data: 0\n\n"
        raise RuntimeError("the body broke")

    async def main() -> None:
        await EventStream(broken(), heartbeat=0)(SCOPE, client.receive, client.send)

    with pytest.raises(RuntimeError, match="the body broke"):
        asyncio.run(main())
    assert client.bodies == [b"data: 0\n\n"]
    assert not client.completed


def test_frames_go_to_the_server_send_in_the_scope_and_the_ends_through_the_app() -> None:
    """With `SERVER_SEND` in the scope, the frames skip the app's send wrappers; the
    start and the end still pass through them, and `encode` turns items into frames
    (an empty frame is not sent)."""
    through_app, server = Client(), Client()

    async def items() -> AsyncIterator[int]:
        for i in range(4):
            yield i

    async def main() -> None:
        response = EventStream(
            items(), heartbeat=0, encode=lambda i: b"" if i == 2 else f"data: {i}\n\n".encode()
        )
        await response({**SCOPE, SERVER_SEND: server.send}, server.receive, through_app.send)

    asyncio.run(main())
    assert [m["type"] for m in through_app.messages] == [
        "http.response.start",
        "http.response.body",
    ]
    assert through_app.completed
    assert server.bodies == [b"data: 0\n\n", b"data: 1\n\n", b"data: 3\n\n"]


def test_one_ticker_ticks_its_members_until_none_is_left() -> None:
    """A `Ticker` calls `tick` on every member each period, with the loop's time, and
    stops ticking a member once it is discarded."""

    class Member:
        def __init__(self) -> None:
            self.ticks: list[float] = []

        def tick(self, now: float) -> None:
            self.ticks.append(now)

    members = [Member(), Member()]

    async def main() -> None:
        ticker: Ticker[Member] = Ticker(0.01)
        for member in members:
            ticker.add(member)
        await asyncio.sleep(0.1)
        ticker.discard(members[0])
        seen = len(members[0].ticks)
        await asyncio.sleep(0.05)
        assert len(members[0].ticks) == seen  # no more after it left
        assert len(members[1].ticks) > seen
        ticker.discard(members[1])

    asyncio.run(main())
    assert len(members[0].ticks) >= 3
    assert members[1].ticks == sorted(members[1].ticks)


def test_a_client_that_stops_reading_at_the_end_is_dropped_and_the_body_is_over() -> None:
    """`on_end` runs as soon as the body is over, before the last write; a last write
    that does not complete in time is given up like any other send."""
    ended: list[int] = []
    client = Client(block_on=3)  # the third body is the final, empty one

    async def two_frames() -> AsyncIterator[bytes]:
        for i in range(2):
            yield f"data: {i}\n\n".encode()

    response = EventStream(
        two_frames(), heartbeat=0, send_timeout=0.1, on_end=lambda: ended.append(len(client.bodies))
    )
    run(response, client)
    assert ended == [2]  # after the frames, before the final write
    assert client.bodies == [b"data: 0\n\n", b"data: 1\n\n", b""]
