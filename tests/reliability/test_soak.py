"""A minute of steady traffic on every route: no failure, and memory that levels off.

`CONCURRENCY` clients loop over the routes for `DURATION_S` against a child process with
the simulated model, each answer read to its end and checked. The gateway's RSS is
sampled every second; a line fitted over the second half (after the warm-up) must be
nearly flat. Resumable streams expire after a few seconds here, so that the store's
contents stay level too and a growing RSS would mean a leak.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter

import httpx

from ..sse import parse
from .figures import Figures
from .gateway_process import run_gateway, wait_until
from .measures import percentile, sampling, slope

DURATION_S = 60.0
CONCURRENCY = 16
CHUNKS = 20
ROUTES = ("post_stream", "get_stream", "resumable", "chat_stream", "chat_json")
# Far above the few kB/s measured (docs/reliability.md), so that the allocator's ups and
# downs never fail it; at ~65 answers a second, a leak of ~8 kB an answer or more does.
RSS_SLOPE_LIMIT = 512 * 1024  # bytes a second


async def _one(client: httpx.AsyncClient, route: str, message: str) -> bool:
    """One answer on `route`, read whole; whether it was complete."""
    chat = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": message}]}
    if route == "post_stream":
        response = await client.post("/v1/stream", json={"message": message})
    elif route == "get_stream":
        response = await client.get("/v1/stream", params={"message": message})
    elif route == "resumable":
        created = await client.post("/v1/streams", json={"message": message})
        if created.status_code != 201:
            return False
        response = await client.get(created.json()["events_url"])
    elif route == "chat_stream":
        response = await client.post("/v1/chat/completions", json={**chat, "stream": True})
        return response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    else:
        response = await client.post("/v1/chat/completions", json=chat)
        return response.status_code == 200 and response.json()["choices"][0]["message"]["content"]
    if response.status_code != 200:
        return False
    events = parse(response.content)
    ids = [int(event.id) for event in events]
    return ids == list(range(1, len(ids) + 1)) and events[-1].event == "done"


async def _traffic(url: str, seconds: float) -> tuple[Counter[str], list[float]]:
    """Every client loops over the routes until the time is up; outcomes and durations."""
    outcomes: Counter[str] = Counter()
    durations: list[float] = []
    deadline = time.monotonic() + seconds
    counter = itertools.count()

    async def client_loop(index: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            for route in itertools.islice(itertools.cycle(ROUTES), index, None):
                if time.monotonic() > deadline:
                    return
                started = time.monotonic()
                try:
                    ok = await _one(client, route, f"soak {next(counter)}")
                except httpx.HTTPError as exc:
                    outcomes[f"{route}: {type(exc).__name__}"] += 1
                    continue
                durations.append(time.monotonic() - started)
                outcomes[route if ok else f"{route}: incomplete"] += 1

    await asyncio.gather(*(client_loop(i) for i in range(CONCURRENCY)))
    return outcomes, durations


def test_a_minute_of_traffic_has_no_failure_and_a_flat_memory(figures: Figures) -> None:
    """60 s at 16 concurrent clients: 0 failures, RSS slope over the second half ~flat."""
    settings = {
        "fake_chunks": CHUNKS,
        "fake_delay_ms": 10,
        "fake_first_delay_ms": 10,
        "stream_ttl_s": 5,
        "log_level": "warning",
    }
    with run_gateway(**settings) as gateway:
        with sampling(gateway.rss_bytes, 1.0) as rss:
            outcomes, durations = asyncio.run(_traffic(gateway.url, DURATION_S))
        wait_until(lambda: gateway.healthz()["streams"] == 0, 10, "every stream ended")
        problems = gateway.problems()

    failures = {name: n for name, n in outcomes.items() if ":" in name}
    assert not failures, failures
    assert not problems, problems[:5]
    second_half = [(t, v) for t, v in rss.points if t >= DURATION_S / 2]
    rss_slope = slope(second_half)
    assert rss_slope < RSS_SLOPE_LIMIT, (rss_slope, rss.points)
    figures.add(
        "soak",
        seconds=DURATION_S,
        clients=CONCURRENCY,
        answers=sum(outcomes.values()),
        per_route=dict(sorted(outcomes.items())),
        failures=0,
        answer_p50_ms=round(percentile(durations, 0.5) * 1000, 1),
        answer_p99_ms=round(percentile(durations, 0.99) * 1000, 1),
        rss_start_mb=round(rss.points[0][1] / 2**20, 1),
        rss_end_mb=round(rss.points[-1][1] / 2**20, 1),
        rss_peak_mb=round(rss.peak / 2**20, 1),
        rss_slope_kb_per_s=round(rss_slope / 1024, 1),
    )
