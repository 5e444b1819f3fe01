"""Tokens a second from one gateway process against several (`GEMINI_SSE_WORKERS`).

Each run starts a redis-server (workers need it) and `gemini-sse serve --workers N` with
the simulated model streaming as fast as it can, then one load generator process opens
the streams at once and counts tokens (bench/loadgen.py). All on 127.0.0.1, bounded.

    python -m bench.workers --workers 1,2 --streams 200 --chunks 200 --reps 3

On a machine with as many cores as the load generator and the workers together, more
workers add throughput; on fewer, the load generator competes with them for the cores:
the figures say what this machine does, not what a bigger one would.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from .run import _free_port


@contextmanager
def _redis() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is needed (apt-get install redis-server)")
    port = _free_port()
    with tempfile.TemporaryDirectory() as directory:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.3)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@contextmanager
def _gateway(
    workers: int, redis_url: str, chunks: int, delay_ms: int = 0
) -> Iterator[tuple[int, int]]:
    port = _free_port()
    env = {
        **os.environ,
        "GEMINI_SSE_PROVIDER": "fake",
        "GEMINI_SSE_PORT": str(port),
        "GEMINI_SSE_REDIS_URL": redis_url,
        "GEMINI_SSE_FAKE_CHUNKS": str(chunks),
        "GEMINI_SSE_FAKE_DELAY_MS": str(delay_ms),
        "GEMINI_SSE_FAKE_FIRST_DELAY_MS": str(delay_ms),
        "GEMINI_SSE_SEPARATORS": "false",
        "GEMINI_SSE_HEARTBEAT_S": "0",
        "GEMINI_SSE_MAX_STREAMS": "10000",
        "GEMINI_SSE_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemini_sse._cli", "serve", "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("the gateway did not start")
            time.sleep(0.1)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _measure(port: int, pid: int, streams: int, chunks: int) -> dict[str, Any]:
    job = {
        "port": port,
        "pid": pid,
        "streams": streams,
        "chunks": chunks,
        "first_delay_ms": 0,
        "delay_ms": 0,
        "cap_s": 60,
    }
    out = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with _redis() as redis_url:
        for workers in (int(n) for n in args.workers.split(",")):
            runs = []
            with _gateway(workers, redis_url, args.chunks) as (port, pid):
                for _ in range(args.reps):
                    runs.append(_measure(port, pid, args.streams, args.chunks))
            rows.append((workers, runs))
    print("| workers | tokens/s (median) | each run | first token p99, ms (median) | streams ok |")
    print("|---|---|---|---|---|")
    for workers, runs in rows:
        rates = [r["tokens_per_s"] for r in runs]
        ttft = [r["ttft_overhead_ms"]["p99"] for r in runs]
        ok = sum(r["ok"] for r in runs)
        print(
            f"| {workers} | {statistics.median(rates):,.0f} | "
            f"{', '.join(f'{x:,.0f}' for x in rates)} | {statistics.median(ttft):,.0f} | "
            f"{ok}/{args.streams * len(runs)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
