"""uvloop + httptools as an option: `FairUVLoop` accepts every waiting connection at once,
and `gemini-sse serve --loop uvloop --http httptools` streams and drains like the default."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gemini_sse.server.loops import FairUVLoop, _Listener
from gemini_sse.server.providers.simulated import expected_answer

from .conftest import make_settings
from .servers import run_process
from .sse import iter_events, text

WAITING = 40  # connections made before the loop gets to look at the listener


class _Counting(asyncio.Protocol):
    """Greets each connection and hears what it sends; `heard` is set once all have spoken."""

    def __init__(self, made: list[_Counting], heard: asyncio.Event) -> None:
        self.made = made
        self.heard = heard
        self.data = b""

    def connection_made(self, transport: Any) -> None:
        self.made.append(self)
        transport.write(b"hello")

    def data_received(self, data: bytes) -> None:
        self.data += data
        if len(self.made) == WAITING and all(p.data for p in self.made):
            self.heard.set()


def _run(main: Callable[[FairUVLoop], Any]) -> Any:
    loop = FairUVLoop()
    try:
        return loop.run_until_complete(main(loop))
    finally:
        loop.close()


@pytest.mark.parametrize("given", ["host_and_port", "socket"])
def test_one_readable_event_accepts_every_waiting_connection(
    given: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All connections queued in the kernel are accepted in one go, as asyncio's loop does
    (uvloop's own server takes one per turn of the loop), and each is served."""
    batches: list[int] = []  # connections accepted per readable event
    accept = _Listener._accept

    def counting_accept(self: _Listener, sock: socket.socket) -> None:
        before = len(self._pending)  # no connection completes during the call
        accept(self, sock)
        batches.append(len(self._pending) - before)

    monkeypatch.setattr(_Listener, "_accept", counting_accept)

    async def main(loop: FairUVLoop) -> tuple[list[bytes], list[bytes]]:
        made: list[_Counting] = []
        heard = asyncio.Event()
        if given == "socket":  # as uvicorn passes the socket it bound for its workers
            sock = socket.create_server(("127.0.0.1", 0))
            server = await loop.create_server(
                lambda: _Counting(made, heard), sock=sock, backlog=128
            )
        else:
            server = await loop.create_server(
                lambda: _Counting(made, heard), "127.0.0.1", 0, backlog=128
            )
        port = server.sockets[0].getsockname()[1]
        # Blocking connects while the loop is busy here: the kernel completes every
        # handshake and queues the connections until the listener is read.
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(WAITING)]
        for client in clients:
            client.sendall(b"hi")
        await asyncio.wait_for(heard.wait(), 10)
        greetings = [client.recv(5) for client in clients]
        server.close()
        await server.wait_closed()
        for client in clients:
            client.close()
        return [p.data for p in made], greetings

    received, greetings = _run(main)
    assert batches[0] == WAITING
    assert received == [b"hi"] * WAITING
    assert greetings == [b"hello"] * WAITING


def test_a_closed_listener_refuses_new_connections() -> None:
    """After `close()` (uvicorn's shutdown) the port no longer takes connections."""

    async def main(loop: FairUVLoop) -> int:
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port: int = server.sockets[0].getsockname()[1]
        assert server.is_serving()
        server.close()
        await server.wait_closed()
        assert not server.is_serving()
        return port

    port = _run(main)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def _loaded(pid: int, library: str) -> bool:
    return any(library in line for line in Path(f"/proc/{pid}/maps").read_text().splitlines())


def test_serve_on_uvloop_and_httptools_streams_and_drains() -> None:
    """The option end to end: the process runs uvloop and httptools, a stream arrives
    whole, and SIGTERM ends a live stream with `shutting_down`."""
    env = {
        "GEMINI_SSE_PROVIDER": "fake",
        "GEMINI_SSE_FAKE_CHUNKS": "6",
        "GEMINI_SSE_FAKE_DELAY_MS": "10",
        "GEMINI_SSE_LOG_LEVEL": "warning",
    }
    with run_process(env, "--loop", "uvloop", "--http", "httptools") as (url, proc):
        assert _loaded(proc.pid, "uvloop/loop.")
        assert _loaded(proc.pid, "httptools/parser/parser.")
        with httpx.Client(timeout=10) as client:
            with client.stream("POST", f"{url}/v1/stream", json={"message": "hi"}) as response:
                events = list(iter_events(response.iter_raw()))
        assert events[-1].event == "done"
        assert text(events) == expected_answer(make_settings(fake_chunks=6), ["hi"])

    env |= {"GEMINI_SSE_FAKE_CHUNKS": "1000", "GEMINI_SSE_FAKE_DELAY_MS": "100"}
    with run_process({**env, "GEMINI_SSE_LOOP": "uvloop", "GEMINI_SSE_HTTP": "httptools"}) as (
        url,
        proc,
    ):
        assert _loaded(proc.pid, "uvloop/loop.")
        with httpx.stream("POST", f"{url}/v1/stream", json={"message": "hi"}) as response:
            events = []
            for event in iter_events(response.iter_raw()):
                events.append(event)
                if len(events) == 1:
                    proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    assert events[-1].event == "error"
    assert events[-1].data["code"] == "shutting_down"
