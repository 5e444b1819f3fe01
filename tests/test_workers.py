"""Several worker processes on one port (`gemini-sse serve --workers N`), sharing Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from gemini_sse.server.providers.simulated import expected_answer

from .conftest import make_settings
from .servers import free_port, run_process, wait_for
from .sse import iter_events, parse, text


def _children(pid: int) -> list[int]:
    """The worker processes of a supervisor (not multiprocessing's resource tracker)."""
    found = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in found if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]


def _env(redis_url: str) -> dict[str, str]:
    return {
        "GEMINI_SSE_PROVIDER": "fake",
        "GEMINI_SSE_REDIS_URL": redis_url,
        "GEMINI_SSE_FAKE_CHUNKS": "8",
        "GEMINI_SSE_FAKE_DELAY_MS": "20",
        "GEMINI_SSE_LOG_LEVEL": "warning",
        "GEMINI_SSE_DRAIN_S": "1",
    }


def test_two_workers_serve_one_port_and_share_resumable_streams(redis_url: str) -> None:
    """Both processes answer on the port; a stream made on one reads whole on either; none
    outlives the test."""
    with run_process(_env(redis_url), "--workers", "2") as (url, proc):
        workers = _children(proc.pid)
        assert len(workers) == 2
        seen: set[int] = set()
        for _ in range(400):  # fresh connections, until both processes have answered one
            with httpx.Client() as fresh:
                seen.add(fresh.get(f"{url}/healthz").json()["pid"])
            if len(seen) == 2:
                break
        assert seen == set(workers)
        created = httpx.post(f"{url}/v1/streams", json={"message": "hi"}).json()
        expected = expected_answer(make_settings(fake_chunks=8), ["hi"])
        for _ in range(6):  # each read on a fresh connection, so on either process
            with httpx.Client(timeout=10) as fresh:
                events = parse(fresh.get(f"{url}{created['events_url']}").content)
            assert text(events) == expected and events[-1].event == "done"
    # Killed with their supervisor at the end: no worker is left serving on its own.
    assert wait_for(lambda: all(_is_zombie(worker) for worker in workers), seconds=10)


def test_sigterm_drains_every_worker(redis_url: str) -> None:
    """SIGTERM to the supervisor: a live stream gets `shutting_down`, and all processes exit."""
    env = _env(redis_url) | {"GEMINI_SSE_FAKE_CHUNKS": "500", "GEMINI_SSE_FAKE_DELAY_MS": "50"}
    with run_process(env, "--workers", "2") as (url, proc):
        workers = _children(proc.pid)
        last = None
        with httpx.stream("POST", f"{url}/v1/stream", json={"message": "hi"}) as response:
            for event in iter_events(response.iter_raw()):
                if event.event == "token" and last is None:
                    proc.send_signal(signal.SIGTERM)
                last = event
        assert last is not None and last.event == "error"
        assert last.data["code"] == "shutting_down"
        assert proc.wait(timeout=20) == 0
    for worker in workers:
        assert not Path(f"/proc/{worker}").exists() or _is_zombie(worker)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_workers_without_redis_refuse_to_start() -> None:
    """More than one worker with per-process storage would lose streams: a clear refusal."""
    env = {
        **os.environ,
        "GEMINI_SSE_PROVIDER": "fake",
        "GEMINI_SSE_PORT": str(free_port()),
        "GEMINI_SSE_WORKERS": "2",
    }
    env.pop("GEMINI_SSE_REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "gemini_sse._cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "GEMINI_SSE_WORKERS > 1 needs GEMINI_SSE_REDIS_URL" in result.stderr
