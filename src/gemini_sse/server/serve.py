"""Running the gateway under uvicorn with the settings (`gemini-sse serve`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import resource
import signal
import socket
import threading
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from .app import create_app
from .gateway import Gateway
from .logs import configure_logging
from .settings import Settings

# The cyclic collector while serving: a young collection every 50,000 container
# allocations instead of 700, the middle one every 20 of those, a full one every 10 of
# those at most (and only once a quarter of the heap is new: CPython's own rule). Every
# open stream holds its chunks until it ends (langchain-core keeps them to merge), so a
# full collection walks every stream's chunks: at 1,000-2,000 streams CPython's default
# thresholds ran 19-28 of them in one benchmark run, up to 0.8 s each, and cost 37-67 us
# of CPU per token (docs/benchmarks.md, "Optimisations made"). Most garbage here has no
# cycles and is freed by reference counting; the rest waits a few seconds longer.
GC_THRESHOLDS = (50_000, 20, 10)

# `loop="uvloop"` runs uvloop with asyncio's way of accepting connections (`loops.py`):
# uvloop's own server left new connections waiting seconds under saturation.
FAIR_UVLOOP = "gemini_sse.server.loops:new_event_loop"


def prepare_process() -> None:
    """Set the process up for many long streams: file descriptors and the collector.

    Call it last before serving: what exists by then lives as long as the process.
    """
    # One socket per stream: lift the soft limit on open files to the hard one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Everything imported so far lives as long as the process: keep it out of the
    # collector's passes, which otherwise stall every stream under load.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; streams then get `shutting_down` and `drain_s` to end.

    The event loop and HTTP parser are the settings' `loop` and `http`: asyncio + h11 by
    default, not uvicorn's "auto". uvloop + httptools costs less CPU per token; on uvloop
    new connections are accepted by `loops.FairUVLoop` (docs/benchmarks.md, "Event loop
    and HTTP parser").

    With `settings.workers` above 1, uvicorn's supervisor runs that many processes on one
    listening socket, each a whole gateway built from the environment (`worker_app`).
    """
    configure_logging(settings)
    if settings.workers > 1:
        if not settings.redis_url:
            raise SystemExit(
                "GEMINI_SSE_WORKERS > 1 needs GEMINI_SSE_REDIS_URL: a resumable stream and a "
                "caller's limits must be shared by the processes (any of them may get the "
                "next request)."
            )
        config = _config("gemini_sse.server.serve:worker_app", settings)
        config.factory = True
        config.workers = settings.workers
        Multiprocess(config, sockets=[listening_socket(config, settings)]).run()
        return
    config = _config(_serving_app(settings), settings)
    sock = listening_socket(config, settings)
    server = uvicorn.Server(config)
    prepare_process()
    server.run(sockets=[sock])


def listening_socket(config: uvicorn.Config, settings: Settings) -> socket.socket:
    """The bound socket to serve on; on Linux, every connection accepted from it is
    closed by the kernel once its peer has taken nothing for `send_timeout_s`.

    The gateway ends the response of a client that stops reading after the send timeout
    (`sse.EventStream`), but not the connection: asyncio's transport, told to close,
    first waits to flush what it holds, and the kernel keeps retrying. A peer that never
    reads again, or one whose network went away without a word, would keep its socket,
    a file descriptor and the few hundred kilobytes queued for it: until it reads or
    closes, or about 15 minutes of retransmissions for a peer that is gone.
    TCP_USER_TIMEOUT, inherited by accepted connections, bounds how long sent data may
    stay unacknowledged or the peer's receive window stay shut. A vanished client's
    generation then also stops within that time (its disconnect is seen), instead of
    running to its end unread.
    """
    sock = config.bind_socket()
    option = getattr(socket, "TCP_USER_TIMEOUT", None)  # Linux only
    if option is not None:  # a TCP socket: `_config` sets no Unix socket or fd
        milliseconds = max(1, round(settings.send_timeout_s * 1000))
        sock.setsockopt(socket.IPPROTO_TCP, option, milliseconds)
    return sock


def worker_app() -> FastAPI:
    """One worker's gateway (uvicorn calls this in each process it starts)."""
    settings = Settings()
    configure_logging(settings)
    app = _serving_app(settings)
    prepare_process()
    return app


def _config(app: FastAPI | str, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # uvicorn's loggers go to our handler (JSON or text; docs/operations.md), not its own.
        log_config=None,
        loop=FAIR_UVLOOP if settings.loop == "uvloop" else settings.loop,
        http=settings.http,
        # The drain ends streams within `drain_s` of the signal (`sse.EventStream` cuts
        # what is left); uvicorn waits a little longer for their connections.
        timeout_graceful_shutdown=int(settings.drain_s) + 2,
        # SSE is never compressed, and no proxy headers are trusted by default.
        proxy_headers=False,
    )


def _serving_app(settings: Settings) -> FastAPI:
    """The gateway, told the moment its server is asked to exit.

    Without this, nothing in the app would notice: open streams, a request still waiting
    for its first token, or a detached stream, would sit out uvicorn's graceful timeout
    and be cut without a word. uvicorn sets its signal handlers before the app starts; the
    app's start chains the drain onto them.
    """
    app = create_app(settings)
    gateway: Gateway = app.state.gateway
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        _chain_exit_signals(asyncio.get_running_loop(), gateway)
        async with inner(app) as state:
            yield state

    app.router.lifespan_context = lifespan
    return app


def _chain_exit_signals(loop: asyncio.AbstractEventLoop, gateway: Gateway) -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signals reach only the main thread's handlers (an embedded server)
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(
            signum: int, frame: FrameType | None, previous: Callable[..., Any] = previous
        ) -> None:
            previous(signum, frame)
            loop.call_soon_threadsafe(gateway.drain)

        signal.signal(sig, handler)
