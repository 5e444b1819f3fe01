"""The floor: the least a server can do to stream the simulated model as SSE.

A bare ASGI callable: read the body, iterate the same LangChain model's `astream`, and
write each chunk as the same `token` frame the gateway writes, then `done`. No framework,
no typed events, no timeouts, no disconnect watcher, no admission. Every figure of the
gateway is reported as a ratio to this.

    python -m bench.floor --port 8001   # model settings from GEMINI_SSE_FAKE_*
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import HumanMessage

from gemini_sse._models import SimulationOptions
from gemini_sse.server.providers.fake import FakeProvider
from gemini_sse.server.settings import Settings

from ._serving import run, server_arguments

_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]
_dumps = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def create_floor(settings: Settings) -> Any:
    """The floor ASGI app over the simulated model the settings describe."""
    model = FakeProvider(settings).build_model(settings.model)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] != "/v1/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        request = json.loads(body)
        options = request.get("simulation")
        kwargs: dict[str, Any] = {"simulation": SimulationOptions(**options)} if options else {}
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        n = 0
        async for chunk in model.astream([HumanMessage(content=request["message"])], **kwargs):
            if text := chunk.text:
                n += 1
                frame = f'id: {n}\nevent: token\ndata: {{"text":{_dumps(text)}}}\n\n'.encode()
                await send({"type": "http.response.body", "body": frame, "more_body": True})
        done = f'id: {n + 1}\nevent: done\ndata: {{"finish_reason":"stop","chunks":{n}}}\n\n'
        await send({"type": "http.response.body", "body": done.encode()})

    return app


if __name__ == "__main__":
    run(create_floor(Settings()), server_arguments(__doc__ or ""))
