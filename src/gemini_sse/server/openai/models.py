"""OpenAI's chat-completions shapes, and the gateway's vocabulary translated into them.

Requests reject fields OpenAI does not know (as OpenAI does). Fields OpenAI knows but the
gateway cannot honour, and that would change the answer, are declared here only so that
`ChatCompletionRequest.to_stream_request()` can name them in a 400 (`Refusal`): nothing is
dropped silently. The last sections map our events, error codes, finish reasons and usage
to OpenAI's terms.
Reference: https://platform.openai.com/docs/api-reference/chat/create

Where OpenAI has no field for what the gateway carries, the field others use is taken:
`reasoning_content` for the thought summary (DeepSeek, vLLM, LiteLLM), and
`extra_content.google.thought_signature` on a tool call for Gemini's thought signature
(Google's own OpenAI-compatible endpoint).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..._models import (
    DoneEvent,
    ErrorCode,
    ErrorEvent,
    ErrorInfo,
    SimulationOptions,
    SourceEvent,
    StreamRequest,
    ThinkingOptions,
    ToolCallEvent,
    Usage,
)


class _Input(BaseModel):
    # Strict, like our own requests: `false` is not `0` (nor a neutral value of `n`).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Open(BaseModel):
    # Shapes OpenAI extends with new `type`s: an unknown one parses, to be refused by name.
    model_config = ConfigDict(extra="allow", frozen=True)


class _Output(BaseModel):
    model_config = ConfigDict(frozen=True)


class Refusal(Exception):
    """A request asks what the gateway cannot serve: `param` names it, as OpenAI would."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


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
    "verbosity": ("A verbosity level", (None,)),
    "functions": ("Function calling (`functions`; send `tools`)", (None,)),
    "function_call": ("Function calling (`function_call`; send `tool_choice`)", (None, "none")),
    "prediction": ("Predicted output", (None,)),
    "moderation": ("Moderation", (None,)),
}
REFUSED_IN_MESSAGES: dict[str, str] = {
    "function_call": "Function calling (send `tool_calls`)",
    "audio": "Audio input",
    "refusal": "A refusal turn",
}


class ImageURL(_Input):
    url: str = Field(min_length=1)  # a `data:` URL, or an `https:` one the model fetches
    detail: Literal["auto", "low", "high", "original"] | None = None  # accepted, not passed on


class FileData(_Input):
    file_data: str | None = None  # a `data:` URL, or base64 (its type from `filename`)
    file_id: str | None = None
    filename: str | None = None


class InputAudio(_Input):
    data: str  # base64
    format: Literal["wav", "mp3"]


class ContentPart(_Open):
    """One part of a message's content: text, or for a user an image, file or audio."""

    type: str
    text: str | None = None
    image_url: ImageURL | None = None
    file: FileData | None = None
    input_audio: InputAudio | None = None


class CalledFunction(_Input):
    name: str
    arguments: str


class MessageToolCall(_Open):
    """A call an earlier answer made, sent back in the history."""

    id: str
    type: str = "function"
    function: CalledFunction | None = None
    # Gemini's thought signature, where Google's OpenAI-compatible endpoint puts it.
    extra_content: dict[str, Any] | None = None


