"""HTTP errors before a stream starts: one boundary, two shapes.

Every refusal or failure raised while a request is handled (`RequestRejected`, FastAPI's
validation and HTTP errors, anything unexpected) is rendered here and nowhere else, with
the same status, headers and vocabulary (`code`, `message`, `retryable`) whichever route
raised it. Only the body's shape depends on who is asking:

- ours, `{"error": {"code", "message", "retryable", ...}}` (`ErrorBody`), on our routes;
- OpenAI's, `{"error": {"message", "type", "param", "code"}}`, on the OpenAI-compatible
  routes (`OpenAIRoute`), whose clients are OpenAI's SDKs: 400 where we say 422, and
  `x-should-retry` from our `retryable`, which those SDKs obey over their own rules.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Scope

from .._exceptions import RequestRejected
from .._models import ErrorCode, ErrorInfo
from .metrics import Metrics
from .openai.errors import error_detail, invalid_request, status_and_type

logger = logging.getLogger("gemini_sse.errors")


class OpenAIRoute(APIRoute):
    """A route whose errors take OpenAI's shape (see the module docstring)."""


def error_headers(status_code: int, info: ErrorInfo) -> dict[str, str]:
    """The headers every HTTP error carries, in either shape."""
    headers = {}
    if info.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(info.retry_after)))
    if status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"  # RFC 6750 section 3
    return headers


def error_response(
    status_code: int,
    info: ErrorInfo,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Our JSON error body (`ErrorBody`)."""
    if request_id and info.request_id is None:
        info = info.model_copy(update={"request_id": request_id})
    headers = {**(headers or {}), **error_headers(status_code, info)}
    body = {"error": info.model_dump(mode="json", exclude_none=True)}
    return JSONResponse(body, status_code=status_code, headers=headers)


def openai_error_response(
    info: ErrorInfo,
    status_code: int = 500,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """OpenAI's error body for `info`; `status_code` serves codes OpenAI has no status for."""
    status, _ = status_and_type(info, status_code)
    if status_code == 405:  # the method, not the request, is wrong
        status = 405
    all_headers = {
        **(headers or {}),
        "x-should-retry": "true" if info.retryable else "false",
        **error_headers(status, info),
    }
    body = {"error": error_detail(info, param)}
    return JSONResponse(body, status_code=status, headers=all_headers)


def render(
    scope: Scope,
    status_code: int,
    info: ErrorInfo,
    *,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The error response for this request, in the shape its route speaks."""
    state = scope.get("state", {})
    request_id = state.get("request_id") if isinstance(state, dict) else None
    if request_id:
        # Also where no middleware adds it: a 500 is answered outside them all.
        headers = {**(headers or {}), "X-Request-ID": request_id}
    if _speaks_openai(scope):
        return openai_error_response(info, status_code, param, headers)
    return error_response(status_code, info, request_id, headers)


def _speaks_openai(scope: Scope) -> bool:
    """Whether the route serving this request is OpenAI-shaped, also before routing
    (the body cap's 413 is decided in a middleware)."""
    route = scope.get("route")
    if route is None:
        app = scope.get("app")
        for candidate in getattr(getattr(app, "router", None), "routes", ()):
            match, child = candidate.matches(scope)
            if match != Match.NONE:
                # A router included in the app stands for its routes until one is chosen.
                route = child.get("route") or getattr(candidate, "original_router", candidate)
                break
    return isinstance(route, OpenAIRoute) or getattr(route, "route_class", None) is OpenAIRoute


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(scope: Scope) -> str:
    """Every method some route takes at this path (Starlette names only the first route's)."""
    routes = scope["app"].router.routes
    allowed = [
        method
        for method in _METHODS
        if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in routes)
    ]
    return ", ".join(allowed)


def install(app: FastAPI, metrics: Metrics) -> None:
    """Make this module the one place where `app`'s errors become responses."""

    @app.exception_handler(RequestRejected)
    async def rejected(request: Request, exc: RequestRejected) -> JSONResponse:
        return render(request.scope, exc.status_code, exc.info)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.reject("validation")
        errors = exc.errors()
        if _speaks_openai(request.scope):
            info, param = invalid_request(errors)
            return openai_error_response(info, 400, param)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
            for e in errors[:5]
        )
        info = ErrorInfo(code=ErrorCode.INVALID_REQUEST, message=problems or "Invalid request.")
        return render(request.scope, 422, info)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        status = exc.status_code
        headers: dict[str, Any] = dict(exc.headers or {})
        message = str(exc.detail)
        if status == 405:
            headers["Allow"] = _allowed_methods(request.scope)
        elif status == 400:
            # FastAPI's answer to a body it cannot decode (not UTF-8, say): the same
            # `invalid_request` as any other malformed body.
            metrics.reject("validation")
            status, message = 422, "The body must be JSON encoded as UTF-8."
        code = {
            404: ErrorCode.NOT_FOUND,
            413: ErrorCode.PAYLOAD_TOO_LARGE,
        }.get(status, ErrorCode.INVALID_REQUEST)
        return render(request.scope, status, ErrorInfo(code=code, message=message), headers=headers)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the exception with its traceback; the client gets our vocabulary,
        # never a stack trace.
        info = ErrorInfo(code=ErrorCode.INTERNAL, message="The gateway failed unexpectedly.")
        return render(request.scope, 500, info)
