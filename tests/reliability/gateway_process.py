"""`gemini-sse serve` as a child process, watched from outside: RSS, health, metrics, logs.

The reliability tests need a process of its own for the gateway: its memory is then the
gateway's alone, and two of them make two replicas. Its output is read all along by a
thread (a full pipe would block the gateway's logging) and kept for the checks.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from subprocess import Popen
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..servers import run_process


@contextlib.contextmanager
def cleared_environment() -> Iterator[None]:
    """No `GEMINI_SSE_*` variable from the developer's shell while the block runs.

    The suite's autouse fixture clears them for each test; module-scoped fixtures and
    module-level code run before it.
    """
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("GEMINI_SSE_"):
                patch.delenv(name)
        yield


def settings_env(**settings: Any) -> dict[str, str]:
    """`GEMINI_SSE_*` variables for settings given as keyword arguments."""
    env = {}
    for name, value in settings.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        env[f"GEMINI_SSE_{name.upper()}"] = str(value)
    return env


@dataclass
class GatewayProcess:
    """A running `gemini-sse serve` child and everything it has printed so far."""

    url: str
    proc: Popen[bytes]
    lines: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def rss_bytes(self) -> int:
        """Resident memory now (Linux: /proc/PID/status)."""
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS line")

    def sockets(self) -> int:
        """Open sockets now: the listening one, and one per connection."""
        count = 0
        for fd in os.listdir(f"/proc/{self.proc.pid}/fd"):
            with contextlib.suppress(OSError):  # closed while we looked
                count += os.readlink(f"/proc/{self.proc.pid}/fd/{fd}").startswith("socket:")
        return count

    def healthz(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.url}/healthz", timeout=10).json()
        return body

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    total += sample.value
        return total

    def outcomes(self) -> dict[str, float]:
        """Finished generations by outcome (`gemini_sse_streams_finished_total`)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        counts: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "gemini_sse_streams_finished_total":
                    outcome = sample.labels["outcome"]
                    counts[outcome] = counts.get(outcome, 0.0) + sample.value
        return counts

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines printed so far (other lines are left out)."""
        records = []
        for line in list(self.lines):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records

    def problems(self) -> list[str]:
        """Printed lines that show a failure: errors, criticals and tracebacks."""
        bad = []
        for line in list(self.lines):
            try:
                record = json.loads(line)
            except ValueError:
                if "Traceback" in line or "ERROR" in line or "CRITICAL" in line:
                    bad.append(line)
                continue
            if not isinstance(record, dict):
                continue
            if record.get("level") in ("error", "critical") or "exc_info" in record:
                bad.append(line)
        return bad


def _drain(proc: Popen[bytes], lines: list[str]) -> None:
    assert proc.stdout is not None
    with contextlib.suppress(ValueError, OSError):  # the pipe closed under us at the end
        for raw in proc.stdout:
            lines.append(raw.decode(errors="replace").rstrip("\n"))


@contextlib.contextmanager
def run_gateway(**settings: Any) -> Iterator[GatewayProcess]:
    """A gateway child process with these settings (JSON logs); killed at the end."""
    env = settings_env(provider="fake", log_format="json", upstream_retries=0, **settings)
    with run_process(env) as (url, proc):
        gateway = GatewayProcess(url, proc)
        reader = threading.Thread(target=_drain, args=(proc, gateway.lines), daemon=True)
        reader.start()
        try:
            yield gateway
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            reader.join(timeout=10)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail with `what` if it does not within `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
