"""Our errors in OpenAI's shape, for every OpenAI-compatible route and stream.

The gateway's error (code, message, retryable) becomes OpenAI's `{"error": {"message",
"type", "param", "code"}}` with the HTTP status OpenAI's SDKs map to the matching
exception (`RateLimitError` for 429 ...); `code` stays the gateway's stable code.
Reference: https://platform.openai.com/docs/guides/error-codes
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..._models import ErrorCode, ErrorInfo


class _Output(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorDetail(_Output):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(_Output):
    """OpenAI's error body; `code` is the gateway's stable error code."""

    error: ErrorDetail


# Our codes to (HTTP status, OpenAI error type); other codes keep the gateway's status.
_HTTP: dict[str, tuple[int, str]] = {
    ErrorCode.INVALID_REQUEST: (400, "invalid_request_error"),
    ErrorCode.BAD_REQUEST: (400, "invalid_request_error"),
    ErrorCode.CONTENT_BLOCKED: (400, "invalid_request_error"),
    ErrorCode.UNAUTHORIZED: (401, "authentication_error"),
    ErrorCode.MODEL_NOT_ALLOWED: (404, "invalid_request_error"),
    ErrorCode.NOT_FOUND: (404, "invalid_request_error"),
    ErrorCode.PAYLOAD_TOO_LARGE: (413, "invalid_request_error"),
    ErrorCode.RATE_LIMITED: (429, "rate_limit_error"),
    ErrorCode.TOO_MANY_REQUESTS: (429, "rate_limit_error"),
    ErrorCode.INTERNAL: (500, "server_error"),
    # The gateway's own credentials for the model were refused: the caller's key is fine,
    # so not a 401/403 (which the SDKs report as the caller's authentication error).
    ErrorCode.UPSTREAM_AUTH: (502, "server_error"),
    ErrorCode.UPSTREAM_DISCONNECTED: (502, "server_error"),
    ErrorCode.UPSTREAM_UNAVAILABLE: (503, "server_error"),
    ErrorCode.OVERLOADED: (503, "server_error"),
    ErrorCode.SHUTTING_DOWN: (503, "server_error"),
    ErrorCode.TIMEOUT: (504, "server_error"),
}


def status_and_type(info: ErrorInfo, fallback: int) -> tuple[int, str]:
    """The HTTP status and OpenAI error type for `info` (`fallback`: the gateway's status)."""
    if found := _HTTP.get(info.code):
        return found
    status = 400 if fallback == 422 else fallback  # OpenAI never answers 422
    return status, "server_error" if status >= 500 else "invalid_request_error"


# pydantic names the member of a union that failed in the location: `content.str`,
# `content.list[ContentPart]`. They are not parameters.
_UNION_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def param_name(loc: Sequence[int | str]) -> str:
    """A pydantic error location as OpenAI names a parameter: `messages[0].content`."""
    out = ""
    for part in loc[1:] if loc[:1] == ("body",) else loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier() and part not in _UNION_TAGS:
            out += f".{part}" if out else part
    return out


def invalid_request(errors: Sequence[Any]) -> tuple[ErrorInfo, str | None]:
    """A request body's validation errors as one `invalid_request` and the param to blame."""
    param = param_name(tuple(errors[0]["loc"])) if errors else ""
    if errors and errors[0]["type"] == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"  # OpenAI's words
    else:
        message = "; ".join(
            f"{param_name(tuple(e['loc'])) or 'body'}: {e['msg']}" for e in errors[:5]
        )
    info = ErrorInfo(code=ErrorCode.INVALID_REQUEST, message=message or "Invalid request.")
    return info, param or None


def error_detail(info: ErrorInfo, param: str | None = None) -> dict[str, object]:
    """The `error` object OpenAI's clients read, in HTTP bodies and in streams."""
    kind = status_and_type(info, 500)[1]
    if param is None and info.code == ErrorCode.MODEL_NOT_ALLOWED:
        param = "model"
    return {"message": info.message, "type": kind, "param": param, "code": str(info.code)}
