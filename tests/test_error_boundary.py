"""One error boundary, two shapes, and an OpenAPI document that says what is enforced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema
import pytest

from gemini_sse.server.app import create_app

from .conftest import make_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _client(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(**settings))
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(models=["gemini-2.5-pro"], max_message_chars=500):
        yield c


async def test_405_names_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    """`/v1/stream` takes GET and POST: a PUT's `Allow` names both, in our shape."""
    response = await client.put("/v1/stream", json={"message": "hi"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert response.json()["error"]["code"] == "invalid_request"


async def test_405_on_an_openai_route_is_a_405_in_openai_shape(client: httpx.AsyncClient) -> None:
    """OpenAI's routes keep the 405 status and `Allow`, with OpenAI's error body."""
    response = await client.put("/v1/chat/completions", json={})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "body", [b"{not json", b'{"message": "caf\xe9"}', b""], ids=["syntax", "latin-1", "empty"]
)
async def test_a_body_that_is_not_json_is_422_like_any_invalid_body(
    client: httpx.AsyncClient, body: bytes
) -> None:
    """Malformed JSON, or JSON that is not UTF-8, is 422 `invalid_request`, as documented."""
    headers = {"content-type": "application/json"}
    response = await client.post("/v1/stream", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"


async def test_the_body_cap_answers_openai_routes_in_openai_shape(
    client: httpx.AsyncClient,
) -> None:
    """A declared body over the cap is refused before routing, still in the route's shape."""
    big = b"x" * 1_000_001
    headers = {"content-type": "application/json"}
    ours = await client.post("/v1/stream", content=big, headers=headers)
    theirs = await client.post("/v1/chat/completions", content=big, headers=headers)
    assert (ours.status_code, theirs.status_code) == (413, 413)
    assert ours.json()["error"]["code"] == "payload_too_large"
    assert theirs.json()["error"]["code"] == "payload_too_large"
    assert theirs.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("message", ["", " \n\t\r "])
async def test_blank_messages_are_refused_as_the_schema_says(
    client: httpx.AsyncClient, message: str
) -> None:
    """Empty or whitespace-only text is 422, and the schema's pattern says the same."""
    response = await client.post("/v1/stream", json={"message": message})
    assert response.status_code == 422
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"]
    text = schema["StreamRequest"]["properties"]["message"]["anyOf"][0]
    assert text["minLength"] == 1 and text["pattern"] == "[^ \t\n\r]"


CALL = {"call_id": "c1", "name": "get_weather", "arguments": "{}"}
OPENAI_CALL = {
    "id": "c1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": "{}"},
}


def _valid(document: dict[str, Any], component: str, instance: dict[str, Any]) -> bool:
    """Whether `instance` is valid against one schema of the OpenAPI document."""
    schema = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema).is_valid(instance)


async def test_only_a_tool_result_may_be_empty_and_the_schemas_say_so(
    client: httpx.AsyncClient,
) -> None:
    """A tool may return nothing (OpenAI takes an empty result too): its empty turn is
    served on every route, a blank turn from anyone else is still refused, and both
    message schemas say exactly that."""
    ours = [{"role": "user", "content": "Weather?"}, {"role": "assistant", "tool_calls": [CALL]}]
    answered = await client.post(
        "/v1/stream",
        json={"messages": [*ours, {"role": "tool", "tool_call_id": "c1", "content": ""}]},
    )
    assert answered.status_code == 200, answered.text
    assert "event: done" in answered.text
    blank = await client.post("/v1/stream", json={"messages": [{"role": "user", "content": " "}]})
    assert blank.status_code == 422
    assert "messages.0.content" in blank.json()["error"]["message"]

    theirs = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [OPENAI_CALL]},
    ]
    body = {
        "model": "gemini-2.5-pro",
        "messages": [*theirs, {"role": "tool", "tool_call_id": "c1", "content": ""}],
    }
    completed = await client.post("/v1/chat/completions", json=body)
    assert completed.status_code == 200, completed.text
    assert completed.json()["choices"][0]["message"]["content"]
    body["messages"] = [{"role": "user", "content": ""}]
    refused = await client.post("/v1/chat/completions", json=body)
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "messages[0].content"

    items = [
        {"role": "user", "content": "Weather?"},
        {"type": "function_call", **CALL},
        {"type": "function_call_output", "call_id": "c1", "output": ""},
    ]
    response = await client.post("/v1/responses", json={"model": "gemini-2.5-pro", "input": items})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"

    document = (await client.get("/openapi.json")).json()
    for component, result in (
        ("ChatMessage", {"role": "tool", "tool_call_id": "c1", "content": ""}),
        ("Message", {"role": "tool", "tool_call_id": "c1", "content": ""}),
    ):
        assert _valid(document, component, result)
        assert _valid(document, component, {"role": "user", "content": "hi"})
        assert not _valid(document, component, {"role": "user", "content": " \n"})
        assert not _valid(document, component, {"role": "system", "content": ""})


