"""OpenAI's Responses API shapes: the request of `POST /v1/responses` and the `response` object.

As with chat completions (`models.py`), the request rejects fields OpenAI does not define,
and declares the ones the gateway cannot honour, where honouring them would change the
answer, only so that `ResponseRequest.refusal()` can name them in a 400. That check, and
`ResponseRequest.to_stream_request()` for what can be honoured, live in `responses_request`.
The `response` object and its output items are filled from our events by
`responses.ResponseEncoder`.
Reference: https://platform.openai.com/docs/api-reference/responses/create
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..._models import SimulationOptions, StreamRequest, Usage

# --- requests ---------------------------------------------------------------------------

# Where a `function_call` item carries Gemini's thought signature: Google's own extension
# of OpenAI's shapes (`extra_content.google.thought_signature`), which clients that replay
# `response.output` as the next `input` send back untouched.
SIGNATURE = ("extra_content", "google", "thought_signature")


class _Loose(BaseModel):
    # Parses what OpenAI defines beyond what is served (audio, hosted tools), to be refused
    # by name, and keeps what a client replays from an earlier response (ids, statuses).
    model_config = ConfigDict(extra="allow", frozen=True)


class InputPart(_Loose):
    """One content part: text, or from the user an `input_image` or `input_file`."""

    type: str
    text: str | None = None
    image_url: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    file_id: str | None = None
    filename: str | None = None


class InputItem(_Loose):
    """An input item: a message, a `function_call`, its `function_call_output`, `reasoning`."""

    type: str | None = None
    role: str | None = None
    content: str | list[InputPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[InputPart] | None = None


class ToolSpec(_Loose):
    """One entry of `tools`: a `function`, or `web_search` (grounding in Google Search)."""

    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    # Accepted, not enforced: Gemini is asked to fit the schema, with no guarantee. Refusing
    # `true` would refuse most clients (OpenAI's own SDKs send it).
    strict: bool | None = None
    filters: dict[str, Any] | None = None


class ToolChoiceSpec(_Loose):
    """`tool_choice` as an object: `{"type": "function", "name": ...}` is served."""

    type: str
    name: str | None = None


class ReasoningOptions(BaseModel):
    """`reasoning`: how hard the model thinks, and whether a summary of it is streamed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None  # `summary`, before
    context: Literal["auto", "current_turn", "all_turns"] | None = None  # signatures carry it
    mode: str | None = None


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
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceSpec | None = None
    reasoning: ReasoningOptions | None = None
    parallel_tool_calls: bool | None = None
    # Accepted; they do not change the answer.
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    max_tool_calls: int | None = None  # hosted tools': Google Search runs inside the model
    truncation: Literal["auto", "disabled"] | None = None  # too long an input is refused
    stream_options: ResponseStreamOptions | None = None
    # Refused unless sent with their neutral value (see `responses_request`).
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
        from .responses_request import refusal  # here: it imports this module

        return refusal(self)

    def to_stream_request(self) -> StreamRequest:
        """The gateway's own request for the same answer (call `refusal()` first).

        Raises `pydantic.ValidationError` for what only the gateway's models check (a
        blank message, text that is not valid Unicode).
        """
        from .responses_request import to_stream_request  # here: it imports this module

        return to_stream_request(self)

    def echoed(self) -> dict[str, Any]:
        """The tool and reasoning options as the `response` object repeats them."""
        choice = self.tool_choice or "auto"
        reasoning = self.reasoning or ReasoningOptions()
        return {
            "tools": [tool.model_dump(mode="json", exclude_none=True) for tool in self.tools or ()],
            "tool_choice": choice if isinstance(choice, str) else choice.model_dump(mode="json"),
            "parallel_tool_calls": self.parallel_tool_calls is not False,
            "reasoning": {
                "effort": reasoning.effort,
                "summary": reasoning.summary or reasoning.generate_summary,
            },
        }


# --- the response object ----------------------------------------------------------------

ResponseStatus = Literal["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]
ItemStatus = Literal["in_progress", "completed", "incomplete"]


class _Output(BaseModel):
    model_config = ConfigDict(frozen=True)


class UrlCitation(_Output):
    """A span of an `output_text` that a web page supports (character offsets, end excluded)."""

    type: Literal["url_citation"] = "url_citation"
    url: str
    title: str
    start_index: int
    end_index: int


class OutputText(_Output):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[UrlCitation] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)


class OutputMessage(_Output):
    """An output item: the assistant's text."""

    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    status: ItemStatus
    content: list[OutputText]


class SummaryText(_Output):
    type: Literal["summary_text"] = "summary_text"
    text: str


class OutputReasoning(_Output):
    """An output item: the model's thought summary, as one summary part."""

    id: str
    type: Literal["reasoning"] = "reasoning"
    summary: list[SummaryText]
    status: ItemStatus


class OutputFunctionCall(_Output):
    """An output item: a call of one of the request's functions, for the client to run."""

    id: str
    type: Literal["function_call"] = "function_call"
    call_id: str
    name: str
    arguments: str
    status: ItemStatus
    #: Gemini's thought signature for the call, to be sent back with it (see `SIGNATURE`).
    extra_content: dict[str, Any] | None = Field(default=None, exclude_if=lambda v: v is None)

    @staticmethod
    def signed(signature: str | None) -> dict[str, Any] | None:
        """`extra_content` for a call with this signature (None: no signature)."""
        if signature is None:
            return None
        return {SIGNATURE[1]: {SIGNATURE[2]: signature}}


OutputItem = Annotated[
    OutputMessage | OutputReasoning | OutputFunctionCall, Field(discriminator="type")
]


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


class ReasoningConfig(_Output):
    """The `reasoning` options the response was made with."""

    effort: str | None = None
    summary: str | None = None


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
    output: list[OutputItem]
    parallel_tool_calls: bool = True
    previous_response_id: None = None
    reasoning: ReasoningConfig = Field(default_factory=ReasoningConfig)
    store: bool
    temperature: float | None = None
    text: TextConfig = Field(default_factory=TextConfig)
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[dict[str, Any]] = Field(default_factory=list)
    top_p: float | None = None
    truncation: Literal["disabled"] = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
