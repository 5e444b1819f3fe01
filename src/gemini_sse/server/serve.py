"""Running the gateway under uvicorn with the settings (`gemini-sse serve`)."""

from __future__ import annotations

import gc
import logging

import uvicorn

from .app import create_app
from .settings import Settings


def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; streams then get `shutting_down` and `drain_s` to end."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # sse-starlette ends streams within `drain_s` of the signal; uvicorn waits a
        # little longer for their connections before closing them.
        timeout_graceful_shutdown=int(settings.drain_s) + 2,
        # SSE is never compressed, and no proxy headers are trusted by default.
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    # Everything imported so far lives as long as the process: keep it out of the
    # cyclic collector's full passes, which otherwise stall every stream under load.
    gc.collect()
    gc.freeze()
    server.run()
