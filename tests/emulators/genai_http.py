"""The Gemini REST streaming API (`:streamGenerateContent?alt=sse`) and Google's OAuth token
endpoint, on 127.0.0.1.

Two routes answer generations, as google-genai calls them:
- Gemini Developer API: `POST /v1beta/models/{model}:streamGenerateContent?alt=sse`,
  authenticated by the `x-goog-api-key` header;
- Vertex AI: `POST /v1beta1/projects/{p}/locations/{l}/publishers/google/models/{m}:
  streamGenerateContent?alt=sse`, authenticated by an OAuth bearer token.
`POST /token` is the JWT-bearer grant: it checks the assertion's signature against the
service account's public key and hands out an access token the data routes then accept.

The Vertex route also answers `?$alt=json`, the streamed JSON array of the GAPIC REST
transport (ChatVertexAI with `transport="rest_asyncio"`).

The rich scenarios send what Gemini sends: thought parts (`thought: true`) and
`thoughtsTokenCount`; a `functionCall` part with its `thoughtSignature`; grounding metadata
on the last chunk, its segments in UTF-8 bytes; blocking safety ratings; a prompt's block
reason.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from google.cloud.aiplatform_v1beta1.types import prediction_service
from google.protobuf import json_format

from .adc import ServiceAccount
from .httpserver import HttpExchange, HttpRequest, HttpServer
from .scenario import (
    BLOCK_REASON,
    ERROR_MESSAGES,
    RETRY_AFTER_S,
    SAFETY_CATEGORY,
    SEARCH_QUERIES,
    SOURCES,
    THOUGHT_SIGNATURE,
    THOUGHT_TOKENS,
    THOUGHTS,
    TOOL_CALL,
    USAGE,
    Emulator,
    Seen,
    supported_spans,
    verify_jwt,
)

_GEMINI_API = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):streamGenerateContent$")
_VERTEX = re.compile(
    r"^/v1beta1/(?P<model>projects/[^/]+/locations/[^/]+/publishers/google/models/[^/:]+)"
    r":streamGenerateContent$"
)
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
_ERRORS: dict[str, tuple[int, str]] = {
    "rate_limit": (429, "RESOURCE_EXHAUSTED"),
    "internal": (500, "INTERNAL"),
    "unavailable": (503, "UNAVAILABLE"),
    "bad_request": (400, "INVALID_ARGUMENT"),
    "forbidden": (403, "PERMISSION_DENIED"),
}


class GenaiHttpEmulator(Emulator):
    """Gemini's SSE streaming endpoint (both URL families) plus the OAuth token endpoint."""

    api_key = "emulated-gemini-api-key"

    def __init__(self) -> None:
        super().__init__()
        # Written once the token endpoint's URL is known: see `write_service_account`.
        self.account: ServiceAccount | None = None
        self.issued_tokens: set[str] = set()
        self._token_numbers = itertools.count(1)
        self._server = HttpServer(self._handle)
        self.call(self._server.start)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def stop(self) -> None:
        self.call(self._server.stop)
        self.close_loop()

    async def _handle(self, request: HttpRequest, exchange: HttpExchange) -> None:
        if request.path == "/token":
            await self._token(request, exchange)
            return
        match = _GEMINI_API.match(request.path) or _VERTEX.match(request.path)
        alt = request.query.get("alt") or request.query.get("$alt") or [""]
        if request.method != "POST" or match is None or alt[0].split(";")[0] not in _FRAMINGS:
            await exchange.send_json(404, {"error": {"code": 404, "message": "not found"}})
            return
        framing = alt[0].split(";")[0]
        self.record.seen.append(self._seen(request, match.group("model"), framing))
        await self._answer(_Stream(exchange, framing, self.mark_sent))

    async def _token(self, request: HttpRequest, exchange: HttpExchange) -> None:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        assert self.account is not None, "no service account to check the assertion with"
        claims = verify_jwt(form.get("assertion", ""), self.account.public_key_pem)
        self.record.token_requests.append({"grant_type": form.get("grant_type"), "claims": claims})
        # google-auth signs for Google's token audience even when `token_uri` points here.
        if claims is None or claims.get("aud") not in (self.token_uri, GOOGLE_TOKEN_AUDIENCE):
            await exchange.send_json(400, {"error": "invalid_grant"})
            return
        token = f"emulated-access-token-{next(self._token_numbers)}"
        self.issued_tokens.add(token)
        await exchange.send_json(
            200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}
        )

    async def _answer(self, stream: _Stream) -> None:
        script = self.next_script()
        if script.scenario in _ERRORS:
            status, name = _ERRORS[script.scenario]
            error: dict[str, Any] = {
                "code": status,
                "message": ERROR_MESSAGES[script.scenario],
                "status": name,
            }
            if script.scenario == "rate_limit":
                error["details"] = [
                    {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": f"{RETRY_AFTER_S:g}s",
                    }
                ]
            await stream.exchange.send_json(status, {"error": error})
            return
        await stream.start()
        await self.pause(script.pause_before_first)
        match script.scenario:
            case "hang":
                self.record.client_gone += await stream.exchange.wait_for_client_to_leave()
                return
            case "prompt_block":
                await stream.event(
                    {
                        "promptFeedback": {"blockReason": BLOCK_REASON},
                        "usageMetadata": _usage(0),
                        "modelVersion": "emulated-001",
                    },
                )
                await stream.end()
                return
            case "safety":
                await stream.event(_text(script.chunks[0]))
                await self.pause(script.delay_s)
                finish = _finish("SAFETY", 1)
                finish["candidates"][0]["safetyRatings"] = [
                    {"category": SAFETY_CATEGORY, "probability": "HIGH", "blocked": True}
                ]
                await stream.event(finish)
                await stream.end()
                return
            case "drop":
                for text in script.chunks[:2]:
                    await stream.event(_text(text))
                    await self.pause(script.delay_s)
                stream.exchange.cut()
                return
            case "tool_call":
                call = {
                    "functionCall": TOOL_CALL,
                    "thoughtSignature": base64.b64encode(THOUGHT_SIGNATURE).decode(),
                }
                await stream.event(_parts([call], "STOP"))
                await stream.end()
                return
            case "thinking":
                for thought in THOUGHTS:
                    await stream.event(_parts([{"text": thought, "thought": True}]))
                    await self.pause(script.delay_s)
        for index, text in enumerate(script.chunks):
            if index:
                await self.pause(script.delay_s)
            if index < len(script.chunks) - 1:
                await stream.event(_text(text))
                continue
            if script.hold_last:
                await self.wait_for_client_first()
            body = _text(text, "STOP")
            if script.scenario == "thinking":
                body["usageMetadata"] = _usage(USAGE["output"], thoughts=THOUGHT_TOKENS)
            if script.scenario == "grounding":
                body["candidates"][0]["groundingMetadata"] = _grounding(script.chunks)
            await stream.event(body)
        await stream.end()

    def _seen(self, request: HttpRequest, model: str, framing: str) -> Seen:
        body = request.json()
        if framing == "json":
            # GAPIC's REST transport spells enums as numbers; read as the server reads
            # it (through the proto), the request looks like every other one.
            message = prediction_service.GenerateContentRequest.pb()()
            json_format.ParseDict(body, message, ignore_unknown_fields=True)
            body = json_format.MessageToDict(message)
        authorization = request.headers.get("authorization")
        claims = None
        if authorization and authorization.removeprefix("Bearer ") in self.issued_tokens:
            claims = next(
                (t["claims"] for t in reversed(self.record.token_requests) if t["claims"]), None
            )
        system = body.get("systemInstruction") or {}
        return Seen(
            body=body,
            path=request.path,
            model=model,
            contents=[
                (c.get("role", ""), "".join(p.get("text", "") for p in c.get("parts", [])))
                for c in body.get("contents", [])
            ],
            system="".join(p.get("text", "") for p in system.get("parts", [])) or None,
            generation_config={
                _snake(k): v for k, v in (body.get("generationConfig") or {}).items()
            },
            authorization=authorization,
            api_key=request.headers.get("x-goog-api-key"),
            token_claims=claims,
        )


