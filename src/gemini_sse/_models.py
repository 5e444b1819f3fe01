"""The wire vocabulary shared by the gateway and the client.

Everything that crosses the network is defined here once: the request body, the four
event types of a stream, and the error body. The server encodes these models, the client
decodes into them; `docs/protocol.md` describes the same shapes in prose.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)


class ErrorCode(StrEnum):
    """Stable error codes: the same in HTTP error bodies and in `error` events.

    Codes are only ever added, never renamed.
    """

    # Upstream (the model provider) failed.
    RATE_LIMITED = "rate_limited"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    BAD_REQUEST = "bad_request"
    UPSTREAM_AUTH = "upstream_auth"
    TIMEOUT = "timeout"
    CONTENT_BLOCKED = "content_blocked"
    UPSTREAM_DISCONNECTED = "upstream_disconnected"
    # The gateway itself.
    OVERLOADED = "overloaded"
    SHUTTING_DOWN = "shutting_down"
    INTERNAL = "internal"
    INVALID_REQUEST = "invalid_request"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    MODEL_NOT_ALLOWED = "model_not_allowed"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    CANCELLED = "cancelled"
    GENERATION_LOST = "generation_lost"
    STREAM_LIMIT = "stream_limit"
    # The gateway's own per-caller limits (requests, tokens, streams), not the model's.
    TOO_MANY_REQUESTS = "too_many_requests"
    # The gateway's own storage of resumable streams (Redis) failed.
    STORE_UNAVAILABLE = "store_unavailable"


#: The codes that mean the model (upstream) failed, not the gateway or the request.
UPSTREAM_CODES: frozenset[ErrorCode] = frozenset(
    {
        ErrorCode.RATE_LIMITED,
        ErrorCode.UPSTREAM_UNAVAILABLE,
        ErrorCode.BAD_REQUEST,
        ErrorCode.UPSTREAM_AUTH,
        ErrorCode.TIMEOUT,
        ErrorCode.CONTENT_BLOCKED,
        ErrorCode.UPSTREAM_DISCONNECTED,
    }
)


class _Model(BaseModel):
    # Fields a newer gateway adds must not break an older client: ignore what we don't know.
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Input(BaseModel):
    # A misspelt option must not be silently dropped: reject what we don't know. Strict:
    # `false` is not 0 and `"5"` is not 5 (an integer still passes where a number is due).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Usage(_Model):
    """Token counts reported by the model for one generation."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    #: Of `input_tokens`, those read from the provider's cache; absent when none were.
    cached_tokens: int | None = None
    #: Of `output_tokens`, those spent thinking; absent when none were.
    reasoning_tokens: int | None = None


class ErrorInfo(_Model):
    """What went wrong: the body of an `error` event and of an HTTP error."""

    code: ErrorCode | str
    message: str
    retryable: bool = False
    retry_after: float | None = None
    request_id: str | None = None
    #: Why the model withheld its answer (`content_blocked`): Gemini's harm category or
    #: block reason (`HARM_CATEGORY_HATE_SPEECH`, `PROHIBITED_CONTENT` ...), when it said.
    category: str | None = None


class ErrorBody(_Model):
    """The JSON body of every HTTP error the gateway sends before a stream starts."""

    error: ErrorInfo


# --- events -----------------------------------------------------------------------------
#
# `event` names the SSE event type and `id` is the SSE `id:` field. Neither is part of the
# JSON `data:` payload: `DATA_EXCLUDE` leaves them out when encoding.

DATA_EXCLUDE: set[str] = {"event", "id"}


class TokenEvent(_Model):
    """A piece of answer text, in the order the model produced it."""

    event: Literal["token"] = "token"
    id: int | None = None
    text: str


class ReasoningEvent(_Model):
    """A piece of the model's thought summary (`thinking.include_thoughts`).

    It comes before the answer's tokens, or among them; it is never part of the answer.
    """

    event: Literal["reasoning"] = "reasoning"
    id: int | None = None
    text: str


