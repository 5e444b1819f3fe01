"""`map_upstream_error` against real exception instances from every client library we use."""

from __future__ import annotations

import logging
from collections.abc import Callable

import aiohttp
import google.api_core.exceptions as core
import google.auth.exceptions as auth
import grpc
import httpx
import httpx2
import openai
import pytest
from google.genai import errors as genai_errors
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from langchain_core.exceptions import ModelRateLimitError
from langchain_google_genai.chat_models import (
    GoogleAPIError,
    GoogleInvalidRequestError,
    GooglePermissionDeniedError,
    GoogleRateLimitError,
)
from langchain_openai.chat_models.base import OpenAIConnectionError, OpenAIRateLimitError

from gemini_sse._exceptions import GatewayError
from gemini_sse._models import ErrorCode, ErrorInfo
from gemini_sse.server.providers.fake import SimulatedDisconnect, SimulatedUpstreamError
from gemini_sse.server.upstream import map_upstream_error

OPENAI_URL = "http://127.0.0.1:9/v1/chat/completions"


def _chained(outer: BaseException, cause: BaseException) -> BaseException:
    """`outer` raised `from cause`, as the libraries do."""
    try:
        raise outer from cause
    except BaseException as exc:
        return exc


def _openai_status(cls: type[openai.APIStatusError], status: int, **headers: str) -> Exception:
    request = httpx2.Request("POST", OPENAI_URL)
    response = httpx2.Response(status, headers=headers, request=request)
    return cls(f"Error code: {status} - upstream said no", response=response, body=None)


def _aio_rpc_error(code: grpc.StatusCode) -> Exception:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="no")


def _genai_client_error(status: int, details: list[object] | None = None) -> Exception:
    body = {"error": {"code": status, "message": "upstream said no", "details": details or []}}
    return genai_errors.ClientError(status, body)


def _retry_info(seconds: int, nanos: int = 0) -> error_details_pb2.RetryInfo:
    return error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=seconds, nanos=nanos)
    )


def _httpx_status(status: int) -> Exception:
    request = httpx.Request("POST", "http://127.0.0.1:9/")
    response = httpx.Response(status, request=request)
    return httpx.HTTPStatusError("upstream said no", request=request, response=response)


def _payload_error() -> Exception:
    # What aiohttp raises when a chunked body stops short: its cause carries `code=400`.
    cause = aiohttp.http_exceptions.TransferEncodingError(
        "Not enough data to satisfy transfer length header."
    )
    return _chained(aiohttp.ClientPayloadError("Response payload is not completed"), cause)


RATE = (ErrorCode.RATE_LIMITED, True)
DOWN = (ErrorCode.UPSTREAM_UNAVAILABLE, True)
CUT = (ErrorCode.UPSTREAM_DISCONNECTED, True)
BAD = (ErrorCode.BAD_REQUEST, False)
AUTH = (ErrorCode.UPSTREAM_AUTH, False)
SLOW = (ErrorCode.TIMEOUT, True)
BLOCKED = (ErrorCode.CONTENT_BLOCKED, False)