# `?alt=sse` (google-genai): one server-sent event per response. `?$alt=json` (the GAPIC
# REST transport, ChatVertexAI's `rest`): one JSON array, streamed element by element.
_FRAMINGS = {"sse": "text/event-stream", "json": "application/json"}


class _Stream:
    """One streamed answer in the framing the client asked for."""

    def __init__(self, exchange: HttpExchange, framing: str, on_send: Callable[[], None]) -> None:
        self.exchange = exchange
        self.framing = framing
        self._on_send = on_send
        self._sent = 0

    async def start(self) -> None:
        await self.exchange.start_stream(_FRAMINGS[self.framing])

    async def event(self, body: dict[str, Any]) -> None:
        self._on_send()
        data = json.dumps(body).encode()
        if self.framing == "sse":
            await self.exchange.send_chunk(b"data: " + data + b"\r\n\r\n")
        else:
            await self.exchange.send_chunk((b",\r\n" if self._sent else b"[") + data)
        self._sent += 1

    async def end(self) -> None:
        if self.framing == "json":
            await self.exchange.send_chunk(b"]" if self._sent else b"[]")
        await self.exchange.end_stream()


def _text(text: str, finish: str | None = None) -> dict[str, Any]:
    return _parts([{"text": text}], finish)


def _parts(parts: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    body: dict[str, Any] = {"candidates": [candidate], "modelVersion": "emulated-001"}
    if finish is not None:
        candidate["finishReason"] = finish
        body["usageMetadata"] = _usage(USAGE["output"])
    return body


def _finish(reason: str, output_tokens: int) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"role": "model", "parts": []}, "finishReason": reason}],
        "usageMetadata": _usage(output_tokens),
    }


def _usage(output_tokens: int, thoughts: int = 0) -> dict[str, int]:
    usage = {
        "promptTokenCount": USAGE["input"],
        "totalTokenCount": USAGE["input"] + output_tokens + thoughts,
    }
    if output_tokens:
        usage["candidatesTokenCount"] = output_tokens
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _grounding(chunks: tuple[str, ...]) -> dict[str, Any]:
    """Grounding metadata for `chunks`: the two web sources, the spans they support."""
    return {
        "webSearchQueries": list(SEARCH_QUERIES),
        "groundingChunks": [{"web": {"uri": uri, "title": title}} for uri, title in SOURCES],
        "groundingSupports": [
            {
                "segment": {"startIndex": start, "endIndex": end, "text": text},
                "groundingChunkIndices": list(sources),
            }
            for start, end, text, sources in supported_spans(chunks)
        ],
    }


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
