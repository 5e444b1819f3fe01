"""The OpenAPI schema is a contract: schemathesis holds the gateway to it.

Every operation of `/openapi.json` is fuzzed on a real uvicorn, with schemathesis's
default checks but one: no 5xx, every status code, content type, header and body as
documented, and requests the schema rules out refused. (Not that every request it allows
is accepted: see `CONFIG`.) It runs on a gateway without API keys,
on one with keys (the key sent), and on one with keys that is called without a key.

The run is bounded and repeatable: a fixed number of examples per operation, generated
deterministically (Hypothesis `derandomize`), with no example database.

One deliberate change to the schema that is fuzzed: the simulated model's options
(`simulation` in bodies, `fault` and `fail_after` on `GET /v1/stream`) are taken out.
They exist for tests; fuzzed, they would ask for hour-long answers and for upstream
failures that the gateway reports, by design, as 502, 503 and 504. Those failures get a
test of their own below, which checks each status against the schema.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, get_args

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from gemini_sse._models import Fault
from gemini_sse.server.app import create_app

from ..conftest import make_settings
from ..servers import RunningServer
from .gateway_process import cleared_environment

MAX_EXAMPLES = 25
KEY = "fuzz-key"
# A small, quick simulated model; any answer is bounded by the timeouts.
GATEWAY = {
    "fake_chunks": 3,
    "fake_delay_ms": 0,
    "fake_first_delay_ms": 1,
    "first_token_timeout_s": 1,
    "idle_timeout_s": 1,
    "total_timeout_s": 5,
    "drain_s": 0.5,
}
FAULTS = get_args(Fault)


def served_schema() -> dict[str, Any]:
    """What `/openapi.json` serves on a gateway with the `GATEWAY` settings.

    Built at import time too: a developer's `GEMINI_SSE_*` variables must not change
    what is fuzzed.
    """
    with cleared_environment():
        document: dict[str, Any] = create_app(make_settings(**GATEWAY)).openapi()
    return document


def without_simulation(document: dict[str, Any]) -> dict[str, Any]:
    """The schema less the simulated model's options (see the module docstring)."""
    document = copy.deepcopy(document)
    for component in document["components"]["schemas"].values():
        component.get("properties", {}).pop("simulation", None)
    get_stream = document["paths"]["/v1/stream"]["get"]
    get_stream["parameters"] = [
        p for p in get_stream["parameters"] if p["name"] not in ("fault", "fail_after")
    ]
    return document


CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "checks": {
            # schemathesis's list of statuses that reject invalid input, plus 413: the
            # gateway refuses a message over its length limit (`maxLength` in the schema)
            # as too large, as docs/protocol.md says.
            "negative_data_rejection": {
                "expected-statuses": [
                    *("400", "401", "403", "404", "405", "406", "409"),
                    *("413", "415", "422", "428", "429", "5xx"),
                ]
            },
            # Not run: that every request the schema allows is accepted. The gateway
            # checks what a schema cannot say (the characters of all messages together,
            # the body's bytes, text that is not valid Unicode, a chat that must end with
            # a user turn), and refuses such requests with a clear 4xx by design.
            "positive_data_acceptance": {"enabled": False},
        },
    }
)
schema = schemathesis.openapi.from_dict(without_simulation(served_schema()), config=CONFIG)


@pytest.fixture(params=["open", "keyed", "keyed-no-key"])
def gateway(
    request: pytest.FixtureRequest, serve: Callable[..., RunningServer]
) -> tuple[str, dict[str, str]]:
    """A gateway to fuzz, and the headers to send it."""
    if request.param == "open":
        return serve(**GATEWAY).url, {}
    running = serve(**GATEWAY, api_keys=KEY)
    headers = {"Authorization": f"Bearer {KEY}"} if request.param == "keyed" else {}
    return running.url, headers


@schema.parametrize()
# One gateway serves all the examples of an operation: it keeps no state they could share.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_operation_keeps_to_the_schema(
    case: schemathesis.Case, gateway: tuple[str, dict[str, str]]
) -> None:
    """Fuzzed requests never get a 5xx, and every answer is as the schema documents it."""
    url, headers = gateway
    case.call_and_validate(base_url=url, headers=headers, timeout=20)


def test_the_fuzzed_schema_is_the_served_one(serve: Callable[..., RunningServer]) -> None:
    """What is fuzzed is `/openapi.json` as served, less only the simulated model's options."""
    running = serve(**GATEWAY)
    served = httpx.get(f"{running.url}/openapi.json", timeout=10).json()
    assert served == served_schema()
    assert without_simulation(served)["paths"].keys() == served["paths"].keys()


def _documented(document: dict[str, Any], path: str, method: str) -> dict[str, set[str]]:
    responses = document["paths"][path][method]["responses"]
    return {status: set(body.get("content", {})) for status, body in responses.items()}


@pytest.mark.parametrize("fault", FAULTS)
def test_every_simulated_upstream_failure_gets_a_documented_status(
    serve: Callable[..., RunningServer], fault: str
) -> None:
    """Each upstream failure, on each route, answers a status and content type it documents."""
    running = serve(**GATEWAY)
    document = httpx.get(f"{running.url}/openapi.json", timeout=10).json()
    simulation = {"fault": fault, "fail_after": 1}
    chat = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}
    calls = [
        ("/v1/stream", {"message": "hi", "simulation": simulation}),
        ("/v1/streams", {"message": "hi", "simulation": simulation}),
        ("/v1/chat/completions", {**chat, "simulation": simulation}),
        ("/v1/chat/completions", {**chat, "simulation": simulation, "stream": True}),
        ("/v1/chat/completions", {**chat, "simulation": {**simulation, "fail_after": 0}}),
    ]
    undocumented = []
    with httpx.Client(base_url=running.url, timeout=20) as client:
        for path, body in calls:
            response = client.post(path, json=body)
            documented = _documented(document, path, "post")
            content_type = response.headers.get("content-type", "").split(";")[0]
            status = str(response.status_code)
            if content_type not in documented.get(status, set()):
                case = f"POST {path} stream={body.get('stream', False)} {body['simulation']}"
                undocumented.append(f"{case}: {status} {content_type}")
            assert response.status_code != 500, (path, body, response.text)
    assert not undocumented, undocumented
