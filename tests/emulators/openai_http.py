"""An OpenAI-compatible `POST /v1/chat/completions` streaming server on 127.0.0.1.

It answers the way vLLM, Ollama and llama.cpp's server do: `data: {chat.completion.chunk}`
events, a usage-only chunk when `stream_options.include_usage` is set, then `data: [DONE]`.
A blocked prompt is Azure OpenAI's answer: HTTP 400 with error code `content_filter`.
`thinking` streams the thought summary as `reasoning_content` deltas (vLLM's, DeepSeek's
field) before the answer; `tool_call` streams one call, its arguments in several pieces
after a first delta with its id and name, and ends with finish reason `tool_calls`.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from .httpserver import HttpExchange, HttpRequest, HttpServer
from .scenario import (
    ERROR_MESSAGES,
    RETRY_AFTER_S,
    THOUGHT_TOKENS,
    THOUGHTS,
    TOOL_CALL,
    USAGE,
    Emulator,
    Seen,
)

_ERRORS: dict[str, tuple[int, str]] = {
    "rate_limit": (429, "rate_limit_exceeded"),
    "internal": (500, "server_error"),
    "unavailable": (503, "service_unavailable"),
    "bad_request": (400, "invalid_request_error"),
    "forbidden": (403, "permission_denied"),
}
_AZURE_PATH = re.compile(r"/openai/deployments/([^/]+)/chat/completions")
_OPTIONS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "stop")
# The call `tool_call` makes, in OpenAI's terms: its arguments as the model writes them
# (compact, non-ASCII as it is), sent in pieces of `TOOL_PIECE_CHARS`.
TOOL_CALL_ID = "call_emulated_0"
TOOL_ARGUMENTS = json.dumps(TOOL_CALL["args"], ensure_ascii=False, separators=(",", ":"))
TOOL_PIECE_CHARS = 8


class OpenAIHttpEmulator(Emulator):
    """Chat completions, streamed as server-sent events."""

    api_key = "emulated-openai-key"

    def __init__(self) -> None:
        super().__init__()
        self._server = HttpServer(self._handle)
        self.call(self._server.start)

    @property
    def base_url(self) -> str:
        """What `GEMINI_SSE_OPENAI_BASE_URL` is set to."""
        return f"http://127.0.0.1:{self._server.port}/v1"

    def stop(self) -> None:
        self.call(self._server.stop)
        self.close_loop()

    @property
    def azure_endpoint(self) -> str:
        """What `GEMINI_SSE_OPENAI_AZURE_ENDPOINT` is set to (Azure OpenAI's paths)."""
        return f"http://127.0.0.1:{self._server.port}"

    async def _handle(self, request: HttpRequest, exchange: HttpExchange) -> None:
        azure = _AZURE_PATH.fullmatch(request.path)
        if request.method != "POST" or (request.path != "/v1/chat/completions" and not azure):
            await exchange.send_json(404, {"error": {"message": "not found", "code": 404}})
            return
        body = request.json()
        if azure:
            # Azure names the model by the deployment in the path, and wants a version.
            if not request.query.get("api-version"):
                await exchange.send_json(404, {"error": {"message": "api-version missing"}})
                return
            body.setdefault("model", azure.group(1))
        self.record.seen.append(self._seen(request, body))
        script = self.next_script()
        if script.scenario in _ERRORS:
            status, kind = _ERRORS[script.scenario]
            headers = {"retry-after": f"{RETRY_AFTER_S:g}"} if status == 429 else {}
            await exchange.send_json(
                status,
                {"error": {"message": ERROR_MESSAGES[script.scenario], "type": kind, "code": kind}},
                headers,
            )
            return
        if script.scenario == "prompt_block":
            await exchange.send_json(
                400,
                {
                    "error": {
                        "message": "The prompt was filtered (emulated).",
                        "type": None,
                        "param": "prompt",
                        "code": "content_filter",
                    }
                },
            )
            return
        model = body["model"]
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        await exchange.start_stream()
        await self.pause(script.pause_before_first)
        match script.scenario:
            case "hang":
                self.record.client_gone += await exchange.wait_for_client_to_leave()
                return
            case "safety":
                await self._event(exchange, _chunk(model, script.chunks[0], role=True))
                await self.pause(script.delay_s)
                await self._event(exchange, _chunk(model, None, finish="content_filter"))
                await self._finish(exchange, model, include_usage, output_tokens=1)
                return
            case "drop":
                for index, text in enumerate(script.chunks[:2]):
                    await self._event(exchange, _chunk(model, text, role=index == 0))
                    await self.pause(script.delay_s)
                exchange.cut()
                return
            case "tool_call":
                await self._tool_call(exchange, model, script.delay_s)
                await self._finish(exchange, model, include_usage, output_tokens=USAGE["output"])
                return
        thoughts = THOUGHTS if script.scenario == "thinking" else ()
        for index, thought in enumerate(thoughts):
            await self._event(exchange, _chunk(model, None, role=index == 0, reasoning=thought))
            await self.pause(script.delay_s)
        for index, text in enumerate(script.chunks):
            if index:
                await self.pause(script.delay_s)
            if index == len(script.chunks) - 1 and script.hold_last:
                await self.wait_for_client_first()
            await self._event(exchange, _chunk(model, text, role=index == 0 and not thoughts))
        await self._event(exchange, _chunk(model, None, finish="stop"))
        reasoning = THOUGHT_TOKENS if thoughts else None
        await self._finish(
            exchange, model, include_usage, output_tokens=USAGE["output"], reasoning=reasoning
        )

    async def _tool_call(self, exchange: HttpExchange, model: str, delay_s: float) -> None:
        """One call: id, type and name first (OpenAI sends no arguments yet), then pieces."""
        first = {
            "index": 0,
            "id": TOOL_CALL_ID,
            "type": "function",
            "function": {"name": TOOL_CALL["name"], "arguments": ""},
        }
        await self._event(exchange, _chunk(model, None, role=True, tool_call=first))
        for start in range(0, len(TOOL_ARGUMENTS), TOOL_PIECE_CHARS):
            await self.pause(delay_s)
            piece = {
                "index": 0,
                "function": {"arguments": TOOL_ARGUMENTS[start:][:TOOL_PIECE_CHARS]},
            }
            await self._event(exchange, _chunk(model, None, tool_call=piece))
        await self._event(exchange, _chunk(model, None, finish="tool_calls"))

    async def _finish(
        self,
        exchange: HttpExchange,
        model: str,
        include_usage: bool,
        output_tokens: int,
        reasoning: int | None = None,
    ) -> None:
        if include_usage:
            usage: dict[str, Any] = {
                "prompt_tokens": USAGE["input"],
                "completion_tokens": output_tokens,
                "total_tokens": USAGE["input"] + output_tokens,
            }
            if reasoning is not None:
                usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
            await self._event(exchange, {**_chunk(model, None), "choices": [], "usage": usage})
        await exchange.send_chunk(b"data: [DONE]\n\n")
        await exchange.end_stream()

    async def _event(self, exchange: HttpExchange, body: dict[str, Any]) -> None:
        self.mark_sent()
        await exchange.send_chunk(b"data: " + json.dumps(body).encode() + b"\n\n")

    def _seen(self, request: HttpRequest, body: dict[str, Any]) -> Seen:
        messages = body.get("messages", [])
        system = [m["content"] for m in messages if m.get("role") == "system"]
        return Seen(
            path=request.path,
            model=body.get("model", ""),
            contents=[(m["role"], m.get("content")) for m in messages if m.get("role") != "system"],
            system="".join(system) or None,
            generation_config={k: body[k] for k in _OPTIONS if k in body},
            authorization=request.headers.get("authorization"),
            api_key=request.headers.get("api-key"),
            body=body,
        )


def _chunk(
    model: str,
    text: str | None,
    *,
    role: bool = False,
    finish: str | None = None,
    reasoning: str | None = None,
    tool_call: dict[str, Any] | None = None,
) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if text is not None:
        delta["content"] = text
    if reasoning is not None:
        delta["reasoning_content"] = reasoning
    if tool_call is not None:
        delta["tool_calls"] = [tool_call]
    return {
        "id": "chatcmpl-emulated",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
