"""Clients that stop reading are dropped; the clients that read are served as before.

A slow reader here opens a long answer and never reads a byte. Its connection advertises
a small segment size (TCP_MAXSEG), as a poor mobile link does, and a small receive
buffer: the kernels then hold a few hundred kilobytes of the answer, not the megabytes
that loopback buffers for a connection by default, so the gateway's sends soon block and
its send timeout has something to act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator

import httpx

from gemini_sse.server.providers.simulated import simulated_answer

from ..sse import aiter_events, text
from .figures import Figures
from .gateway_process import GatewayProcess, run_gateway, wait_until
from .measures import percentile, sampling
from .raw_http import json_request

SLOW_CLIENTS = 50
FAST_CLIENTS = 5
FAST_ANSWERS = 4  # answers each fast client reads, one after the other
CHUNK_CHARS = 1000
FAST_CHUNKS = 40
SLOW_CHUNKS = 400  # 400 kB of text, more than the kernels buffer for a slow reader
SETTINGS = {
    "fake_chunk_chars": CHUNK_CHARS,
    "fake_chunks": FAST_CHUNKS,
    "fake_delay_ms": 20,
    "fake_first_delay_ms": 20,
    "send_timeout_s": 1,
    "heartbeat_s": 0.5,
}
RSS_GROWTH_LIMIT = 200 * 2**20


async def _fast_client(url: str, client_index: int, gaps: list[float]) -> int:
    """Read `FAST_ANSWERS` whole answers, checking each; return how many were right."""
    right = 0
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for answer in range(FAST_ANSWERS):
            message = f"fast client {client_index} answer {answer}"
            events = []
            last: float | None = None
            async with client.stream("POST", "/v1/stream", json={"message": message}) as response:
                assert response.status_code == 200
                async for event in aiter_events(response):
                    events.append(event)
                    if event.event == "token":
                        now = time.monotonic()
                        if last is not None:
                            gaps.append(now - last)
                        last = now
            ids = [int(event.id) for event in events]
            expected = "".join(simulated_answer(message, FAST_CHUNKS, CHUNK_CHARS))
            if ids == list(range(1, len(ids) + 1)) and events[-1].event == "done":
                right += text(events) == expected
    return right


async def _fast_clients(url: str) -> tuple[int, list[float]]:
    gaps: list[float] = []
    results = await asyncio.gather(*(_fast_client(url, i, gaps) for i in range(FAST_CLIENTS)))
    return sum(results), gaps


async def _fast_clients_while_dropping(
    gateway: GatewayProcess, disconnected_before: float
) -> tuple[int, list[float], float]:
    """The fast clients, and meanwhile the time until every slow reader was dropped."""

    def dropped() -> bool:
        now = gateway.outcomes().get("client_disconnect", 0)
        return now - disconnected_before >= SLOW_CLIENTS

    async def all_dropped_after() -> float:
        started = time.monotonic()
        await asyncio.to_thread(wait_until, dropped, 20, "every slow reader dropped")
        return time.monotonic() - started

    (right, gaps), dropped_s = await asyncio.gather(_fast_clients(gateway.url), all_dropped_after())
    return right, gaps, dropped_s


@contextlib.contextmanager
def _slow_readers(gateway: GatewayProcess, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that ask for a long answer and never read it."""
    sockets = []
    try:
        for i in range(count):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
            sockets.append(sock)
            sock.connect(("127.0.0.1", gateway.port))
            body = {
                "message": f"slow reader {i}",
                "simulation": {"chunks": SLOW_CHUNKS, "delay_ms": 1},
            }
            sock.sendall(json_request("POST", "/v1/stream", port=gateway.port, data=body))
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def _read_to_end(sock: socket.socket) -> bytes:
    """Whatever is still on its way to a slow reader, up to the connection's end."""
    sock.settimeout(10)
    received = bytearray()
    with contextlib.suppress(ConnectionError):
        while chunk := sock.recv(65536):
            received += chunk
    return bytes(received)


def _gaps_ms(gaps: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(gaps, 0.5) * 1000, 1),
        "p99_ms": round(percentile(gaps, 0.99) * 1000, 1),
    }


def test_readers_that_stop_are_dropped_and_readers_that_read_get_everything(
    figures: Figures,
) -> None:
    """50 stalled readers: all dropped, their connections closed, RSS bounded; 5 fast
    readers get every answer right."""
    with run_gateway(**SETTINGS, log_level="info") as gateway:
        # Without slow readers first: the gaps to compare with, and a warmed-up process.
        alone_right, alone_gaps = asyncio.run(_fast_clients(gateway.url))
        wait_until(lambda: gateway.healthz()["streams"] == 0, 10, "the first answers ended")
        baseline = gateway.rss_bytes()
        idle_sockets = gateway.sockets()
        before = gateway.outcomes()
        disconnected_before = before.get("client_disconnect", 0)

        def all_began() -> bool:  # some may be dropped already
            dropped = gateway.outcomes().get("client_disconnect", 0) - disconnected_before
            return gateway.healthz()["streams"] + dropped >= SLOW_CLIENTS

        with (
            sampling(gateway.rss_bytes, 0.1) as rss,
            _slow_readers(gateway, SLOW_CLIENTS) as slow,
        ):
            wait_until(all_began, 10, "every slow reader began")
            right, gaps, dropped_s = asyncio.run(
                _fast_clients_while_dropping(gateway, disconnected_before)
            )
            # The slow readers' sockets are still open: only the gateway can end them,
            # their answers and (the kernel, TCP_USER_TIMEOUT) their connections.
            wait_until(lambda: gateway.healthz()["streams"] == 0, 20, "every stream ended")
            ended = time.monotonic()
            wait_until(
                lambda: gateway.sockets() <= idle_sockets, 20, "every dropped connection closed"
            )
            closed_s = time.monotonic() - ended
            leftovers = [_read_to_end(sock) for sock in slow]
        after = gateway.outcomes()
        problems = gateway.problems()

    assert alone_right == right == FAST_CLIENTS * FAST_ANSWERS
    disconnected = after.get("client_disconnect", 0) - disconnected_before
    done = after.get("done", 0) - before.get("done", 0)
    assert disconnected == SLOW_CLIENTS
    assert done == FAST_CLIENTS * FAST_ANSWERS
    # What a slow reader could still read was a cut stream, never the whole answer.
    assert all(b"event: done" not in data for data in leftovers)
    assert max(len(data) for data in leftovers) < SLOW_CHUNKS * CHUNK_CHARS
    # A sanity bound, far above the ~50 MB measured: the outcomes above are what prove
    # that the gateway stopped the slow readers' answers.
    assert rss.peak - baseline < RSS_GROWTH_LIMIT, (baseline, rss.peak)
    assert not problems, problems[:5]
    figures.add(
        "slow readers",
        slow=SLOW_CLIENTS,
        fast=FAST_CLIENTS,
        all_dropped_within_s=round(dropped_s, 1),
        rss_baseline_mb=round(baseline / 2**20, 1),
        rss_peak_mb=round(rss.peak / 2**20, 1),
        connections_closed_within_s=round(closed_s, 1),
        kb_left_for_a_slow_reader=f"{min(map(len, leftovers)) // 1024}-"
        f"{max(map(len, leftovers)) // 1024}",
        fast_gaps_alone=_gaps_ms(alone_gaps),
        fast_gaps_with_slow=_gaps_ms(gaps),
    )
