"""The load generator: N concurrent SSE streams against one server, in its own process.

It speaks HTTP/1.1 over raw asyncio protocols (uvloop when installed) and does the least
per read that still measures what matters: it cuts the bytes at the last complete frame
(`\\n\\n`) and counts `event: token` frames in them. A token's JSON text can never hold a
raw newline, so the count is exact; chunked-encoding size lines sit between frames and
never look like one. Every read is timestamped once: tokens that arrive in the same read
have a gap of zero between them, which is what the client saw.

It also reads the server's CPU time and RSS from /proc (the server's pid is given), so
the measured window is the same for the load and for the server's accounting, and its
own CPU time, to show the client was not the bottleneck.

    python -m bench.loadgen '{"port": 8000, "pid": 1234, "streams": 50, ...}'

One JSON object goes to stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ._proc import cpu_seconds, raise_fd_limit, rss_bytes, runqueue_wait_seconds, steal_seconds

_TOKEN = b"event: token\n"
_DONE = b"event: done\n"
_ERROR = b"event: error\n"
_LAST_CHUNK = b"0\r\n\r\n"
# Not loop.time(): uvloop's clock ticks in whole milliseconds, once per loop iteration.
_clock = time.monotonic


@dataclass
class Job:
    """One measured run against one server."""

    port: int
    pid: int  # the server's, for CPU and RSS
    streams: int  # concurrent streams, all started at once
    chunks: int  # tokens each stream must deliver
    first_delay_ms: float  # the model's own pause before its first chunk
    delay_ms: float  # the model's nominal gap between chunks
    cap_s: float = 60.0  # streams still open after this long are cut and counted
    warmup: int = 10  # short streams before the idle RSS is read
    path: str = "/v1/stream"
    checkpoints: list[int] = field(default_factory=list)  # token counts to read server CPU at
    # Wall-clock time (time.time()) to open the streams at, after the warm-up: two load
    # generators run side by side start together (`run.run_pair`). None: at once.
    start_at: float | None = None


class Run:
    """The shared counters of one run; streams write into them as bytes arrive."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.loop = asyncio.get_running_loop()
        self.tokens = 0
        self.opened = 0
        self.ended = 0
        self.ttft: list[float] = []
        # Where a late first token waited: for the TCP connect, or for the response head.
        self.connected: list[float] = []
        self.headed: list[float] = []
        self.gaps: list[float] = []
        self.outcomes: dict[str, int] = {}
        self.token_counts: dict[int, int] = {}
        self.checkpoints = sorted(job.checkpoints)
        self.cpu_at: list[tuple[int, float, float]] = []
        self.all_done = self.loop.create_future()

    def end(self, stream: Stream, outcome: str) -> None:
        if outcome == "ok" and stream.tokens != self.job.chunks:
            outcome = "token_count_mismatch"
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.token_counts[stream.tokens] = self.token_counts.get(stream.tokens, 0) + 1
        self.ended += 1
        if self.ended == self.job.streams and not self.all_done.done():
            self.all_done.set_result(None)

    def counted(self, n: int) -> None:
        self.tokens += n
        while self.checkpoints and self.tokens >= self.checkpoints[0]:
            self.checkpoints.pop(0)
            self.cpu_at.append((self.tokens, _clock(), cpu_seconds(self.job.pid)))


