"""The client's resumable streams: reconnects that lose and repeat nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gemini_sse import (
    AsyncClient,
    Client,
    IncompleteStreamError,
    Reconnect,
    RequestRejected,
    StreamError,
    TokenEvent,
    TransportError,
)
from gemini_sse.server.providers.fake import expected_answer

from .conftest import make_settings
from .proxy import cutting_proxy
from .servers import RunningServer
from .test_stream_live import wait_for

SLOW = {"fake_chunks": 8, "fake_first_delay_ms": 10, "fake_delay_ms": 40}
FAST_RECONNECT = Reconnect(max_attempts=3, base_delay=0.05, max_delay=0.2)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def port_of(running: RunningServer) -> int:
    return int(running.url.rsplit(":", 1)[1])


def test_resumable_stream_reads_a_whole_answer(serve: Callable[..., RunningServer]) -> None:
    """`stream(resumable=True)` creates a stream and reads it to `done`."""
    running = serve(**SLOW)
    with Client(running.url) as client:
        events = list(client.stream("hi", resumable=True))
    assert [e.id for e in events] == list(range(1, 18))
    assert events[-1].event == "done"
    text = "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert text == expected_answer(make_settings(**SLOW), ["hi"])
    with Client(running.url) as client:
        assert "".join(client.stream_text("hi", resumable=True)) == text


@pytest.mark.parametrize(
    "cut_before", [b"id: 2\n", b"id: 9\n", b"event: done"], ids=["first", "middle", "before-done"]
)
def test_a_dropped_connection_is_resumed_without_loss_or_repeat(
    serve: Callable[..., RunningServer], cut_before: bytes
) -> None:
    """The proxy cuts the first connection mid-stream; the caller still sees one sequence."""
    running = serve(**SLOW)
    with Client(running.url) as direct:
        whole = direct.create_stream("hi")
        with cutting_proxy(port_of(running), []) as measure:
            list(Client(f"http://127.0.0.1:{measure.port}").follow(whole.id))
        created = direct.create_stream("hi")
    # The same stream's bytes as the proxy passed them: cut a few bytes into the marker.
    cut_at = bytes(measure.answers[0]).index(cut_before) + 3
    with cutting_proxy(port_of(running), [cut_at]) as proxy:
        with Client(f"http://127.0.0.1:{proxy.port}") as client:
            events = list(client.follow(created.id, reconnect=FAST_RECONNECT))
    assert [e.id for e in events] == list(range(1, 18))
    text = "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert text == expected_answer(make_settings(**SLOW), ["hi"])
    assert len(proxy.requests) == 2
    assert b"last-event-id: " in proxy.requests[1].lower()
    assert b"last-event-id" not in proxy.requests[0].lower()


@pytest.mark.anyio
async def test_async_client_resumes_too(serve: Callable[..., RunningServer]) -> None:
    """`AsyncClient.follow` survives a cut connection the same way."""
    running = serve(**SLOW)
    async with AsyncClient(running.url) as direct:
        created = await direct.create_stream("hi")
        resumable = [e async for e in direct.stream("hi", resumable=True)]
    with cutting_proxy(port_of(running), [700]) as proxy:
        async with AsyncClient(f"http://127.0.0.1:{proxy.port}") as client:
            events = [e async for e in client.follow(created.id, reconnect=FAST_RECONNECT)]
    assert [e.id for e in events] == list(range(1, 18))
    # The same events; only the timings inside `done` differ between the two streams.
    assert events[:-1] == resumable[:-1]
    assert len(proxy.requests) == 2


def test_reconnecting_stops_after_max_attempts(serve: Callable[..., RunningServer]) -> None:
    """A connection that always breaks before any event: the error after `max_attempts` retries."""
    running = serve(**SLOW)
    with Client(running.url) as direct:
        created = direct.create_stream("hi")
    with cutting_proxy(port_of(running), [50] * 10) as proxy:
        with Client(f"http://127.0.0.1:{proxy.port}") as client:
            with pytest.raises(TransportError):
                list(
                    client.follow(created.id, reconnect=Reconnect(max_attempts=2, base_delay=0.01))
                )
    assert len(proxy.requests) == 3  # the first try and two retries


def test_without_reconnect_a_cut_is_raised_at_once(serve: Callable[..., RunningServer]) -> None:
    """`reconnect=None` turns resuming off."""
    running = serve(**SLOW)
    with Client(running.url) as direct:
        created = direct.create_stream("hi")
    with cutting_proxy(port_of(running), [700]) as proxy:
        with Client(f"http://127.0.0.1:{proxy.port}") as client:
            with pytest.raises(IncompleteStreamError) as caught:
                list(client.follow(created.id, reconnect=None))
    assert len(proxy.requests) == 1
    assert caught.value.partial_text


def test_unknown_stream_stops_on_204_without_retrying(serve: Callable[..., RunningServer]) -> None:
    """The gateway's 204 for an unknown stream ends `follow` with `not_found`, no retry."""
    running = serve()
    with cutting_proxy(port_of(running), []) as proxy:
        with Client(f"http://127.0.0.1:{proxy.port}") as client:
            with pytest.raises(RequestRejected) as caught:
                list(client.follow("no-such-stream", reconnect=FAST_RECONNECT))
    assert caught.value.code == "not_found"
    assert len(proxy.requests) == 1


def test_follow_from_a_last_event_id_and_cancel(serve: Callable[..., RunningServer]) -> None:
    """`follow(last_event_id=n)` starts after n; `cancel` ends the stream with `cancelled`."""
    running = serve(fake_chunks=200, fake_first_delay_ms=10, fake_delay_ms=30)
    with Client(running.url) as client:
        created = client.create_stream("hi")
        assert wait_for(lambda: client.stream_status(created.id).events >= 2)
        events = client.follow(created.id, last_event_id=2)
        first = next(events)
        assert first.id == 3
        status = client.cancel(created.id)
        assert status.id == created.id
        with pytest.raises(StreamError) as caught:
            for _ in events:
                pass
        assert caught.value.code == "cancelled"
        assert caught.value.usage is not None
        assert wait_for(lambda: client.stream_status(created.id).status == "cancelled")
