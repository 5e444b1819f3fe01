"""Memory the gateway keeps once a burst of large answers is over, and who keeps it.

Each variant gets a fresh gateway (`gemini-sse serve`, the simulated model, unpaced) as a
child process. Its RSS is read at rest after a few short warm-up streams; then `--streams`
answers of `--chunks` x `--chunk-chars` characters run, `--concurrency` at a time, read by
httpx; `--settle` seconds after `/healthz` says no stream is left, RSS is read again (once
per `--rounds`). Last, the gateway is asked to run a full collection, then to trim glibc's
heap (`malloc_trim(0)`), and RSS is read after each. What only `gc.collect()` gives back
was held by reference cycles; what only `malloc_trim(0)` gives back had been freed by
Python and kept by the C allocator. Every reading also says where the bytes are: live
allocations (glibc's `mallinfo2()` in use, pymalloc's allocated blocks), glibc's free heap,
pymalloc's arenas.

Variants:

- `full`: `POST /v1/stream`, every answer read to its end;
- `half`: the same, each client leaving halfway through its answer;
- `resumable`: `POST /v1/streams`, then its `events_url` read to the end. Finished
  streams stay in the memory store until `GEMINI_SSE_STREAM_TTL_S` (as designed), so
  RSS is read once more after they have expired and been swept (`--ttl`, 60 s here by
  default: longer than a burst, so that the first reading has every stream stored);
- `resumable-half`: the same, each reader leaving halfway (the answer is produced and
  stored all the same: a producer does not depend on its readers).

    python -m bench.retention                                   # all four, 4-6 minutes
    python -m bench.retention --variants full,half --concurrency 200
    python -m bench.retention --variants full --rounds 2 --env MALLOC_ARENA_MAX=2
    python -m bench.retention --report bench/results/retention-<time>.json

The child is `gemini-sse serve` itself (`gemini_sse._cli.main(["serve"])`), started
through this module so that it answers two signals with a JSON report: SIGUSR1 reads
RSS, `mallinfo2()` and pymalloc's arenas; SIGUSR2 then counts and frees what
`gc.collect()` finds, reads again, calls `malloc_trim(0)`, and reads again. The handlers
are inert until signalled. `--tracemalloc` adds tracemalloc's totals and top sites (a
burst runs 3-5x slower, and pymalloc's figures are hidden by its hooks). Linux and glibc
only. Tables on stdout; everything in bench/results/retention-<time>.json, the gateways'
logs next to it. Figures and their reading: docs/benchmarks.md, "Memory after a burst".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import functools
import gc
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ._proc import rss_bytes
from .report import environment
from .run import ROOT, _free_port, _wait_healthy

VARIANTS = ("full", "half", "resumable", "resumable-half")
_MB = 1024 * 1024
_TOKEN = b"event: token"
# Set in the child's environment: where it writes its reports.
_REPORT_ENV = "BENCH_RETENTION_REPORT"


# --- the child: the gateway, answering SIGUSR1 / SIGUSR2 with a report ----------------


class _MallInfo2(ctypes.Structure):
    # struct mallinfo2 (glibc >= 2.33), summed over every malloc arena.
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes of heap obtained with brk/sbrk and in non-main arenas
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in chunks obtained with mmap (large allocations)
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes handed out from the heaps
            "fordblks",  # bytes free in the heaps: kept by malloc, not given back
            "keepcost",  # free bytes at the top of the main heap (what brk could trim)
        )
    ]


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


def _pymalloc() -> dict[str, int]:
    """pymalloc's arenas, parsed from `sys._debugmallocstats()` (it writes to fd 2)."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    wanted = {
        "arenas allocated current": "arenas",
        "arenas highwater mark": "arenas_highwater",
        "bytes in allocated blocks": "allocated",
    }
    found: dict[str, int] = {}
    for line in text.splitlines():
        for label, key in wanted.items():
            if line.startswith(f"# {label}"):
                found[key] = int(line.rsplit("=", 1)[1].replace(",", ""))
    return found


