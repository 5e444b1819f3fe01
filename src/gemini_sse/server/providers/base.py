"""The provider seam: every model the gateway can serve sits behind `Provider`.

A provider turns one `ModelRequest` into LangChain `AIMessageChunk`s. The pipeline only
sees that protocol, so the simulated model and Gemini are driven the same way.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import Runnable

from ..._models import (
    ChatMessage,
    NamedToolChoice,
    SimulationOptions,
    ThinkingOptions,
    Tool,
    ToolChoice,
)
from ..media import Media
from ..parts import SIGNATURES_KEY


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One generation, as the pipeline hands it to a provider."""

    messages: Sequence[ChatMessage]
    model: str
    temperature: float | None = None
    max_output_tokens: int | None = None
    top_p: float | None = None
    stop: Sequence[str] | None = None
    simulation: SimulationOptions | None = None
    thinking: ThinkingOptions | None = None
    tools: Sequence[Tool] = ()
    tool_choice: ToolChoice | None = None
    grounding: bool = False
    #: The checked images and files of each message, by the message's position.
    media: Mapping[int, Sequence[Media]] = field(default_factory=dict)


class Provider(Protocol):
    """Something that streams a chat answer."""

    #: Short name shown in `/healthz`, logs and metrics (`fake`, `vertex`, ...).
    name: str

    def check(self, request: ModelRequest) -> None:
        """Raise `RequestRejected` for what this provider cannot serve, before any call."""
        ...

    def astream(self, request: ModelRequest) -> AsyncIterator[AIMessageChunk]:
        """Stream the answer; cancelling the iteration must stop the upstream call."""
        ...

    async def aclose(self) -> None:
        """Release connections and clients."""
        ...


def media_block(media: Media) -> dict[str, Any]:
    """A media part as LangChain's standard content block (`image` or `file`)."""
    block: dict[str, Any] = {"type": media.kind, "mime_type": media.mime_type}
    if media.data is not None:
        block["base64"] = base64.b64encode(media.data).decode()
    else:
        block["url"] = media.url
    return block


def to_langchain(request: ModelRequest, media_block: Any = media_block) -> list[BaseMessage]:
    """Our messages to LangChain's message classes.

    Tool results are named after their call (Gemini answers a function by name), and a
    call's thought signature goes where LangChain's Gemini models look for it.
    """
    names: dict[str, str] = {}  # call id -> function name, from the history so far
    messages: list[BaseMessage] = []
    for position, m in enumerate(request.messages):
        match m.role:
            case "system":
                messages.append(SystemMessage(content=m.text))
            case "user":
                media = request.media.get(position, ())
                if not media:
                    messages.append(HumanMessage(content=m.text))
                    continue
                blocks: list[str | dict[str, Any]] = []
                if m.text:
                    blocks.append({"type": "text", "text": m.text})
                blocks.extend(media_block(item) for item in media)
                messages.append(HumanMessage(content=blocks))
            case "assistant":
                calls = m.tool_calls or []
                names.update((call.call_id, call.name) for call in calls)
                signatures = {c.call_id: c.signature for c in calls if c.signature}
                messages.append(
                    AIMessage(
                        content=m.text,
                        tool_calls=[
                            {"id": c.call_id, "name": c.name, "args": json.loads(c.arguments)}
                            for c in calls
                        ],
                        additional_kwargs={SIGNATURES_KEY: signatures} if signatures else {},
                    )
                )
            case "tool":
                assert m.tool_call_id is not None  # the model's validator holds it
                messages.append(
                    ToolMessage(
                        content=m.text,
                        tool_call_id=m.tool_call_id,
                        name=names.get(m.tool_call_id),
                    )
                )
    return messages


def tool_schema(tool: Tool) -> dict[str, Any]:
    """A tool in the OpenAI function format, which every LangChain chat model binds."""
    function: dict[str, Any] = {
        "name": tool.name,
        "parameters": tool.parameters or {"type": "object", "properties": {}},
    }
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def tool_choice_option(choice: ToolChoice | None) -> str | dict[str, Any] | None:
    """`tool_choice` as `bind_tools` takes it (OpenAI's spelling)."""
    if isinstance(choice, NamedToolChoice):
        return {"type": "function", "function": {"name": choice.name}}
    return choice


class LangChainProvider:
    """A provider backed by a LangChain chat model, one instance per model name.

    Subclasses say how to build the model and how our generation options are spelled
    for it; the streaming itself is LangChain's `astream`.
    """

    name = "langchain"

    def __init__(self) -> None:
        self._models: dict[str, BaseChatModel] = {}

    def build_model(self, model: str) -> BaseChatModel:
        raise NotImplementedError

    def invoke_options(self, request: ModelRequest) -> dict[str, Any]:
        """Per-request options passed to `astream` as keyword arguments."""
        options: dict[str, Any] = {}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.max_output_tokens is not None:
            options["max_output_tokens"] = request.max_output_tokens
        if request.top_p is not None:
            options["top_p"] = request.top_p
        return options

    def chat_model(self, model: str) -> BaseChatModel:
        """The (cached) LangChain model for `model`."""
        chat = self._models.get(model)
        if chat is None:
            chat = self._models[model] = self.build_model(model)
        return chat

    def check(self, request: ModelRequest) -> None:
        """Every request this class can build is servable; subclasses narrow that down."""

    def bound_model(
        self, request: ModelRequest
    ) -> BaseChatModel | Runnable[LanguageModelInput, Any]:
        """The model for `request`, with its tools bound (a binding per request)."""
        chat = self.chat_model(request.model)
        tools = self.tools(request)
        if not tools:
            return chat
        options: dict[str, Any] = {}
        if (choice := self.tool_choice(request)) is not None:
            options["tool_choice"] = choice
        return chat.bind_tools(tools, **options)

    def tools(self, request: ModelRequest) -> list[dict[str, Any]]:
        """The tools to bind for `request`, as `bind_tools` takes them."""
        return [tool_schema(tool) for tool in request.tools]

    def tool_choice(self, request: ModelRequest) -> str | dict[str, Any] | None:
        """`tool_choice` as this provider's `bind_tools` spells it."""
        return tool_choice_option(request.tool_choice)

    def messages(self, request: ModelRequest) -> list[BaseMessage]:
        """The request's conversation for this provider's model."""
        return to_langchain(request)

    def astream(self, request: ModelRequest) -> AsyncIterator[AIMessageChunk]:
        model = self.bound_model(request)
        stop = list(request.stop) if request.stop else None
        # LangChain's own generator, handed on as it is: a chat model streams
        # AIMessageChunks, and one generator less is a few us less per chunk
        # (docs/benchmarks.md). Closing it (the pipeline does) closes the upstream call.
        stream: AsyncIterator[AIMessageChunk] = model.astream(
            self.messages(request), stop=stop, **self.invoke_options(request)
        )
        return stream

    async def aclose(self) -> None:
        self._models.clear()