class ToolCallDeltaEvent(_Model):
    """A piece of a tool call as the model streams it.

    The first piece of a call (by `index`) carries its `call_id` and `name`; `arguments`
    pieces, joined, make the call's arguments. A `tool_call` with the whole call follows.
    """

    event: Literal["tool_call_delta"] = "tool_call_delta"
    id: int | None = None
    index: int
    call_id: str | None = None
    name: str | None = None
    arguments: str = ""


class ToolCallEvent(_Model):
    """A whole tool call the client should run (its result goes in the next request)."""

    event: Literal["tool_call"] = "tool_call"
    id: int | None = None
    #: The call's place among this answer's calls, from 0.
    index: int
    call_id: str
    name: str
    #: The arguments: a JSON object, as text.
    arguments: str
    #: Gemini's thought signature for the call: send it back with the call in the next
    #: request's history, or a thinking model loses its reasoning.
    signature: str | None = None


class Citation(_Model):
    """A span of the answer text that a source supports (character offsets, end excluded)."""

    start: int
    end: int
    text: str | None = None


class SourceEvent(_Model):
    """A source the answer is grounded in (`grounding`), with the spans it supports."""

    event: Literal["source"] = "source"
    id: int | None = None
    #: The source's number within this answer, from 0.
    index: int
    url: str
    title: str | None = None
    cited: list[Citation] = []


class SeparatorEvent(_Model):
    """The boundary after one upstream model chunk (`index` counts from 0)."""

    event: Literal["separator"] = "separator"
    id: int | None = None
    index: int


class DoneEvent(_Model):
    """The stream finished normally; always the last event of a successful stream."""

    event: Literal["done"] = "done"
    id: int | None = None
    finish_reason: str
    usage: Usage | None = None
    model: str
    chunks: int
    ttft_ms: float | None = None
    duration_ms: float
    #: The fallback target that answered (`GEMINI_SSE_FALLBACK`), when the model asked
    #: for failed before its first token; `model` is then that target's model.
    fallback: str | None = None


class ErrorEvent(_Model):
    """The stream failed; always the last event of a failed stream."""

    event: Literal["error"] = "error"
    id: int | None = None
    code: ErrorCode | str
    message: str
    retryable: bool = False
    retry_after: float | None = None
    request_id: str | None = None
    usage: Usage | None = None
    category: str | None = None

    @property
    def info(self) -> ErrorInfo:
        return ErrorInfo(
            code=self.code,
            message=self.message,
            retryable=self.retryable,
            retry_after=self.retry_after,
            request_id=self.request_id,
            category=self.category,
        )


#: Every event model, as one union.
AnyEvent = (
    TokenEvent
    | ReasoningEvent
    | ToolCallDeltaEvent
    | ToolCallEvent
    | SourceEvent
    | SeparatorEvent
    | DoneEvent
    | ErrorEvent
)
Event = Annotated[AnyEvent, Field(discriminator="event")]
TerminalEvent = DoneEvent | ErrorEvent

EVENT_TYPES: dict[str, type[AnyEvent]] = {
    "token": TokenEvent,
    "reasoning": ReasoningEvent,
    "tool_call_delta": ToolCallDeltaEvent,
    "tool_call": ToolCallEvent,
    "source": SourceEvent,
    "separator": SeparatorEvent,
    "done": DoneEvent,
    "error": ErrorEvent,
}


def event_data(event: AnyEvent) -> str:
    """The JSON `data:` payload of an event: compact, `None` fields left out.

    Non-ASCII is escaped, so U+2028, U+2029 and CR inside text survive every SSE reader.
    """
    return event.model_dump_json(exclude=DATA_EXCLUDE, exclude_none=True, ensure_ascii=True)


def parse_event(name: str, data: str, id: int | None = None) -> AnyEvent:
    """Build the typed event for one SSE event type and JSON payload.

    Raises `KeyError` for an unknown event type and `pydantic.ValidationError` for a
    payload that does not match it.
    """
    return EVENT_TYPES[name].model_validate_json(data).model_copy(update={"id": id})


# --- requests ---------------------------------------------------------------------------


def _encodable(text: str) -> str:
    # JSON may carry lone surrogates ("\ud800"); no model can take them as UTF-8.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    return text


