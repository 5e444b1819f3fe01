"""OpenAI's chat-completions shapes: the request, the answer, `/v1/models` and the error.

Requests reject fields OpenAI does not know (as OpenAI does). Fields OpenAI knows but the
gateway cannot honour, and that would change the answer, are declared here only so that
`ChatCompletionRequest.to_stream_request()` (`translate`) can name them in a 400: nothing
is dropped silently. The answer's pieces are made from our events in `answers`; our
errors take OpenAI's shape in `errors`.
Reference: https://platform.openai.com/docs/api-reference/chat/create

Where OpenAI has no field for what the gateway carries, the field others use is taken:
`reasoning_content` for the thought summary (DeepSeek, vLLM, LiteLLM), and
`extra_content.google.thought_signature` on a tool call for Gemini's thought signature
(Google's own OpenAI-compatible endpoint).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..._models import (
    SimulationOptions,
    StreamRequest,
    ThinkingOptions,
)


class _Input(BaseModel):
    # Strict, like our own requests: `false` is not `0` (nor a neutral value of `n`).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Open(BaseModel):
    # Shapes OpenAI extends with new `type`s: an unknown one parses, to be refused by name.
    model_config = ConfigDict(extra="allow", frozen=True)


class _Output(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- requests ---------------------------------------------------------------------------


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
    # Refused unless sent with their neutral value (see `translate.REFUSED`).
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
        from .translate import to_stream_request  # here: `translate` imports this module

        return to_stream_request(self)


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
