"""uvloop, with new connections accepted as promptly as asyncio's loop accepts them.

`serve(loop="uvloop")` runs on `FairUVLoop`. Measured under saturation
(docs/benchmarks.md, "uvloop"): uvloop's own server accepted a few connections per turn
of the loop, so with 1,000 streams opened at once, a few hundred sat in the kernel's
accept queue for seconds (first-token p99 5 s against 0.5 s on asyncio) while the open
streams were served. asyncio's server accepts up to `backlog` connections each time the
listening socket is readable; `FairUVLoop` does the same on uvloop: it accepts in
batches itself and hands each socket to uvloop (`connect_accepted_socket`), which then
serves it as its own.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterable
from typing import Any

import uvloop

# Connections accepted per readable event, as asyncio's `_accept_connection`: the listen
# backlog (uvicorn's is 2048).
_DEFAULT_BACKLOG = 100


class FairUVLoop(uvloop.Loop):
    """uvloop's loop, whose plain TCP servers accept like asyncio's (see the module)."""

    async def create_server(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | None = None,
        port: int | None = None,
        *,
        sock: socket.socket | None = None,
        backlog: int = _DEFAULT_BACKLOG,
        ssl: Any = None,
        **kwargs: Any,
    ) -> Any:
        if ssl is not None or kwargs or (sock is not None and sock.family == socket.AF_UNIX):
            # TLS and Unix sockets: uvloop's own server (the case measured is plain TCP).
            options = {"backlog": backlog, "ssl": ssl, **kwargs}
            if sock is not None:
                return await super().create_server(protocol_factory, sock=sock, **options)
            return await super().create_server(protocol_factory, host, port or 0, **options)
        sockets = [sock] if sock is not None else _bind(host, port)
        return _Listener(self, sockets, protocol_factory, backlog)


def new_event_loop() -> FairUVLoop:
    """A new `FairUVLoop` (uvicorn's `Config(loop="gemini_sse.server.loops:new_event_loop")`)."""
    return FairUVLoop()


def _bind(host: str | None, port: int | None) -> list[socket.socket]:
    """Listening sockets for every address of `host`, as asyncio's `create_server` binds."""
    infos = socket.getaddrinfo(
        host or None, port or 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        # `socket.create_server`: SO_REUSEADDR, and IPv6 sockets bound to IPv6 only.
        for family, address in dict.fromkeys((info[0], info[4]) for info in infos):
            sockets.append(socket.create_server(address, family=family))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class _Listener:
    """What uvicorn uses of `asyncio.Server`, accepting in batches on uvloop."""

    def __init__(
        self,
        loop: FairUVLoop,
        sockets: Iterable[socket.socket],
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        backlog: int,
    ) -> None:
        self._loop = loop
        self.sockets = list(sockets)
        self._factory = protocol_factory
        self._backlog = backlog
        self._closed = asyncio.Event()
        self._pending: set[asyncio.Task[Any]] = set()
        for sock in self.sockets:
            sock.setblocking(False)
            sock.listen(backlog)
            loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(self._backlog):
            try:
                conn, _address = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # Out of file descriptors, say: asyncio's server logs it and goes on.
                return
            conn.setblocking(False)
            task = self._loop.create_task(self._loop.connect_accepted_socket(self._factory, conn))
            self._pending.add(task)
            task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled():
            task.exception()  # a connection that failed at once: nothing to serve

    def is_serving(self) -> bool:
        return not self._closed.is_set()

    def close(self) -> None:
        if self._closed.is_set():
            return
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()
