"""The one place where foreign upstream errors become our error vocabulary.

Providers raise whatever their client libraries raise (google-api-core, grpc, httpx,
openai, the simulated model's own errors). `map_upstream_error` reads the status they
carry and answers with an `ErrorInfo`; nothing else in the gateway looks at foreign
exception types. Messages are our own: no stack traces, URLs or credentials leak through.

| upstream                          | code                    | retryable |
|-----------------------------------|-------------------------|-----------|
| HTTP 429 / RESOURCE_EXHAUSTED     | rate_limited            | yes       |
| HTTP 500, 502, 503 / UNAVAILABLE  | upstream_unavailable    | yes       |
| HTTP 400, 404, 422 / INVALID_ARG  | bad_request             | no        |
| HTTP 401, 403 / PERMISSION_DENIED | upstream_auth           | no        |
| HTTP 504 / DEADLINE_EXCEEDED      | timeout                 | yes       |
| connection lost before any text   | upstream_unavailable    | yes       |
| connection lost after some text   | upstream_disconnected   | yes       |
| anything else                     | internal                | no        |
"""

from __future__ import annotations

import asyncio
import logging

from .._exceptions import GatewayError
from .._models import ErrorCode, ErrorInfo

logger = logging.getLogger("gemini_sse.upstream")

# (code, retryable, message) by HTTP status.
_BY_STATUS: dict[int, tuple[ErrorCode, bool, str]] = {
    400: (ErrorCode.BAD_REQUEST, False, "The model rejected the request as invalid."),
    401: (ErrorCode.UPSTREAM_AUTH, False, "The gateway's credentials for the model were refused."),
    403: (ErrorCode.UPSTREAM_AUTH, False, "The gateway is not permitted to use this model."),
    404: (ErrorCode.BAD_REQUEST, False, "The model or resource was not found upstream."),
    408: (ErrorCode.TIMEOUT, True, "The model did not answer in time."),
    413: (ErrorCode.BAD_REQUEST, False, "The request is too large for the model."),
    422: (ErrorCode.BAD_REQUEST, False, "The model rejected the request as invalid."),
    429: (ErrorCode.RATE_LIMITED, True, "The model's rate limit or quota was exceeded."),
    500: (ErrorCode.UPSTREAM_UNAVAILABLE, True, "The model failed with an internal error."),
    502: (ErrorCode.UPSTREAM_UNAVAILABLE, True, "The model's service is unavailable."),
    503: (ErrorCode.UPSTREAM_UNAVAILABLE, True, "The model's service is unavailable."),
    504: (ErrorCode.TIMEOUT, True, "The model did not answer in time."),
}

# gRPC status names (grpc.StatusCode.X.name) to the HTTP status they stand for.
_GRPC_TO_HTTP: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "CANCELLED": 503,
    "ABORTED": 503,
}


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status an upstream exception carries, whatever library raised it."""
    for attr in ("status_code", "code", "status"):
        value = getattr(exc, attr, None)
        if callable(value):  # grpc.aio.AioRpcError.code()
            try:
                value = value()
            except Exception:
                value = None
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and 100 <= value < 600:
            return value
        name = getattr(value, "name", None)
        if isinstance(name, str) and name in _GRPC_TO_HTTP:
            return _GRPC_TO_HTTP[name]
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status
    return None


def _retry_after_of(exc: BaseException) -> float | None:
    value = getattr(exc, "retry_after", None)
    if isinstance(value, int | float):
        return float(value)
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        try:
            return float(headers.get("retry-after"))
        except (TypeError, ValueError):
            return None
    return None


def _is_disconnect(exc: BaseException) -> bool:
    """A connection that broke, as opposed to an answer that said no."""
    if isinstance(exc, ConnectionError | EOFError):
        return True
    # httpx, httpcore and aiohttp transport errors, matched by name so that this module
    # needs none of them installed.
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names
        & {
            "TransportError",  # httpx
            "RemoteProtocolError",
            "ReadError",
            "ConnectError",
            "ClientPayloadError",  # aiohttp
            "ServerDisconnectedError",
            "ClientConnectionError",
            "IncompleteRead",
        }
    )


def map_upstream_error(exc: BaseException, *, after_text: bool) -> ErrorInfo:
    """Describe an exception raised by a provider in our vocabulary.

    `after_text` says whether the client has already received part of the answer: a
    broken connection is then `upstream_disconnected` (the partial text stands).
    """
    if isinstance(exc, GatewayError):
        return exc.info
    if isinstance(exc, asyncio.TimeoutError):
        return ErrorInfo(
            code=ErrorCode.TIMEOUT, message="The model did not answer in time.", retryable=True
        )
    status = _status_of(exc)
    if status is not None and status in _BY_STATUS:
        code, retryable, message = _BY_STATUS[status]
        if after_text and code is ErrorCode.UPSTREAM_UNAVAILABLE:
            code = ErrorCode.UPSTREAM_DISCONNECTED
        return ErrorInfo(
            code=code,
            message=message,
            retryable=retryable,
            retry_after=_retry_after_of(exc) if code is ErrorCode.RATE_LIMITED else None,
        )
    if status is not None and status >= 500:
        code, retryable, message = _BY_STATUS[503]
        return ErrorInfo(code=code, message=message, retryable=retryable)
    if _is_disconnect(exc):
        if after_text:
            return ErrorInfo(
                code=ErrorCode.UPSTREAM_DISCONNECTED,
                message="The connection to the model was lost mid-answer.",
                retryable=True,
            )
        return ErrorInfo(
            code=ErrorCode.UPSTREAM_UNAVAILABLE,
            message="The connection to the model failed.",
            retryable=True,
        )
    logger.error("unexpected upstream error", exc_info=exc)
    return ErrorInfo(code=ErrorCode.INTERNAL, message="The gateway failed unexpectedly.")
