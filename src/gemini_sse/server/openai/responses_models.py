"""OpenAI's Responses API shapes: the request of `POST /v1/responses` and the `response` object.

As with chat completions (`models.py`), the request rejects fields OpenAI does not define,
and declares the ones the gateway cannot honour, where honouring them would change the
answer, only so that `ResponseRequest.refusal()` can name them in a 400.
`ResponseRequest.to_stream_request()` turns what it can honour into the gateway's own
request: `function` tools, `web_search` (Google Search grounding), `reasoning`, images and
files, and the `function_call` / `function_call_output` items of a tool-calling loop.
Reference: https://platform.openai.com/docs/api-reference/responses/create
"""

from __future__ import annotations

import json
import mimetypes
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..._models import (
    ChatMessage,
    NamedToolChoice,
    SimulationOptions,
    StreamRequest,
    ThinkingOptions,
    Tool,
    ToolChoice,
    Usage,
)

# --- requests ---------------------------------------------------------------------------

# Fields that change the answer, what they ask for, and the values that ask for nothing.
_REFUSED: dict[str, tuple[str, tuple[object, ...]]] = {
    "previous_response_id": ("Continuing a stored response", (None,)),
    "conversation": ("Conversations", (None,)),
    "prompt": ("Prompt templates", (None,)),
    # Encrypted reasoning is asked for by stateless tool loops; Gemini's own state travels
    # with its calls instead (`_SIGNATURE`), so there is none to add.
    "include": ("Extra output (`include`)", (None, [], ["reasoning.encrypted_content"])),
    "top_logprobs": ("Log probabilities", (None, 0)),
    "context_management": ("Context management", (None, [])),
    "moderation": ("Moderation", (None,)),
    "image": ("Image options", (None,)),
    "access_programs": ("Access programs", (None,)),
    "background_options": ("Background options", (None,)),
}
# Content parts the gateway reads: text the user or an earlier answer wrote, and (from the
# user) images and files, by the kind of media part each becomes.
_TEXT_PARTS = frozenset({"input_text", "output_text"})
_MEDIA_PARTS = {"input_image": "image", "input_file": "file"}
# OpenAI's hosted web search, served as Gemini's grounding in Google Search.
_WEB_SEARCH = frozenset(
    {"web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11"}
)
# Where a `function_call` item carries Gemini's thought signature: Google's own extension
# of OpenAI's shapes (`extra_content.google.thought_signature`), which clients that replay
# `response.output` as the next `input` send back untouched.
_SIGNATURE = ("extra_content", "google", "thought_signature")
# OpenAI's reasoning efforts as Gemini's thinking levels; deeper than `high` is `high`.
_LEVELS: dict[str, Literal["minimal", "low", "medium", "high"]] = {
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}


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

    def problem(self, role: str | None) -> str | None:
        """Why this part cannot be served in a message of `role`; None if it can."""
        if self.type in _TEXT_PARTS:
            return None if self.text is not None else "A text part needs `text`."
        if self.type not in _MEDIA_PARTS:
            return f"`{self.type}` content parts are not supported; send text, images or files."
        if role != "user":
            return "Only a user message may carry images and files."
        if self.file_id is not None:
            return "Uploaded files (`file_id`) are not kept here; send the data or a URL."
        if self.type == "input_image":
            return None if self.image_url else "An image needs `image_url`."
        if not (self.file_data or self.file_url):
            return "A file needs `file_data` or `file_url`."
        if self.file_data and not self.file_data.startswith("data:") and not self._guessed():
            return "Send `file_data` as a `data:` URL, or with a `filename` that shows its type."
        return None

    def part(self) -> dict[str, Any]:
        """The gateway's own content part (`TextPart` or `MediaPart`), as a dict."""
        if self.type in _TEXT_PARTS:
            return {"type": "text", "text": self.text}
        if self.type == "input_image":
            return {"type": "image", "url": self.image_url}
        mime_type = self._guessed()
        if self.file_data:
            if self.file_data.startswith("data:"):
                return {"type": "file", "url": self.file_data}
            # Bare base64, as some clients send it: its type is its name's.
            return {"type": "file", "url": f"data:{mime_type};base64,{self.file_data}"}
        part = {"type": "file", "url": self.file_url}
        return part if mime_type is None else {**part, "mime_type": mime_type}

    def _guessed(self) -> str | None:
        return mimetypes.guess_type(self.filename)[0] if self.filename else None


