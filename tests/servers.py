"""Real uvicorn servers on 127.0.0.1 for tests about timing, disconnects and delivery."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from gemini_sse.server.gateway import Gateway


@dataclass
class RunningServer:
    """A uvicorn server in a thread of this process."""

    url: str
    app: FastAPI
    server: uvicorn.Server

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.state.gateway
        return gateway


def wait_for(condition: Callable[[], bool], seconds: float = 10.0, every: float = 0.01) -> bool:
    """Poll `condition` until it holds; False if it still does not after `seconds`.

    Tests wait on the state they need, never for a fixed time. The deadline is generous
    (a loaded machine is slow, not wrong): it only costs time when the test fails anyway.
    """
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


@contextlib.contextmanager
def run_in_thread(app: FastAPI, **config: object) -> Iterator[RunningServer]:
    """Serve `app` on a free port until the block ends."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **config)  # type: ignore[arg-type]
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive())
    if not server.started:
        raise RuntimeError("uvicorn did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningServer(url=f"http://127.0.0.1:{port}", app=app, server=server)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


_FIRST_PORT, _PORTS_PER_WORKER = 20000, 1000


def _port_block() -> range:
    """The ports `free_port` hands out in this process.

    Below the kernel's ephemeral range (where it picks ports for `bind(0)` and outgoing
    connections) and one block per pytest-xdist worker: a port found free here cannot be
    taken, before the test's server binds it, by another worker's server or by a client
    connection. Empty if the ephemeral range reaches down to the blocks (`free_port`
    then asks the kernel).
    """
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768  # Linux's default
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    start = _FIRST_PORT + worker * _PORTS_PER_WORKER
    if start + _PORTS_PER_WORKER > ephemeral:
        return range(0)
    return range(start, start + _PORTS_PER_WORKER)


# Each port is offered once per run (a few hundred are asked for), so one a server has
# just left, its connections still in TIME_WAIT, is never offered again.
_ports = iter(_port_block())


def free_port() -> int:
    """A port nothing listens on, for a server the test starts (or for a refused connect)."""
    for port in _ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # something else on the machine holds it
            return port
    with socket.socket() as sock:  # the block is used up (or there is none): the kernel's
        sock.bind(("127.0.0.1", 0))
        found: int = sock.getsockname()[1]
        return found


@contextlib.contextmanager
def run_process(env: dict[str, str], *args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`gemini-sse serve` as a child process on a free port; killed at the end, with every
    process it started (the workers of `--workers N`)."""
    port = free_port()
    full_env = {**os.environ, **env, "GEMINI_SSE_PORT": str(port), "GEMINI_SSE_HOST": "127.0.0.1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemini_sse._cli", "serve", *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # A process group of its own: killing the supervisor alone would leave its
        # workers serving on, orphaned, long after the test.
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_for(lambda: proc.poll() is not None or _healthy(url), 30, every=0.05):
            raise RuntimeError("gateway did not start")
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise RuntimeError(f"gateway exited early:\n{out}")
        yield url, proc
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group may be gone already
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
