"""OpenAI's Responses API shapes: the request of `POST /v1/responses` and the `response` object.

As with chat completions (`models.py`), the request rejects fields OpenAI does not define,
and declares the ones the gateway cannot honour, where honouring them would change the
answer, only so that `ResponseRequest.refusal()` can name them in a 400.
Reference: https://platform.openai.com/docs/api-reference/responses/create
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..._models import ChatMessage, SimulationOptions, StreamRequest, Usage

# --- requests ---------------------------------------------------------------------------

# Fields that change the answer, what they ask for, and the values that ask for nothing.
_REFUSED: dict[str, tuple[str, tuple[object, ...]]] = {
    "tools": ("Tool calling", (None, [])),
    "tool_choice": ("Tool calling", (None, "none", "auto")),
    "reasoning": ("Reasoning options", (None,)),
    "previous_response_id": ("Continuing a stored response", (None,)),
    "conversation": ("Conversations", (None,)),
    "prompt": ("Prompt templates", (None,)),
    "include": ("Extra output (`include`)", (None, [])),
    "top_logprobs": ("Log probabilities", (None, 0)),
    "context_management": ("Context management", (None, [])),
    "moderation": ("Moderation", (None,)),
    "image": ("Image options", (None,)),
    "access_programs": ("Access programs", (None,)),
    "background_options": ("Background options", (None,)),
}
# Content parts the gateway reads: text the user or an earlier answer wrote.
_TEXT_PARTS = frozenset({"input_text", "output_text"})


class _Loose(BaseModel):
    # Parses what OpenAI defines beyond text (images, tool calls), to be refused by name.
    model_config = ConfigDict(extra="allow", frozen=True)


class InputPart(_Loose):
    """One content part of an input message; only `input_text` and `output_text` are served."""

    type: str
    text: str | None = None


class InputItem(_Loose):
    """One input item: a message (`type` absent or `"message"`); other items are refused."""

    type: str | None = None
    role: str | None = None
    content: str | list[InputPart] | None = None

    def text(self) -> str:
        """The content as one string; text parts are joined by newlines."""
        if isinstance(self.content, list):
            return "\n".join(part.text or "" for part in self.content)
        return self.content or ""


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    type: str


class TextOptions(BaseModel):
    """`text`: the answer's format; only plain text is served."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: TextFormat | None = None
    verbosity: str | None = None


class ResponseStreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    include_obfuscation: bool | None = None  # accepted, nothing to obfuscate


class ResponseRequest(BaseModel):
    """The body of `POST /v1/responses`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    input: str | list[InputItem]
    instructions: str | None = None
    stream: bool | None = None
    background: bool | None = None
    store: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    text: TextOptions | None = None
    # Accepted; they do not change the answer.
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: int | None = None  # no tools are ever called
    truncation: Literal["auto", "disabled"] | None = None  # too long an input is refused
    stream_options: ResponseStreamOptions | None = None
    # Refused unless sent with their neutral value (see `_REFUSED`).
    tools: list[Any] | None = None
    tool_choice: Any = None
    reasoning: Any = None
    previous_response_id: str | None = None
    conversation: Any = None
    prompt: Any = None
    include: list[str] | None = None
    top_logprobs: int | None = None
    context_management: list[Any] | None = None
    moderation: Any = None
    image: Any = None
    access_programs: Any = None
    background_options: Any = None
    # The gateway's own: the simulated model's behaviour for this request.
    simulation: SimulationOptions | None = None

    def refusal(self) -> tuple[str, str] | None:
        """`(param, message)` for the first thing asked that the gateway cannot serve."""
        for field, (what, neutral) in _REFUSED.items():
            if getattr(self, field) not in neutral:
                return field, f"{what} is not supported by this gateway (`{field}`)."
        if self.text is not None:
            if self.text.format is not None and self.text.format.type != "text":
                return "text.format", "Structured output is not supported (`text.format`)."
            if self.text.verbosity is not None:
                return "text.verbosity", "A verbosity level is not supported (`text.verbosity`)."
        if self.background and self.store is False:
            return "store", "A background response is stored: `store` may not be false."
        for i, item in enumerate(self.input if isinstance(self.input, list) else ()):
            if item.type not in (None, "message"):
                return f"input[{i}]", f"`{item.type}` input items are not supported; send text."
            if item.role not in ("user", "assistant", "system", "developer"):
                return f"input[{i}].role", "A message's role is `user`, `assistant`, `system` or "
                "`developer`."
            for j, part in enumerate(item.content if isinstance(item.content, list) else ()):
                param = f"input[{i}].content[{j}]"
                if part.type not in _TEXT_PARTS:
                    return param, f"`{part.type}` content parts are not supported; send text."
                if part.text is None:
                    return param, "A text part needs `text`."
        return None

    def to_stream_request(self) -> StreamRequest:
        """The gateway's own request for the same answer (call `refusal()` first)."""
        turns: list[ChatMessage] = []
        if self.instructions:
            turns.append(ChatMessage(role="system", content=self.instructions))
        if isinstance(self.input, str):
            turns.append(ChatMessage(role="user", content=self.input))
        else:
            for item in self.input:
                role = "system" if item.role == "developer" else item.role
                turns.append(ChatMessage.model_validate({"role": role, "content": item.text()}))
        return StreamRequest(
            messages=turns,
            model=self.model,
            temperature=self.temperature,
            max_output_tokens=self.max_output_tokens,
            top_p=self.top_p,
            separators=False,
            simulation=self.simulation,
        )


# --- the response object ----------------------------------------------------------------

ResponseStatus = Literal["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]


class _Output(BaseModel):
    model_config = ConfigDict(frozen=True)


class OutputText(_Output):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)  # always empty: no citations
    logprobs: list[Any] = Field(default_factory=list)


class OutputMessage(_Output):
    """The one output item: the assistant's message."""

    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    status: Literal["in_progress", "completed", "incomplete"]
    content: list[OutputText]


class InputTokensDetails(_Output):
    cached_tokens: int = 0
    cache_write_tokens: int = 0  # unknown to the gateway's providers


class OutputTokensDetails(_Output):
    reasoning_tokens: int = 0


class ResponseUsage(_Output):
    """Token counts; details the model did not report are 0."""

    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int

    @classmethod
    def of(cls, usage: Usage | None) -> ResponseUsage | None:
        if usage is None:
            return None
        return cls(
            input_tokens=usage.input_tokens,
            input_tokens_details=InputTokensDetails(cached_tokens=usage.cached_tokens or 0),
            output_tokens=usage.output_tokens,
            output_tokens_details=OutputTokensDetails(reasoning_tokens=usage.reasoning_tokens or 0),
            total_tokens=usage.total_tokens,
        )


class ResponseError(_Output):
    """Why a response failed; `code` is the gateway's stable error code."""

    code: str
    message: str


class IncompleteDetails(_Output):
    reason: Literal["max_output_tokens", "content_filter"]


class TextConfig(_Output):
    format: dict[str, str] = Field(default_factory=lambda: {"type": "text"})


class ResponseObject(_Output):
    """OpenAI's `response` object: the answer of `POST /v1/responses` and of the routes
    that read a stored response, and the `response` of lifecycle stream events."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: ResponseStatus
    background: bool
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputMessage]
    parallel_tool_calls: bool = False
    previous_response_id: None = None
    store: bool
    temperature: float | None = None
    text: TextConfig = Field(default_factory=TextConfig)
    tool_choice: Literal["none"] = "none"
    tools: list[Any] = Field(default_factory=list)
    top_p: float | None = None
    truncation: Literal["disabled"] = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