class Message(_Input):
    """One turn; `developer` is served as `system`, `function` is refused."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None  # accepted, not passed on
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None
    function_call: Any = None
    audio: Any = None
    refusal: Any = None
    # What an answer's message carries besides: accepted when it is sent back, not passed on.
    annotations: Any = None
    reasoning_content: Any = None


class StreamOptions(_Input):
    """`stream_options`: whether the stream ends with a usage chunk."""

    include_usage: bool | None = None
    include_obfuscation: bool | None = None  # accepted, nothing to obfuscate


class FunctionDefinition(_Input):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolParam(_Open):
    """One of `tools`; only `function` tools are served."""

    type: str
    function: FunctionDefinition | None = None


class ChoiceFunction(_Input):
    name: str


class ToolChoiceParam(_Open):
    """`tool_choice` naming a function: `{"type": "function", "function": {"name"}}`."""

    type: str
    function: ChoiceFunction | None = None


class WebSearchOptions(_Input):
    """`web_search_options`: ground the answer in a web search (Google Search here)."""

    search_context_size: Literal["low", "medium", "high"] | None = None  # accepted, not passed on
    user_location: Any = None


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
    tools: list[ToolParam] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceParam | None = None
    # `none` turns thinking off where the model allows; the others set its depth.
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    web_search_options: WebSearchOptions | None = None
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
    verbosity: str | None = None
    functions: list[Any] | None = None
    function_call: Any = None
    prediction: Any = None
    moderation: Any = None
    # The gateway's own, as on `/v1/stream`: thinking in detail (over `reasoning_effort`),
    # and the simulated model's behaviour for this request.
    thinking: ThinkingOptions | None = None
    simulation: SimulationOptions | None = None

    def max_output_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def to_stream_request(self) -> StreamRequest:
        """The gateway's own request for the same answer; `Refusal` for what it cannot serve."""
        for field, (what, neutral) in REFUSED.items():
            if not _neutral(getattr(self, field), neutral):
                raise Refusal(field, f"{what} is not supported by this gateway (`{field}`).")
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        stop = [s for s in stop or () if s]  # an empty stop sequence stops nothing
        body = {
            "messages": [_turn(i, m) for i, m in enumerate(self.messages)],
            "model": self.model,
            "temperature": self.temperature,
            "max_output_tokens": self.max_output_tokens(),
            "top_p": self.top_p,
            "stop": stop or None,
            "separators": False,
            "thinking": self._thinking(),
            "tools": self._tools(),
            "tool_choice": self._tool_choice(),
            "grounding": self._grounding(),
            "simulation": self.simulation,
        }
        try:
            return StreamRequest.model_validate(body)
        except ValidationError as exc:  # e.g. text that is not valid Unicode
            problem = exc.errors()[0]
            param = _openai_param(tuple(problem["loc"])) or "messages"
            raise Refusal(param, f"{param}: {problem['msg']}") from None

    def _tools(self) -> list[dict[str, Any]] | None:
        functions = []
        for i, tool in enumerate(self.tools or ()):
            at = f"tools[{i}]"
            if tool.type != "function":
                raise Refusal(
                    f"{at}.type", f"`{tool.type}` tools are not supported; send functions."
                )
            function = tool.function
            if function is None:
                raise Refusal(f"{at}.function", "A `function` tool needs `function`.")
            # `strict` is accepted and not enforced (as on /v1/responses): the schema goes to
            # the model, which Gemini follows closely, and refusing it would refuse the
            # OpenAI SDK's own `pydantic_function_tool` and the Agents SDK, which set it.
            functions.append(
                {
                    "name": function.name,
                    "description": function.description,
                    "parameters": function.parameters,
                }
            )
        return functions or None

    def _tool_choice(self) -> str | dict[str, str] | None:
        choice = self.tool_choice
        if isinstance(choice, ToolChoiceParam):
            if choice.type != "function" or choice.function is None:
                raise Refusal("tool_choice", f"A `{choice.type}` tool choice is not supported.")
            return {"name": choice.function.name}
        if choice in ("auto", "none") and not self.tools:
            return None  # nothing to choose from: the same as not saying
        return choice

    def _thinking(self) -> ThinkingOptions | None:
        options: dict[str, Any] = {}
        if self.reasoning_effort == "none":
            options["budget"] = 0
        elif self.reasoning_effort is not None:
            # A client that asks for reasoning is shown it (as LiteLLM does with Gemini);
            # one that does not read `reasoning_content` skips it.
            options = {"level": self.reasoning_effort, "include_thoughts": True}
        if self.thinking is not None:
            options |= self.thinking.model_dump(exclude_none=True)
        return ThinkingOptions(**options) if options else None

    def _grounding(self) -> bool | None:
        search = self.web_search_options
        if search is None:
            return None
        if search.user_location is not None:
            param = "web_search_options.user_location"
            raise Refusal(
                param, f"A searcher's location is not supported by this gateway (`{param}`)."
            )
        return True


def _turn(i: int, m: Message) -> dict[str, Any]:
    """Message `i` as our `ChatMessage` (validated with the whole request)."""
    at = f"messages[{i}]"
    if m.role == "function":
        raise Refusal(f"{at}.role", "`function` messages are not supported; send `tool` messages.")
    for field, what in REFUSED_IN_MESSAGES.items():
        if getattr(m, field) is not None:
            param = f"{at}.{field}"
            raise Refusal(param, f"{what} is not supported by this gateway (`{param}`).")
    turn: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role}
    content = _content(at, m)
    if m.tool_calls:
        turn["tool_calls"] = [_call(f"{at}.tool_calls[{j}]", c) for j, c in enumerate(m.tool_calls)]
        if isinstance(content, str) and not content.strip(_BLANK):
            content = None  # SDKs send "" beside calls; ours says nothing there
    if m.tool_call_id is not None:
        turn["tool_call_id"] = m.tool_call_id
    if content is not None:
        turn["content"] = content
    return turn


_BLANK = " \t\n\r"  # JSON's whitespace, as `_models.Content` counts it


def _content(at: str, m: Message) -> str | list[dict[str, Any]] | None:
    """A message's content: text parts joined by newlines, unless there are media parts."""
    if not isinstance(m.content, list):
        return m.content
    parts = [_part(f"{at}.content[{j}]", part, m.role) for j, part in enumerate(m.content)]
    if all(part["type"] == "text" for part in parts):
        return "\n".join(part["text"] for part in parts)
    return parts


# `input_audio` formats as media types.
_AUDIO = {"wav": "audio/wav", "mp3": "audio/mpeg"}