#: Text sent on to a model: any string that is valid Unicode.
Text = Annotated[str, AfterValidator(_encodable)]

# What counts as blank is JSON's own whitespace, spelt out so that the schema's pattern and
# the check agree exactly (Python's `str.strip` and a regex's `\s` each take more).
_BLANK = " \t\n\r"


def _not_blank(text: str) -> str:
    if not text.strip(_BLANK):
        raise ValueError("must not be empty (or only spaces and line breaks)")
    return text


#: The JSON schema pattern of `Content`: a character that is not JSON whitespace.
NOT_BLANK = f"[^{_BLANK}]"

#: Text with something in it besides whitespace: a user's `message`, and every turn's
#: text but a tool's (`ChatMessage`).
Content = Annotated[
    Text,
    AfterValidator(_not_blank),
    Field(json_schema_extra={"minLength": 1, "pattern": NOT_BLANK}),
]


def allow_blank_tool_results(schema: dict[str, Any]) -> None:
    """Say in a message's JSON schema that its `content`, as text, is not blank unless the
    turn is a tool's (`ChatMessage`; the OpenAI-compatible message says the same)."""
    text = {"type": "string", "minLength": 1, "pattern": NOT_BLANK}
    schema["anyOf"] = [
        {"properties": {"role": {"const": "tool"}}},
        {"properties": {"content": {"anyOf": [text, {"type": "array"}, {"type": "null"}]}}},
    ]


class TextPart(_Input):
    """Text among a message's content parts."""

    type: Literal["text"]
    text: Text


class MediaPart(_Input):
    """An image, PDF, audio or video for the model to read, by URL.

    `url` is a `data:` URL (base64), or an `https://` or `gs://` URL the provider
    fetches itself. `mime_type` is required unless a `data:` URL states it.
    """

    type: Literal["image", "file"]
    url: str = Field(min_length=1)
    mime_type: str | None = Field(default=None, pattern=r"^[a-z]+/[A-Za-z0-9.+-]+$")


Part = Annotated[TextPart | MediaPart, Field(discriminator="type")]

#: A function name as Gemini and OpenAI both take it.
ToolName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]


