"""Tables of a benchmark run: medians over repetitions, ratios to the floor.

A ratio is taken within each repetition (the server against the floor run at the same
level in the same repetition, or the mean of the floor's runs before and after the
others where it was bracketed: `run.run_all`), then the median of those ratios is shown,
so slow drift of a shared machine cancels out. The floor's second runs count in ratios
only; its own rows show its first runs.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from collections import defaultdict
from collections.abc import Sequence
from statistics import median
from typing import Any

from .run import ROOT

PACKAGES = (
    "uvicorn",
    "starlette",
    "sse-starlette",
    "fastapi",
    "langchain-core",
    "pydantic",
    "h11",
    "httptools",
    "uvloop",
)
# The files of the gateway's request path that other work may be changing while we measure.
WATCHED = (
    "src/gemini_sse/server/routes.py",
    "src/gemini_sse/server/sse.py",
    "src/gemini_sse/server/app.py",
    "src/gemini_sse/server/gateway.py",
    "src/gemini_sse/server/streams.py",
    "src/gemini_sse/server/metrics.py",
    "src/gemini_sse/server/pipeline.py",
    "src/gemini_sse/server/encoding.py",
    "src/gemini_sse/server/serve.py",
)


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.rstrip()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def environment() -> dict[str, Any]:
    """Versions, machine and working tree, recorded with every result."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "packages": versions,
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted": [
            line.strip() for line in _git("status", "--porcelain", "--", *WATCHED).splitlines()
        ],
    }


def _get(result: dict[str, Any], path: str) -> float | None:
    value: Any = result
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, int | float) else None


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return median(present) if present else None


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if digits == 0 or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


