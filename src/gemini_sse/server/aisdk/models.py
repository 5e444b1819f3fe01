"""The body `DefaultChatTransport` posts, and its translation into our `StreamRequest`.

The SDK sends the whole conversation as UI messages (`parts`, not `content`), the chat's
`id`, a `trigger` and a `messageId`; options set with the transport's `body` (or
`sendMessage(..., {body})`) arrive beside them. Text parts become our messages; parts
that are only for display (reasoning, sources, step boundaries, `data-*`) are left out;
parts the gateway cannot honour (files, tool calls) refuse the request, rather than
letting the model answer a question it never saw.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..._exceptions import RequestRejected
from ..._models import ErrorCode, SimulationOptions, StreamRequest

# Parts that carry nothing for the model (the SDK's own `convertToModelMessages` also
# drops `step-start`; reasoning is the model's own, not to be fed back as an answer).
_DISPLAY_ONLY = frozenset({"reasoning", "step-start", "source-url", "source-document"})


class UIMessage(BaseModel):
    """One message of the conversation as the SDK keeps it."""

    # `metadata` and whatever a newer SDK adds are the page's business, not the model's.
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    role: Literal["system", "user", "assistant"]
    parts: list[dict[str, Any]]

    def text(self, index: int) -> str:
        """The message's text parts, joined; refuses parts the model cannot be given."""
        texts = []
        for part in self.parts:
            kind = part.get("type")
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind in _DISPLAY_ONLY or (isinstance(kind, str) and kind.startswith("data-")):
                continue
            elif kind == "file":
                raise _refused(index, "files are not accepted here; send text parts only")
            elif isinstance(kind, str) and (kind.startswith("tool-") or kind == "dynamic-tool"):
                raise _refused(index, "tool calls are not supported by this gateway")
            else:
                raise _refused(index, f"a part of type {kind!r} is not supported")
        return "".join(texts)


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
    simulation: SimulationOptions | None = None

    def to_stream_request(self) -> StreamRequest:
        """Our request for the same conversation; raises 422 for what cannot be sent."""
        turns = []
        for index, message in enumerate(self.messages):
            text = message.text(index)
            if message.role == "assistant" and not text.strip():
                continue  # an answer stopped before its first token: nothing was said
            turns.append({"role": message.role, "content": text})
        try:
            return StreamRequest.model_validate(
                {
                    "messages": turns,
                    "model": self.model,
                    "temperature": self.temperature,
                    "max_output_tokens": self.max_output_tokens,
                    "top_p": self.top_p,
                    "simulation": self.simulation,
                }
            )
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            raise RequestRejected.of(
                422, ErrorCode.INVALID_REQUEST, f"{where}: {problem['msg']}"
            ) from None


def _refused(index: int, why: str) -> RequestRejected:
    return RequestRejected.of(422, ErrorCode.INVALID_REQUEST, f"messages.{index}.parts: {why}.")