def _snapshot(libc: ctypes.CDLL) -> dict[str, Any]:
    """What the process holds now, as the kernel, glibc, pymalloc and tracemalloc see it."""
    info = libc.mallinfo2()
    with open("/proc/self/status") as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    snap: dict[str, Any] = {
        "rss": rss_bytes(os.getpid()),
        "threads": threads,
        "malloc_heap": info.arena,
        "malloc_heap_free": info.fordblks,
        "malloc_mmapped": info.hblkhd,
        "malloc_in_use": info.uordblks + info.hblkhd,
        "pymalloc": _pymalloc(),
    }
    if tracemalloc.is_tracing():
        snap["traced"] = tracemalloc.get_traced_memory()[0]
    return snap


def _collect_counting(top: int) -> tuple[int, float, list[tuple[str, int]]]:
    """`gc.collect()`: how many unreachable objects it found, in how many ms, of which
    types (the commonest `top`)."""
    gc.set_debug(gc.DEBUG_SAVEALL)  # keep them in gc.garbage to be counted
    try:
        started = time.perf_counter()
        found = gc.collect()
        took_ms = (time.perf_counter() - started) * 1000
    finally:
        gc.set_debug(0)
    counts = Counter(type(o).__qualname__ for o in gc.garbage)
    gc.garbage.clear()
    gc.collect()  # now free them
    return found, round(took_ms, 1), counts.most_common(top)


def _tracemalloc_top(top: int) -> list[tuple[str, int]]:
    if not tracemalloc.is_tracing():
        return []
    stats = tracemalloc.take_snapshot().statistics("lineno")
    return [(str(s.traceback[0]), s.size) for s in stats[:top]]


def _report(path: Path, clean: bool, tracing: bool) -> None:
    libc = _libc()
    report: dict[str, Any] = {"look": _snapshot(libc)}
    if tracing:
        report["traced_top"] = _tracemalloc_top(12)
    if clean:
        report["collected"], report["gc_ms"], report["garbage"] = _collect_counting(12)
        report["after_gc"] = _snapshot(libc)
        if tracing:
            report["traced_top_after_gc"] = _tracemalloc_top(12)
        started = time.perf_counter()
        libc.malloc_trim(0)
        report["trim_ms"] = round((time.perf_counter() - started) * 1000, 1)
        report["after_trim"] = _snapshot(libc)
    # Written whole, then renamed: the parent never reads half a report.
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(report))
    partial.replace(path)


def serve_probed() -> int:
    """`gemini-sse serve`, plus the two report signals. Runs in the child."""
    from gemini_sse._cli import main as cli

    path = Path(os.environ[_REPORT_ENV])
    tracing = bool(os.environ.get("PYTHONTRACEMALLOC"))
    # Python runs these handlers on the main thread between bytecodes (the event loop's
    # select() returns on EINTR first), so they see the heap in a consistent state.
    signal.signal(signal.SIGUSR1, lambda *_: _report(path, False, tracing))
    signal.signal(signal.SIGUSR2, lambda *_: _report(path, True, tracing))
    return cli(["serve"])


# --- the parent: start the child, drive the bursts, read the reports -------------------


@dataclass(frozen=True)
class Config:
    """One run of the tool: sizes, pace and what the child gets in its environment."""

    streams: int = 200
    concurrency: int = 20
    chunks: int = 1000
    chunk_chars: int = 800
    rounds: int = 1
    ttl_s: float = 60.0
    settle_s: float = 5.0  # after the last stream, before RSS is read
    tracemalloc: bool = False
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Burst:
    """What the clients of one burst saw."""

    ok: int = 0
    left_early: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # by exception type
    tokens: int = 0
    bytes: int = 0
    seconds: float = 0.0
    idle_after_s: float = 0.0  # from the last client's end to no live stream
    peak_rss: int = 0  # the gateway's, sampled every 0.1 s until no stream was live