CASES: list[tuple[str, Callable[[], BaseException], bool, tuple[ErrorCode, bool]]] = [
    # google-api-core, as the Vertex GAPIC client raises them
    ("core-429", lambda: core.ResourceExhausted("quota"), False, RATE),
    ("core-500", lambda: core.InternalServerError("boom"), False, DOWN),
    ("core-503", lambda: core.ServiceUnavailable("down"), False, DOWN),
    ("core-503-after-text", lambda: core.ServiceUnavailable("Socket closed"), True, CUT),
    ("core-400", lambda: core.InvalidArgument("bad"), False, BAD),
    ("core-404", lambda: core.NotFound("no model"), False, BAD),
    ("core-401", lambda: core.Unauthenticated("who"), False, AUTH),
    ("core-403", lambda: core.PermissionDenied("no"), False, AUTH),
    ("core-deadline", lambda: core.DeadlineExceeded("late"), False, SLOW),
    ("core-cancelled", lambda: core.Cancelled("cancelled upstream"), False, DOWN),
    # grpc.aio, unwrapped
    ("grpc-429", lambda: _aio_rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED), False, RATE),
    ("grpc-500", lambda: _aio_rpc_error(grpc.StatusCode.INTERNAL), False, DOWN),
    ("grpc-503", lambda: _aio_rpc_error(grpc.StatusCode.UNAVAILABLE), False, DOWN),
    ("grpc-503-after-text", lambda: _aio_rpc_error(grpc.StatusCode.UNAVAILABLE), True, CUT),
    ("grpc-400", lambda: _aio_rpc_error(grpc.StatusCode.INVALID_ARGUMENT), False, BAD),
    ("grpc-401", lambda: _aio_rpc_error(grpc.StatusCode.UNAUTHENTICATED), False, AUTH),
    ("grpc-403", lambda: _aio_rpc_error(grpc.StatusCode.PERMISSION_DENIED), False, AUTH),
    ("grpc-deadline", lambda: _aio_rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED), False, SLOW),
    # langchain-google-genai: the status is only on the google-genai cause
    (
        "genai-429",
        lambda: _chained(GoogleRateLimitError("429"), _genai_client_error(429)),
        False,
        RATE,
    ),
    (
        "genai-400",
        lambda: _chained(GoogleInvalidRequestError("400"), _genai_client_error(400)),
        False,
        BAD,
    ),
    (
        "genai-403",
        lambda: _chained(GooglePermissionDeniedError("403"), _genai_client_error(403)),
        False,
        AUTH,
    ),
    ("genai-500", lambda: GoogleAPIError(500, {"error": {"code": 500}}), False, DOWN),
    ("genai-503", lambda: GoogleAPIError(503, {"error": {"code": 503}}), False, DOWN),
    ("genai-503-after-text", lambda: GoogleAPIError(503, {}), True, CUT),
    ("genai-bare-429", lambda: GoogleRateLimitError("no cause"), False, RATE),
    ("langchain-429", lambda: ModelRateLimitError("rate"), False, RATE),
    # openai and langchain-openai
    ("openai-429", lambda: _openai_status(openai.RateLimitError, 429), False, RATE),
    (
        "langchain-openai-429",
        lambda: _openai_status(OpenAIRateLimitError, 429),
        False,
        RATE,
    ),
    ("openai-500", lambda: _openai_status(openai.InternalServerError, 500), False, DOWN),
    ("openai-503", lambda: _openai_status(openai.InternalServerError, 503), False, DOWN),
    ("openai-400", lambda: _openai_status(openai.BadRequestError, 400), False, BAD),
    ("openai-401", lambda: _openai_status(openai.AuthenticationError, 401), False, AUTH),
    ("openai-403", lambda: _openai_status(openai.PermissionDeniedError, 403), False, AUTH),
    (
        "openai-connection",
        lambda: openai.APIConnectionError(request=httpx2.Request("POST", OPENAI_URL)),
        False,
        DOWN,
    ),
    (
        "openai-connection-after-text",
        lambda: _chained(
            OpenAIConnectionError(request=httpx2.Request("POST", OPENAI_URL)),
            httpx2.RemoteProtocolError("incomplete chunked read"),
        ),
        True,
        CUT,
    ),
    (
        "openai-timeout",
        lambda: openai.APITimeoutError(request=httpx2.Request("POST", OPENAI_URL)),
        False,
        SLOW,
    ),
    # httpx (google-genai without aiohttp)
    ("httpx-cut", lambda: httpx.RemoteProtocolError("incomplete chunked read"), True, CUT),
    ("httpx-read-error", lambda: httpx.ReadError("reset"), True, CUT),
    ("httpx-connect", lambda: httpx.ConnectError("refused"), False, DOWN),
    ("httpx-read-timeout", lambda: httpx.ReadTimeout("slow"), False, SLOW),
    ("httpx-status-503", lambda: _httpx_status(503), False, DOWN),
    ("httpx-status-429", lambda: _httpx_status(429), False, RATE),
    # aiohttp (google-genai with aiohttp)
    ("aiohttp-cut", _payload_error, True, CUT),
    ("aiohttp-cut-before-text", _payload_error, False, DOWN),
    ("aiohttp-disconnected", lambda: aiohttp.ServerDisconnectedError(), True, CUT),
    ("aiohttp-timeout", lambda: aiohttp.ServerTimeoutError("slow"), False, SLOW),
    # google-auth: credentials refused, missing, or the token endpoint unreachable
    ("auth-refresh", lambda: auth.RefreshError("invalid_grant"), False, AUTH),
    ("auth-missing", lambda: auth.DefaultCredentialsError("none"), False, AUTH),
    ("auth-transport", lambda: auth.TransportError("unreachable"), False, DOWN),
    # the standard library and the simulated model
    ("connection-reset", lambda: ConnectionResetError("reset"), True, CUT),
    ("timeout", lambda: TimeoutError(), False, SLOW),
    ("fake-429", lambda: SimulatedUpstreamError(429, "quota", 2.0), False, RATE),
    ("fake-drop", lambda: SimulatedDisconnect("gone"), True, CUT),
]


