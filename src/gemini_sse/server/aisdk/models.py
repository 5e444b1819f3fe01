"""The body `DefaultChatTransport` posts, and its translation into our `StreamRequest`.

The SDK sends the whole conversation as UI messages (`parts`, not `content`), the chat's
`id`, a `trigger` and a `messageId`; options set with the transport's `body` (or
`sendMessage(..., {body})`) arrive beside them, in our own shapes (`tools`, `thinking`
...). The parts become our messages:

- `text` parts: the message's text; a user's `file` parts: its media (`mediaType`,
  `url` as `data:` or `https:`), checked by the gateway like any media;
- an assistant's tool parts (`tool-<name>`, `dynamic-tool`) that have a result
  (`output-available`, `output-error`, `output-denied`): its `tool_calls`, each followed
  by a `tool` message with the result, so the model goes on from what the page's tools
  returned; a call without a result never ran, and is left out;
- parts only for display (reasoning, sources, `data-*`) are left out: the model's
  reasoning is its own, not to be fed back as an answer (the SDK's `convertToModelMessages`
  drops it too). `step-start` separates an assistant's steps.

Anything else refuses the request, rather than letting the model answer a question it
never saw.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..._exceptions import RequestRejected
from ..._models import (
    ErrorCode,
    SimulationOptions,
    StreamRequest,
    ThinkingOptions,
    Tool,
    ToolChoice,
)
from .encoding import SIGNATURE_METADATA

_DISPLAY_ONLY = frozenset({"reasoning", "source-url", "source-document"})
# Tool parts with a result for the model, by state. (Without one the call never ran:
# the page stopped the answer, or has no handler for the tool.)
_ANSWERED = frozenset({"output-available", "output-error", "output-denied"})
_UNANSWERED = frozenset(
    {"input-streaming", "input-available", "approval-requested", "approval-responded"}
)

Turn = dict[str, Any]  # one of our `ChatMessage`s, before validation


class UIMessage(BaseModel):
    """One message of the conversation as the SDK keeps it."""

    # `metadata` and whatever a newer SDK adds are the page's business, not the model's.
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(max_length=256)
    role: Literal["system", "user", "assistant"]
    parts: list[dict[str, Any]]

    def turns(self, index: int) -> list[Turn]:
        """The message as our messages; refuses parts the model cannot be given."""
        if self.role == "assistant":
            return _assistant_turns(index, self.parts)
        return [_turn(index, self.role, self.parts)]


class ChatRequest(BaseModel):
    """`POST /api/chat`: `DefaultChatTransport`'s body, with the gateway's own options."""

    # The SDK may add fields in a minor version: ignoring them keeps its clients working.
    # Strict, as our own requests are: `false` is not 0 and `"5"` is not 5.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    id: str = Field(min_length=1, max_length=256, description="The chat's id")
    messages: list[UIMessage] = Field(min_length=1)
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    messageId: str | None = None  # the SDK's name for it
    # Ours, through the transport's `body` option.
    model: str | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None
    top_p: float | None = None
    thinking: ThinkingOptions | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    grounding: bool | None = None
    simulation: SimulationOptions | None = None

    @property
    def continuation(self) -> bool:
        """Whether the answer goes on in the last message (after the page's tools ran)."""
        return self.messages[-1].role == "assistant"

    def to_stream_request(self) -> StreamRequest:
        """Our request for the same conversation; raises 422 for what cannot be sent."""
        turns: list[Turn] = []
        origins: list[int] = []  # the UI message each of our messages comes from
        for index, message in enumerate(self.messages):
            made = message.turns(index)
            turns.extend(made)
            origins.extend([index] * len(made))
        try:
            return StreamRequest.model_validate(
                {
                    "messages": turns,
                    "model": self.model,
                    "temperature": self.temperature,
                    "max_output_tokens": self.max_output_tokens,
                    "top_p": self.top_p,
                    "thinking": self.thinking,
                    "tools": self.tools,
                    "tool_choice": self.tool_choice,
                    "grounding": self.grounding,
                    "simulation": self.simulation,
                }
            )
        except ValidationError as exc:
            problem = exc.errors()[0]
            loc = problem["loc"]
            if len(loc) > 1 and loc[0] == "messages" and isinstance(loc[1], int):
                # Our message numbers are not the page's: name the UI message.
                where = f"messages.{origins[loc[1]]}.parts"
            else:
                where = ".".join(str(p) for p in loc)
            raise RequestRejected.of(
                422, ErrorCode.INVALID_REQUEST, f"{where}: {problem['msg']}"
            ) from None


def _turn(index: int, role: str, parts: list[dict[str, Any]]) -> Turn:
    """A user's or system message: its text, and a user's files as media parts."""
    content: list[dict[str, Any]] = []
    for part in parts:
        kind = part.get("type")
        if kind == "text":
            content.append({"type": "text", "text": _text(index, part)})
        elif kind == "file":
            if role != "user":
                raise _refused(index, "only a user message may carry files")
            content.append(_media(index, part))
        elif _displayed(kind) or kind == "step-start":
            continue
        elif _is_tool(kind):
            raise _refused(index, "tool parts belong in assistant messages")
        else:
            raise _refused(index, f"a part of type {kind!r} is not supported")
    if all(item["type"] == "text" for item in content):
        return {"role": role, "content": "".join(item["text"] for item in content)}
    return {"role": role, "content": content}


def _assistant_turns(index: int, parts: list[dict[str, Any]]) -> list[Turn]:
    """An answer: per step, its text and tool calls, then the calls' results."""
    turns: list[Turn] = []
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[Turn] = []

    def end_step() -> None:
        text = "".join(texts)
        # An answer stopped before its first token said nothing: it is left out.
        if calls or text.strip():
            turn: Turn = {"role": "assistant", "content": text if text.strip() else None}
            if calls:
                turn["tool_calls"] = list(calls)
            turns.append(turn)
            turns.extend(results)
        texts.clear()
        calls.clear()
        results.clear()

    for part in parts:
        kind = part.get("type")
        if kind == "text":
            if calls:  # text after a step's calls answers their results
                end_step()
            texts.append(_text(index, part))
        elif kind == "step-start":
            end_step()
        elif _is_tool(kind):
            if (answered := _tool_call(index, str(kind), part)) is not None:
                calls.append(answered[0])
                results.append(answered[1])
        elif _displayed(kind):
            continue
        elif kind == "file":
            raise _refused(index, "only a user message may carry files")
        else:
            raise _refused(index, f"a part of type {kind!r} is not supported")
    end_step()
    return turns


def _tool_call(index: int, kind: str, part: dict[str, Any]) -> tuple[dict[str, Any], Turn] | None:
    """A tool part as our call and the `tool` message with its result, if it has one."""
    state = part.get("state")
    if state in _UNANSWERED:
        return None
    if state not in _ANSWERED:
        raise _refused(index, f"a tool part in state {state!r} is not supported")
    name = part.get("toolName") if kind == "dynamic-tool" else kind.removeprefix("tool-")
    call_id = part.get("toolCallId")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise _refused(index, "a tool part needs `toolCallId` (and a dynamic one `toolName`)")
    arguments = part.get("input")
    call: dict[str, Any] = {
        "call_id": call_id,
        "name": name,
        "arguments": json.dumps({} if arguments is None else arguments, ensure_ascii=False),
    }
    if (signature := _signature(part)) is not None:
        call["signature"] = signature
    if state == "output-available":
        output = part.get("output")
        if isinstance(output, str) and output.strip():
            result = output
        else:
            result = json.dumps(output, ensure_ascii=False)
    elif state == "output-error":
        error = part.get("errorText")
        result = json.dumps(
            {"error": error if isinstance(error, str) else "The tool failed."}, ensure_ascii=False
        )
    else:
        result = json.dumps({"error": "The user denied this tool call."})
    return call, {"role": "tool", "tool_call_id": call_id, "content": result}


def _signature(part: dict[str, Any]) -> str | None:
    """The call's Gemini thought signature, as `tool-input-available` gave it."""
    namespace, key = SIGNATURE_METADATA
    metadata = part.get("callProviderMetadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get(namespace), dict):
        return None
    signature = metadata[namespace].get(key)
    return signature if isinstance(signature, str) else None


def _text(index: int, part: dict[str, Any]) -> str:
    text = part.get("text")
    if not isinstance(text, str):
        raise _refused(index, "a text part needs `text`")
    return text


def _media(index: int, part: dict[str, Any]) -> dict[str, Any]:
    """A `file` part as our media part (the gateway checks its type, URL and size)."""
    media_type, url = part.get("mediaType"), part.get("url")
    if not isinstance(media_type, str) or not isinstance(url, str):
        raise _refused(index, "a file part needs `mediaType` and `url`")
    kind = "image" if media_type.startswith("image/") else "file"
    return {"type": kind, "url": url, "mime_type": media_type}


def _displayed(kind: object) -> bool:
    """Whether a part is only for the page to show."""
    return kind in _DISPLAY_ONLY or (isinstance(kind, str) and kind.startswith("data-"))


def _is_tool(kind: object) -> bool:
    return isinstance(kind, str) and (kind.startswith("tool-") or kind == "dynamic-tool")


def _refused(index: int, why: str) -> RequestRejected:
    return RequestRejected.of(422, ErrorCode.INVALID_REQUEST, f"messages.{index}.parts: {why}.")
