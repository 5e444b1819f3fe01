"""The locust kit (loadtest/locustfile.py) run headless against a real gateway on 127.0.0.1."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from .servers import run_process

LOCUSTFILE = Path(__file__).resolve().parent.parent / "loadtest" / "locustfile.py"
LOCUST = Path(sys.executable).parent / "locust"

# A quick simulated model: 10 chunks 5 ms apart, so every user finishes many streams.
FAST_MODEL = {
    "GEMINI_SSE_PROVIDER": "fake",
    "GEMINI_SSE_FAKE_CHUNKS": "10",
    "GEMINI_SSE_FAKE_DELAY_MS": "5",
    "GEMINI_SSE_FAKE_FIRST_DELAY_MS": "5",
    "GEMINI_SSE_LOG_LEVEL": "warning",
}


def run_locust(url: str, csv_prefix: Path, users: int = 4) -> subprocess.CompletedProcess[str]:
    """A few seconds of headless locust with both users; killed if it overstays."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    return subprocess.run(
        [str(LOCUST), "-f", str(LOCUSTFILE), "--headless", "--only-summary"]
        + ["-u", str(users), "-r", str(users), "-t", "3s", "--host", url]
        + ["--csv", str(csv_prefix), "--loglevel", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_clean_run_reports_ttft_gaps_and_streams_without_failures(tmp_path: Path) -> None:
    """Against a healthy gateway: no failures, and ttft/gap/stream rows for both users."""
    with run_process(FAST_MODEL) as (url, _):
        done = run_locust(url, tmp_path / "run")
    assert done.returncode == 0, done.stdout + done.stderr
    stats = read_rows(tmp_path / "run_stats.csv")
    counts = {(r["Type"], r["Name"]): int(r["Request Count"]) for r in stats}
    for kind in ("sse", "sse-resumable"):
        for name in ("ttft", "gap", "stream"):
            assert counts.get((kind, name), 0) > 0, (kind, name, counts)
    assert all(r["Failure Count"] == "0" for r in stats), stats
    assert read_rows(tmp_path / "run_failures.csv") == []
    # Every stream delivered the model's 10 tokens: the "size" of a stream entry.
    stream = next(r for r in stats if (r["Type"], r["Name"]) == ("sse", "stream"))
    assert float(stream["Average Content Size"]) == 10


def test_an_injected_upstream_fault_shows_up_as_failures_with_its_code(tmp_path: Path) -> None:
    """A model that hits a rate limit after 2 chunks: failed streams under `rate_limited`."""
    env = {
        **FAST_MODEL,
        "GEMINI_SSE_FAKE_FAULT": "rate_limit",
        "GEMINI_SSE_FAKE_FAIL_AFTER": "2",
        "GEMINI_SSE_UPSTREAM_RETRIES": "0",
    }
    with run_process(env) as (url, _):
        done = run_locust(url, tmp_path / "run")
    assert done.returncode == 1, done.stdout + done.stderr  # locust's code for failures
    failures = read_rows(tmp_path / "run_failures.csv")
    by_name = {(r["Method"], r["Name"]): r for r in failures}
    for kind in ("sse", "sse-resumable"):
        row = by_name[(kind, "stream")]
        assert "rate_limited" in row["Error"]
        assert int(row["Occurrences"]) > 0
    # The streams opened fine and delivered their 2 tokens before the error event.
    stats = {(r["Type"], r["Name"]): r for r in read_rows(tmp_path / "run_stats.csv")}
    assert stats[("POST", "POST /v1/stream")]["Failure Count"] == "0"
    assert int(stats[("sse", "ttft")]["Request Count"]) > 0
