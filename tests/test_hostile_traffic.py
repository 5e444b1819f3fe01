"""Traffic a hostile user or a bad day sends, over real uvicorn on 127.0.0.1.

Each test holds a defect that an outside fault probe found closed: one request stalling
the whole gateway, dropped readers filling the error log, a Redis pause ending streams.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis

from gemini_sse.server.providers.simulated import expected_answer

from .conftest import make_settings
from .redis_server import run_redis
from .servers import RunningServer, run_process, wait_for
from .sse import iter_events, parse, text

# --- one request must not stall the gateway ------------------------------------------


def test_a_model_that_never_pauses_does_not_stall_other_requests() -> None:
    """While a long answer streams with no pause at all, /healthz is served and sees it."""
    env = {
        "GEMINI_SSE_PROVIDER": "fake",
        "GEMINI_SSE_FAKE_CHUNKS": "60000",
        "GEMINI_SSE_FAKE_DELAY_MS": "0",
        "GEMINI_SSE_FAKE_FIRST_DELAY_MS": "0",
        "GEMINI_SSE_SEPARATORS": "false",
        "GEMINI_SSE_LOG_LEVEL": "warning",
    }
    health: list[dict[str, object]] = []
    with run_process(env) as (url, _):

        def ask_health() -> None:
            health.append(httpx.get(f"{url}/healthz", timeout=60).json())

        asked = threading.Thread(target=ask_health)
        with httpx.stream(
            "POST", f"{url}/v1/stream", json={"message": "hi"}, timeout=60
        ) as response:
            events = iter_events(response.iter_raw())
            assert next(events).event == "token"
            asked.start()
            last = None
            for event in events:
                last = event
        asked.join(timeout=60)
    assert last is not None and last.event == "done"
    # Served before the answer ended: a stalled loop would only see it finished (0).
    assert [h["streams"] for h in health] == [1]


def test_a_client_leaving_a_never_pausing_answer_cancels_it(
    serve: Callable[..., RunningServer],
) -> None:
    """The disconnect is noticed mid-answer: the model is cancelled, not run to the end."""
    # 60 MB: far more than the socket buffers hold, so the model cannot finish before the
    # client leaves. Once it has left, sends return at once (nobody to send to) and only
    # the pipeline's own turns let the disconnect be seen.
    running = serve(
        fake_chunks=60_000,
        fake_chunk_chars=1_000,
        fake_delay_ms=0,
        fake_first_delay_ms=0,
        separators=False,
    )
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    received = 0
    with httpx.stream(
        "POST", f"{running.url}/v1/stream", json={"message": "hi"}, timeout=60
    ) as response:
        for chunk in response.iter_raw():
            received += len(chunk)
            if received > 200_000:
                break
    assert wait_for(lambda: stats.cancelled + stats.completed == 1)
    assert (stats.cancelled, stats.completed) == (1, 0)
    assert wait_for(lambda: not running.gateway.live)


def test_simulation_sizes_are_bounded(serve: Callable[..., RunningServer]) -> None:
    """A request cannot ask the simulated model for an unbounded answer."""
    running = serve()
    body = {"message": "hi", "simulation": {"chunks": 100_000, "delay_ms": 0}}
    response = httpx.post(f"{running.url}/v1/stream", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
    assert "simulation.chunks" in response.json()["error"]["message"]


@pytest.mark.parametrize("value", [False, True, "5"])
def test_simulation_numbers_are_numbers(serve: Callable[..., RunningServer], value: object) -> None:
    """`false`, `true` or `"5"` is not a delay: 422, not a silent 0 or 1."""
    running = serve()
    body = {"message": "hi", "simulation": {"first_delay_ms": value}}
    response = httpx.post(f"{running.url}/v1/stream", json=body)
    assert response.status_code == 422, response.text


# --- readers that stop reading ---------------------------------------------------------


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def uvicorn_errors() -> Iterator[_Capture]:
    """What uvicorn logs at ERROR (its logger does not propagate to pytest's capture)."""
    capture = _Capture()
    capture.setLevel(logging.ERROR)
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(capture)
    try:
        yield capture
    finally:
        logger.removeHandler(capture)


def _silent_reader(url: str, path: str = "/v1/stream") -> socket.socket:
    """A client that asks for an answer and then never reads a byte of it."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    body = b'{"message": "hi"}'
    sock.sendall(
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    return sock


def test_dropped_slow_readers_log_no_errors(
    serve: Callable[..., RunningServer],
    uvicorn_errors: _Capture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Readers dropped after the send timeout (heartbeats on) leave no ERROR line at all."""
    running = serve(
        fake_chunks=5_000,
        fake_chunk_chars=1_000,
        fake_delay_ms=0,
        fake_first_delay_ms=0,
        send_timeout_s=0.5,
        heartbeat_s=0.05,
    )
    caplog.set_level(logging.INFO, logger="gemini_sse")

    def dropped() -> int:
        return len([r for r in caplog.records if "stopped reading" in r.getMessage()])

    readers = [_silent_reader(running.url) for _ in range(6)]
    try:
        assert wait_for(lambda: len(running.gateway.live) == 6, seconds=10)
        # The line is logged once the response has returned, a moment after its
        # generation ended: wait for the lines themselves, not for the generations.
        assert wait_for(lambda: dropped() == 6, seconds=20)
        assert wait_for(lambda: not running.gateway.live, seconds=10)
    finally:
        for sock in readers:
            sock.close()
    assert dropped() == 6
    assert [r.getMessage() for r in uvicorn_errors.records] == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


# --- Redis standing still ---------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A redis-server of this test's own (it will be paused); its URL and process id."""
    with run_redis(str(tmp_path_factory.mktemp("redis-paused"))) as url:
        pid = int(redis.Redis.from_url(url).info("server")["process_id"])
        yield url, pid
        os.kill(pid, signal.SIGCONT)  # never leave it stopped, whatever failed


def test_a_redis_pause_longer_than_the_lease_loses_nothing(
    serve: Callable[..., RunningServer], own_redis: tuple[str, int]
) -> None:
    """Redis stopped for 2.5 lease periods mid-stream: the stream still ends whole, done."""
    url, pid = own_redis
    running = serve(
        redis_url=url,
        stream_lease_s=1.0,
        stream_store_retry_s=20,
        fake_chunks=30,
        fake_delay_ms=50,
    )
    created = httpx.post(f"{running.url}/v1/streams", json={"message": "hi"}).json()
    events_url = f"{running.url}{created['events_url']}"
    first: list[str] = []
    with httpx.stream("GET", events_url, timeout=10) as response:
        for event in iter_events(response.iter_raw()):
            first.append(event.id)
            if len(first) == 3:
                break
    os.kill(pid, signal.SIGSTOP)
    time.sleep(2.5)  # the outage itself: Redis stands still for this long
    os.kill(pid, signal.SIGCONT)

    def finished() -> bool:
        response = httpx.get(f"{running.url}/v1/streams/{created['id']}", timeout=10)
        return response.status_code == 200 and response.json()["status"] != "running"

    assert wait_for(finished, seconds=30)
    events = parse(httpx.get(events_url, timeout=10).content)
    assert [e.id for e in events] == [str(i) for i in range(1, len(events) + 1)]
    assert events[-1].event == "done", events[-1]
    assert text(events) == expected_answer(make_settings(fake_chunks=30), ["hi"])
    assert wait_for(lambda: not running.gateway.live)
