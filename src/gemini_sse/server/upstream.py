"""The one place where foreign upstream errors become our error vocabulary.

Providers raise whatever their client libraries raise: google-api-core and grpc (Vertex
AI), google-genai and langchain-google-genai's `Google*Error` (Gemini API), openai and
langchain-openai (OpenAI-compatible servers), httpx or aiohttp (a broken connection),
google-auth (refused credentials), the simulated model's own errors. `map_upstream_error`
reads what they carry (an HTTP status, a gRPC status, the kind of failure) and answers
with an `ErrorInfo`; nothing else in the gateway looks at foreign exception types.
Messages are our own: no stack traces, URLs or credentials leak through.

| upstream                                   | code                  | retryable |
|--------------------------------------------|-----------------------|-----------|
| HTTP 429 / RESOURCE_EXHAUSTED              | rate_limited          | yes       |
| HTTP 500, 502, 503 / INTERNAL, UNAVAILABLE | upstream_unavailable  | yes       |
| connection refused or reset before text    | upstream_unavailable  | yes       |
| HTTP 400, 404, 413, 422 / INVALID_ARGUMENT | bad_request           | no        |
| HTTP 401, 403 / UNAUTHENTICATED, PERM...   | upstream_auth         | no        |
| credentials refused by the token endpoint  | upstream_auth         | no        |
| HTTP 408, 504 / DEADLINE_EXCEEDED, timeout | timeout               | yes       |
| OpenAI-style 400 `content_filter`          | content_blocked       | no        |
| stream cut (or 5xx) after some text        | upstream_disconnected | yes       |
| anything else                              | internal              | no        |

`retry_after` is filled for `rate_limited` when the upstream says how long to wait: a
`Retry-After` header, or a `google.rpc.RetryInfo` detail (gRPC or JSON).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAPIError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelPermissionDeniedError,
    ModelRateLimitError,
    ModelTimeoutError,
)

from .._exceptions import GatewayError
from .._models import ErrorCode, ErrorInfo

logger = logging.getLogger("gemini_sse.upstream")

# (code, retryable, message) by HTTP status: the table above, in code.
_BY_STATUS: dict[int, tuple[ErrorCode, bool, str]] = {
    400: (ErrorCode.BAD_REQUEST, False, "The model rejected the request as invalid."),
    401: (ErrorCode.UPSTREAM_AUTH, False, "The gateway's credentials for the model were refused."),
    403: (ErrorCode.UPSTREAM_AUTH, False, "The gateway is not permitted to use this model."),
    404: (ErrorCode.BAD_REQUEST, False, "The model or resource was not found upstream."),
    408: (ErrorCode.TIMEOUT, True, "The model did not answer in time."),
    413: (ErrorCode.BAD_REQUEST, False, "The request is too large for the model."),
    422: (ErrorCode.BAD_REQUEST, False, "The model rejected the request as invalid."),
    429: (ErrorCode.RATE_LIMITED, True, "The model's rate limit or quota was exceeded."),
    499: (ErrorCode.UPSTREAM_UNAVAILABLE, True, "The model's service cancelled the answer."),
    500: (ErrorCode.UPSTREAM_UNAVAILABLE, True, "The model failed with an internal error."),
    502: (ErrorCode.UPSTREAM_UNAVAILABLE, True, "The model's service is unavailable."),
    503: (ErrorCode.UPSTREAM_UNAVAILABLE, True, "The model's service is unavailable."),
    504: (ErrorCode.TIMEOUT, True, "The model did not answer in time."),
}
_OTHER_4XX = (ErrorCode.BAD_REQUEST, False, "The model rejected the request.")
_OTHER_5XX = _BY_STATUS[503]

# gRPC status names (grpc.StatusCode.X.name) to the HTTP status they stand for, as
# google-api-core maps them.
_GRPC_TO_HTTP: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "ABORTED": 503,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}

# LangChain's provider-neutral classification (langchain-core >= 1.x), for exceptions that
# carry no status themselves (langchain-google-genai raises them with the status only on
# the cause).
_BY_LANGCHAIN_CLASS: tuple[tuple[type[BaseException], int], ...] = (
    (ModelRateLimitError, 429),
    (ModelAuthenticationError, 401),
    (ModelPermissionDeniedError, 403),
    (ModelNotFoundError, 404),
    (ContextOverflowError, 400),
    (ModelInvalidRequestError, 400),
    (ModelTimeoutError, 504),
    (ModelAPIError, 500),
)

# Matched by class name (anywhere in the MRO) so that this module needs none of the
# libraries installed: httpx (and openai's httpx2), httpcore, aiohttp, openai, google-auth.
_TIMEOUT_CLASSES = frozenset({"TimeoutException", "APITimeoutError", "ServerTimeoutError"})
_DISCONNECT_CLASSES = frozenset(
    {
        "TransportError",  # httpx / httpcore; also google.auth.exceptions.TransportError
        "NetworkError",
        "RemoteProtocolError",
        "ReadError",
        "WriteError",
        "ConnectError",
        "ClientPayloadError",  # aiohttp
        "ClientConnectionError",
        "ServerDisconnectedError",
        "IncompleteRead",
        "APIConnectionError",  # openai
    }
)
# google-auth: the token endpoint refused the credentials, or there are none.
_CREDENTIAL_CLASSES = frozenset({"RefreshError", "DefaultCredentialsError"})

_RETRY_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def map_upstream_error(exc: BaseException, *, after_text: bool) -> ErrorInfo:
    """Describe an exception raised by a provider in our vocabulary.

    `after_text` says whether the client has already received part of the answer: a
    broken connection (or a server error) is then `upstream_disconnected`, and the
    partial text stands.
    """
    if isinstance(exc, GatewayError):
        return exc.info
    # A wrapper (langchain's Google*Error, openai's connection error) may know less than
    # its cause, but a transport error's cause can be misleading (aiohttp's payload error
    # wraps a parser error with `code=400`): each link is judged before its cause.
    for link in _causes(exc):
        info = _classify(link, after_text)
        if info is not None:
            if info.code is ErrorCode.RATE_LIMITED:
                info = info.model_copy(update={"retry_after": _retry_after(exc)})
            return info
    logger.error("unexpected upstream error: %s", type(exc).__qualname__, exc_info=exc)
    return ErrorInfo(code=ErrorCode.INTERNAL, message="The gateway failed unexpectedly.")


def _classify(exc: BaseException, after_text: bool) -> ErrorInfo | None:
    names = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, TimeoutError) or names & _TIMEOUT_CLASSES:
        return _from_status(504, after_text)
    if getattr(exc, "code", None) == "content_filter":  # openai.BadRequestError (Azure)
        return ErrorInfo(
            code=ErrorCode.CONTENT_BLOCKED,
            message="The model's safety filters rejected the prompt.",
        )
    status = _status_of(exc)
    if status is not None:
        return _from_status(status, after_text)
    if isinstance(exc, ConnectionError | EOFError | ModelConnectionError) or (
        names & _DISCONNECT_CLASSES
    ):
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
    if names & _CREDENTIAL_CLASSES:
        return _from_status(401, after_text)
    for cls, langchain_status in _BY_LANGCHAIN_CLASS:
        if isinstance(exc, cls):
            return _from_status(langchain_status, after_text)
    return None


def _from_status(status: int, after_text: bool) -> ErrorInfo:
    default = _OTHER_5XX if status >= 500 else _OTHER_4XX
    code, retryable, message = _BY_STATUS.get(status, default)
    if after_text and code is ErrorCode.UPSTREAM_UNAVAILABLE:
        code = ErrorCode.UPSTREAM_DISCONNECTED
        message = "The model's service failed mid-answer."
    return ErrorInfo(code=code, message=message, retryable=retryable)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the chain of its explicit causes (`raise ... from`), bounded."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen and len(seen) < 8:
        seen.add(id(link))
        yield link
        link = link.__cause__


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, whatever library raised it.

    `status_code`: openai, httpx, the simulated model; `code`: google-api-core (an int),
    google-genai (an int), grpc (a method returning a `StatusCode`); `status`: aiohttp.
    """
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
    if isinstance(status, int) and 100 <= status < 600:
        return status
    return None


