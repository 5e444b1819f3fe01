"""Start each server in its own process, drive the load generator at it, collect results.

Every run gets a fresh server process (so idle RSS is a clean baseline), pinned to one
core, and a load generator pinned to the other. Repetitions interleave the servers, so
slow drift on a shared machine hits all of them alike.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Server:
    """How to start one benchmarked server."""

    module: str
    env: dict[str, str] = field(default_factory=dict)
    loop: str = "asyncio"
    http: str = "h11"
    args: tuple[str, ...] = ()
    cap_s: float | None = None  # its own time limit per run, instead of the default


@dataclass(frozen=True)
class Level:
    """One load: `streams` concurrent streams of `chunks` chunks at a pace."""

    streams: int
    chunks: int = 100
    delay_ms: float = 20.0
    first_delay_ms: float = 20.0
    checkpoints: tuple[int, ...] = ()


SERVERS: dict[str, Server] = {
    "floor": Server("bench.floor"),
    # The floor again under another name: measured against the floor, it shows how far
    # the method itself moves a ratio (an A/A check), which should be 1.00.
    "floor/again": Server("bench.floor"),
    "gateway": Server("bench.gateway", {"GEMINI_SSE_SEPARATORS": "false"}),
    "gateway+sep": Server("bench.gateway", {"GEMINI_SSE_SEPARATORS": "true"}),
    # It cannot finish 1,000 streams of 100 chunks in under ~60 s (its threadpool tops out
    # near 1,900 tokens/s): it is measured over 30 s and its open streams counted.
    "original": Server("bench.original", cap_s=30.0),
    # The other loop and HTTP parser, to choose serve()'s default by measurement.
    "floor/uvloop": Server("bench.floor", loop="uvloop", http="httptools"),
    "gateway/uvloop": Server(
        "bench.gateway", {"GEMINI_SSE_SEPARATORS": "false"}, loop="uvloop", http="httptools"
    ),
    # uvloop's own server, without serve()'s batched accepts (docs/benchmarks.md, "uvloop").
    "floor/uvloop-own-accept": Server("bench.floor", loop="uvloop-own-accept", http="httptools"),
    # CPython's default collector thresholds instead of serve.py's (gc.freeze() either way).
    "gateway/gc-default": Server(
        "bench.gateway", {"GEMINI_SSE_SEPARATORS": "false"}, args=("--gc-thresholds", "700,10,10")
    ),
    "floor/gc-default": Server("bench.floor", args=("--gc-thresholds", "700,10,10")),
}

LEVELS: dict[str, Level] = {
    "50": Level(50),
    "200": Level(200),
    "1000": Level(1000),
    "2000": Level(2000),
    "burst": Level(200, delay_ms=0, first_delay_ms=0),
    "long": Level(1, chunks=10_000, delay_ms=0, first_delay_ms=0, checkpoints=(1000, 5500, 10_000)),
    # One chunk per stream: CPU per token is then CPU per stream (accept, parse, route,
    # start, finish). Not in the default run.
    "setup": Level(500, chunks=1, delay_ms=0, first_delay_ms=0),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pinned(cpu: int | None) -> Callable[[], None] | None:
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def _server_env(server: Server, level: Level) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEMINI_SSE_")}
    env.update(
        {
            "GEMINI_SSE_PROVIDER": "fake",
            "GEMINI_SSE_FAKE_CHUNKS": str(level.chunks),
            "GEMINI_SSE_FAKE_DELAY_MS": str(level.delay_ms),
            "GEMINI_SSE_FAKE_FIRST_DELAY_MS": str(level.first_delay_ms),
            "GEMINI_SSE_MAX_STREAMS": "10000",
            "GEMINI_SSE_LOG_LEVEL": "warning",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    env.update(server.env)
    return env


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError("server did not start")


def _probe(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            status: int = r.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _cap(name: str, cap_s: float) -> float:
    """How long `name`'s streams may run before they are cut: its own limit, or `cap_s`."""
    own = SERVERS[name].cap_s
    return own if own is not None else cap_s


def _start_server(
    name: str, level_name: str, port: int, logs: Path, cpu: int | None
) -> tuple[subprocess.Popen[bytes], Path]:
    server = SERVERS[name]
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name.replace('/', '_')}-{level_name}-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", server.module, "--port", str(port)]
            + ["--loop", server.loop, "--http", server.http, *server.args],
            cwd=ROOT,
            env=_server_env(server, LEVELS[level_name]),
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_pinned(cpu),
        )
    return proc, log


