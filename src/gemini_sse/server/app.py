"""`create_app(settings)`: the gateway as an ASGI application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from secrets import token_hex

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._models import ErrorCode, ErrorInfo
from . import errors
from .aisdk.routes import router as aisdk_router
from .dependencies import authorized
from .gateway import Gateway
from .logs import request_id_var
from .metrics import Metrics
from .openai.responses_routes import router as responses_router
from .openai.routes import router as openai_router
from .openapi import document_settings
from .providers import Provider, create_fallbacks, create_provider
from .routes import StreamShortcut, metrics_router, router
from .settings import Settings
from .sse import SERVER_SEND, DroppedResponseFilter
from .store import create_store
from .store.memory import MemoryStore
from .streams import router as streams_router
from .streams import stop_cancelled_producers
from .telemetry import Telemetry
from .web import router as web_router


class RequestContext:
    """Give each request an id (the client's `X-Request-ID`, or a new one) and cap its body.

    Pure ASGI so that it never buffers a streaming response. The body limit applies to
    the declared `Content-Length` and to the bytes actually received. The id is also set
    in `logs.request_id_var` for every line logged while the request is served.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given, declared = "", None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
        # 32 hex digits, as a UUID's; `secrets` draws them for a tenth of uuid4's calls.
        request_id = given if 0 < len(given) <= 128 and given.isprintable() else token_hex(16)
        scope.setdefault("state", {})["request_id"] = request_id
        request_id_var.set(request_id)
        limit = self.max_body_bytes

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                names = {name.lower() for name, _ in message["headers"]}
                if b"x-request-id" not in names:
                    message["headers"] = [
                        *message["headers"],
                        (b"x-request-id", request_id.encode()),
                    ]
            await send(message)

        if declared is not None and declared.isdigit() and int(declared) > limit:
            self.metrics.reject("too_large")
            info = ErrorInfo(
                code=ErrorCode.PAYLOAD_TOO_LARGE,
                message=f"The body may be at most {limit} bytes.",
            )
            await errors.render(scope, 413, info)(scope, receive, send_with_id)
            return

        received = 0

        async def receive_capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    self.metrics.reject("too_large")
                    # FastAPI lets an HTTPException from body reading through to the
                    # handlers (anything else becomes a generic 400).
                    raise HTTPException(413, f"The body may be at most {limit} bytes.")
            return message

        await self.app(scope, receive_capped, send_with_id)


class GatewayApp(FastAPI):
    """FastAPI, telling its event streams where the server's own `send` is.

    Every layer of middleware wraps `send`, and a token's frame went through all of
    them (Starlette's error and exception middleware, FastAPI's body limit, ours, CORS):
    one call each, about 3 us per token together, while none of them looks at a body
    that does not end the response (docs/benchmarks.md, "Optimisations made", 9). With
    only such middleware in the stack, `EventStream` sends the start and the end of its
    response through the stack and the frames in between straight to the server. Add a
    middleware that rewrites bodies (compression, say) and the frames go through it
    again: only the classes in `BODY_BLIND` are trusted.
    """

    #: User middleware known to leave response bodies alone; Starlette's and FastAPI's
    #: own (errors, exceptions, body limit, telemetry) look at the start and the end only.
    BODY_BLIND: frozenset[object] = frozenset({RequestContext, CORSMiddleware})
    _body_blind: bool | None = None  # judged at the first request, when the stack is built

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._body_blind is None:
            self._body_blind = all(m.cls in self.BODY_BLIND for m in self.user_middleware)
        if self._body_blind and scope["type"] == "http":
            scope[SERVER_SEND] = send
        await super().__call__(scope, receive, send)


async def _sweep(gateway: Gateway, ttl_s: float) -> None:
    """Drop expired in-memory streams that nobody touches any more."""
    store = gateway.store
    if not isinstance(store, MemoryStore):
        return
    while True:
        await asyncio.sleep(max(1.0, ttl_s / 10))
        if store.sweep() and not gateway.live:
            gateway.memory.schedule()


_DROPPED_RESPONSES = DroppedResponseFilter()


def create_app(
    settings: Settings | None = None,
    *,
    provider: Provider | None = None,
    telemetry: Telemetry | None = None,
) -> FastAPI:
    """Build the gateway. `provider` and `telemetry` override what the settings name (tests)."""
    settings = settings or Settings()
    # One shared, stateless filter: adding it again for another app is a no-op.
    logging.getLogger("uvicorn.error").addFilter(_DROPPED_RESPONSES)
    gateway = Gateway(
        settings,
        provider or create_provider(settings),
        create_store(settings),
        fallbacks=create_fallbacks(settings),
        telemetry=telemetry or Telemetry.from_settings(settings),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_sweep(gateway, settings.stream_ttl_s))]
        if gateway.store.needs_lease:  # shared by replicas: their cancel requests come here
            tasks.append(asyncio.create_task(stop_cancelled_producers(gateway)))
        if gateway.limiter.shared:
            tasks.append(asyncio.create_task(gateway.limiter.keep_alive()))
        try:
            yield
        finally:
            # Detached producers have no connection for uvicorn to wait on: end them
            # here, so that their readers get `shutting_down` from the store.
            gateway.drain()
            await gateway.wait_background(settings.drain_s)
            gateway.memory.cancel()
            for task in tasks:
                task.cancel()
            await gateway.provider.aclose()
            for fallback in gateway.fallbacks:
                await fallback.provider.aclose()
            await gateway.store.aclose()
            await gateway.limiter.aclose()
            if gateway.telemetry is not None:  # exports what is pending: off the loop
                await asyncio.to_thread(gateway.telemetry.shutdown)

    app = GatewayApp(
        title="gemini-sse",
        summary="Streams LLM answers as typed server-sent events.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.include_router(router)
    # Its routes take no caller yet: the key and the request rate are checked for all of
    # them here (tokens and streams per key need `gateway.admit`).
    app.include_router(openai_router, dependencies=[Depends(authorized)])
    app.include_router(responses_router, dependencies=[Depends(authorized)])
    app.include_router(streams_router)
    app.include_router(aisdk_router)  # its routes take the caller (key, limits)
    if settings.metrics:
        app.include_router(metrics_router)
    app.include_router(web_router)
    document_settings(app, settings)
    # Inside the app's middleware and error handlers, ahead of its routes.
    app.router.middleware_stack = StreamShortcut(app.router.middleware_stack, gateway)

    errors.install(app, gateway.metrics)
    app.add_middleware(
        RequestContext, max_body_bytes=settings.max_body_bytes, metrics=gateway.metrics
    )
    if settings.cors_origins:
        # Outermost (added last), so that browsers can read every error, the body cap's too.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "WWW-Authenticate"],
        )
    return app
