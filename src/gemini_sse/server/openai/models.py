"""OpenAI's chat-completions shapes, and the gateway's vocabulary translated into them.

Requests reject fields OpenAI does not know (as OpenAI does). Fields OpenAI knows but the
gateway cannot honour, and that would change the answer, are declared here only so that
`ChatCompletionRequest.refusal()` can name them in a 400: nothing is dropped silently.
The last section maps our error codes, finish reasons and usage to OpenAI's terms.
Reference: https://platform.openai.com/docs/api-reference/chat/create
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..._models import (
    ChatMessage,
    DoneEvent,
    ErrorCode,
    ErrorEvent,
    ErrorInfo,
    SimulationOptions,
    StreamRequest,
    Usage,
)


class _Input(BaseModel):
    # Strict, like our own requests: `false` is not `0` (nor a neutral value of `n`).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Output(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- requests ---------------------------------------------------------------------------

# Fields that change the answer, what they ask for, and the values that ask for nothing.
REFUSED: dict[str, tuple[str, tuple[object, ...]]] = {
    "n": ("More than one choice", (None, 1)),
    "frequency_penalty": ("A frequency penalty", (None, 0)),
    "presence_penalty": ("A presence penalty", (None, 0)),
    "logit_bias": ("Logit bias", (None, {})),
    "logprobs": ("Log probabilities", (None, False)),
    "top_logprobs": ("Log probabilities", (None, 0)),
    "response_format": ("Structured output", (None, {"type": "text"})),
    "audio": ("Audio output", (None,)),
    "reasoning_effort": ("A reasoning effort", (None,)),
    "verbosity": ("A verbosity level", (None,)),
    "tools": ("Tool calling", (None,)),
    "tool_choice": ("Tool calling", (None, "none")),
    "functions": ("Function calling", (None,)),
    "function_call": ("Function calling", (None, "none")),
    "prediction": ("Predicted output", (None,)),
    "web_search_options": ("Web search", (None,)),
    "moderation": ("Moderation", (None,)),
}
REFUSED_IN_MESSAGES: dict[str, str] = {
    "tool_calls": "Tool calling",
    "tool_call_id": "Tool calling",
    "function_call": "Function calling",
    "audio": "Audio input",
    "refusal": "A refusal turn",
}


class ContentPart(BaseModel):
    """One part of a message's content; only `text` parts are served."""

    # Other part types (image_url, input_audio, file) parse, to be refused by name.
    model_config = ConfigDict(extra="allow", frozen=True)

    type: str
    text: str | None = None