def _part(at: str, part: ContentPart, role: str) -> dict[str, Any]:
    """One content part as our `TextPart` or `MediaPart`."""
    if part.type == "text":
        if part.text is None or not part.text.strip(_BLANK):
            raise Refusal(at, "A text part needs `text`.")
        return {"type": "text", "text": part.text}
    if part.type not in ("image_url", "file", "input_audio"):
        raise Refusal(at, f"`{part.type}` content parts are not supported.")
    if role != "user":
        raise Refusal(at, f"Only a user message may carry `{part.type}` parts.")
    if part.image_url is not None and part.type == "image_url":
        return {"type": "image", "url": part.image_url.url}
    if part.input_audio is not None and part.type == "input_audio":
        audio = part.input_audio
        return {"type": "file", "url": f"data:{_AUDIO[audio.format]};base64,{audio.data}"}
    if part.file is not None and part.type == "file":
        return {"type": "file", "url": _file_url(f"{at}.file", part.file)}
    raise Refusal(f"{at}.{part.type}", f"A `{part.type}` part needs `{part.type}`.")


def _file_url(at: str, file: FileData) -> str:
    """A file part's data as a `data:` URL (its type from `filename` when it has none)."""
    if file.file_id is not None:
        param = f"{at}.file_id"
        raise Refusal(param, f"Uploaded files are not supported; send `file_data` (`{param}`).")
    if not file.file_data:
        raise Refusal(f"{at}.file_data", "A file part needs `file_data`.")
    if file.file_data.startswith("data:"):
        return file.file_data
    mime_type = mimetypes.guess_type(file.filename or "")[0]
    if mime_type is None:
        raise Refusal(
            f"{at}.filename",
            "Send `file_data` as a `data:` URL, or with a `filename` that shows its type.",
        )
    return f"data:{mime_type};base64,{file.file_data}"


def _call(at: str, call: MessageToolCall) -> dict[str, Any]:
    """An earlier answer's tool call as our `_models.ToolCall`."""
    if call.type != "function" or call.function is None:
        raise Refusal(f"{at}.type", f"`{call.type}` tool calls are not supported.")
    google = (call.extra_content or {}).get("google")
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return {
        "call_id": call.id,
        "name": call.function.name,
        "arguments": call.function.arguments or "{}",  # a call without arguments may send ""
        "signature": signature,
    }


# --- responses --------------------------------------------------------------------------


def _absent(value: object) -> bool:
    return value is None


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


class CompletionFunction(_Output):
    name: str
    arguments: str  # a JSON object, as text


class CompletionToolCall(_Output):
    """A call the model made; the client runs it and sends a `tool` message back."""

    id: str
    type: Literal["function"] = "function"
    function: CompletionFunction
    # Gemini's thought signature: `{"google": {"thought_signature": ...}}`.
    extra_content: dict[str, Any] | None = Field(default=None, exclude_if=_absent)


class URLCitation(_Output):
    url: str
    title: str
    start_index: int  # characters of `content`, the end excluded
    end_index: int


class CompletionAnnotation(_Output):
    type: Literal["url_citation"] = "url_citation"
    url_citation: URLCitation


class AssistantMessage(_Output):
    role: Literal["assistant"] = "assistant"
    content: str | None  # None when the answer is only tool calls
    refusal: None = None
    annotations: list[CompletionAnnotation] = []
    tool_calls: list[CompletionToolCall] | None = Field(default=None, exclude_if=_absent)
    # The thought summary, in the field DeepSeek, vLLM and LiteLLM use.
    reasoning_content: str | None = Field(default=None, exclude_if=_absent)


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


def signature_content(signature: str) -> dict[str, Any]:
    """A thought signature as Google's OpenAI-compatible endpoint attaches it to a call."""
    return {"google": {"thought_signature": signature}}


def tool_call(call: ToolCallEvent) -> CompletionToolCall:
    """A whole tool call, as a message's `tool_calls` holds it."""
    return CompletionToolCall(
        id=call.call_id,
        function=CompletionFunction(name=call.name, arguments=call.arguments),
        extra_content=signature_content(call.signature) if call.signature else None,
    )


def url_citations(sources: Sequence[SourceEvent]) -> list[CompletionAnnotation]:
    """Each span a source supports as a `url_citation`, in the order of the text.

    A source that supports no span in particular cites the empty span at 0; a source
    without a title is titled by its URL (OpenAI's `title` is never null).
    """
    found = [
        CompletionAnnotation(
            url_citation=URLCitation(
                url=source.url, title=source.title or source.url, start_index=start, end_index=end
            )
        )
        for source in sources
        for start, end in [(c.start, c.end) for c in source.cited] or [(0, 0)]
    ]
    # Stable: sources citing the same span stay in their order.
    return sorted(found, key=lambda a: (a.url_citation.start_index, a.url_citation.end_index))


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


# Our names for a function's fields, and where OpenAI's requests have them.
_FUNCTION_FIELDS = {
    "call_id": "id",
    "name": "function.name",
    "arguments": "function.arguments",
    "description": "function.description",
    "parameters": "function.parameters",
}


def _openai_param(loc: Sequence[int | str]) -> str:
    """A location in our `StreamRequest` as the parameter of the OpenAI request it came from."""
    head, _, last = _param(loc).rpartition(".")
    if head.endswith("]") and ("tools[" in head or "tool_calls[" in head):
        last = _FUNCTION_FIELDS.get(last, last)
    return f"{head}.{last}" if head else last


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


_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}


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