class Child:
    """The gateway in a child process, and its reports."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, report: Path) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self._report = report

    def probe(self, clean: bool = False, timeout: float = 60.0) -> dict[str, Any]:
        """Ask the child for a report (SIGUSR2: with gc.collect() and malloc_trim(0))."""
        self._report.unlink(missing_ok=True)
        self.proc.send_signal(signal.SIGUSR2 if clean else signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while not self._report.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the gateway did not report")
            time.sleep(0.02)
        report: dict[str, Any] = json.loads(self._report.read_text())
        return report


@contextlib.contextmanager
def start_child(config: Config, logs: Path) -> Iterator[Child]:
    """A fresh gateway on a free port, stopped (SIGTERM, then SIGKILL) at the end."""
    port = _free_port()
    report = logs / f"report-{port}.json"
    log = logs / f"gateway-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEMINI_SSE_")}
    env.update(
        {
            "GEMINI_SSE_PROVIDER": "fake",
            "GEMINI_SSE_FAKE_CHUNKS": str(config.chunks),
            "GEMINI_SSE_FAKE_CHUNK_CHARS": str(config.chunk_chars),
            "GEMINI_SSE_FAKE_DELAY_MS": "0",
            "GEMINI_SSE_FAKE_FIRST_DELAY_MS": "0",
            "GEMINI_SSE_LOG_LEVEL": "warning",
            "GEMINI_SSE_HOST": "127.0.0.1",
            "GEMINI_SSE_PORT": str(port),
            "GEMINI_SSE_STREAM_TTL_S": str(config.ttl_s),
            "PYTHONDONTWRITEBYTECODE": "1",
            _REPORT_ENV: str(report),
        }
    )
    if config.tracemalloc:
        env["PYTHONTRACEMALLOC"] = "1"
    env.update(config.env)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.retention", "--serve"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(port, proc, log)
        yield Child(proc, port, report)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


async def _read(response: httpx.Response, burst: Burst, stop_after: int | None) -> bool:
    """Read an SSE response, counting `token` events; False if it was left early."""
    tail = b""
    tokens = 0
    last = b""
    async for data in response.aiter_raw():
        burst.bytes += len(data)
        # A marker may straddle two reads; the tail is shorter than the marker, so
        # nothing is counted twice.
        tokens += (tail + data).count(_TOKEN)
        tail = data[-(len(_TOKEN) - 1) :]
        last = (last + data)[-4096:]
        if stop_after is not None and tokens >= stop_after:
            burst.tokens += tokens
            return False
    burst.tokens += tokens
    if b"event: done" not in last:
        raise RuntimeError("the stream ended without `done`")
    return True


async def _one(
    client: httpx.AsyncClient, variant: str, index: int, config: Config, burst: Burst
) -> None:
    body = {"message": f"Stream {index}: tell me everything about server-sent events."}
    stop_after = config.chunks // 2 if variant.endswith("half") else None
    try:
        if variant.startswith("resumable"):
            created = await client.post("/v1/streams", json=body)
            created.raise_for_status()
            request = client.build_request("GET", created.json()["events_url"])
        else:
            request = client.build_request("POST", "/v1/stream", json=body)
        response = await client.send(request, stream=True)
        try:
            response.raise_for_status()
            if await _read(response, burst, stop_after):
                burst.ok += 1
            else:
                burst.left_early += 1
        finally:
            await response.aclose()  # before its end: the connection is closed, not reused
    except Exception as exc:
        name = type(exc).__name__
        burst.failed[name] = burst.failed.get(name, 0) + 1


async def run_burst(url: str, pid: int, variant: str, config: Config) -> Burst:
    """`config.streams` answers, `config.concurrency` at a time."""
    burst = Burst()

    async def sample() -> None:
        while True:
            burst.peak_rss = max(burst.peak_rss, rss_bytes(pid))
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    # A connection per request: a kept-alive one may be closed by the server while a
    # busy burst leaves it idle, and its reuse then fails for reasons of no interest here.
    limits = httpx.Limits(max_connections=config.concurrency * 2, max_keepalive_connections=0)
    timeout = httpx.Timeout(60.0, connect=10.0)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        gate = asyncio.Semaphore(config.concurrency)

        async def gated(index: int) -> None:
            async with gate:
                await _one(client, variant, index, config, burst)

        await asyncio.gather(*(gated(i) for i in range(config.streams)))
    burst.seconds = round(time.monotonic() - started, 1)
    burst.idle_after_s = await _wait_idle(url)
    sampler.cancel()
    return burst


async def _warm_up(url: str) -> None:
    """A few short streams, so that first-use costs are in the baseline."""
    body = {"message": "warm-up", "simulation": {"chunks": 5}}
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        for _ in range(5):
            async with client.stream("POST", "/v1/stream", json=body) as response:
                async for _data in response.aiter_raw():
                    pass


async def _wait_idle(url: str) -> float:
    """Until `/healthz` says no stream is live; how long that took."""
    started = time.monotonic()
    # Detached producers whose readers left run unpaced: the gateway may answer slowly.
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        while (await client.get("/healthz")).json()["streams"]:
            if time.monotonic() - started > 120.0:
                raise RuntimeError("streams were still live two minutes after the burst")
            await asyncio.sleep(0.1)
    return round(time.monotonic() - started, 2)


def run_variant(variant: str, config: Config, logs: Path) -> dict[str, Any]:
    """One fresh gateway: baseline, the bursts, then collector and allocator."""
    result: dict[str, Any] = {"variant": variant, "rounds": []}
    with start_child(config, logs) as child:
        asyncio.run(_warm_up(child.url))
        time.sleep(config.settle_s)
        result["baseline"] = child.probe()
        for _ in range(config.rounds):
            burst = asyncio.run(run_burst(child.url, child.proc.pid, variant, config))
            time.sleep(config.settle_s)
            result["rounds"].append({**asdict(burst), **child.probe()})
        if variant.startswith("resumable"):
            # The store sweeps every max(1, ttl / 10) seconds once a stream has expired.
            time.sleep(config.ttl_s + max(1.0, config.ttl_s / 10) + 1.0)
            result["expired"] = child.probe()
        result["final"] = child.probe(clean=True)
    return result


# --- output ----------------------------------------------------------------------------


def _mb(n: float) -> str:
    return f"{n / _MB:,.0f}"


def _delta(n: float, base: float) -> str:
    return f"{_mb(n)} ({(n - base) / _MB:+,.0f})"


def _live(s: dict[str, Any]) -> int:
    """Bytes Python's objects (and C extensions) hold: glibc's in use plus pymalloc's."""
    allocated: int = s["pymalloc"].get("allocated", 0)
    return int(s["malloc_in_use"]) + allocated