class Stream(asyncio.Protocol):
    """One SSE stream: write the request, then count and time the frames that arrive."""

    def __init__(self, run: Run, request: bytes, started: float) -> None:
        self.run = run
        self.request = request
        self.started = started
        self.transport: Any = None
        self.status = 0
        self.head = b""
        self.buf = b""
        self.tokens = 0
        self.last = 0.0
        self.terminal: str | None = None
        self.ended = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.run.connected.append(_clock() - self.started)
        if self.ended:  # cut while it was connecting
            transport.close()
            return
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = _clock()
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.head[9:12])
            self.run.headed.append(now - self.started)
            data = self.head[end + 4 :]
            if self.status != 200:
                self.head = data
                self._error_body()
                return
            self.head = b""
            self.run.opened += 1
        elif self.status != 200:
            self.head += data
            self._error_body()
            return
        buf = self.buf + data if self.buf else data
        cut = buf.rfind(b"\n\n") + 2
        if cut > 1:
            frames, buf = buf[:cut], buf[cut:]
            n = frames.count(_TOKEN)
            if n:
                run = self.run
                if self.tokens:
                    run.gaps.append(now - self.last)
                else:
                    run.ttft.append(now - self.started)
                if n > 1:
                    run.gaps.extend([0.0] * (n - 1))
                self.last = now
                self.tokens += n
                run.counted(n)
            if _DONE in frames:
                self.terminal = "ok"
            elif _ERROR in frames:
                self.terminal = _error_code(frames)
        self.buf = buf
        if self.terminal is not None and buf.endswith(_LAST_CHUNK):
            self._end(self.terminal)

    def _error_body(self) -> None:
        # An HTTP error before the stream: the JSON body's `error.code` when it is all here.
        code = "?"
        try:
            code = json.loads(self.head)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            if b"\r\n" not in self.head and len(self.head) < 100_000:
                return  # wait for more of the body (the connection closing ends it too)
        self._end(f"http_{self.status}:{code}")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended:
            if self.status and self.status != 200:
                self._end(f"http_{self.status}")
            else:
                self._end(self.terminal or ("no_terminal" if self.status else "no_response"))

    def _end(self, outcome: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.run.end(self, outcome)
        if self.transport is not None:
            self.transport.close()

    def cut(self) -> None:
        """The run's time is up: count this stream as unfinished and drop it."""
        self._end("unfinished")


def _error_code(frames: bytes) -> str:
    start = frames.find(_ERROR)
    data = frames.find(b"data: ", start)
    end = frames.find(b"\n", data)
    try:
        return str(json.loads(frames[data + 6 : end])["code"])
    except (ValueError, KeyError):
        return "error_event"


def _request(job: Job, index: int, extra: dict[str, Any] | None = None) -> bytes:
    body = json.dumps({"message": f"benchmark stream {index}", **(extra or {})}).encode()
    head = (
        f"POST {job.path} HTTP/1.1\r\nHost: 127.0.0.1:{job.port}\r\n"
        "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _open(run: Run, request: bytes, streams: list[Stream]) -> None:
    stream = Stream(run, request, _clock())
    streams.append(stream)
    try:
        await run.loop.create_connection(lambda: stream, "127.0.0.1", run.job.port)
    except OSError as exc:
        stream._end(f"connect:{type(exc).__name__}")


async def _warm_up(job: Job) -> None:
    """A few short unpaced streams, so the idle RSS counts imports and caches already made."""
    if job.warmup <= 0:
        return
    warm = Job(**{**asdict(job), "streams": job.warmup, "chunks": 5, "checkpoints": []})
    run = Run(warm)
    extra = {"simulation": {"chunks": 5, "delay_ms": 0, "first_delay_ms": 0}}
    streams: list[Stream] = []
    for i in range(job.warmup):
        await _open(run, _request(warm, -1 - i, extra), streams)
    await asyncio.wait_for(run.all_done, timeout=30)
    if run.outcomes != {"ok": job.warmup}:
        raise RuntimeError(f"warm-up failed: {run.outcomes}")


async def _sample_rss(run: Run, samples: list[tuple[int, int]]) -> None:
    """RSS while streams are open and none has ended yet: (rss, streams open)."""
    while run.ended == 0:
        if run.opened:
            samples.append((rss_bytes(run.job.pid), run.opened))
        await asyncio.sleep(0.05)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


async def measure(job: Job) -> dict[str, Any]:
    await _warm_up(job)
    await asyncio.sleep(0.3)
    if job.start_at is not None:
        await asyncio.sleep(max(0.0, job.start_at - time.time()))
    idle_rss = rss_bytes(job.pid)
    run = Run(job)
    samples: list[tuple[int, int]] = []
    sampler = asyncio.create_task(_sample_rss(run, samples))
    streams: list[Stream] = []
    client_cpu0 = time.process_time()
    waits0 = runqueue_wait_seconds(job.pid), runqueue_wait_seconds()
    steal0 = steal_seconds()
    cpu0 = cpu_seconds(job.pid)
    t0 = _clock()
    # All streams start at once: the connects are queued on the loop, none waits for another.
    opens = [asyncio.create_task(_open(run, _request(job, i), streams)) for i in range(job.streams)]
    try:
        await asyncio.wait_for(asyncio.shield(run.all_done), timeout=job.cap_s)
    except TimeoutError:
        for stream in streams:
            stream.cut()
    wall = _clock() - t0
    cpu = cpu_seconds(job.pid) - cpu0
    client_cpu = time.process_time() - client_cpu0
    server_wait = runqueue_wait_seconds(job.pid) - waits0[0]
    client_wait = runqueue_wait_seconds() - waits0[1]
    steal = steal_seconds() - steal0
    end_rss = rss_bytes(job.pid)
    sampler.cancel()
    await asyncio.gather(*opens, return_exceptions=True)

    peak_rss, open_at_peak = max(samples, default=(0, 0))
    first_delay = job.first_delay_ms / 1000
    failures = {k: v for k, v in run.outcomes.items() if k not in ("ok", "unfinished")}
    result: dict[str, Any] = {
        "streams": job.streams,
        "ok": run.outcomes.get("ok", 0),
        "unfinished": run.outcomes.get("unfinished", 0),
        "failures": failures,
        "tokens": run.tokens,
        "wall_s": round(wall, 3),
        "server_cpu_s": round(cpu, 3),
        "client_cpu_util": round(client_cpu / wall, 3) if wall else None,
        # Share of the run the server / client was ready to run but another process had
        # its core: the machine is shared, and wall-clock figures suffer from it.
        "server_runqueue_wait": round(server_wait / wall, 3) if wall else None,
        "client_runqueue_wait": round(client_wait / wall, 3) if wall else None,
        # Share of the machine's CPU time (every core) the hypervisor gave elsewhere.
        "steal": round(steal / (wall * (os.cpu_count() or 1)), 3) if wall else None,
        "tokens_per_s": round(run.tokens / wall, 1) if wall else None,
        "cpu_us_per_token": round(cpu / run.tokens * 1e6, 2) if run.tokens else None,
        "ttft_overhead_ms": {
            "p50": _ms(_pct([t - first_delay for t in run.ttft], 0.50)),
            "p99": _ms(_pct([t - first_delay for t in run.ttft], 0.99)),
            "max": _ms(max(run.ttft, default=first_delay) - first_delay),
        },
        # The first token's wait, split: connected, then the response head, then the token.
        "connect_ms": {q: _ms(_pct(run.connected, v)) for q, v in (("p50", 0.5), ("p99", 0.99))},
        "head_ms": {q: _ms(_pct(run.headed, v)) for q, v in (("p50", 0.5), ("p99", 0.99))},
        "gap_ms": {
            "nominal": job.delay_ms,
            "p50": _ms(_pct(run.gaps, 0.50)),
            "p99": _ms(_pct(run.gaps, 0.99)),
            "max": _ms(max(run.gaps, default=None)),
        },
        "rss": {
            "idle_mb": round(idle_rss / 2**20, 1),
            "peak_open_mb": round(peak_rss / 2**20, 1) if samples else None,
            "open_at_peak": open_at_peak,
            "end_mb": round(end_rss / 2**20, 1),
            "kb_per_stream": (
                round((peak_rss - idle_rss) / open_at_peak / 1024, 1) if open_at_peak else None
            ),
        },
    }
    if run.cpu_at:
        # Server CPU per token between checkpoints: flat if cost does not grow with length.
        result["cpu_us_per_token_between"] = [
            {
                "tokens": f"{a[0]}-{b[0]}",
                "cpu_us_per_token": round((b[2] - a[2]) / (b[0] - a[0]) * 1e6, 2),
            }
            for a, b in zip(run.cpu_at, run.cpu_at[1:], strict=False)
        ]
    return result


def main() -> None:
    job = Job(**json.loads(sys.argv[1]))
    raise_fd_limit()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    print(json.dumps(runner(measure(job))))


if __name__ == "__main__":
    main()
