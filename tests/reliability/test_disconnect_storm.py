"""Hundreds of clients leaving at every possible moment: nothing stays running or leaks.

Each stream of the storm picks a route and a moment to leave (half-way through its
request, before the response's headers, after its first byte, mid-answer, just before
`done`, or not at all), and leaves with a FIN or a reset. Afterwards the gateway must
have ended every generation, counted each one, kept its memory, and logged no error.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from ..servers import RunningServer
from .figures import Figures
from .gateway_process import run_gateway, wait_until
from .raw_http import json_request, parse_response, request_bytes

CHUNKS = 20
MODEL = {"fake_chunks": CHUNKS, "fake_delay_ms": 10, "fake_first_delay_ms": 20}
ROUTES = ("post_stream", "get_stream", "resumable", "chat_stream", "chat_json")
CUTS = ("mid_request", "before_headers", "first_byte", "mid_answer", "before_done", "none")
# Events of a whole answer on our routes (token and separator per chunk, then `done`),
# and `data:` lines of a whole OpenAI stream (one per chunk, the last one, usage-less).
NATIVE_EVENTS = 2 * CHUNKS + 1
OPENAI_CHUNKS = CHUNKS + 1

STORM = 300
CONCURRENCY = 50
# Far above the ~10 MB measured (docs/reliability.md), so that the allocator's ups and
# downs never fail it; a leak of ~250 kB a stream or more does.
RSS_GROWTH_LIMIT = 80 * 2**20


@dataclass(frozen=True)
class Plan:
    """How one stream of the storm goes: its route, when it leaves, and how."""

    index: int
    route: str
    cut: str
    reset: bool  # leave with RST, else FIN
    split: float  # where in its request a "mid_request" cut falls (0-1)
    stop_after: int  # events read before a "mid_answer" cut
    wait_s: float  # how long a non-streaming answer is waited for before a cut

    @property
    def name(self) -> str:
        return f"{self.route}/{self.cut}"


def plans(count: int, seed: int) -> list[Plan]:
    """The storm, drawn up front so that the same seed makes the same storm."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        route = ROUTES[i % len(ROUTES)]
        whole = OPENAI_CHUNKS if route.startswith("chat") else NATIVE_EVENTS
        out.append(
            Plan(
                index=i,
                route=route,
                cut=rng.choice(CUTS),
                reset=rng.random() < 0.5,
                split=rng.random(),
                stop_after=rng.randint(1, whole - 2),
                wait_s=rng.uniform(0, 0.3),
            )
        )
    return out


@dataclass
class StormResult:
    """What the clients saw."""

    plans: Counter[str] = field(default_factory=Counter)  # route/cut
    statuses: Counter[int | None] = field(default_factory=Counter)
    completed: int = 0  # streams read to their end and checked
    generations: int = 0  # requests known to have started a generation
    failures: list[str] = field(default_factory=list)


def _events_seen(route: str, data: bytes) -> int:
    if route.startswith("chat"):
        return data.count(b"data: {")
    return data.count(b"\nid: ") + data.startswith(b"id: ")


def _whole(route: str, data: bytes) -> bool:
    if route == "chat_json":
        response = parse_response(data)
        length = response.header("content-length")
        return length is not None and len(response.body) >= int(length)
    if route == "chat_stream":
        return b"data: [DONE]\n\n" in data
    return b"event: done\n" in data


async def _request_for(route: str, i: int, port: int, client: httpx.AsyncClient) -> bytes:
    message = f"storm question {i}"
    if route == "post_stream":
        return json_request("POST", "/v1/stream", port=port, data={"message": message})
    if route == "get_stream":
        target = f"/v1/stream?message=storm+question+{i}"
        return request_bytes("GET", target, port=port, headers=[("Accept", "text/event-stream")])
    if route == "resumable":
        created = await client.post("/v1/streams", json={"message": message})
        assert created.status_code == 201, created.text
        target = created.json()["events_url"]
        return request_bytes("GET", target, port=port, headers=[("Accept", "text/event-stream")])
    body = {
        "model": "gemini-2.5-flash",
        "messages": [{"role": "user", "content": message}],
        "stream": route == "chat_stream",
    }
    return json_request("POST", "/v1/chat/completions", port=port, data=body)


