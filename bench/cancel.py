"""How long a cancel sent to one replica takes to stop an answer produced on another.

    python -m bench.cancel [--cancels 10]

Starts a redis-server and two `gemini-sse serve` replicas on it (the simulated model, a
chunk every 20 ms, the default lease), then, once per cancel: creates a resumable stream
on replica A, reads it from replica B, sends `DELETE` to B after the third event, and
times from the `DELETE` to the `cancelled` event arriving on B. All on 127.0.0.1, bounded.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from gemini_sse._decoder import SSEDecoder

from .workers import _gateway, _redis


def _cancel_once(producer: str, reader: str) -> float:
    created = httpx.post(f"{producer}/v1/streams", json={"message": "hi"}).json()
    decoder = SSEDecoder()
    seen, sent_at = 0, 0.0
    with httpx.stream("GET", reader + created["events_url"], timeout=30) as response:
        for chunk in response.iter_bytes():
            for event in decoder.feed(chunk):
                seen += 1
                if seen == 3:
                    sent_at = time.monotonic()
                    httpx.delete(f"{reader}/v1/streams/{created['id']}").raise_for_status()
                elif event.event == "error" and sent_at:
                    return time.monotonic() - sent_at
    raise SystemExit("the stream ended without its `cancelled` event")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cancel", description=__doc__)
    parser.add_argument("--cancels", type=int, default=10)
    args = parser.parse_args()
    with (
        _redis() as redis_url,
        _gateway(1, redis_url, chunks=2000, delay_ms=20) as (port_a, _),
        _gateway(1, redis_url, chunks=2000, delay_ms=20) as (port_b, _),
    ):
        a, b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
        times = [_cancel_once(a, b) * 1000 for _ in range(args.cancels)]
    median = statistics.median(times)
    print(f"DELETE on B -> `cancelled` on B, the answer produced on A: median {median:.0f} ms")
    print("each: " + ", ".join(f"{t:.0f}" for t in times) + " ms")


if __name__ == "__main__":
    main()
