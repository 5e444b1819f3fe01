"""Two replicas sharing one Redis, while Redis pauses and restarts under running streams.

Resumable streams are produced on both replicas and each is read through both, with the
Python client's `follow` (which reconnects with Last-Event-ID). Whatever Redis does, every
reader ends with the whole answer, ids 1..N with no gap or repeat, or with a typed
`error` event after a clean prefix of it. A fault shorter than the producers' lease
(`stream_lease_s`) loses nothing: producers hold their generation back and retry. And
once Redis is back, both replicas start and serve new streams without a restart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest

from gemini_sse import Client, DoneEvent, ErrorEvent, GeminiSSEError, TokenEvent
from gemini_sse.server.providers.simulated import simulated_answer

from .figures import Figures
from .gateway_process import GatewayProcess, cleared_environment, run_gateway, wait_until
from .redis_faults import FaultyRedis, run_faulty_redis

CHUNKS = 40
CHUNK_CHARS = 12
LEASE_S = 5.0
STREAMS_PER_REPLICA = 3
REPLICA = {
    "fake_chunks": CHUNKS,
    "fake_chunk_chars": CHUNK_CHARS,
    "fake_delay_ms": 75,  # 3 s an answer: long enough for a fault to land mid-stream
    "fake_first_delay_ms": 50,
    "stream_lease_s": LEASE_S,
    "heartbeat_s": 1,
}


@dataclass
class Cluster:
    redis: FaultyRedis
    replicas: list[GatewayProcess]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One redis-server and two gateway replicas using it, for the whole module."""
    with (
        cleared_environment(),
        run_faulty_redis(str(tmp_path_factory.mktemp("redis"))) as redis,
        run_gateway(redis_url=redis.url, **REPLICA) as a,
        run_gateway(redis_url=redis.url, **REPLICA) as b,
    ):
        yield Cluster(redis, [a, b])


@dataclass
class Reading:
    """What one reader of one stream got."""

    replica: int  # the index of the replica it reads through
    stream_id: str
    message: str
    chunks: int = CHUNKS
    events: list[object] = field(default_factory=list)
    failure: BaseException | None = None

    def problem(self) -> str | None:
        """Why this reading is not acceptable, or None."""
        label = f"{self.stream_id[:8]} via replica {self.replica}"
        if self.failure is not None:
            return f"{label}: raised {self.failure!r} after {len(self.events)} events"
        ids = [getattr(event, "id", None) for event in self.events]
        if ids != list(range(1, len(ids) + 1)):
            return f"{label}: ids {ids}"
        expected = "".join(simulated_answer(self.message, self.chunks, CHUNK_CHARS))
        got = "".join(e.text for e in self.events if isinstance(e, TokenEvent))
        last = self.events[-1] if self.events else None
        if isinstance(last, DoneEvent):
            return None if got == expected else f"{label}: done, but the text differs"
        if isinstance(last, ErrorEvent):
            return None if expected.startswith(got) else f"{label}: error after wrong text"
        return f"{label}: ended with {last!r}"

    @property
    def complete(self) -> bool:
        return bool(self.events) and isinstance(self.events[-1], DoneEvent)


def _read(reading: Reading, url: str) -> Reading:
    try:
        with Client(url) as client:
            for event in client.follow(reading.stream_id, raise_on_error=False):
                reading.events.append(event)
    except GeminiSSEError as exc:
        reading.failure = exc
    return reading


def _start_streams(cluster: Cluster, tag: str) -> list[tuple[str, str]]:
    """Resumable streams created alternately on each replica: (id, message)."""
    created = []
    for i in range(STREAMS_PER_REPLICA * len(cluster.replicas)):
        replica = cluster.replicas[i % len(cluster.replicas)]
        message = f"{tag} stream {i}"
        response = httpx.post(f"{replica.url}/v1/streams", json={"message": message}, timeout=10)
        assert response.status_code == 201, response.text
        created.append((response.json()["id"], message))
    return created