@pytest.mark.parametrize(
    ("make", "after_text", "expected"),
    [pytest.param(make, after, expected, id=name) for name, make, after, expected in CASES],
)
def test_foreign_errors_map_to_our_codes(
    make: Callable[[], BaseException], after_text: bool, expected: tuple[ErrorCode, bool]
) -> None:
    """Each library's exception maps to the code and retryability of the table."""
    info = map_upstream_error(make(), after_text=after_text)
    assert (info.code, info.retryable) == expected


def test_openai_content_filter_is_content_blocked() -> None:
    """A 400 whose error code is `content_filter` (Azure's blocked prompt) is content_blocked."""
    request = httpx2.Request("POST", OPENAI_URL)
    response = httpx2.Response(400, request=request)
    exc = openai.BadRequestError(
        "filtered", response=response, body={"code": "content_filter", "message": "filtered"}
    )
    info = map_upstream_error(exc, after_text=False)
    assert (info.code, info.retryable) == BLOCKED


@pytest.mark.parametrize(
    ("make", "retry_after"),
    [
        pytest.param(
            lambda: core.ResourceExhausted("quota", details=[_retry_info(3, 500_000_000)]),
            3.5,
            id="grpc-retry-info",
        ),
        pytest.param(
            lambda: _chained(
                GoogleRateLimitError("429"),
                _genai_client_error(
                    429,
                    [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2.5s"}],
                ),
            ),
            2.5,
            id="json-retry-info",
        ),
        pytest.param(
            lambda: _openai_status(openai.RateLimitError, 429, **{"retry-after": "4"}),
            4.0,
            id="retry-after-header",
        ),
        pytest.param(
            lambda: _openai_status(openai.RateLimitError, 429, **{"retry-after-ms": "1500"}),
            1.5,
            id="retry-after-ms-header",
        ),
        pytest.param(
            lambda: _openai_status(
                openai.RateLimitError, 429, **{"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}
            ),
            None,
            id="http-date-ignored",
        ),
        pytest.param(lambda: core.ResourceExhausted("quota"), None, id="unknown"),
    ],
)
def test_rate_limits_carry_retry_after_when_the_upstream_says(
    make: Callable[[], BaseException], retry_after: float | None
) -> None:
    """`retry_after` comes from RetryInfo (gRPC or JSON) or Retry-After, else stays unset."""
    info = map_upstream_error(make(), after_text=False)
    assert info.code == ErrorCode.RATE_LIMITED
    assert info.retry_after == retry_after


def test_only_rate_limits_carry_retry_after() -> None:
    """A 503 with a Retry-After header is still plain upstream_unavailable, without a delay."""
    exc = _openai_status(openai.InternalServerError, 503, **{"retry-after": "4"})
    assert map_upstream_error(exc, after_text=False).retry_after is None


def test_gateway_errors_pass_through_unchanged() -> None:
    """An error already in our vocabulary (e.g. raised by a provider) is returned as is."""
    info = ErrorInfo(code=ErrorCode.CONTENT_BLOCKED, message="blocked")
    assert map_upstream_error(GatewayError(info), after_text=True) is info


def test_messages_are_ours_without_upstream_text_urls_or_secrets() -> None:
    """Whatever the upstream message says (URLs, keys), our message says none of it."""
    secret = "key=AIzaSECRET https://example.invalid/v1?token=ya29.SECRET"
    for exc in (
        core.PermissionDenied(secret),
        _genai_client_error(403),
        _openai_status(openai.AuthenticationError, 401),
        httpx.ConnectError(secret),
        auth.RefreshError(secret),
    ):
        info = map_upstream_error(exc, after_text=False)
        assert "SECRET" not in info.message
        assert "upstream said no" not in info.message
        assert "Traceback" not in info.message


def test_unknown_errors_are_internal_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """An exception nobody expected is `internal`, not retried, and logged for operators."""
    with caplog.at_level(logging.ERROR, logger="gemini_sse.upstream"):
        info = map_upstream_error(ValueError("what"), after_text=False)
    assert (info.code, info.retryable) == (ErrorCode.INTERNAL, False)
    assert "ValueError" in caplog.text