def _json_object(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError("must be a JSON object, as text") from None
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object, as text")
    return text


class ToolCall(_Input):
    """A tool call the model made, sent back in a later request's history."""

    call_id: str = Field(min_length=1, max_length=256)
    name: ToolName
    arguments: Annotated[Text, AfterValidator(_json_object)] = "{}"
    #: The `signature` of the `tool_call` event, as it came.
    signature: str | None = None


class ChatMessage(_Input):
    """One turn of a conversation.

    `content` is text, or (for a user) a list of text and media parts. An assistant turn
    may carry the `tool_calls` it made instead of text; a `tool` turn is the result of
    one call (`tool_call_id`).
    """

    model_config = ConfigDict(json_schema_extra=allow_blank_tool_results)

    role: Literal["system", "user", "assistant", "tool"]
    content: Text | list[Part] | None = None
    tool_calls: list[ToolCall] | None = Field(default=None, min_length=1, max_length=128)
    tool_call_id: str | None = Field(default=None, min_length=1, max_length=256)

    @field_validator("content")
    @classmethod
    def _said_something(cls, content: object, info: ValidationInfo) -> object:
        # A tool may have nothing to return (OpenAI takes an empty result too); every
        # other turn must say something besides whitespace.
        if isinstance(content, str) and info.data.get("role") != "tool":
            _not_blank(content)
        return content

    @model_validator(mode="after")
    def _fits_role(self) -> ChatMessage:
        if isinstance(self.content, list):
            if not self.content:
                raise ValueError("`content` must have at least one part")
            if self.role != "user" and self.media:
                raise ValueError("only a user message may carry images and files")
            if not self.media and not self.text.strip(_BLANK):
                raise ValueError("`content` must not be empty (or only spaces and line breaks)")
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("only an assistant message carries `tool_calls`")
        if (self.tool_call_id is not None) != (self.role == "tool"):
            raise ValueError("a `tool` message, and only one, needs `tool_call_id`")
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError("`content` is required (an assistant may send `tool_calls` instead)")
        return self

    @property
    def text(self) -> str:
        """The message's text: `content`, or its text parts joined by line breaks."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content if isinstance(part, TextPart))

    @property
    def media(self) -> list[MediaPart]:
        """The images and files among the content parts."""
        if not isinstance(self.content, list):
            return []
        return [part for part in self.content if isinstance(part, MediaPart)]


class ThinkingOptions(_Input):
    """How much a thinking model thinks, and whether its thoughts are streamed."""

    #: Thinking tokens (Gemini 2.5): 0 turns thinking off where the model allows, -1
    #: lets the model decide.
    budget: int | None = Field(default=None, ge=-1, le=32_768)
    #: Thinking depth (Gemini 3; OpenAI's reasoning effort).
    level: Literal["minimal", "low", "medium", "high"] | None = None
    #: Stream thought summaries as `reasoning` events.
    include_thoughts: bool | None = None


class Tool(_Input):
    """A function the model may call; the client runs it (`tool_call` event)."""

    name: ToolName
    description: str | None = Field(default=None, max_length=8_000)
    #: The arguments' JSON Schema: an object schema.
    parameters: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _object_schema(self) -> Tool:
        if self.parameters is not None and self.parameters.get("type", "object") != "object":
            raise ValueError("`parameters` must be a JSON Schema of `type: object`")
        return self


class NamedToolChoice(_Input):
    """Make the model call this tool."""

    name: ToolName


ToolChoice = Literal["auto", "none", "required"] | NamedToolChoice


Fault = Literal[
    "rate_limit",
    "unavailable",
    "bad_request",
    "permission_denied",
    "drop",
    "hang",
    "safety",
    "empty",
]


class SimulationOptions(_Input):
    """Per-request behaviour of the simulated model (accepted only while it serves)."""

    fault: Fault | None = None
    # Bounded, so that no request can make the simulated model a denial of service.
    fail_after: int | None = Field(default=None, ge=0, le=10_000)
    chunks: int | None = Field(default=None, ge=0, le=10_000)
    delay_ms: float | None = Field(default=None, ge=0, le=60_000)
    first_delay_ms: float | None = Field(default=None, ge=0, le=600_000)
    #: Answer in Markdown (the gateway's `GEMINI_SSE_FAKE_MARKDOWN` otherwise).
    markdown: bool | None = None


class StreamRequest(_Input):
    """The body of `POST /v1/stream`: a conversation and generation options.

    `message` is the one-turn shorthand for `messages=[{"role": "user", ...}]`.
    """

    # What the gateway checks across fields, said in the schema too: a user turn, as
    # `message` or among `messages`.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["message"], "properties": {"message": {"type": "string"}}},
                {
                    "required": ["messages"],
                    "properties": {
                        "messages": {
                            "type": "array",
                            "contains": {
                                "type": "object",
                                "required": ["role"],
                                "properties": {"role": {"const": "user"}},
                            },
                        }
                    },
                },
            ]
        }
    )

    messages: list[ChatMessage] | None = None
    message: Content | None = None
    model: str | None = Field(default=None, min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_output_tokens: int | None = Field(default=None, ge=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: list[Text] | None = Field(default=None, max_length=16)
    separators: bool | None = None
    thinking: ThinkingOptions | None = None
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: ToolChoice | None = None
    #: Ground the answer in Google Search; its sources come as `source` events.
    grounding: bool | None = None
    simulation: SimulationOptions | None = None

    def conversation(self) -> list[ChatMessage]:
        """The messages to send to the model, with the shorthand expanded."""
        turns = list(self.messages or ())
        if self.message is not None:
            turns.append(ChatMessage(role="user", content=self.message))
        return turns


# --- resumable streams ------------------------------------------------------------------

StreamState = Literal["running", "done", "error", "cancelled"]


class StreamCreated(_Model):
    """The answer to `POST /v1/streams`: where to read the new stream."""

    id: str
    events_url: str
    expires_at: float


class StreamStatus(_Model):
    """A resumable stream's state: running, or how it ended."""

    id: str
    status: StreamState
    model: str
    events: int
    usage: Usage | None = None
    created_at: float
    expires_at: float
