"""The original pattern the gateway replaced, kept to measure what it cost.

A synchronous FastAPI route returns Starlette's `StreamingResponse` over the model's sync
`stream()`. Starlette runs the route in its threadpool and then every `next()` of the
generator in that pool too (`iterate_in_threadpool`, 40 threads by default): each chunk
crosses from a worker thread to the event loop and back, and the model's pause between
chunks holds a worker thread. A divider (a `separator` frame) goes between chunks.

    python -m bench.original --port 8002   # model settings from GEMINI_SSE_FAKE_*
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from langchain_core.messages import HumanMessage
from pydantic import BaseModel

from gemini_sse._models import SimulationOptions
from gemini_sse.server.providers.fake import FakeProvider
from gemini_sse.server.settings import Settings

from ._serving import run, server_arguments


class Question(BaseModel):
    message: str
    simulation: SimulationOptions | None = None


def create_original(settings: Settings) -> FastAPI:
    """The original app over the simulated model the settings describe."""
    model = FakeProvider(settings).build_model(settings.model)
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/stream")
    def stream(question: Question) -> StreamingResponse:
        kwargs: dict[str, Any] = {}
        if question.simulation is not None:
            kwargs["simulation"] = question.simulation

        def frames() -> Iterator[str]:
            n = 0
            for chunk in model.stream([HumanMessage(content=question.message)], **kwargs):
                if text := chunk.text:
                    divider = "event: separator\ndata: {}\n\n" if n else ""
                    n += 1
                    yield f"{divider}event: token\ndata: {json.dumps({'text': text})}\n\n"
            yield f'event: done\ndata: {{"finish_reason":"stop","chunks":{n}}}\n\n'

        return StreamingResponse(frames(), media_type="text/event-stream")

    return app


if __name__ == "__main__":
    run(create_original(Settings()), server_arguments(__doc__ or ""))
