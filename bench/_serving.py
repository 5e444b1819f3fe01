"""How every benchmarked server is run: the same uvicorn set-up, so only the app differs."""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

from gemini_sse.server import serve as serve_module
from gemini_sse.server.serve import FAIR_UVLOOP, prepare_process

# uvloop as `gemini-sse serve --loop uvloop` runs it (batched accepts), and uvloop's own
# server (one accept per turn of the loop), to show the difference.
LOOPS = {"uvloop": FAIR_UVLOOP, "uvloop-own-accept": "uvloop"}


def server_arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", *LOOPS])
    parser.add_argument("--http", default="h11", choices=["h11", "httptools"])
    parser.add_argument(
        "--gc-thresholds", help="e.g. 700,10,10 (CPython's default) instead of serve.py's"
    )
    args = parser.parse_args()
    if args.gc_thresholds:
        # Read by prepare_process(): lets the benchmark show what serve.py's choice saves.
        gen0, gen1, gen2 = (int(n) for n in args.gc_thresholds.split(","))
        serve_module.GC_THRESHOLDS = (gen0, gen1, gen2)
    return args


def run(app: Any, args: argparse.Namespace) -> None:
    """Serve `app` on 127.0.0.1 as `gemini-sse serve` serves the gateway (one worker, the
    same process set-up: file limit, frozen start-up heap, collector thresholds)."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        loop=LOOPS.get(args.loop, args.loop),
        http=args.http,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    prepare_process()
    server.run()
