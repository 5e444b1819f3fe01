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
- The GAPIC client is opened by the provider, on the event loop that serves (a gRPC
  channel belongs to one loop), and closed by `aclose`. ChatVertexAI would open its own
  and keep it in a module-level cache, one per loop, shared by every ChatVertexAI with
  the same endpoint and model and closed by nobody: its aiohttp session or gRPC channel
  would be left for the garbage collector. (The requests then carry GAPIC's user agent,
  not LangChain's.)
- Over REST, a streamed response is closed the moment reading it fails (see
  `_ClosingStream`).

What ChatVertexAI gets wrong or leaves out, and how the provider spells it instead:

- Media goes as `media` blocks (`google.media_part`), not LangChain's standard blocks.
- `tool_choice: "required"` is sent as `any`: ChatVertexAI takes "required" for the name
  of a function.
- A blocked prompt's `promptFeedback` is dropped by ChatVertexAI (a response without
  candidates becomes an empty chunk); `_ChatVertexAI` keeps it, and the chunk is marked
  `finish_reason="SAFETY"`, as the genai provider does.
- `usage.output_tokens` gets the thinking tokens added: ChatVertexAI counts only the
  answer's, where google-genai and OpenAI count both.
- `thinking.level` is sent as a budget (`google.LEVEL_BUDGETS`): ChatVertexAI and its
  v1beta1 `ThinkingConfig` know only a budget. A budget set too wins.

Credentials are Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`,
`gcloud auth application-default login`, or the metadata server on Google Cloud).

ChatVertexAI is deprecated since langchain-google-vertexai 3.2.0 (removal planned for
4.0.0); `genai.py` serves the same models through `ChatGoogleGenerativeAI`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

from google.cloud.aiplatform_v1beta1.services.prediction_service import (
    PredictionServiceAsyncClient,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk

# Imported with this module, when the provider is chosen at startup: inside a request
# the import (about a second) would stall the event loop.
from langchain_google_vertexai import ChatVertexAI

from ..settings import Settings
from .base import LangChainProvider, ModelRequest, to_langchain
from .google import media_part, thinking_options, with_search

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
        # The GAPIC clients this provider opened, closed by `aclose`.
        self._clients = AsyncExitStack()
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
        chat: BaseChatModel = _ChatVertexAI(**options)
        return chat

    def invoke_options(self, request: ModelRequest) -> dict[str, Any]:
        # ChatVertexAI sends a budget only, whatever the model.
        return super().invoke_options(request) | thinking_options(request.thinking, levels=False)

    def tools(self, request: ModelRequest) -> list[dict[str, Any]]:
        return with_search(super().tools(request), request)

    def tool_choice(self, request: ModelRequest) -> str | dict[str, Any] | None:
        choice = super().tool_choice(request)
        return "any" if choice == "required" else choice

    def messages(self, request: ModelRequest) -> list[BaseMessage]:
        return to_langchain(request, media_block=media_part)

    def _open_client(self, chat: ChatVertexAI) -> PredictionServiceAsyncClient:
        """Open the GAPIC client `chat` streams with, on the running loop, for `aclose`."""
        if self.transport == "rest_asyncio":
            client = PredictionServiceAsyncClient(transport=_rest_transport(chat))
        else:
            client = PredictionServiceAsyncClient(
                credentials=chat.credentials,
                client_options=chat.client_options,
                transport=self.transport,
            )
        # Leaving the client closes its transport: the gRPC channel, or the aiohttp
        # session (with google-auth's token session).
        return self._clients.push_async_exit(client)

    async def astream(self, request: ModelRequest) -> AsyncIterator[AIMessageChunk]:
        chat = self.chat_model(request.model)
        # Checked and set with no await in between: concurrent first requests share one.
        if isinstance(chat, ChatVertexAI) and chat.async_client is None:
            chat.async_client = self._open_client(chat)
        async for chunk in super().astream(request):
            metadata = chunk.response_metadata
            # Every chunk before the last says FINISH_REASON_UNSPECIFIED; only a real
            # reason may reach the pipeline, which keeps the last one it sees.
            if metadata.get("finish_reason") == "FINISH_REASON_UNSPECIFIED":
                del metadata["finish_reason"]
            if "prompt_feedback" in metadata:
                metadata["finish_reason"] = "SAFETY"
            if (usage := chunk.usage_metadata) and (details := usage.get("output_token_details")):
                usage["output_tokens"] += details.get("reasoning", 0)
            yield chunk

    async def aclose(self) -> None:
        await self._clients.aclose()
        await super().aclose()


class _ChatVertexAI(ChatVertexAI):
    """ChatVertexAI that keeps a blocked prompt's `promptFeedback` in the chunk's metadata.

    Overrides a private method (langchain-google-vertexai 3.2): the one place where the
    response is still at hand when its chunk is made.
    """

    def _gemini_chunk_to_generation_chunk(
        self, response_chunk: Any, prev_total_usage: Any = None
    ) -> tuple[ChatGenerationChunk, Any]:
        chunk, usage = super()._gemini_chunk_to_generation_chunk(
            response_chunk, prev_total_usage=prev_total_usage
        )
        feedback = response_chunk.prompt_feedback
        if not response_chunk.candidates and feedback.block_reason:
            chunk.message.response_metadata["prompt_feedback"] = {
                "block_reason": feedback.block_reason.name,
                "block_reason_message": feedback.block_reason_message or None,
            }
        return chunk, usage


def _rest_transport(chat: ChatVertexAI) -> Any:
    """GAPIC's asyncio REST transport to `chat`'s endpoint, closing failed streams."""
    # Imported on demand: it needs aiohttp, which only the REST transport does.
    from google.cloud.aiplatform_v1beta1.services.prediction_service.transports import (
        rest_asyncio,
    )

    class ClosingInterceptor(rest_asyncio.AsyncPredictionServiceRestInterceptor):
        async def post_stream_generate_content_with_metadata(
            self, response: Any, metadata: Any
        ) -> tuple[Any, Any]:
            return _ClosingStream(response), metadata

    # ChatVertexAI always sets one: GEMINI_SSE_VERTEX_BASE_URL, or the location's.
    assert chat.client_options is not None and chat.client_options.api_endpoint
    return rest_asyncio.AsyncPredictionServiceRestTransport(
        host=chat.client_options.api_endpoint,
        credentials=chat.credentials,
        interceptor=ClosingInterceptor(),
    )


class _ClosingStream:
    """A streamed REST answer whose HTTP response is closed as soon as reading it ends.

    When reading fails (the connection cut mid-answer), aiohttp keeps the exception on the
    response's content stream, and the exception's traceback holds the response: a cycle
    that only the cyclic garbage collector frees, finalising its objects in no set order.
    Whenever it finalises the connection before the response, aiohttp reports an unclosed
    connection. Closed here, the connection goes back at once, whatever the collector does.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __aiter__(self) -> _ClosingStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._stream.__anext__()
        except BaseException:
            # Failure, cancellation or the end: closing a finished response is a no-op.
            await self._stream.cancel()
            raise
