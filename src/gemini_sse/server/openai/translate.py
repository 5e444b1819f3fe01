"""A chat-completions request as the gateway's own `StreamRequest`, or a `Refusal`.

`models.ChatCompletionRequest` declares fields OpenAI knows but the gateway cannot honour,
where honouring them would change the answer; here they are named in a 400 (`Refusal`),
so nothing is dropped silently. What can be honoured is translated: messages and their
parts (images, files, audio), earlier tool calls with Gemini's thought signature, tools and
`tool_choice`, `reasoning_effort`, and `web_search_options` as grounding in Google Search.
A problem only our `StreamRequest` finds is reported in the OpenAI parameter it came from.
Reference: https://platform.openai.com/docs/api-reference/chat/create
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from ..._models import StreamRequest, ThinkingOptions
from .errors import param_name
from .models import (
    ChatCompletionRequest,
    ContentPart,
    FileData,
    Message,
    MessageToolCall,
    ToolChoiceParam,
)


class Refusal(Exception):
    """A request asks what the gateway cannot serve: `param` names it, as OpenAI would."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


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


def _neutral(value: object, neutral: tuple[object, ...]) -> bool:
    """Whether `value` is one of the `neutral` values, type and all (`false` is not `0`)."""
    return any(type(value) is type(n) and value == n for n in neutral)


def to_stream_request(request: ChatCompletionRequest) -> StreamRequest:
    """The gateway's own request for the same answer; `Refusal` for what it cannot serve."""
    for field, (what, neutral) in REFUSED.items():
        if not _neutral(getattr(request, field), neutral):
            raise Refusal(field, f"{what} is not supported by this gateway (`{field}`).")
    stop = [request.stop] if isinstance(request.stop, str) else request.stop
    stop = [s for s in stop or () if s]  # an empty stop sequence stops nothing
    body = {
        "messages": [_turn(i, m) for i, m in enumerate(request.messages)],
        "model": request.model,
        "temperature": request.temperature,
        "max_output_tokens": request.max_output_tokens(),
        "top_p": request.top_p,
        "stop": stop or None,
        "separators": False,
        "thinking": _thinking(request),
        "tools": _tools(request),
        "tool_choice": _tool_choice(request),
        "grounding": _grounding(request),
        "simulation": request.simulation,
    }
    try:
        return StreamRequest.model_validate(body)
    except ValidationError as exc:  # e.g. text that is not valid Unicode
        problem = exc.errors()[0]
        param = _openai_param(tuple(problem["loc"])) or "messages"
        raise Refusal(param, f"{param}: {problem['msg']}") from None


def _tools(request: ChatCompletionRequest) -> list[dict[str, Any]] | None:
    functions = []
    for i, tool in enumerate(request.tools or ()):
        at = f"tools[{i}]"
        if tool.type != "function":
            raise Refusal(f"{at}.type", f"`{tool.type}` tools are not supported; send functions.")
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


def _tool_choice(request: ChatCompletionRequest) -> str | dict[str, str] | None:
    choice = request.tool_choice
    if isinstance(choice, ToolChoiceParam):
        if choice.type != "function" or choice.function is None:
            raise Refusal("tool_choice", f"A `{choice.type}` tool choice is not supported.")
        return {"name": choice.function.name}
    if choice in ("auto", "none") and not request.tools:
        return None  # nothing to choose from: the same as not saying
    return choice


def _thinking(request: ChatCompletionRequest) -> ThinkingOptions | None:
    options: dict[str, Any] = {}
    if request.reasoning_effort == "none":
        options["budget"] = 0
    elif request.reasoning_effort is not None:
        # A client that asks for reasoning is shown it (as LiteLLM does with Gemini);
        # one that does not read `reasoning_content` skips it.
        options = {"level": request.reasoning_effort, "include_thoughts": True}
    if request.thinking is not None:
        options |= request.thinking.model_dump(exclude_none=True)
    return ThinkingOptions(**options) if options else None


def _grounding(request: ChatCompletionRequest) -> bool | None:
    search = request.web_search_options
    if search is None:
        return None
    if search.user_location is not None:
        param = "web_search_options.user_location"
        raise Refusal(param, f"A searcher's location is not supported by this gateway (`{param}`).")
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
    head, _, last = param_name(loc).rpartition(".")
    if head.endswith("]") and ("tools[" in head or "tool_calls[" in head):
        last = _FUNCTION_FIELDS.get(last, last)
    return f"{head}.{last}" if head else last