class Results:
    """Results indexed by (level, server) -> {rep: result}."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.by: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
        # The base server's second run of a level and repetition (`run_all`'s `bracket`).
        self.after: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
        for r in document["results"]:
            kept = self.after if r.get("bracket") == "after" else self.by
            kept[(r["level"], r["server"])][r["rep"]] = r
        self.levels = list(dict.fromkeys(r["level"] for r in document["results"]))
        self.servers = list(dict.fromkeys(r["server"] for r in document["results"]))

    def runs(self, level: str, server: str) -> dict[int, dict[str, Any]]:
        return self.by.get((level, server), {})

    def median(self, level: str, server: str, path: str) -> float | None:
        return _median([_get(r, path) for r in self.runs(level, server).values()])

    def ratios(self, level: str, server: str, path: str, base: str = "floor") -> list[float]:
        """(server / base) within each repetition that has both, in repetition order."""
        ratios: list[float] = []
        for rep, result in sorted(self.runs(level, server).items()):
            mine = _get(result, path)
            if "pair" in result:  # measured side by side with the base (`run.run_pair`)
                theirs = _get(result["pair"], path)
            else:
                theirs = self.base_value(level, base, rep, path)
            if mine is not None and theirs:
                ratios.append(mine / theirs)
        return ratios

    def base_value(self, level: str, base: str, rep: int, path: str) -> float | None:
        """`base`'s figure in repetition `rep`: the mean of its runs before and after the
        others where it was bracketed, else its one run."""
        runs = [self.by.get((level, base), {}).get(rep), self.after.get((level, base), {}).get(rep)]
        values = [v for v in (_get(r, path) for r in runs if r) if v is not None]
        return sum(values) / len(values) if values else None

    def ratio(self, level: str, server: str, path: str, base: str = "floor") -> float | None:
        """Median over repetitions of (server / base) within each repetition."""
        return _median(self.ratios(level, server, path, base))

    def total(self, level: str, server: str, key: str) -> int:
        return sum(r.get(key, 0) for r in self.runs(level, server).values())

    def failures(self, level: str, server: str) -> dict[str, int]:
        merged: dict[str, int] = defaultdict(int)
        for r in self.runs(level, server).values():
            for code, n in r["failures"].items():
                merged[code] += n
        return dict(merged)


def markdown(document: dict[str, Any]) -> str:
    """Every table of docs/benchmarks.md for one results document."""
    res = Results(document)
    base = "floor" if "floor" in res.servers else res.servers[0]
    others = [s for s in res.servers if s != base]
    reps = max((len(v) for v in res.by.values()), default=0)
    env = document["environment"]
    lines = [
        f"Command: `{document['command']}` ({document['took_s']:.0f} s). "
        f"Median of {reps} repetitions; ratios are to `{base}` in the same repetition.",
        "",
        f"Python {env['python']}; "
        + ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
        + f". {env['nproc']} cores: {env['cpu']}; Linux {env['kernel']}. "
        f"Commit {env['commit']}"
        + (f", uncommitted: {', '.join(env['uncommitted'])}" if env["uncommitted"] else "")
        + ".",
        "",
    ]
    metrics_seen = {
        r.get("metrics_endpoint") for r in document["results"] if "metrics_endpoint" in r
    }
    if metrics_seen:
        present = 200 in metrics_seen
        lines += [f"Gateway `/metrics` endpoint present: {'yes' if present else 'no'}.", ""]

    # Headline: CPU per token as a ratio to the floor at every level.
    lines += ["### Server CPU per delivered token, ratio to the floor", ""]
    lines += ["| server | " + " | ".join(res.levels) + " |"]
    lines += ["| --- |" + " ---: |" * len(res.levels)]
    lines += [
        f"| {base} (us/token) | "
        + " | ".join(_fmt(res.median(lvl, base, "cpu_us_per_token")) for lvl in res.levels)
        + " |"
    ]
    for server in others:
        cells = [_fmt(res.ratio(lvl, server, "cpu_us_per_token", base), 2) for lvl in res.levels]
        lines += [f"| {server} | " + " | ".join(cells) + " |"]
    lines += [""]
    # The spread says how far the medians can be trusted: on a shared host one
    # repetition can run 20-40% slower for every server alike, and a ratio less so.
    lines += ["Each repetition's ratio (CPU per token, to the floor of the same repetition):", ""]
    lines += ["| server | " + " | ".join(res.levels) + " |"]
    lines += ["| --- |" + " ---: |" * len(res.levels)]
    for server in others:
        cells = [
            ", ".join(_fmt(r, 2) for r in res.ratios(lvl, server, "cpu_us_per_token", base)) or "-"
            for lvl in res.levels
        ]
        lines += [f"| {server} | " + " | ".join(cells) + " |"]
    lines += [""]

    paced = [lvl for lvl in res.levels if document["levels"][lvl]["delay_ms"] > 0]
    if paced:
        lines += ["### Resident memory per open stream, ratio to the floor", ""]
        lines += ["| server | " + " | ".join(paced) + " |"]
        lines += ["| --- |" + " ---: |" * len(paced)]
        lines += [
            f"| {base} (KB/stream) | "
            + " | ".join(_fmt(res.median(lvl, base, "rss.kb_per_stream"), 0) for lvl in paced)
            + " |"
        ]
        for server in others:
            cells = [_fmt(res.ratio(lvl, server, "rss.kb_per_stream", base), 2) for lvl in paced]
            lines += [f"| {server} | " + " | ".join(cells) + " |"]
        lines += [""]

    if "50" in res.levels and "2000" in res.levels:
        lines += ["### Cost per token at 2000 streams / at 50", ""]
        lines += ["| server | us/token at 50 | at 2000 | 2000 / 50 |"]
        lines += ["| --- | ---: | ---: | ---: |"]
        for server in res.servers:
            low = res.median("50", server, "cpu_us_per_token")
            high = res.median("2000", server, "cpu_us_per_token")
            if low is None or high is None:
                continue
            growth = high / low
            lines += [f"| {server} | {_fmt(low)} | {_fmt(high)} | {_fmt(growth, 2)} |"]
        lines += [""]

    for level in res.levels:
        spec = document["levels"][level]
        pace = f"{spec['delay_ms']:g} ms" if spec["delay_ms"] else "unpaced"
        lines += [
            f"### {level}: {spec['streams']} concurrent streams x {spec['chunks']} chunks, {pace}",
            "",
            "| server | CPU us/token | x floor | tokens/s | x floor | TTFT overhead p50 / p99 ms "
            "| gap p50 / p99 / max ms | KB/stream | ok / failures / unfinished | client CPU "
            "| CPU wait srv / cli | steal |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
        ]
        for server in res.servers:
            if (level, server) not in res.by:
                continue
            failures = res.failures(level, server)
            fail_text = ", ".join(f"{k}: {v}" for k, v in failures.items()) or "0"
            client = max(
                (r["client_cpu_util"] or 0 for r in res.runs(level, server).values()), default=0
            )
            cpu_x = res.ratio(level, server, "cpu_us_per_token", base)
            rate_x = res.ratio(level, server, "tokens_per_s", base)
            lines.append(
                f"| {server} | {_fmt(res.median(level, server, 'cpu_us_per_token'))} "
                f"| {_fmt(cpu_x, 2)} "
                f"| {_fmt(res.median(level, server, 'tokens_per_s'), 0)} "
                f"| {_fmt(rate_x, 2)} "
                f"| {_fmt(res.median(level, server, 'ttft_overhead_ms.p50'))} / "
                f"{_fmt(res.median(level, server, 'ttft_overhead_ms.p99'))} "
                f"| {_fmt(res.median(level, server, 'gap_ms.p50'))} / "
                f"{_fmt(res.median(level, server, 'gap_ms.p99'))} / "
                f"{_fmt(res.median(level, server, 'gap_ms.max'))} "
                f"| {_fmt(res.median(level, server, 'rss.kb_per_stream'), 0)} "
                f"| {res.total(level, server, 'ok')} / {fail_text} / "
                f"{res.total(level, server, 'unfinished')} "
                f"| {client:.0%} "
                f"| {_pct(res.median(level, server, 'server_runqueue_wait'))} / "
                f"{_pct(res.median(level, server, 'client_runqueue_wait'))} "
                f"| {_pct(res.median(level, server, 'steal'))} |"
            )
        lines += [""]
        between = [
            (server, r["cpu_us_per_token_between"])
            for server in res.servers
            for r in res.runs(level, server).values()
            if r.get("cpu_us_per_token_between")
        ]
        if between:
            halves: dict[str, list[float]] = defaultdict(list)
            for server, spans in between:
                if len(spans) >= 2 and spans[0]["cpu_us_per_token"]:
                    halves[server].append(
                        spans[-1]["cpu_us_per_token"] / spans[0]["cpu_us_per_token"]
                    )
            lines += [
                "Server CPU per token in the second half of the stream / in the first half "
                "(1.0: no growth with length): "
                + ", ".join(f"{s} {_fmt(median(g), 2)}" for s, g in halves.items()),
                "",
            ]
    return "\n".join(lines)
