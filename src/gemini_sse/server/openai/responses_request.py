"""A Responses API request as the gateway's own `StreamRequest`, after naming what it refuses.

`refusal()` finds the first thing a `responses_models.ResponseRequest` asks that the gateway
cannot serve, as `(param, message)` for a 400: the fields declared only to be refused,
structured output, hosted tools other than web search, input items and parts of kinds not
served, a `function_call_output` without its call. `to_stream_request()` then turns what
it can honour into the gateway's own request: `function` tools, `web_search` (Google
Search grounding), `reasoning`, images and files, and the `function_call` /
`function_call_output` items of a tool-calling loop.
Reference: https://platform.openai.com/docs/api-reference/responses/create
"""

from __future__ import annotations

import json
import mimetypes
from typing import Any, Literal

from pydantic import ValidationError

from ..._models import (
    ChatMessage,
    NamedToolChoice,
    StreamRequest,
    ThinkingOptions,
    Tool,
    ToolChoice,
)
from .responses_models import (
    SIGNATURE,
    InputItem,
    InputPart,
    ReasoningOptions,
    ResponseRequest,
    ToolChoiceSpec,
    ToolSpec,
)

# Fields that change the answer, what they ask for, and the values that ask for nothing.
_REFUSED: dict[str, tuple[str, tuple[object, ...]]] = {
    "previous_response_id": ("Continuing a stored response", (None,)),
    "conversation": ("Conversations", (None,)),
    "prompt": ("Prompt templates", (None,)),
    # Encrypted reasoning is asked for by stateless tool loops; Gemini's own state travels
    # with its calls instead (`SIGNATURE`), so there is none to add.
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
# OpenAI's reasoning efforts as Gemini's thinking levels; deeper than `high` is `high`.
_LEVELS: dict[str, Literal["minimal", "low", "medium", "high"]] = {
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}

# --- what is refused --------------------------------------------------------------------


def refusal(request: ResponseRequest) -> tuple[str, str] | None:
    """`(param, message)` for the first thing asked that the gateway cannot serve."""
    for field, (what, neutral) in _REFUSED.items():
        if getattr(request, field) not in neutral:
            return field, f"{what} is not supported by this gateway (`{field}`)."
    if request.text is not None:
        if request.text.format is not None and request.text.format.type != "text":
            return "text.format", "Structured output is not supported (`text.format`)."
        if request.text.verbosity is not None:
            return "text.verbosity", "A verbosity level is not supported (`text.verbosity`)."
    if request.background and request.store is False:
        return "store", "A background response is stored: `store` may not be false."
    if request.reasoning is not None and request.reasoning.mode not in (None, "standard"):
        return "reasoning.mode", "Only the `standard` reasoning mode is served."
    return _tools_refusal(request) or _input_refusal(request)


def _tools_refusal(request: ResponseRequest) -> tuple[str, str] | None:
    for i, tool in enumerate(request.tools or ()):
        if (problem := _tool_problem(tool)) is not None:
            return f"tools[{i}]{problem[0]}", problem[1]
    names = {tool.name for tool in _functions(request)}
    choice = request.tool_choice
    if isinstance(choice, ToolChoiceSpec):
        if choice.type != "function":
            return "tool_choice", "Only a `function` may be chosen (`tool_choice`)."
        if choice.name not in names:
            return "tool_choice.name", f"{choice.name!r} is not a `function` in `tools`."
    elif choice == "required" and not names:
        return "tool_choice", "`required` needs a `function` in `tools`."
    if request.parallel_tool_calls is False and names:
        # Gemini may answer with several calls at once and cannot be told not to.
        return "parallel_tool_calls", "`parallel_tool_calls: false` is not supported."
    return None


def _input_refusal(request: ResponseRequest) -> tuple[str, str] | None:
    calls: set[str | None] = set()
    for i, item in enumerate(request.input if isinstance(request.input, list) else ()):
        if (problem := _item_problem(item)) is not None:
            return f"input[{i}]{problem[0]}", problem[1]
        if item.type == "function_call":
            calls.add(item.call_id)
        elif item.type == "function_call_output" and item.call_id not in calls:
            return f"input[{i}]", f"No `function_call` before it has call_id {item.call_id!r}."
    return None


def _tool_problem(tool: ToolSpec) -> tuple[str, str] | None:
    """`(where, why)` this tool cannot be served; None if it can."""
    if tool.type in _WEB_SEARCH:
        if tool.filters and tool.filters.get("allowed_domains"):
            return ".filters", "Google Search cannot be limited to domains (`filters`)."
        return None
    if tool.type != "function":
        return (
            ".type",
            f"`{tool.type}` tools are not supported; use `function` or `web_search`.",
        )
    try:
        _tool(tool)
    except ValidationError as exc:
        error = exc.errors()[0]
        return "".join(f".{part}" for part in error["loc"]), error["msg"]
    return None


def _item_problem(item: InputItem) -> tuple[str, str] | None:
    """`(where, why)` this item cannot be served (`where` is under the item); None if it can."""
    match item.type:
        case None | "message":
            if item.role not in ("user", "assistant", "system", "developer"):
                roles = "`user`, `assistant`, `system` or `developer`"
                return ".role", f"A message's role is {roles}."
            for j, part in enumerate(item.content if isinstance(item.content, list) else ()):
                if (why := _part_problem(part, item.role)) is not None:
                    return f".content[{j}]", why
        case "function_call":
            if not (item.call_id and item.name):
                return "", "A `function_call` item needs `call_id` and `name`."
            try:
                arguments = json.loads(item.arguments or "{}")
            except ValueError:
                arguments = None
            if not isinstance(arguments, dict):
                return ".arguments", "A call's `arguments` must be a JSON object, as text."
        case "function_call_output":
            if not item.call_id:
                return "", "A `function_call_output` item needs `call_id`."
            for j, part in enumerate(item.output if isinstance(item.output, list) else ()):
                if part.type != "input_text" or part.text is None:
                    return f".output[{j}]", "A function's output is text (`input_text`)."
        case "reasoning":
            pass  # a summary for people: the model's own state is in the signatures
        case _:
            return "", f"`{item.type}` input items are not supported."
    return None


def _part_problem(part: InputPart, role: str | None) -> str | None:
    """Why this part cannot be served in a message of `role`; None if it can."""
    if part.type in _TEXT_PARTS:
        return None if part.text is not None else "A text part needs `text`."
    if part.type not in _MEDIA_PARTS:
        return f"`{part.type}` content parts are not supported; send text, images or files."
    if role != "user":
        return "Only a user message may carry images and files."
    if part.file_id is not None:
        return "Uploaded files (`file_id`) are not kept here; send the data or a URL."
    if part.type == "input_image":
        return None if part.image_url else "An image needs `image_url`."
    if not (part.file_data or part.file_url):
        return "A file needs `file_data` or `file_url`."
    if part.file_data and not part.file_data.startswith("data:") and not _guessed(part):
        return "Send `file_data` as a `data:` URL, or with a `filename` that shows its type."
    return None


# --- the gateway's own request ----------------------------------------------------------


def to_stream_request(request: ResponseRequest) -> StreamRequest:
    """The gateway's own request for the same answer (call `refusal()` first).

    Raises `pydantic.ValidationError` for what only the gateway's models check (a
    blank message, text that is not valid Unicode).
    """
    functions = _functions(request)
    choice: ToolChoice | None = None  # of web search alone: `grounding` says it
    if isinstance(request.tool_choice, ToolChoiceSpec):  # a function, `refusal()` made sure
        choice = NamedToolChoice(name=request.tool_choice.name or "")
    elif functions:
        choice = request.tool_choice
    searching = request.tool_choice != "none" and any(
        tool.type in _WEB_SEARCH for tool in request.tools or ()
    )
    return StreamRequest(
        messages=[ChatMessage.model_validate(turn) for turn in _turns(request)],
        model=request.model,
        temperature=request.temperature,
        max_output_tokens=request.max_output_tokens,
        top_p=request.top_p,
        separators=False,
        thinking=None if request.reasoning is None else _thinking(request.reasoning),
        tools=[_tool(tool) for tool in functions] or None,
        tool_choice=choice,
        grounding=searching or None,
        simulation=request.simulation,
    )


def _functions(request: ResponseRequest) -> list[ToolSpec]:
    return [tool for tool in request.tools or () if tool.type == "function"]


def _turns(request: ResponseRequest) -> list[dict[str, Any]]:
    """The conversation as the gateway's messages, as dicts."""
    turns: list[dict[str, Any]] = []
    if request.instructions:
        turns.append({"role": "system", "content": request.instructions})
    if isinstance(request.input, str):
        return [*turns, {"role": "user", "content": request.input}]
    for item in request.input:
        if item.type == "function_call":
            # A response's calls, and the text before them, are one assistant turn.
            last = turns[-1] if turns else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(_call(item))
            else:
                turns.append({"role": "assistant", "tool_calls": [_call(item)]})
        elif item.type == "function_call_output":
            turns.append({"role": "tool", "tool_call_id": item.call_id, "content": _text(item)})
        elif item.type != "reasoning":
            turns.append(_message(item))
    return turns


def _call(item: InputItem) -> dict[str, Any]:
    """A `function_call` item as the gateway's `ToolCall`, as a dict."""
    call: dict[str, Any] = {
        "call_id": item.call_id,
        "name": item.name,
        "arguments": item.arguments or "{}",
    }
    signature: Any = item.model_extra or {}
    for key in SIGNATURE:
        signature = signature.get(key) if isinstance(signature, dict) else None
    if isinstance(signature, str):
        call["signature"] = signature
    return call


def _message(item: InputItem) -> dict[str, Any]:
    """A message item as the gateway's `ChatMessage`, as a dict."""
    role = "system" if item.role == "developer" else item.role
    parts = item.content if isinstance(item.content, list) else []
    if any(part.type in _MEDIA_PARTS for part in parts):
        return {"role": role, "content": [_part(part) for part in parts]}
    return {"role": role, "content": _text(item)}


def _text(item: InputItem) -> str:
    """The content (or a call's output) as one string; parts are joined by newlines."""
    content = item.output if item.type == "function_call_output" else item.content
    if isinstance(content, list):
        return "\n".join(part.text or "" for part in content)
    return content or ""


def _part(part: InputPart) -> dict[str, Any]:
    """The gateway's own content part (`TextPart` or `MediaPart`), as a dict."""
    if part.type in _TEXT_PARTS:
        return {"type": "text", "text": part.text}
    if part.type == "input_image":
        return {"type": "image", "url": part.image_url}
    mime_type = _guessed(part)
    if part.file_data:
        if part.file_data.startswith("data:"):
            return {"type": "file", "url": part.file_data}
        # Bare base64, as some clients send it: its type is its name's.
        return {"type": "file", "url": f"data:{mime_type};base64,{part.file_data}"}
    media = {"type": "file", "url": part.file_url}
    return media if mime_type is None else {**media, "mime_type": mime_type}


def _guessed(part: InputPart) -> str | None:
    return mimetypes.guess_type(part.filename)[0] if part.filename else None


def _tool(tool: ToolSpec) -> Tool:
    """A `function` tool as the gateway's own."""
    return Tool(name=tool.name or "", description=tool.description, parameters=tool.parameters)


def _thinking(reasoning: ReasoningOptions) -> ThinkingOptions:
    """The gateway's thinking options: `none` is off, a summary asks for the thoughts."""
    # Gemini's thought summaries have no length to choose: `concise` is `detailed`.
    summary = reasoning.summary or reasoning.generate_summary
    return ThinkingOptions(
        budget=0 if reasoning.effort == "none" else None,
        level=_LEVELS.get(reasoning.effort or ""),
        include_thoughts=True if summary is not None else None,
    )
