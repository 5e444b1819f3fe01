"""CPU per token of the floor or the gateway called in-process: no sockets, no HTTP parser.

    python -m bench.inprocess gateway --streams 200 --chunks 100 [--delay-ms 20] [--reps 5]

Each repetition is a fresh process (so one run's heap does not tax the next); it starts
the app's lifespan, sets the process up as `serve()` does, then runs `--streams`
concurrent POST /v1/stream calls against the ASGI app with an ASGI `send` that only counts
tokens, and reports the process CPU time per token. What it leaves out (uvicorn, h11, the
kernel) is the same for both apps, so the difference between the two is the gateway's own
cost, with less noise than `python -m bench`; the absolute figures are lower.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

_BODY = json.dumps({"message": "hello there"}).encode()


def child_env(chunks: int, delay_ms: float) -> dict[str, str]:
    """The environment of one measured run: ours, less any GEMINI_SSE_ setting, plus
    the simulated model's and the gateway's for the run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEMINI_SSE_")}
    return env | {
        "GEMINI_SSE_PROVIDER": "fake",
        "GEMINI_SSE_FAKE_CHUNKS": str(chunks),
        "GEMINI_SSE_FAKE_DELAY_MS": str(delay_ms),
        "GEMINI_SSE_FAKE_FIRST_DELAY_MS": str(delay_ms),
        "GEMINI_SSE_MAX_STREAMS": "100000",
        "GEMINI_SSE_LOG_LEVEL": "warning",
        "GEMINI_SSE_SEPARATORS": "false",
    }


async def _stream(app: Any, counted: list[int]) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/stream",
        "raw_path": b"/v1/stream",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(_BODY)).encode()),
            (b"host", b"127.0.0.1"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    read = False
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal read
        if not read:
            read = True
            return {"type": "http.request", "body": _BODY, "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            counted[0] += message.get("body", b"").count(b"event: token")
            if not message.get("more_body", False):
                finished.set()

    await app(scope, receive, send)


async def _measure(which: str, streams: int) -> float:
    from gemini_sse.server.serve import prepare_process
    from gemini_sse.server.settings import Settings

    settings = Settings()
    if which == "floor":
        from .floor import create_floor

        app = create_floor(settings)
    else:
        from gemini_sse.server.app import create_app

        app = create_app(settings)
    lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    running = asyncio.create_task(
        app(
            {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, lifespan.get, replies.put
        )
    )
    await lifespan.put({"type": "lifespan.startup"})
    await replies.get()
    prepare_process()
    counted = [0]
    cpu = time.process_time()
    await asyncio.gather(*(_stream(app, counted) for _ in range(streams)))
    cpu = time.process_time() - cpu
    await lifespan.put({"type": "lifespan.shutdown"})
    await running
    return cpu / counted[0] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("apps", nargs="+", choices=["floor", "gateway"])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child run
    args = parser.parse_args()
    if args.one:
        print(asyncio.run(_measure(args.apps[0], args.streams)))
        return
    env = child_env(args.chunks, args.delay_ms)
    results: dict[str, list[float]] = {app: [] for app in args.apps}
    for _ in range(args.reps):  # interleaved, so drift on a shared machine hits all alike
        for app in args.apps:
            command = [sys.executable, "-m", "bench.inprocess", app, "--one"]
            command += ["--streams", str(args.streams)]
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            results[app].append(float(out.stdout.strip().splitlines()[-1]))
    for app, values in results.items():
        runs = ", ".join(f"{v:.1f}" for v in values)
        median = statistics.median(values)
        print(f"{app:8} median {median:6.1f} us/token (min {min(values):.1f}; runs {runs})")


if __name__ == "__main__":
    main()