def _steps(r: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    steps = [("baseline", r["baseline"]["look"])]
    steps += [(f"after burst {i + 1}", x["look"]) for i, x in enumerate(r["rounds"])]
    if "expired" in r:
        steps.append(("streams expired", r["expired"]["look"]))
    steps.append(("gc.collect()", r["final"]["after_gc"]))
    steps.append(("malloc_trim(0)", r["final"]["after_trim"]))
    return steps


def markdown(document: dict[str, Any]) -> str:
    """RSS per variant and step, then where the bytes were at each step."""
    c = document["config"]
    lines = [
        f"{c['streams']} streams of {c['chunks']} x {c['chunk_chars']} characters, "
        f"{c['concurrency']} at a time; rounds: {c['rounds']}; environment: {c['env'] or '-'}",
        "",
        "| variant | baseline | after the burst(s) | streams expired "
        "| then gc.collect() | then malloc_trim(0) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in document["results"]:
        base = r["baseline"]["look"]["rss"]
        rounds = " / ".join(_delta(x["look"]["rss"], base) for x in r["rounds"])
        expired = _delta(r["expired"]["look"]["rss"], base) if "expired" in r else "-"
        final = r["final"]
        lines.append(
            f"| {r['variant']} | {_mb(base)} | {rounds} | {expired} "
            f"| {_delta(final['after_gc']['rss'], base)} "
            f"| {_delta(final['after_trim']['rss'], base)} |"
        )
    lines += [
        "",
        "| variant | step | RSS | live | glibc heap | of it free | pymalloc arenas "
        "| of them in use | traced |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in document["results"]:
        for name, s in _steps(r):
            traced = _mb(s["traced"]) if "traced" in s else "-"
            pymalloc = s["pymalloc"]
            # Under tracemalloc, pymalloc reports nothing (its hooks wrap the allocator).
            arenas = _mb(pymalloc["arenas"] * _MB) if pymalloc else "-"
            in_use = _mb(pymalloc["allocated"]) if pymalloc else "-"
            lines.append(
                f"| {r['variant']} | {name} | {_mb(s['rss'])} | {_mb(_live(s))} "
                f"| {_mb(s['malloc_heap'])} | {_mb(s['malloc_heap_free'])} "
                f"| {arenas} | {in_use} | {traced} |"
            )
    lines += [
        "",
        "MiB; in parentheses, the change from the baseline. Live: bytes allocated and not "
        "freed (glibc's `mallinfo2()` uordblks + hblkhd, plus pymalloc's allocated blocks). "
        "glibc heap: `mallinfo2()` arena, of it free: fordblks. pymalloc's arenas are 1 MiB "
        "each (`sys._debugmallocstats()`).",
        "",
    ]
    for r in document["results"]:
        final = r["final"]
        for i, x in enumerate(r["rounds"]):
            failed = x["failed"] or 0
            lines.append(
                f"- {r['variant']}, burst {i + 1}: {x['ok']} read to the end, "
                f"{x['left_early']} left halfway, failed {failed}; {x['tokens']:,} tokens, "
                f"{x['bytes'] / _MB:,.0f} MiB in {x['seconds']} s; peak RSS "
                f"{_mb(x['peak_rss'])} MiB; no stream left {x['idle_after_s']} s after the last "
                "client"
            )
            if r["variant"].startswith("resumable") and x["seconds"] >= c["ttl_s"]:
                lines.append(
                    "  (longer than the streams' TTL: the first ones had expired before RSS "
                    "was read; raise --ttl)"
                )
        lines.append(
            f"- {r['variant']}: gc.collect() found {final['collected']:,} unreachable objects "
            f"({final['gc_ms']} ms); malloc_trim(0) took {final['trim_ms']} ms; pymalloc's "
            f"high-water mark: {final['look']['pymalloc'].get('arenas_highwater', 0)} arenas; "
            f"threads: {final['look']['threads']}"
        )
        garbage = ", ".join(f"{name} {n:,}" for name, n in final["garbage"][:8])
        lines.append(f"- {r['variant']}: unreachable, by type: {garbage}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retention", description=__doc__)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {list(VARIANTS)}")
    parser.add_argument("--streams", type=int, default=Config.streams)
    parser.add_argument("--concurrency", type=int, default=Config.concurrency)
    parser.add_argument("--chunks", type=int, default=Config.chunks, help="chunks per answer")
    parser.add_argument("--chunk-chars", type=int, default=Config.chunk_chars)
    parser.add_argument("--rounds", type=int, default=Config.rounds, help="bursts per gateway")
    parser.add_argument(
        "--settle",
        type=float,
        default=Config.settle_s,
        help="seconds between the last stream's end and the reading of RSS",
    )
    parser.add_argument(
        "--ttl", type=float, default=Config.ttl_s, help="GEMINI_SSE_STREAM_TTL_S (resumable)"
    )
    parser.add_argument(
        "--tracemalloc", action="store_true", help="trace allocations in the gateway (slow)"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="more environment for the gateway (MALLOC_ARENA_MAX=2, GEMINI_SSE_...)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--report", type=Path, help="only print the tables of a results file")
    args = parser.parse_args()
    if args.serve:
        return serve_probed()
    if args.report:
        print(markdown(json.loads(args.report.read_text())))
        return 0

    variants = args.variants.split(",")
    for name in variants:
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}")
    env = dict(item.split("=", 1) for item in args.env)
    config = Config(
        streams=args.streams,
        concurrency=args.concurrency,
        chunks=args.chunks,
        chunk_chars=args.chunk_chars,
        rounds=args.rounds,
        ttl_s=args.ttl,
        settle_s=args.settle,
        tracemalloc=args.tracemalloc,
        env=env,
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    started = time.monotonic()
    results = []
    logs = args.out / f"logs-retention-{stamp}"
    logs.mkdir(parents=True, exist_ok=True)
    for variant in variants:
        results.append(run_variant(variant, config, logs))
        print(f"{variant}: done", file=sys.stderr, flush=True)
    document = {
        "command": " ".join(["python -m bench.retention", *sys.argv[1:]]),
        "took_s": round(time.monotonic() - started, 1),
        "environment": {**environment(), "libc": " ".join(platform.libc_ver())},
        "config": asdict(config),
        "results": results,
    }
    path = args.out / f"retention-{stamp}.json"
    path.write_text(json.dumps(document, indent=1))
    print(markdown(document))
    print(f"\nresults: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