async def test_the_openapi_document_carries_the_settings_limits(
    client: httpx.AsyncClient,
) -> None:
    """Served models, message size and output tokens are in the schema as enforced."""
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    request = schemas["StreamRequest"]["properties"]
    assert request["model"]["anyOf"][0]["enum"] == ["gemini-2.5-flash", "gemini-2.5-pro"]
    assert request["message"]["anyOf"][0]["maxLength"] == 500
    assert request["max_output_tokens"]["anyOf"][0]["maximum"] == 8192
    assert schemas["ChatMessage"]["properties"]["content"]["maxLength"] == 500
    assert schemas["ChatCompletionRequest"]["properties"]["model"]["enum"] == [
        "gemini-2.5-flash",
        "gemini-2.5-pro",
    ]
    # And the server does refuse what the document rules out.
    refused = await client.post("/v1/stream", json={"message": "hi", "model": "other"})
    assert refused.status_code == 400
    too_long = await client.post("/v1/stream", json={"message": "x" * 501})
    assert too_long.status_code == 413


async def test_event_streams_document_their_events(client: httpx.AsyncClient) -> None:
    """Each `text/event-stream` response lists its event types and their `data:` schemas."""
    document = (await client.get("/openapi.json")).json()
    media = document["paths"]["/v1/stream"]["post"]["responses"]["200"]["content"]
    items = media["text/event-stream"]["itemSchema"]["oneOf"]
    assert [item["properties"]["event"]["const"] for item in items] == [
        "token",
        "reasoning",
        "tool_call_delta",
        "tool_call",
        "source",
        "separator",
        "done",
        "error",
    ]
    data = items[0]["properties"]["data"]
    assert data["contentSchema"] == {"$ref": "#/components/schemas/TokenEvent"}
    schemas = document["components"]["schemas"]
    token = schemas["TokenEvent"]
    assert token["required"] == ["text"] and "event" not in token["properties"]
    call = schemas["ToolCallEvent"]
    assert call["required"] == ["index", "call_id", "name", "arguments"]
    assert "id" not in call["properties"] and "signature" in call["properties"]
    assert schemas["SourceEvent"]["properties"]["cited"]["items"] == {
        "$ref": "#/components/schemas/Citation"
    }


async def test_every_422_is_documented_as_our_error_body(client: httpx.AsyncClient) -> None:
    """No route documents FastAPI's own validation shape, which the gateway never sends."""
    document = (await client.get("/openapi.json")).json()
    for path, operations in document["paths"].items():
        for operation in operations.values():
            invalid = operation["responses"].get("422")
            if invalid is None:
                continue
            schema = invalid["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, path
    assert "HTTPValidationError" not in document["components"]["schemas"]


async def test_openai_modalities_other_than_text_are_refused(client: httpx.AsyncClient) -> None:
    """`modalities: []` or `["audio"]` is a 400 in OpenAI's shape, as the schema says."""
    for modalities in ([], ["audio"]):
        body = {
            "model": "gemini-2.5-flash",
            "messages": [{"role": "user", "content": "hi"}],
            "modalities": modalities,
        }
        response = await client.post("/v1/chat/completions", json=body)
        assert response.status_code == 400
        assert response.json()["error"]["param"].startswith("modalities")
