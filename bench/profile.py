"""Profile one server under one load with py-spy, and say where its CPU time goes.

    python -m bench.profile gateway 1000 [--top 25]

Prints the share of samples by layer (the package whose code was running: "self" time)
and the functions with the most inclusive and self time. The collapsed stacks are kept
under bench/results/ for a flame graph.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from pathlib import Path

from .run import LEVELS, ROOT, SERVERS, run_one

# A frame of py-spy's raw output: "function (path/to/module.py:line)".
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*)(?::\d+)?\)$")

# Layers, first match wins, by the file a frame's code lives in.
LAYERS = [
    ("model: simulated _astream", "providers/fake.py"),
    ("gemini_sse pipeline", "server/pipeline.py"),
    ("gemini_sse encoding", "server/encoding.py"),
    ("gemini_sse routes/provider", "gemini_sse/"),
    ("bench floor/original", "bench/"),
    ("langchain_core", "langchain_core/"),
    ("pydantic", "pydantic"),
    ("anyio", "anyio/"),
    ("starlette/fastapi", "starlette/"),
    ("starlette/fastapi", "fastapi/"),
    ("uvicorn", "uvicorn/"),
    ("h11", "h11/"),
    ("asyncio", "asyncio/"),
    ("json", "json/"),
    ("threading/concurrent", "threading.py"),
    ("threading/concurrent", "concurrent/"),
    ("logging", "logging/"),
]


# Stages of a token's way out, innermost first: a sample is charged to the innermost stage
# on its stack, so each stage's share excludes the stages it calls.
STAGES = [
    ("simulated model (its own generator)", ("SimulatedChatModel.",)),
    ("langchain-core astream machinery", ("BaseChatModel.astream",)),
    ("provider wrapper (providers/base.py)", ("LangChainProvider.astream",)),
    ("pipeline (pipeline.py)", ("Generation.events",)),
    ("SSE body: encode (encoding.TypedSSE)", ("TypedSSE.",)),
    ("floor app (bench/floor.py)", ("create_floor.<locals>.app",)),
    ("uvicorn + h11 send", ("RequestResponseCycle.send",)),
    (
        "middleware send wrappers",
        (
            "send_with_id",
            "wrapped_app.<locals>.sender",
            "ServerErrorMiddleware.__call__.<locals>._send",
        ),
    ),
    ("SSE response: send loop, watcher, ticks (sse.py)", ("EventStream.", "Ticker.")),
    ("per-stream: request, routing, admission, tasks", ("run_asgi", "TaskHandle._run_coro")),
]


def _stage(frames: list[tuple[str, str]]) -> str:
    for func, file in reversed(frames):
        where = f"{func} ({file})"
        for name, needles in STAGES:
            if any(needle in where for needle in needles):
                return name
    return "event loop, sockets, other"


def _layer(file: str) -> str:
    for name, needle in LAYERS:
        if needle in file:
            return name
    return "other: " + file.rsplit("/", 1)[-1]


def summarise(collapsed: Path, top: int) -> str:
    """Layers by self time, then functions by inclusive and by self time."""
    self_layer: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    self_func: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = []
        for raw in stack.split(";"):
            match = _FRAME.match(raw)
            frames.append((match["func"], match["file"]) if match else (raw, raw))
        # py-spy lists a thread's frames outermost first; the last is the running one.
        func, file = frames[-1]
        total += count
        stages[_stage(frames)] += count
        self_layer[_layer(file)] += count
        self_func[f"{func} ({file})"] += count
        for name in {f"{f} ({p})" for f, p in frames}:
            inclusive[name] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "| stage of the token path | share |", "| --- | ---: |"]
    lines += [f"| {name} | {n / total:.1%} |" for name, n in stages.most_common()]
    lines += ["", "| layer (self time) | share |", "| --- | ---: |"]
    lines += [f"| {name} | {n / total:.1%} |" for name, n in self_layer.most_common()]
    lines += ["", "| function (inclusive) | share |", "| --- | ---: |"]
    lines += [f"| `{name}` | {n / total:.1%} |" for name, n in inclusive.most_common(top)]
    lines += ["", "| function (self) | share |", "| --- | ---: |"]
    lines += [f"| `{name}` | {n / total:.1%} |" for name, n in self_func.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("server", choices=list(SERVERS))
    parser.add_argument("level", choices=list(LEVELS))
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--cap", type=float, default=40.0)
    parser.add_argument("--summarise", type=Path, help="only summarise these collapsed stacks")
    args = parser.parse_args()
    if args.summarise:
        print(summarise(args.summarise, args.top))
        return
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stacks = out / f"profile-{args.server.replace('/', '_')}-{args.level}-{stamp}.txt"
    result = run_one(
        args.server, args.level, cap_s=args.cap, pin=True, logs=out / "logs", profile=stacks
    )
    print(json.dumps({k: result[k] for k in ("cpu_us_per_token", "tokens_per_s", "failures")}))
    print(summarise(stacks, args.top))
    print(f"\nstacks: {stacks}")


if __name__ == "__main__":
    main()
