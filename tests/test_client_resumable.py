"""The client's resumable streams: reconnects that lose and repeat nothing.

The reconnect policy (`Resumption`) is tested alone first, without a network; then the
clients that follow it, through a proxy that cuts real connections.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gemini_sse import (
    AsyncClient,
    Client,
    ConnectError,
    ErrorCode,
    ErrorInfo,
    EventSequenceError,
    EventTooLargeError,
    GeminiSSEError,
    IncompleteStreamError,
    ReadTimeout,
    Reconnect,
    RequestRejected,
    StreamError,
    TokenEvent,
    TransportError,
)
from gemini_sse._protocol import EventReader, Resumption
from gemini_sse.server.providers.simulated import expected_answer

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


# --- the policy alone ----------------------------------------------------------------------

POLICY = Reconnect(max_attempts=3, base_delay=1.0, max_delay=3.0)


def token(event_id: int, text: str = "a") -> bytes:
    return f'id: {event_id}\nevent: token\ndata: {{"text":"{text}"}}\n\n'.encode()


def resumption(reconnect: Reconnect | None = POLICY, last_event_id: int = 0) -> Resumption:
    return Resumption(reconnect, EventReader(last_event_id=last_event_id))


def test_policy_sends_last_event_id_once_there_is_one() -> None:
    """No `Last-Event-ID` before any event; then the id of the last event read."""
    policy = resumption()
    assert policy.headers() == {}
    list(policy.reader.feed(token(1) + token(2)))
    assert policy.headers() == {"Last-Event-ID": "2"}
    assert resumption(last_event_id=7).headers() == {"Last-Event-ID": "7"}


def test_policy_backs_off_exponentially_up_to_max_delay_then_gives_up() -> None:
    """Failures in a row wait base * 2**(n-1), capped, 50-100 %; past max_attempts: None."""
    policy = resumption()
    ceilings = [1.0, 2.0, 3.0]
    for attempt, ceiling in enumerate(ceilings, start=1):
        delay = policy.failed(ConnectError("refused"))
        assert delay is not None and ceiling / 2 <= delay <= ceiling
        assert policy.attempt == attempt
    assert policy.failed(ConnectError("refused")) is None


def test_policy_counts_anew_after_a_connection_that_delivered_events() -> None:
    """Any event received between two failures resets the count of failures in a row."""
    policy = resumption()
    for event_id in range(1, 6):
        list(policy.reader.feed(token(event_id)))
        delay = policy.failed(IncompleteStreamError("cut"))
        assert delay is not None and delay <= 1.0
        assert policy.attempt == 1


def test_policy_follows_the_gateways_retry_hint() -> None:
    """A `retry:` from the gateway replaces `base_delay`, still doubled and capped."""
    policy = resumption(Reconnect(max_attempts=5, base_delay=0.1, max_delay=60.0))
    list(policy.reader.feed(b"retry: 4000\n" + token(1)))
    first = policy.failed(ReadTimeout("silent"))
    second = policy.failed(ReadTimeout("silent"))
    assert first is not None and 2.0 <= first <= 4.0
    assert second is not None and 4.0 <= second <= 8.0


def test_policy_waits_at_least_the_retry_after_of_a_refusal() -> None:
    """A 503 with `Retry-After` waits that long (jitter only lengthens it), up to `max_delay`."""
    policy = resumption(Reconnect(max_attempts=5, base_delay=0.1, max_delay=3.0))
    busy = RequestRejected.of(503, ErrorCode.OVERLOADED, "busy", retryable=True, retry_after=2)
    assert policy.failed(busy) == 2.0
    longer = RequestRejected.of(503, ErrorCode.OVERLOADED, "busy", retryable=True, retry_after=30)
    assert policy.failed(longer) == 3.0
    # Without the header the backoff alone: well under a second here.
    unsaid = policy.failed(RequestRejected.of(503, ErrorCode.OVERLOADED, "busy", retryable=True))
    assert unsaid is not None and unsaid <= 0.4


@pytest.mark.parametrize(
    "error",
    [
        TransportError("reset"),
        ConnectError("refused"),
        ReadTimeout("silent"),
        IncompleteStreamError("cut"),
        RequestRejected.of(503, ErrorCode.OVERLOADED, "busy", retryable=True),
    ],
    ids=lambda e: type(e).__name__,
)
def test_policy_reconnects_after_a_broken_connection_or_a_retryable_refusal(
    error: GeminiSSEError,
) -> None:
    """A broken connection or a retryable refusal (503) is worth another connection."""
    assert resumption().failed(error) is not None


@pytest.mark.parametrize(
    "error",
    [
        RequestRejected.of(204, ErrorCode.NOT_FOUND, "unknown stream"),
        RequestRejected.of(401, ErrorCode.UNAUTHORIZED, "no key"),
        StreamError(ErrorInfo(code=ErrorCode.CANCELLED, message="cancelled")),
        EventSequenceError("gap"),
        EventTooLargeError("too long"),
    ],
    ids=lambda e: type(e).__name__ + "-" + getattr(e, "code", ""),
)
def test_policy_gives_up_when_reconnecting_cannot_help(error: GeminiSSEError) -> None:
    """A refusal, an `error` event or a broken protocol ends `follow` at once."""
    assert resumption().failed(error) is None


def test_policy_without_reconnect_always_gives_up() -> None:
    """`reconnect=None`: the first failure is raised."""
    assert resumption(None).failed(ConnectError("refused")) is None


def test_policy_drops_the_half_read_event_before_the_next_connection() -> None:
    """An event cut by the failure is not glued to the start of the next connection."""
    policy = resumption()
    list(policy.reader.feed(token(1) + b'id: 2\nevent: token\ndata: {"te'))
    assert policy.failed(IncompleteStreamError("cut")) is not None
    events = list(policy.reader.feed(token(2, "b")))
    assert [(e.id, e.text) for e in events if isinstance(e, TokenEvent)] == [(2, "b")]


# --- the clients, through a cutting proxy ---------------------------------------------------


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
