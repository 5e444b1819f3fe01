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
- Thinking is OpenAI's `reasoning_effort`: `thinking.level` as it is, a `budget` of 0 as
  `none`, other budgets as the effort LiteLLM spends about as many tokens on (up to 1024
  `low`, 2048 `medium`, more `high`), -1 as the model's default.
- The thought summary that vLLM, DeepSeek, llama.cpp's server and LM Studio stream as
  `reasoning_content` (Ollama, OpenRouter and newer vLLM as `reasoning`) is read too:
  ChatOpenAI keeps only OpenAI's own fields. It is passed on whenever the server sends
  it, `thinking.include_thoughts` or not: those servers have no switch for it.
- Files go inline, named by their type (`file.pdf`: OpenAI wants a name). Refused, as
  an `invalid_request` before the server is called: a file by URL (chat completions
  cannot take one), and `grounding` (Google Search is Gemini's).
- The HTTP clients (sync and async) are the provider's own, closed by `aclose`. ChatOpenAI's
  defaults are cached for the whole process and shared by every ChatOpenAI with the same
  base URL, whatever its event loop, so they can be closed by no one. They come with a TCP
  keep-alive profile against silent connections; the gateway's idle timeout covers that.
"""

from __future__ import annotations

import mimetypes
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk

# Imported with this module, when the provider is chosen at startup: inside a request
# the import (about a second) would stall the event loop.
from langchain_openai import AzureChatOpenAI, ChatOpenAI
from openai import DefaultAsyncHttpxClient, DefaultHttpxClient
from pydantic import SecretStr

from ..._exceptions import RequestRejected
from ..._models import ErrorCode, ThinkingOptions
from ..media import Media
from ..settings import Settings
from .base import LangChainProvider, ModelRequest, media_block, to_langchain

# What the SDK sends when no key is configured (vLLM's documentation uses the same).
PLACEHOLDER_KEY = "EMPTY"


class _ChatOpenAI(ChatOpenAI):
    """`ChatOpenAI` that also keeps a delta's thought summary, as a `reasoning` block."""

    def _convert_chunk_to_generation_chunk(
        self,
        chunk: dict[str, Any],
        default_chunk_class: type,
        base_generation_info: dict[str, Any] | None,
    ) -> ChatGenerationChunk | None:
        generation = super()._convert_chunk_to_generation_chunk(
            chunk, default_chunk_class, base_generation_info
        )
        choices = chunk.get("choices") or ()
        delta = (choices[0].get("delta") if choices else None) or {}
        thought = delta.get("reasoning_content") or delta.get("reasoning")
        if generation is None or not isinstance(thought, str):
            return generation
        message = generation.message
        blocks: list[str | dict[str, Any]] = [{"type": "reasoning", "reasoning": thought}]
        if message.content:
            blocks.append({"type": "text", "text": message.text})
        return ChatGenerationChunk(
            message=message.model_copy(update={"content": blocks}),
            generation_info=generation.generation_info,
        )


def reasoning_effort(thinking: ThinkingOptions | None) -> str | None:
    """OpenAI's `reasoning_effort` for our thinking options; None: the model's default."""
    if thinking is None:
        return None
    if thinking.level is not None:
        return thinking.level
    budget = thinking.budget
    if budget is None or budget < 0:
        return None
    if budget == 0:
        return "none"
    return "low" if budget <= 1024 else "medium" if budget <= 2048 else "high"


def _media_block(media: Media) -> dict[str, Any]:
    block = media_block(media)
    if media.kind == "file":
        block["filename"] = "file" + (mimetypes.guess_extension(media.mime_type) or "")
    return block


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
            chat = _ChatOpenAI(
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
        if effort := reasoning_effort(request.thinking):
            options["reasoning_effort"] = effort
        return options

    def messages(self, request: ModelRequest) -> list[BaseMessage]:
        return to_langchain(request, media_block=_media_block)

    def check(self, request: ModelRequest) -> None:
        if any(m.kind == "file" and m.data is None for ms in request.media.values() for m in ms):
            raise _refused("This model takes files inline only (`data:` URLs), not by URL.")
        if request.grounding:
            raise _refused("Grounding in Google Search needs a Gemini model.")

    async def aclose(self) -> None:
        clients, self._http_clients = self._http_clients, []
        for http_client, http_async_client in clients:
            http_client.close()
            await http_async_client.aclose()
        await super().aclose()


def _refused(message: str) -> RequestRejected:
    return RequestRejected.of(422, ErrorCode.INVALID_REQUEST, message)
