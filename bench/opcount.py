"""Bytecodes and Python calls per token, counted: a measure that no neighbour can disturb.

    python -m bench.opcount floor gateway [--streams 20] [--chunks 50,150] [--top 20]

Each app runs in-process as in `bench.inprocess`, in a fresh process, once per chunk
count, with a trace function counting every bytecode executed and every Python call
made, by function, from the moment the app is ready. The difference between the two
runs, divided by the tokens it adds, is the cost of one token alone (start-up and
per-stream work cancel out). Timings on a shared machine move by 5-10% between runs;
these counts move by a fraction of a percent. They do not see what the bytecodes cost
(a cache miss, a C call's work), so they tell where the work is, and the clock tells
what it costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from collections import Counter
from types import FrameType
from typing import Any

from .inprocess import _measure, child_env


def _count(app: str, streams: int) -> dict[str, int]:
    """Run `app` under a counting trace; bytecodes and calls by "file:function"."""
    counts: Counter[str] = Counter()

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            counts["ops " + _where(frame)] += 1
        return local

    def on_call(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        counts["calls " + _where(frame)] += 1
        return local

    from gemini_sse.server import serve

    prepare = serve.prepare_process

    def prepare_and_trace() -> None:  # `_measure` calls it once the app is ready
        prepare()
        sys.settrace(on_call)

    serve.prepare_process = prepare_and_trace
    try:
        asyncio.run(_measure(app, streams))
    finally:
        sys.settrace(None)
        serve.prepare_process = prepare
    return dict(counts)


def _where(frame: FrameType) -> str:
    path = frame.f_code.co_filename
    for marker in ("site-packages/", "/src/", "/lib/python"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{frame.f_code.co_name}"


def _per_token(app: str, streams: int, low: int, high: int) -> dict[str, float]:
    runs = []
    for chunks in (low, high):
        env = child_env(chunks, 20.0) | {"PYTHONHASHSEED": "0"}
        command = [sys.executable, "-m", "bench.opcount", app, "--one"]
        command += ["--streams", str(streams)]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    tokens = streams * (high - low)
    keys = set(runs[0]) | set(runs[1])
    return {key: (runs[1].get(key, 0) - runs[0].get(key, 0)) / tokens for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.opcount", description=__doc__)
    parser.add_argument("apps", nargs="+", choices=["floor", "gateway"])
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--chunks", default="50,150", help="the two chunk counts to subtract")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child run
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_count(args.apps[0], args.streams)))
        return
    low, high = (int(n) for n in args.chunks.split(","))
    results = {app: _per_token(app, args.streams, low, high) for app in args.apps}
    first = results[args.apps[0]]
    for app, counts in results.items():
        ops = sum(v for k, v in counts.items() if k.startswith("ops "))
        calls = sum(v for k, v in counts.items() if k.startswith("calls "))
        print(f"{app:8} {ops:7.0f} bytecodes and {calls:5.1f} Python calls per token")
    for app, counts in list(results.items())[1:]:
        print(f"\n{app} less {args.apps[0]}, per token (bytecodes, calls):")
        extra = {k[4:]: v - first.get(k, 0) for k, v in counts.items() if k.startswith("ops ")}
        extra |= {k[4:]: -first[k] for k in first if k.startswith("ops ") and k not in counts}
        for where, ops in sorted(extra.items(), key=lambda item: -abs(item[1]))[: args.top]:
            calls = counts.get("calls " + where, 0) - first.get("calls " + where, 0)
            print(f"  {ops:7.1f} {calls:6.2f}  {where}")


if __name__ == "__main__":
    main()
