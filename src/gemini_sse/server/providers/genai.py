"""Gemini through LangChain's `ChatGoogleGenerativeAI` (the google-genai SDK, REST + SSE).

One provider, two backends:

- with `GEMINI_SSE_GENAI_API_KEY`: the Gemini Developer API, authenticated by the key;
- otherwise: Vertex AI (`vertexai=True`) in the project and location of the `vertex`
  settings, authenticated by Application Default Credentials.

Either way the model posts to `...:streamGenerateContent?alt=sse` and reads the server-sent
events as they arrive; `GEMINI_SSE_GENAI_BASE_URL` points it at another host.

Deliberate deviations from the defaults:

- `max_retries=1`: the SDK counts *attempts*, so 1 is a single try (0 once meant "the
  SDK default of 5" and is avoided for that reason). The gateway owns retry policy.
- No `timeout=`: the pipeline owns first-token, idle and total timeouts.
- A blocked prompt (`promptFeedback.blockReason`) arrives as an empty chunk carrying
  `prompt_feedback`; it is marked `finish_reason="SAFETY"` so the pipeline reports
  `content_blocked` for the same reason it does for a blocked answer.
- Media goes as `media` blocks (`google.media_part`), not LangChain's standard blocks.
- A named `tool_choice` goes as a function-calling mode (`ANY` and the name):
  ChatGoogleGenerativeAI raises on OpenAI's `{"type": "function", ...}`, and would read a
  bare name as a mode were the function called `auto`, `none` or `any`.
- `thinking.level` wins over `thinking.budget` when both are set, as in
  ChatGoogleGenerativeAI (which would warn on every request): only the level is sent. A
  Gemini 2.5 model takes only a budget: a level alone goes as its budget
  (`google.LEVEL_BUDGETS`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage

# Imported with this module, when the provider is chosen at startup: inside a request
# the import (about a second) would stall the event loop.
from langchain_google_genai import ChatGoogleGenerativeAI

from ..._models import NamedToolChoice
from ..settings import Settings
from .base import LangChainProvider, ModelRequest, to_langchain
from .google import media_part, takes_level, thinking_options, with_search

# The library drops the JSON Schema keywords of a tool that Gemini does not take, logging
# a warning for each, on every request: the drop is documented (docs/providers.md), the
# flood of warnings would hide the logs that matter.
logging.getLogger("langchain_google_genai._function_utils").setLevel(logging.ERROR)


class GenAIProvider(LangChainProvider):
    """The `genai` provider: `ChatGoogleGenerativeAI` on the Gemini API or Vertex AI."""

    name = "genai"

    def __init__(self, settings: Settings, *, project: str | None) -> None:
        super().__init__()
        self.settings = settings
        self.project = project
        if settings.genai_api_key is None and project is None:
            raise ValueError(
                "The genai provider needs GEMINI_SSE_GENAI_API_KEY (Gemini API) or a "
                "Google Cloud project (GEMINI_SSE_VERTEX_PROJECT or GOOGLE_CLOUD_PROJECT)."
            )
        # Every servable model is built now: configuration errors show at startup, and
        # no request pays (on the event loop) for building one.
        for model in settings.allowed_models():
            self.chat_model(model)

    def build_model(self, model: str) -> BaseChatModel:
        s = self.settings
        options: dict[str, Any] = {"model": model, "max_retries": 1}
        if s.genai_base_url:
            options["base_url"] = s.genai_base_url
        if s.genai_api_key is not None:
            options |= {"vertexai": False, "google_api_key": s.genai_api_key}
        else:
            # Vertex AI authenticates with ADC only: no API key from the environment
            # (GOOGLE_API_KEY) is handed to the client.
            options |= {
                "vertexai": True,
                "project": self.project,
                "location": s.vertex_location,
                "google_api_key": None,
            }
        chat: BaseChatModel = ChatGoogleGenerativeAI(**options)
        return chat

    def invoke_options(self, request: ModelRequest) -> dict[str, Any]:
        levels = takes_level(request.model)
        return super().invoke_options(request) | thinking_options(request.thinking, levels=levels)

    def tools(self, request: ModelRequest) -> list[dict[str, Any]]:
        return with_search(super().tools(request), request)

    def tool_choice(self, request: ModelRequest) -> str | dict[str, Any] | None:
        choice = request.tool_choice
        if isinstance(choice, NamedToolChoice):
            return {"mode": "ANY", "allowed_function_names": [choice.name]}
        return choice

    def messages(self, request: ModelRequest) -> list[BaseMessage]:
        return to_langchain(request, media_block=media_part)

    async def astream(self, request: ModelRequest) -> AsyncIterator[AIMessageChunk]:
        async for chunk in super().astream(request):
            feedback = chunk.response_metadata.get("prompt_feedback")
            if isinstance(feedback, dict) and feedback.get("block_reason"):
                chunk.response_metadata["finish_reason"] = "SAFETY"
            yield chunk

    async def aclose(self) -> None:
        # The google-genai clients hold connection pools bound to this event loop.
        for chat in self._models.values():
            if isinstance(chat, ChatGoogleGenerativeAI):
                await chat.aclose()
        await super().aclose()