def _start_loadgen(
    name: str,
    level: Level,
    port: int,
    pid: int,
    cap_s: float,
    cpu: int | None,
    start_at: float | None = None,
) -> subprocess.Popen[bytes]:
    job = {
        "port": port,
        "pid": pid,
        "streams": level.streams,
        "chunks": level.chunks,
        "first_delay_ms": level.first_delay_ms,
        "delay_ms": level.delay_ms,
        "cap_s": _cap(name, cap_s),
        "checkpoints": list(level.checkpoints),
        "start_at": start_at,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "bench.loadgen", json.dumps(job)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_pinned(cpu),
    )


def _result(
    name: str,
    port: int,
    cap_s: float,
    server: subprocess.Popen[bytes],
    loadgen: subprocess.Popen[bytes],
) -> dict[str, Any]:
    """The load generator's result, once it is done, with what the server says after."""
    out, err = loadgen.communicate(timeout=_cap(name, cap_s) + 120)
    if loadgen.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{err.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(out)
    if name.startswith("gateway"):
        result["metrics_endpoint"] = _probe(port, "/metrics")
    result["server_exit"] = server.poll()
    return result


def run_one(
    name: str,
    level_name: str,
    *,
    cap_s: float,
    pin: bool,
    logs: Path,
    profile: Path | None = None,
) -> dict[str, Any]:
    """One fresh server process under one load level; the load generator's result.

    With `profile`, py-spy samples the server during the load (collapsed stacks there).
    """
    level = LEVELS[level_name]
    port = _free_port()
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[0], cpus[1]) if pin and len(cpus) >= 2 else (None, None)
    proc, log = _start_server(name, level_name, port, logs, server_cpu)
    spy: subprocess.Popen[bytes] | None = None
    try:
        _wait_healthy(port, proc, log)
        if profile is not None:
            spy = _start_profiler(proc.pid, profile)
        loadgen = _start_loadgen(name, level, port, proc.pid, cap_s, client_cpu)
        try:
            return _result(name, port, cap_s, proc, loadgen)
        finally:
            if loadgen.poll() is None:
                loadgen.kill()
                loadgen.wait()
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
        _stop(proc)


def run_pair(
    names: tuple[str, str], level_name: str, *, cap_s: float, pin: bool, logs: Path
) -> list[dict[str, Any]]:
    """Two fresh servers under the same load at the same time, each with a load
    generator of its own: both are measured through the same stretch of the machine's
    speed, which on a shared host moves by 20-40% from one run to the next. They compete
    for the cores, so what this gives is their ratio, not their figures alone.

    With `pin`, each core holds one server and the other's load generator (the first
    server on the first core): the same share for both, and which core each gets
    follows the order of `names`, which the caller alternates. Unpinned, the scheduler
    places them, and a lightly loaded server tends to stay on the core it woke on.
    """
    level = LEVELS[level_name]
    ports = [_free_port() for _ in names]
    while ports[1] == ports[0]:
        ports[1] = _free_port()
    cpus = sorted(os.sched_getaffinity(0))
    cores: list[int | None] = [cpus[0], cpus[1]] if pin and len(cpus) >= 2 else [None, None]
    servers = [
        _start_server(n, level_name, p, logs, core)
        for n, p, core in zip(names, ports, cores, strict=True)
    ]
    loadgens: list[subprocess.Popen[bytes]] = []
    try:
        for (proc, log), port in zip(servers, ports, strict=True):
            _wait_healthy(port, proc, log)
        # Both open their streams at once, after their warm-ups (a second or so).
        start_at = time.time() + 3.0
        loadgens = [
            _start_loadgen(n, level, p, proc.pid, cap_s, core, start_at)
            for n, p, (proc, _), core in zip(names, ports, servers, cores[::-1], strict=True)
        ]
        return [
            _result(n, p, cap_s, proc, lg)
            for n, p, (proc, _), lg in zip(names, ports, servers, loadgens, strict=True)
        ]
    finally:
        for loadgen in loadgens:
            if loadgen.poll() is None:
                loadgen.kill()
                loadgen.wait()
        for proc, _ in servers:
            _stop(proc)


