"""The OpenAPI document, saying what this gateway's settings make true.

FastAPI derives the document from the models, which cannot know the settings: which
models are served, how long a message may be, how many tokens may be asked for. Those
limits are written in here, so that a client generated from `/openapi.json`, or a fuzzer
reading it, knows every constraint the gateway enforces. Also described here:

- the events of a `text/event-stream` response, which OpenAPI 3.1 can only call a
  string: the media type carries `x-sse-events`, each event type's `data:` schema;
- our error body on every 422, where FastAPI would document its own (and none on
  OpenAI's routes, which answer 400 as OpenAI does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .._models import DoneEvent, ErrorEvent, SeparatorEvent, TokenEvent
from .settings import Settings

_EVENTS: dict[str, type[BaseModel]] = {
    "token": TokenEvent,
    "separator": SeparatorEvent,
    "done": DoneEvent,
    "error": ErrorEvent,
}
_REF = "#/components/schemas/{model}"


def document_settings(app: FastAPI, settings: Settings) -> None:
    """Make `app.openapi()` return the document with `settings`' limits in it."""
    derive: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _with_settings(derive(), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _with_settings(document: dict[str, Any], settings: Settings) -> dict[str, Any]:
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    models = list(settings.allowed_models())
    for name in ("StreamRequest", "ChatCompletionRequest"):
        if name in schemas:
            _constrain(schemas[name]["properties"]["model"], {"enum": models})
    request = schemas.get("StreamRequest")
    if request is not None:
        props = request["properties"]
        _constrain(props["messages"], {"maxItems": settings.max_messages})
        _constrain(props["message"], {"maxLength": settings.max_message_chars})
        _constrain(props["max_output_tokens"], {"maximum": settings.max_output_tokens})
    if "ChatMessage" in schemas:
        content = schemas["ChatMessage"]["properties"]["content"]
        content["maxLength"] = settings.max_message_chars
    _describe_events(document, schemas)
    _our_422(document)
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return document


def _constrain(schema: dict[str, Any], constraints: dict[str, Any]) -> None:
    """Add `constraints` to the non-null branch of an optional field's schema."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") != "null":
            branch.update(constraints)


def _describe_events(document: dict[str, Any], schemas: dict[str, Any]) -> None:
    _, definitions = models_json_schema(
        [(model, "serialization") for model in _EVENTS.values()], ref_template=_REF
    )
    for name, schema in definitions.get("$defs", {}).items():
        # `event` and `id` travel as SSE fields, not in the JSON `data:` payload.
        schema.get("properties", {}).pop("event", None)
        schema.get("properties", {}).pop("id", None)
        schemas.setdefault(name, schema)
    events = {name: {"$ref": _REF.format(model=model.__name__)} for name, model in _EVENTS.items()}
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                media = response.get("content", {}).get("text/event-stream")
                if media is not None and path.startswith(("/v1/stream", "/v1/streams")):
                    media["x-sse-events"] = events


def _our_422(document: dict[str, Any]) -> None:
    """Every 422 is our `ErrorBody` (FastAPI documents its own shape by default)."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "OpenAI-compatible" in operation.get("tags", ()):
                responses.pop("422", None)  # OpenAI's shape answers 400, never 422
                continue
            invalid = responses.get("422")
            if invalid is None:
                continue
            content = invalid.get("content", {}).get("application/json", {})
            if content.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                content["schema"] = {"$ref": _REF.format(model="ErrorBody")}
                invalid["description"] = "Invalid request"
