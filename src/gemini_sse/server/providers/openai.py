"""Any OpenAI-compatible chat server through LangChain's `ChatOpenAI`.

`GEMINI_SSE_OPENAI_BASE_URL` names the server (OpenAI, vLLM, Ollama, llama.cpp's server,
LM Studio ...), `GEMINI_SSE_OPENAI_API_KEY` its key; with `GEMINI_SSE_OPENAI_AZURE_ENDPOINT`
it is Azure OpenAI through `AzureChatOpenAI` instead. Deliberate choices:

- `stream_usage=True`: usage comes as a last chunk only when the request asks for it.
- `max_retries=0`: the openai SDK retries 429 and 5xx by itself; the gateway owns retries.
- The output limit is sent twice: ChatOpenAI spells `max_tokens` as
  `max_completion_tokens` (OpenAI's current name), which Ollama and LM Studio ignore, so
  the classic `max_tokens` goes along in the body too.
- Local servers rarely check keys, but the SDK insists on one: an unset key is sent as
  a placeholder.
- The HTTP clients (sync and async) are the provider's own, closed by `aclose`. ChatOpenAI's
  defaults are cached for the whole process and shared by every ChatOpenAI with the same
  base URL, whatever its event loop, so they can be closed by no one. They come with a TCP
  keep-alive profile against silent connections; the gateway's idle timeout covers that.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel

# Imported with this module, when the provider is chosen at startup: inside a request
# the import (about a second) would stall the event loop.
from langchain_openai import AzureChatOpenAI, ChatOpenAI
from openai import DefaultAsyncHttpxClient, DefaultHttpxClient
from pydantic import SecretStr

from ..settings import Settings
from .base import LangChainProvider, ModelRequest

# What the SDK sends when no key is configured (vLLM's documentation uses the same).
PLACEHOLDER_KEY = "EMPTY"


class OpenAIProvider(LangChainProvider):
    """The `openai` provider: `ChatOpenAI` against an OpenAI-compatible base URL."""

    name = "openai"

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        # The HTTP clients of every model built, closed by `aclose`.
        self._http_clients: list[tuple[DefaultHttpxClient, DefaultAsyncHttpxClient]] = []
        # Every servable model is built now: configuration errors show at startup, and
        # no request pays (on the event loop) for building one.
        for model in settings.allowed_models():
            self.chat_model(model)

    def build_model(self, model: str) -> BaseChatModel:
        s = self.settings
        key = s.openai_api_key or SecretStr(PLACEHOLDER_KEY)
        # The SDK's own defaults (limits, redirects), in clients this provider owns.
        http_client, http_async_client = DefaultHttpxClient(), DefaultAsyncHttpxClient()
        self._http_clients.append((http_client, http_async_client))
        chat: BaseChatModel
        if s.openai_azure_endpoint:
            # Azure OpenAI: same streaming, a deployment per model, the key as `api-key`.
            chat = AzureChatOpenAI(
                azure_endpoint=s.openai_azure_endpoint,
                azure_deployment=model,
                api_version=s.openai_api_version,
                api_key=key,
                stream_usage=True,
                max_retries=0,
                http_client=http_client,
                http_async_client=http_async_client,
            )
        else:
            chat = ChatOpenAI(
                model=model,
                base_url=s.openai_base_url,
                api_key=key,
                stream_usage=True,
                max_retries=0,
                http_client=http_client,
                http_async_client=http_async_client,
            )
        return chat

    def invoke_options(self, request: ModelRequest) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.top_p is not None:
            options["top_p"] = request.top_p
        if request.max_output_tokens is not None:
            options["max_tokens"] = request.max_output_tokens
            options["extra_body"] = {"max_tokens": request.max_output_tokens}
        return options

    async def aclose(self) -> None:
        clients, self._http_clients = self._http_clients, []
        for http_client, http_async_client in clients:
            http_client.close()
            await http_async_client.aclose()
        await super().aclose()