async def _one(plan: Plan, port: int, client: httpx.AsyncClient, result: StormResult) -> None:
    route, cut = plan.route, plan.cut
    whole = OPENAI_CHUNKS if route.startswith("chat") else NATIVE_EVENTS
    result.plans[plan.name] += 1
    data = await _request_for(route, plan.index, port, client)
    if route == "resumable":
        result.generations += 1  # started by the POST, whatever its reader does
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = bytearray()
    try:
        if cut == "mid_request":
            writer.write(data[: max(1, int(len(data) * plan.split))])
            await writer.drain()
            return
        writer.write(data)
        await writer.drain()
        if cut == "before_headers":
            return
        if route == "chat_json" and cut in ("mid_answer", "before_done"):
            # No bytes come before the whole answer: leave while it is being made.
            with contextlib.suppress(TimeoutError):
                received += await asyncio.wait_for(reader.read(65536), plan.wait_s)
            return
        if cut == "first_byte":
            received += await reader.readexactly(1)
            return
        while chunk := await reader.read(65536):
            received += chunk
            seen = _events_seen(route, bytes(received))
            if cut == "mid_answer" and seen >= plan.stop_after:
                return
            if cut == "before_done" and seen >= whole - 1:
                return
            if _whole(route, bytes(received)):
                break
        response = parse_response(bytes(received))
        if response.status == 200 and _whole(route, bytes(received)):
            result.completed += 1
        else:
            result.failures.append(f"{plan.name}: {bytes(received[-300:])!r}")
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        result.failures.append(f"{plan.name}: {exc!r}")
    finally:
        status = parse_response(bytes(received)).status
        result.statuses[status] += 1
        if status is not None and route != "resumable":
            result.generations += 1
        if plan.reset:
            sock = writer.get_extra_info("socket")
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def storm(url: str, count: int, seed: int) -> StormResult:
    """`count` streams over every route, `CONCURRENCY` at a time, each cut as planned."""
    port = int(url.rsplit(":", 1)[1])
    result = StormResult()
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def run(plan: Plan) -> None:
            async with gate:
                await _one(plan, port, client, result)

        await asyncio.gather(*(run(plan) for plan in plans(count, seed)))
    return result


def _warm_up(url: str) -> None:
    """Whole answers on each route: what the first streams allocate is not a leak."""
    chat = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "warm"}]}
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(4):
            assert client.post("/v1/stream", json={"message": "warm"}).status_code == 200
            assert client.get("/v1/stream", params={"message": "warm"}).status_code == 200
            assert client.post("/v1/chat/completions", json=chat).status_code == 200
            streamed = client.post("/v1/chat/completions", json={**chat, "stream": True})
            assert streamed.status_code == 200
            created = client.post("/v1/streams", json={"message": "warm"}).json()
            assert b"event: done" in client.get(created["events_url"]).content


def _check_clients(result: StormResult, count: int) -> None:
    assert result.plans.total() == count
    assert not result.failures, result.failures[:10]
    # Every status line a client saw said that its stream had started.
    assert set(result.statuses) <= {200, None}, result.statuses
    read_whole = sum(n for name, n in result.plans.items() if name.endswith("/none"))
    assert result.completed == read_whole


def test_a_storm_of_dropped_streams_leaves_nothing_running_or_leaked(figures: Figures) -> None:
    """300 streams dropped anywhere: none left running or open, all counted, RSS kept, no error."""
    with run_gateway(**MODEL, log_level="info", stream_ttl_s=30) as gateway:
        _warm_up(gateway.url)
        wait_until(lambda: gateway.healthz()["streams"] == 0, 10, "warm-up streams ended")
        baseline = gateway.rss_bytes()
        idle_sockets = gateway.sockets()
        before = sum(gateway.outcomes().values())

        result = asyncio.run(storm(gateway.url, STORM, seed=20240601))

        wait_until(lambda: gateway.healthz()["streams"] == 0, 20, "every stream ended")
        wait_until(
            lambda: gateway.metric("gemini_sse_streams_in_flight") == 0,
            10,
            "no generation in flight",
        )
        wait_until(lambda: gateway.sockets() <= idle_sockets, 10, "every connection closed")
        after = gateway.rss_bytes()
        outcomes = gateway.outcomes()
        finished = sum(outcomes.values()) - before
        problems = gateway.problems()

    _check_clients(result, STORM)
    # Each generation is counted once, by how it ended: finished, or left by its client.
    assert result.generations <= finished <= STORM
    assert set(outcomes) <= {"done", "client_disconnect"}, outcomes
    assert after - baseline < RSS_GROWTH_LIMIT, (baseline, after)
    assert not problems, problems[:5]
    figures.add(
        "disconnect storm (child process)",
        streams=STORM,
        concurrency=CONCURRENCY,
        generations_counted=int(finished),
        outcomes={k: int(v) for k, v in sorted(outcomes.items())},
        rss_baseline_mb=round(baseline / 2**20, 1),
        rss_after_mb=round(after / 2**20, 1),
    )


def test_the_simulated_model_accounts_for_every_generation_of_a_storm(
    serve: Callable[..., RunningServer],
) -> None:
    """In-process, after a storm: the model's started == completed + cancelled + failed."""
    running = serve(**MODEL)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    result = asyncio.run(storm(running.url, 100, seed=7))

    def settled() -> bool:
        return not running.gateway.live and stats.started == (
            stats.completed + stats.cancelled + stats.failed
        )

    wait_until(settled, 20, "every model call ended and was counted")
    _check_clients(result, 100)
    assert stats.failed == 0
    assert stats.started >= result.generations
