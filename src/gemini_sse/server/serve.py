"""Running the gateway under uvicorn with the settings (`gemini-sse serve`)."""

from __future__ import annotations

import asyncio
import gc
import resource
import socket
from types import FrameType

import uvicorn
from uvicorn.config import HTTPProtocolType, LoopFactoryType

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


def serve(
    settings: Settings,
    *,
    loop: LoopFactoryType = "asyncio",
    http: HTTPProtocolType = "h11",
) -> None:
    """Serve until SIGINT/SIGTERM; streams then get `shutting_down` and `drain_s` to end.

    asyncio + h11 by default, not uvicorn's "auto" (uvloop + httptools when installed):
    measured in docs/benchmarks.md ("Optimisations made", 3): uvloop costs less CPU per
    token, but once saturated new streams waited 4-8 s (p99) for their first token.
    """
    configure_logging(settings)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # uvicorn's loggers go to our handler (JSON or text; docs/operations.md), not its own.
        log_config=None,
        loop=loop,
        http=http,
        # sse-starlette ends streams within `drain_s` of the signal; uvicorn waits a
        # little longer for their connections before closing them.
        timeout_graceful_shutdown=int(settings.drain_s) + 2,
        # SSE is never compressed, and no proxy headers are trusted by default.
        proxy_headers=False,
    )
    server = _Server(config, app.state.gateway)
    prepare_process()
    server.run()


class _Server(uvicorn.Server):
    """uvicorn's server, telling the gateway the moment it is asked to exit.

    Without this, only sse-starlette would notice (and only while one of its responses is
    open): a request still waiting for its first token, or a detached stream, would sit
    out uvicorn's graceful timeout and be cut without a word.
    """

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self._gateway = gateway
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._gateway.begin_shutdown)