def _retry_after(exc: BaseException) -> float | None:
    """How long the upstream asked us to wait, from anywhere in the cause chain."""
    for link in _causes(exc):
        for found in (_retry_attribute(link), _retry_header(link), _retry_info(link)):
            if found is not None:
                return found
    return None


def _retry_attribute(exc: BaseException) -> float | None:
    value = getattr(exc, "retry_after", None)  # the simulated model
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _retry_header(exc: BaseException) -> float | None:
    """`Retry-After` (seconds; an HTTP date is ignored) or `retry-after-ms`."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None or not hasattr(headers, "get"):
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            value = float(headers.get(name))
        except (TypeError, ValueError):
            continue
        if value >= 0:
            return value / scale
    return None


def _retry_info(exc: BaseException) -> float | None:
    """A `google.rpc.RetryInfo` detail: a protobuf (google-api-core) or JSON (google-genai)."""
    details: Any = getattr(exc, "details", None)
    if callable(details):  # grpc.aio.AioRpcError.details() is the message string
        return None
    if isinstance(details, dict):  # google-genai: the whole JSON error body
        details = (details.get("error") or {}).get("details")
    if not isinstance(details, list | tuple):
        return None
    for detail in details:
        if isinstance(detail, dict):
            if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
                match = _RETRY_DELAY.match(str(detail.get("retryDelay", "")))
                if match:
                    return float(match.group(1))
            continue
        delay = getattr(detail, "retry_delay", None)
        seconds = getattr(delay, "seconds", None)
        if isinstance(seconds, int):
            return seconds + getattr(delay, "nanos", 0) / 1e9
    return None
