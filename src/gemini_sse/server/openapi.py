"""The OpenAPI document, saying what this gateway's settings make true.

FastAPI derives the document from the models, which cannot know the settings: which
models are served, how long a message may be, how many tokens may be asked for. Those
limits are written in here, so that a client generated from `/openapi.json`, or a fuzzer
reading it, knows every constraint the gateway enforces. Also described here:

- the events of a `text/event-stream` response, which OpenAPI 3.1 can only call a
  string: each media type carries 3.2's `itemSchema`, with each event type's `data:`;
- what the OpenAI-compatible routes refuse although their models declare it;
- our error body on every 422, where FastAPI would document its own (and none on
  OpenAI's routes, which answer 400 as OpenAI does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .._models import EVENT_TYPES, NOT_BLANK, allow_blank_tool_results
from .openai.translate import REFUSED, REFUSED_IN_MESSAGES
from .settings import Settings
from .streams import LAST_EVENT_ID_PATTERN

_EVENTS: dict[str, type[BaseModel]] = dict(EVENT_TYPES)
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
    _describe_openai_requests(schemas, settings)
    _describe_query(document, settings)
    _describe_events(document, schemas)
    _our_422(document)
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return document


def _describe_openai_requests(schemas: dict[str, Any], settings: Settings) -> None:
    """What `ChatCompletionRequest.refusal()` and the conversion to our request refuse."""
    request = schemas.get("ChatCompletionRequest")
    if request is None:
        return
    props = request["properties"]
    for field, (_, neutral) in REFUSED.items():
        if field in props:
            # Declared so that it can be refused by name; only its neutral values pass.
            props[field] = {"enum": list(neutral), "default": None}
    props["messages"]["contains"] = _A_USER_TURN
    props["messages"]["maxItems"] = settings.max_messages
    for name in ("max_tokens", "max_completion_tokens"):
        _constrain(props[name], {"maximum": settings.max_output_tokens})
    text = {"type": "string", "minLength": 1, "pattern": NOT_BLANK}
    message = schemas["Message"]
    message["required"] = ["role"]  # an assistant's `tool_calls` may stand for `content`
    message_props = message["properties"]
    message_props["role"] = {"enum": ["system", "developer", "user", "assistant", "tool"]}
    for field in REFUSED_IN_MESSAGES:
        message_props[field] = {"type": "null", "default": None}
    parts = [
        {
            "type": "object",
            "required": ["type", "text"],
            "properties": {"type": {"const": "text"}, "text": text},
        }
    ]
    for kind, model in (
        ("image_url", "ImageURL"),
        ("file", "FileData"),
        ("input_audio", "InputAudio"),
    ):
        parts.append(
            {
                "type": "object",
                "required": ["type", kind],
                "properties": {"type": {"const": kind}, kind: {"$ref": _REF.format(model=model)}},
            }
        )
    message_props["content"] = {
        "anyOf": [
            {"type": "string", "maxLength": settings.max_message_chars},
            {"type": "array", "minItems": 1, "items": {"anyOf": parts}},
            {"type": "null"},
        ]
    }
    allow_blank_tool_results(message)
    schemas.pop("ContentPart", None)
    # Only functions: other tool types parse, to be refused by name.
    for name, required in (
        ("ToolParam", "function"),
        ("ToolChoiceParam", "function"),
        ("MessageToolCall", "function"),
    ):
        schemas[name]["properties"]["type"] = {"const": "function"}
        schemas[name]["required"] = sorted({*schemas[name].get("required", ()), "type", required})
    schemas["WebSearchOptions"]["properties"]["user_location"] = {"type": "null", "default": None}


_A_USER_TURN = {"type": "object", "required": ["role"], "properties": {"role": {"const": "user"}}}


def _describe_query(document: dict[str, Any], settings: Settings) -> None:
    """Query and header parameters the settings or the server's checks constrain."""
    last_event_id = {"type": "string", "pattern": LAST_EVENT_ID_PATTERN}
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            for parameter in operation.get("parameters", ()):
                name, schema = parameter["name"], parameter.get("schema", {})
                if name == "model" and parameter["in"] == "query":
                    _constrain(schema, {"enum": list(settings.allowed_models())})
                elif name.lower() in ("last-event-id", "last_event_id") and path.startswith(
                    "/v1/streams/"
                ):
                    # (On `GET /v1/stream` any Last-Event-ID is answered 204.)
                    parameter["schema"] = last_event_id


def _constrain(schema: dict[str, Any], constraints: dict[str, Any]) -> None:
    """Add `constraints` to the non-null branch of an optional field's schema."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") != "null":
            branch.update(constraints)


def _describe_events(document: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Each event of a stream, as OpenAPI 3.2's `itemSchema` describes sequential media.

    A deliberate step past 3.1, whose `schema` can only call the whole stream a string:
    `itemSchema` is what readers of the newer specification (and fuzzers) check each event
    against, `{"event", "data", "id", "retry"}` as the event stream format defines them.
    """
    _, definitions = models_json_schema(
        [(model, "serialization") for model in _EVENTS.values()], ref_template=_REF
    )
    for name, schema in definitions.get("$defs", {}).items():
        # `event` and `id` travel as SSE fields, not in the JSON `data:` payload.
        schema.get("properties", {}).pop("event", None)
        schema.get("properties", {}).pop("id", None)
        schemas.setdefault(name, schema)
    typed = {
        "oneOf": [
            {
                "type": "object",
                "required": ["event", "data", "id"],
                "properties": {
                    "event": {"const": name},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"$ref": _REF.format(model=model.__name__)},
                    },
                    "id": {"type": "string", "pattern": "^[1-9][0-9]*$"},
                    "retry": {"type": "integer", "minimum": 0},
                },
            }
            for name, model in _EVENTS.items()
        ]
    }
    untyped = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": {"type": "string"},
            "data": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer", "minimum": 0},
        },
    }
    for path, operations in document.get("paths", {}).items():
        ours = path == "/v1/stream" or path.startswith("/v1/streams/")
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                media = response.get("content", {}).get("text/event-stream")
                if media is not None:
                    media.pop("schema", None)
                    media["itemSchema"] = typed if ours else untyped


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