class Message(_Input):
    """One turn; `developer` is served as `system`, `tool` and `function` are refused."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None  # accepted, not passed on
    tool_calls: Any = None
    tool_call_id: Any = None
    function_call: Any = None
    audio: Any = None
    refusal: Any = None

    def text(self) -> str:
        """The content as one string; text parts are joined by newlines."""
        if isinstance(self.content, list):
            return "\n".join(part.text or "" for part in self.content)
        return self.content or ""


class StreamOptions(_Input):
    """`stream_options`: whether the stream ends with a usage chunk."""

    include_usage: bool | None = None
    include_obfuscation: bool | None = None  # accepted, nothing to obfuscate


def _neutral(value: object, neutral: tuple[object, ...]) -> bool:
    """Whether `value` is one of the `neutral` values, type and all (`false` is not `0`)."""
    return any(type(value) is type(n) and value == n for n in neutral)


class ChatCompletionRequest(_Input):
    """The body of `POST /v1/chat/completions`."""

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | Annotated[list[str], Field(max_length=16)] | None = None
    # Accepted; they do not change the answer.
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    seed: int | None = None  # best effort at OpenAI too; not passed on
    # Refused unless sent with their neutral value (see `REFUSED`).
    n: int | None = Field(default=None, ge=1)
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, int] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None
    # Text is the one output there is: anything else is refused by validation.
    modalities: list[Literal["text"]] | None = Field(default=None, min_length=1, max_length=1)
    audio: Any = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    prediction: Any = None
    web_search_options: Any = None
    moderation: Any = None
    # The gateway's own: the simulated model's behaviour for this request.
    simulation: SimulationOptions | None = None

    def refusal(self) -> tuple[str, str] | None:
        """`(param, message)` for the first thing asked that the gateway cannot serve."""
        for field, (what, neutral) in REFUSED.items():
            if not _neutral(getattr(self, field), neutral):
                return field, f"{what} is not supported by this gateway (`{field}`)."
        for i, message in enumerate(self.messages):
            if message.role in ("tool", "function"):
                return f"messages[{i}].role", f"`{message.role}` messages are not supported."
            for field, what in REFUSED_IN_MESSAGES.items():
                if getattr(message, field) is not None:
                    param = f"messages[{i}].{field}"
                    return param, f"{what} is not supported by this gateway (`{param}`)."
            for j, part in enumerate(message.content if isinstance(message.content, list) else ()):
                param = f"messages[{i}].content[{j}]"
                if part.type != "text":
                    return param, f"`{part.type}` content parts are not supported; send text."
                if part.text is None or not part.text.strip(" \t\n\r"):
                    return param, "A text part needs `text`."
        return None

    def max_output_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def to_stream_request(self) -> StreamRequest:
        """The gateway's own request for the same answer (call `refusal()` first)."""
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        stop = [s for s in stop or () if s]  # an empty stop sequence stops nothing
        return StreamRequest(
            messages=[
                # `refusal()` turned tool roles away; validation says so again if not.
                ChatMessage.model_validate(
                    {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                )
                for m in self.messages
            ],
            model=self.model,
            temperature=self.temperature,
            max_output_tokens=self.max_output_tokens(),
            top_p=self.top_p,
            stop=stop or None,
            separators=False,
            simulation=self.simulation,
        )


# --- responses --------------------------------------------------------------------------


class PromptTokensDetails(_Output):
    cached_tokens: int = 0


class CompletionTokensDetails(_Output):
    reasoning_tokens: int = 0


class CompletionUsage(_Output):
    """Token counts, in OpenAI's names."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = PromptTokensDetails()
    completion_tokens_details: CompletionTokensDetails = CompletionTokensDetails()


class AssistantMessage(_Output):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class Choice(_Output):
    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: str


class ChatCompletion(_Output):
    """The answer to a `stream: false` request."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage | None


class ModelCard(_Output):
    id: str
    object: Literal["model"] = "model"
    created: int = 0  # unknown: the gateway does not know when a model was published
    owned_by: str


class ModelList(_Output):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(_Output):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(_Output):
    """OpenAI's error body; `code` is the gateway's stable error code."""

    error: ErrorDetail


# --- the gateway's vocabulary in OpenAI's terms ------------------------------------------

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


def _param(loc: Sequence[int | str]) -> str:
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
    param = _param(tuple(errors[0]["loc"])) if errors else ""
    if errors and errors[0]["type"] == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"  # OpenAI's words
    else:
        message = "; ".join(f"{_param(tuple(e['loc'])) or 'body'}: {e['msg']}" for e in errors[:5])
    info = ErrorInfo(code=ErrorCode.INVALID_REQUEST, message=message or "Invalid request.")
    return info, param or None


def error_detail(info: ErrorInfo, param: str | None = None) -> dict[str, object]:
    """The `error` object OpenAI's clients read, in HTTP bodies and in streams."""
    kind = status_and_type(info, 500)[1]
    if param is None and info.code == ErrorCode.MODEL_NOT_ALLOWED:
        param = "model"
    return {"message": info.message, "type": kind, "param": param, "code": str(info.code)}


_FINISH = {"stop": "stop", "length": "length"}


def finish_reason(end: DoneEvent | ErrorEvent) -> str:
    """OpenAI's `finish_reason` for how a generation ended."""
    if isinstance(end, ErrorEvent):  # only `content_blocked` after some text ends a choice
        return "content_filter"
    return _FINISH.get(end.finish_reason, "stop")


def completion_usage(usage: Usage | None) -> CompletionUsage | None:
    if usage is None:
        return None
    return CompletionUsage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_tokens or 0),
        completion_tokens_details=CompletionTokensDetails(
            reasoning_tokens=usage.reasoning_tokens or 0
        ),
    )