def _run_fault(cluster: Cluster, tag: str, fault: Callable[[], None]) -> tuple[list[Reading], int]:
    """Streams on both replicas, each read via both; `fault` once every reader is mid-way.

    Returns the readings and how many warnings the replicas logged meanwhile: evidence
    that the fault reached them.
    """
    streams = _start_streams(cluster, tag)
    readings = [
        Reading(replica, stream_id, message)
        for stream_id, message in streams
        for replica in range(len(cluster.replicas))
    ]
    with ThreadPoolExecutor(max_workers=len(readings)) as pool:
        futures = [
            pool.submit(_read, reading, cluster.replicas[reading.replica].url)
            for reading in readings
        ]
        wait_until(
            lambda: all(len(r.events) >= 3 or r.failure for r in readings),
            20,
            "every reader is under way",
        )
        logged = [len(replica.lines) for replica in cluster.replicas]
        fault()
        for future in futures:
            future.result(timeout=90)
    warnings = sum(
        '"level":"warning"' in line
        for replica, before in zip(cluster.replicas, logged, strict=True)
        for line in replica.lines[before:]
    )
    return readings, warnings


def _check_new_streams_work(cluster: Cluster, tag: str) -> None:
    """Without a restart, each replica starts a stream that the other reads to its end."""
    quick = {"chunks": 5, "delay_ms": 10}

    def one(maker: int, reader: int) -> Reading:
        message = f"{tag} made on {maker}"
        made = cluster.replicas[maker]
        body = {"message": message, "simulation": quick}
        response = httpx.post(f"{made.url}/v1/streams", json=body, timeout=20)
        assert response.status_code == 201, response.text
        reading = Reading(reader, response.json()["id"], message, chunks=5)
        return _read(reading, cluster.replicas[reader].url)

    with ThreadPoolExecutor(max_workers=2) as pool:
        readings = list(pool.map(one, (0, 1), (1, 0)))
    for reading in readings:
        assert reading.problem() is None and reading.complete, reading.problem()


def _pause(cluster: Cluster, seconds: float) -> Callable[[], None]:
    def fault() -> None:
        with cluster.redis.paused():
            threading.Event().wait(seconds)  # the length of the outage is the fault itself

    return fault


def _figures(figures: Figures, title: str, readings: list[Reading], warnings: int) -> None:
    ends = [r.events[-1] for r in readings if r.events and not r.complete]
    figures.add(
        title,
        readers=len(readings),
        complete=sum(r.complete for r in readings),
        error_events=sorted(str(e.code) for e in ends if isinstance(e, ErrorEvent)),
        replica_warnings=warnings,
    )


def test_a_pause_shorter_than_the_lease_loses_nothing(cluster: Cluster, figures: Figures) -> None:
    """Redis frozen for 2 s mid-stream: every reader on both replicas gets the whole answer."""
    readings, warnings = _run_fault(cluster, "pause-2s", _pause(cluster, 2))
    problems = [p for r in readings if (p := r.problem())]
    assert not problems, problems
    assert all(r.complete for r in readings), [r.events[-1] for r in readings]
    _check_new_streams_work(cluster, "pause-2s")
    _figures(figures, "redis paused 2 s", readings, warnings)


def test_a_pause_longer_than_the_lease_ends_cleanly(cluster: Cluster, figures: Figures) -> None:
    """Redis frozen for 8 s: each reader gets the whole answer or a typed error, no gap."""
    readings, warnings = _run_fault(cluster, "pause-8s", _pause(cluster, 8))
    problems = [p for r in readings if (p := r.problem())]
    assert not problems, problems
    _check_new_streams_work(cluster, "pause-8s")
    _figures(figures, "redis paused 8 s", readings, warnings)


def test_a_restart_mid_stream_loses_nothing(cluster: Cluster, figures: Figures) -> None:
    """Redis restarted (with its data) mid-stream: every reader gets the whole answer."""
    readings, warnings = _run_fault(cluster, "restart", cluster.redis.restart)
    problems = [p for r in readings if (p := r.problem())]
    assert not problems, problems
    assert all(r.complete for r in readings), [r.events[-1] for r in readings]
    _check_new_streams_work(cluster, "restart")
    _figures(figures, "redis restarted", readings, warnings)
