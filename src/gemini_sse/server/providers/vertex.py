"""Gemini on Vertex AI through LangChain's `ChatVertexAI`, streaming over gRPC.

ChatVertexAI calls `PredictionService.StreamGenerateContent` (v1beta1) with the GAPIC
async client. Deliberate deviations from its defaults:

- `max_retries=0`: its own retry waits 4-10 s between attempts for about 30 s and also
  retries 400 and 403. The gateway owns retry policy (before the first token, within a
  budget), so the client must fail fast and let `upstream.map_upstream_error` decide.
- No `timeout=`: a gRPC deadline covers the whole stream, not the wait for the first
  token; the pipeline owns first-token, idle and total timeouts.
- Always an async transport: the GAPIC async client wraps a *sync* transport when given
  `grpc` or `rest` with a custom endpoint, which blocks the event loop. `grpc` is served
  as `grpc_asyncio` and `rest` as `rest_asyncio`.
- `project=` is passed explicitly: ChatVertexAI otherwise takes it from
  `vertexai.init()` globals or the credentials, which differ between machines.

Credentials are Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`,
`gcloud auth application-default login`, or the metadata server on Google Cloud).

ChatVertexAI is deprecated since langchain-google-vertexai 3.2.0 (removal planned for
4.0.0); `genai.py` serves the same models through `ChatGoogleGenerativeAI`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk

# Imported with this module, when the provider is chosen at startup: inside a request
# the import (about a second) would stall the event loop.
from langchain_google_vertexai import ChatVertexAI

from ..settings import Settings
from .base import LangChainProvider, ModelRequest

# What GEMINI_SSE_VERTEX_TRANSPORT may say, and the async transport that serves it.
ASYNC_TRANSPORTS: dict[str, str] = {
    "grpc": "grpc_asyncio",
    "grpc_asyncio": "grpc_asyncio",
    "rest": "rest_asyncio",
    "rest_asyncio": "rest_asyncio",
}


def async_transport(name: str | None) -> str:
    """The GAPIC async transport for a configured transport name (gRPC by default)."""
    if name is None:
        return "grpc_asyncio"
    try:
        return ASYNC_TRANSPORTS[name.lower()]
    except KeyError:
        choices = ", ".join(sorted(ASYNC_TRANSPORTS))
        raise ValueError(f"GEMINI_SSE_VERTEX_TRANSPORT must be one of {choices}") from None


class VertexProvider(LangChainProvider):
    """The `vertex` provider: `ChatVertexAI` against one project and location."""

    name = "vertex"

    def __init__(self, settings: Settings, *, project: str) -> None:
        super().__init__()
        self.settings = settings
        self.project = project
        self.transport = async_transport(settings.vertex_transport)
        if self.transport == "rest_asyncio" and importlib.util.find_spec("aiohttp") is None:
            raise ValueError(
                "GEMINI_SSE_VERTEX_TRANSPORT=rest needs aiohttp: pip install 'google-auth[aiohttp]'"
            )
        # Every servable model is built now: configuration errors show at startup, and
        # no request pays (on the event loop) for building one.
        for model in settings.allowed_models():
            self.chat_model(model)

    def build_model(self, model: str) -> BaseChatModel:
        options: dict[str, Any] = {
            "model": model,
            "project": self.project,
            "location": self.settings.vertex_location,
            "transport": self.transport,
            "max_retries": 0,
        }
        if self.settings.vertex_base_url:
            options["base_url"] = self.settings.vertex_base_url
        chat: BaseChatModel = ChatVertexAI(**options)
        return chat

    async def astream(self, request: ModelRequest) -> AsyncIterator[AIMessageChunk]:
        async for chunk in super().astream(request):
            # Every chunk before the last says FINISH_REASON_UNSPECIFIED; only a real
            # reason may reach the pipeline, which keeps the last one it sees.
            if chunk.response_metadata.get("finish_reason") == "FINISH_REASON_UNSPECIFIED":
                del chunk.response_metadata["finish_reason"]
            yield chunk