def _start_profiler(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy on the server (paused per sample: exact stacks), only samples holding the GIL."""
    spy = subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid)]
        + ["--rate", "250", "--format", "raw", "--function", "--gil"]
        + ["--output", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached before the load starts
    return spy


def run_all(
    servers: list[str],
    levels: list[str],
    *,
    reps: int,
    cap_s: float,
    pin: bool,
    logs: Path,
    progress: Callable[[str], None],
    only: dict[str, list[str]] | None = None,
    bracket: str | None = None,
    side_by_side: str | None = None,
) -> list[dict[str, Any]]:
    """Every (rep, level, server), servers rotated per repetition.

    `only` limits some servers to some levels (server -> levels). With `bracket` (the
    server every ratio is taken to), that server runs first and again last at each level
    of each repetition, the second run marked `"bracket": "after"`: a ratio is then taken
    to the mean of the two, which cancels drift of the machine's speed over the level's
    runs (on a shared host a whole stretch of runs can be 20-40% slower for all).
    With `side_by_side` (that server's name), each other server runs at the same time as
    a run of its own of that one (`run_pair`), which is kept with it as `"pair"`.
    """
    results: list[dict[str, Any]] = []
    logs.mkdir(parents=True, exist_ok=True)
    if side_by_side is not None:
        return _run_side_by_side(
            servers,
            levels,
            side_by_side,
            reps=reps,
            cap_s=cap_s,
            pin=pin,
            logs=logs,
            progress=progress,
            only=only,
        )
    bracketing = bracket in servers and len(servers) > 1
    others = [name for name in servers if name != bracket] if bracketing else servers
    for rep in range(reps):
        order = _rotated(others, rep)
        if bracketing:
            order = [bracket, *order, bracket]
        for level in levels:
            for i, name in enumerate(order):
                if only and name in only and level not in only[name]:
                    continue
                started = time.monotonic()
                result = run_one(name, level, cap_s=cap_s, pin=pin, logs=logs)
                took = time.monotonic() - started
                mark = {"bracket": "after"} if name == bracket and i > 0 else {}
                results.append({"rep": rep, "level": level, "server": name, **mark, **result})
                progress(
                    f"rep {rep + 1}/{reps} {level:>5} {name:<15} {took:5.1f}s "
                    f"cpu/token {result['cpu_us_per_token']} us, "
                    f"{result['tokens_per_s']} tok/s, ok {result['ok']}/{result['streams']}, "
                    f"failures {result['failures'] or 0}, unfinished {result['unfinished']}, "
                    f"client cpu {result['client_cpu_util']}"
                )
    return results


def _run_side_by_side(
    servers: list[str],
    levels: list[str],
    base: str,
    *,
    reps: int,
    cap_s: float,
    pin: bool,
    logs: Path,
    progress: Callable[[str], None],
    only: dict[str, list[str]] | None,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    others = [name for name in servers if name != base]
    for rep in range(reps):
        for level in levels:
            base_kept = False
            for name in _rotated(others, rep):
                if only and name in only and level not in only[name]:
                    continue
                # Which of the two starts first alternates, lest it favour one.
                pair = (name, base) if rep % 2 else (base, name)
                started = time.monotonic()
                by_name = dict(
                    zip(pair, run_pair(pair, level, cap_s=cap_s, pin=pin, logs=logs), strict=True)
                )
                took = time.monotonic() - started
                mine, theirs = by_name[name], by_name[base]
                results.append({"rep": rep, "level": level, "server": name, **mine, "pair": theirs})
                if not base_kept:  # the base's own row: its run beside the first server
                    results.append({"rep": rep, "level": level, "server": base, **theirs})
                    base_kept = True
                progress(
                    f"rep {rep + 1}/{reps} {level:>5} {name:<15} beside {base} {took:5.1f}s "
                    f"cpu/token {mine['cpu_us_per_token']} us / {theirs['cpu_us_per_token']} us, "
                    f"ok {mine['ok']}/{mine['streams']} and {theirs['ok']}/{theirs['streams']}, "
                    f"failures {mine['failures'] or 0} / {theirs['failures'] or 0}"
                )
    return results


def _rotated(names: list[str], rep: int) -> list[str]:
    """`names` rotated by `rep`, so that no server always runs first."""
    if not names:
        return names
    k = rep % len(names)
    return names[k:] + names[:k]


def level_table() -> dict[str, dict[str, Any]]:
    return {name: asdict(level) for name, level in LEVELS.items()}