class InputItem(_Loose):
    """An input item: a message, a `function_call`, its `function_call_output`, `reasoning`."""

    type: str | None = None
    role: str | None = None
    content: str | list[InputPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[InputPart] | None = None

    def text(self) -> str:
        """The content (or a call's output) as one string; parts are joined by newlines."""
        content = self.output if self.type == "function_call_output" else self.content
        if isinstance(content, list):
            return "\n".join(part.text or "" for part in content)
        return content or ""

    def problem(self) -> tuple[str, str] | None:
        """`(where, why)` this item cannot be served (`where` is under the item); None if it can."""
        match self.type:
            case None | "message":
                if self.role not in ("user", "assistant", "system", "developer"):
                    roles = "`user`, `assistant`, `system` or `developer`"
                    return ".role", f"A message's role is {roles}."
                for j, part in enumerate(self.content if isinstance(self.content, list) else ()):
                    if (why := part.problem(self.role)) is not None:
                        return f".content[{j}]", why
            case "function_call":
                if not (self.call_id and self.name):
                    return "", "A `function_call` item needs `call_id` and `name`."
                try:
                    arguments = json.loads(self.arguments or "{}")
                except ValueError:
                    arguments = None
                if not isinstance(arguments, dict):
                    return ".arguments", "A call's `arguments` must be a JSON object, as text."
            case "function_call_output":
                if not self.call_id:
                    return "", "A `function_call_output` item needs `call_id`."
                for j, part in enumerate(self.output if isinstance(self.output, list) else ()):
                    if part.type != "input_text" or part.text is None:
                        return f".output[{j}]", "A function's output is text (`input_text`)."
            case "reasoning":
                pass  # a summary for people: the model's own state is in the signatures
            case _:
                return "", f"`{self.type}` input items are not supported."
        return None

    def call(self) -> dict[str, Any]:
        """A `function_call` item as the gateway's `ToolCall`, as a dict."""
        call: dict[str, Any] = {
            "call_id": self.call_id,
            "name": self.name,
            "arguments": self.arguments or "{}",
        }
        signature: Any = self.model_extra or {}
        for key in _SIGNATURE:
            signature = signature.get(key) if isinstance(signature, dict) else None
        if isinstance(signature, str):
            call["signature"] = signature
        return call

    def message(self) -> dict[str, Any]:
        """A message item as the gateway's `ChatMessage`, as a dict."""
        role = "system" if self.role == "developer" else self.role
        parts = self.content if isinstance(self.content, list) else []
        if any(part.type in _MEDIA_PARTS for part in parts):
            return {"role": role, "content": [part.part() for part in parts]}
        return {"role": role, "content": self.text()}


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

    def problem(self) -> tuple[str, str] | None:
        """`(where, why)` this tool cannot be served; None if it can."""
        if self.type in _WEB_SEARCH:
            if self.filters and self.filters.get("allowed_domains"):
                return ".filters", "Google Search cannot be limited to domains (`filters`)."
            return None
        if self.type != "function":
            return (
                ".type",
                f"`{self.type}` tools are not supported; use `function` or `web_search`.",
            )
        try:
            self.tool()
        except ValidationError as exc:
            error = exc.errors()[0]
            return "".join(f".{part}" for part in error["loc"]), error["msg"]
        return None

    def tool(self) -> Tool:
        """A `function` tool as the gateway's own."""
        return Tool(name=self.name or "", description=self.description, parameters=self.parameters)


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

    def thinking(self) -> ThinkingOptions:
        """The gateway's thinking options: `none` is off, a summary asks for the thoughts."""
        # Gemini's thought summaries have no length to choose: `concise` is `detailed`.
        summary = self.summary or self.generate_summary
        return ThinkingOptions(
            budget=0 if self.effort == "none" else None,
            level=_LEVELS.get(self.effort or ""),
            include_thoughts=True if summary is not None else None,
        )


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
    # Refused unless sent with their neutral value (see `_REFUSED`).
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
        if self.reasoning is not None and self.reasoning.mode not in (None, "standard"):
            return "reasoning.mode", "Only the `standard` reasoning mode is served."
        return self._tools_refusal() or self._input_refusal()

    def _tools_refusal(self) -> tuple[str, str] | None:
        for i, tool in enumerate(self.tools or ()):
            if (problem := tool.problem()) is not None:
                return f"tools[{i}]{problem[0]}", problem[1]
        names = {tool.name for tool in self._functions()}
        choice = self.tool_choice
        if isinstance(choice, ToolChoiceSpec):
            if choice.type != "function":
                return "tool_choice", "Only a `function` may be chosen (`tool_choice`)."
            if choice.name not in names:
                return "tool_choice.name", f"{choice.name!r} is not a `function` in `tools`."
        elif choice == "required" and not names:
            return "tool_choice", "`required` needs a `function` in `tools`."
        if self.parallel_tool_calls is False and names:
            # Gemini may answer with several calls at once and cannot be told not to.
            return "parallel_tool_calls", "`parallel_tool_calls: false` is not supported."
        return None

    def _input_refusal(self) -> tuple[str, str] | None:
        calls: set[str | None] = set()
        for i, item in enumerate(self.input if isinstance(self.input, list) else ()):
            if (problem := item.problem()) is not None:
                return f"input[{i}]{problem[0]}", problem[1]
            if item.type == "function_call":
                calls.add(item.call_id)
            elif item.type == "function_call_output" and item.call_id not in calls:
                return f"input[{i}]", f"No `function_call` before it has call_id {item.call_id!r}."
        return None

    def _functions(self) -> list[ToolSpec]:
        return [tool for tool in self.tools or () if tool.type == "function"]

    def to_stream_request(self) -> StreamRequest:
        """The gateway's own request for the same answer (call `refusal()` first).

        Raises `pydantic.ValidationError` for what only the gateway's models check (a
        blank message, text that is not valid Unicode).
        """
        functions = self._functions()
        choice: ToolChoice | None = None  # of web search alone: `grounding` says it
        if isinstance(self.tool_choice, ToolChoiceSpec):  # a function, `refusal()` made sure
            choice = NamedToolChoice(name=self.tool_choice.name or "")
        elif functions:
            choice = self.tool_choice
        searching = self.tool_choice != "none" and any(
            tool.type in _WEB_SEARCH for tool in self.tools or ()
        )
        return StreamRequest(
            messages=[ChatMessage.model_validate(turn) for turn in self._turns()],
            model=self.model,
            temperature=self.temperature,
            max_output_tokens=self.max_output_tokens,
            top_p=self.top_p,
            separators=False,
            thinking=None if self.reasoning is None else self.reasoning.thinking(),
            tools=[tool.tool() for tool in functions] or None,
            tool_choice=choice,
            grounding=searching or None,
            simulation=self.simulation,
        )

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

    def _turns(self) -> list[dict[str, Any]]:
        """The conversation as the gateway's messages, as dicts."""
        turns: list[dict[str, Any]] = []
        if self.instructions:
            turns.append({"role": "system", "content": self.instructions})
        if isinstance(self.input, str):
            return [*turns, {"role": "user", "content": self.input}]
        for item in self.input:
            if item.type == "function_call":
                # A response's calls, and the text before them, are one assistant turn.
                last = turns[-1] if turns else None
                if last is not None and last["role"] == "assistant":
                    last.setdefault("tool_calls", []).append(item.call())
                else:
                    turns.append({"role": "assistant", "tool_calls": [item.call()]})
            elif item.type == "function_call_output":
                turns.append({"role": "tool", "tool_call_id": item.call_id, "content": item.text()})
            elif item.type != "reasoning":
                turns.append(item.message())
        return turns


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
    #: Gemini's thought signature for the call, to be sent back with it (see `_SIGNATURE`).
    extra_content: dict[str, Any] | None = Field(default=None, exclude_if=lambda v: v is None)

    @staticmethod
    def signed(signature: str | None) -> dict[str, Any] | None:
        """`extra_content` for a call with this signature (None: no signature)."""
        if signature is None:
            return None
        return {_SIGNATURE[1]: {_SIGNATURE[2]: signature}}


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
