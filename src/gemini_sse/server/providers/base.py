"""The provider seam: every model the gateway can serve sits behind `Provider`.

A provider turns one `ModelRequest` into LangChain `AIMessageChunk`s. The pipeline only
sees that protocol, so the simulated model and Gemini are driven the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)

from ..._models import ChatMessage, SimulationOptions


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


class Provider(Protocol):
    """Something that streams a chat answer."""

    #: Short name shown in `/healthz`, logs and metrics (`fake`, `vertex`, ...).
    name: str

    def astream(self, request: ModelRequest) -> AsyncIterator[AIMessageChunk]:
        """Stream the answer; cancelling the iteration must stop the upstream call."""
        ...

    async def aclose(self) -> None:
        """Release connections and clients."""
        ...


def to_langchain(messages: Sequence[ChatMessage]) -> list[BaseMessage]:
    """Our roles to LangChain's message classes."""
    kinds: dict[str, type[BaseMessage]] = {
        "system": SystemMessage,
        "user": HumanMessage,
        "assistant": AIMessage,
    }
    return [kinds[m.role](content=m.content) for m in messages]


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

    def astream(self, request: ModelRequest) -> AsyncIterator[AIMessageChunk]:
        chat = self.chat_model(request.model)
        stop = list(request.stop) if request.stop else None
        # LangChain's own generator, handed on as it is: a chat model streams
        # AIMessageChunks, and one generator less is a few us less per chunk
        # (docs/benchmarks.md). Closing it (the pipeline does) closes the upstream call.
        return chat.astream(
            to_langchain(request.messages), stop=stop, **self.invoke_options(request)
        )

    async def aclose(self) -> None:
        self._models.clear()
