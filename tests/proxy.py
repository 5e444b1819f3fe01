"""A TCP proxy on 127.0.0.1 that can cut connections: dropped networks, made on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class CuttingProxy:
    """Forwards to `target_port`; the n-th connection's answer is cut after `cuts[n]` bytes.

    Connections past the end of `cuts` (or whose entry is None) pass through untouched.
    `requests` keeps the first bytes each connection sent, to see what was asked.
    """

    target_port: int
    cuts: list[int | None]
    port: int = 0
    requests: list[bytes] = field(default_factory=list)
    answers: list[bytearray] = field(default_factory=list)  # bytes sent back, per connection

    async def _pipe_up(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: list[bytes]
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if not first:
                    first.append(data)
                writer.write(data)
                await writer.drain()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        # Cancelled only when the proxy stops: end quietly (asyncio logs a cancelled handler).
        with contextlib.suppress(asyncio.CancelledError):
            await self._forward(client_r, client_w)

    async def _forward(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        index = len(self.requests)
        self.requests.append(b"")
        self.answers.append(bytearray())
        cut = self.cuts[index] if index < len(self.cuts) else None
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        first: list[bytes] = []
        up = asyncio.create_task(self._pipe_up(client_r, server_w, first))
        sent = 0
        try:
            while data := await server_r.read(65536):
                if first:
                    self.requests[index] = first[0]
                if cut is not None and sent + len(data) >= cut:
                    client_w.write(data[: cut - sent])
                    self.answers[index] += data[: cut - sent]
                    await client_w.drain()
                    break
                sent += len(data)
                self.answers[index] += data
                client_w.write(data)
                await client_w.drain()
        except ConnectionError:
            pass
        finally:
            up.cancel()
            for w in (client_w, server_w):
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()


@contextlib.contextmanager
def cutting_proxy(target_port: int, cuts: list[int | None]) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(target_port, cuts)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        server = await asyncio.start_server(proxy._handle, "127.0.0.1", 0)
        proxy.port = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await stop.wait()
            server.close()
            current = asyncio.current_task()
            pending = [t for t in asyncio.all_tasks() if t is not current]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait(5)
    try:
        yield proxy
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)
        loop.close()
