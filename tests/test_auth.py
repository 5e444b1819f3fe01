"""API keys over real HTTP: who may call which route, and how a browser reads a stream."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gemini_sse.server.app import create_app

from .conftest import make_settings
from .servers import RunningServer
from .sse import names, parse

KEY = "k-alpha-0123456789"
OTHER = "k-beta-9876543210"
SLOW = {"fake_chunks": 6, "fake_delay_ms": 50}

# (method, path, JSON body) of every route that needs a key, in the gateway's error shape.
GATEWAY_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/stream", {"message": "hi"}),
    ("GET", "/v1/stream?message=hi", None),
    ("POST", "/v1/streams", {"message": "hi"}),
    ("GET", "/v1/streams/some-stream-id", None),
    ("DELETE", "/v1/streams/some-stream-id", None),
]
# The OpenAI-compatible routes answer in OpenAI's error shape, with our code in `code`.
OPENAI_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    (
        "POST",
        "/v1/chat/completions",
        {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]},
    ),
    ("GET", "/v1/models", None),
]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


@pytest.fixture
def keyed(serve: Callable[..., RunningServer]) -> RunningServer:
    """A gateway that accepts KEY and OTHER."""
    return serve(api_keys=f"{KEY},{OTHER}", **SLOW)


def started(running: RunningServer) -> int:
    count: int = running.gateway.provider.stats.started  # type: ignore[attr-defined]
    return count


def test_every_api_route_needs_a_key(keyed: RunningServer) -> None:
    """Without a valid key every API route answers 401 `unauthorized` and no model runs."""
    wrong = [{}, bearer("not-a-key"), {"Authorization": f"Basic {KEY}"}, {"Authorization": KEY}]
    with httpx.Client(base_url=keyed.url) as client:
        for method, path, body in GATEWAY_ROUTES:
            for headers in wrong:
                response = client.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"] == "Bearer"
                error = response.json()["error"]
                assert error["code"] == "unauthorized"
                assert error["retryable"] is False
                assert error["request_id"] == response.headers["x-request-id"]
        for method, path, body in OPENAI_ROUTES:
            for headers in wrong:
                response = client.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.json()["error"]["code"] == "unauthorized"
    assert started(keyed) == 0


def test_a_valid_key_is_served_on_every_route(keyed: RunningServer) -> None:
    """With either configured key the stream, resumable and OpenAI routes all answer."""
    with httpx.Client(base_url=keyed.url, headers=bearer(OTHER), timeout=10) as client:
        response = client.post("/v1/stream", json={"message": "hi"})
        assert response.status_code == 200
        assert response.text.rstrip().split("\n")[-3:-1] == ["id: 13", "event: done"]
        assert client.get("/v1/stream", params={"message": "hi"}).status_code == 200
        created = client.post("/v1/streams", json={"message": "hi"})
        assert created.status_code == 201
        assert client.get(f"/v1/streams/{created.json()['id']}").status_code == 200
        assert client.get("/v1/models").status_code == 200
        chat = client.post("/v1/chat/completions", json=OPENAI_ROUTES[0][2])
        assert chat.status_code == 200
        assert chat.json()["object"] == "chat.completion"


def test_keys_file_is_read_with_comments_and_together_with_the_variable(
    serve: Callable[..., RunningServer], tmp_path: Path
) -> None:
    """GEMINI_SSE_API_KEYS_FILE: one key a line, `#` comments and blanks skipped, plus the list."""
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# team A\n{KEY}\n\n   # retired: old-key\n  {OTHER}  \n")
    running = serve(api_keys="from-env-key", api_keys_file=str(keys_file), fake_chunks=1)
    for key, status in [
        (KEY, 200),
        (OTHER, 200),
        ("from-env-key", 200),
        ("# team A", 401),
        ("old-key", 401),
    ]:
        response = httpx.post(
            f"{running.url}/v1/stream", json={"message": "hi"}, headers=bearer(key)
        )
        assert response.status_code == status, key


def test_a_keys_file_without_keys_stops_the_gateway_from_starting(tmp_path: Path) -> None:
    """Fail closed: a keys file with only comments is an error, not a gateway open to all."""
    keys_file = tmp_path / "keys"
    keys_file.write_text("# no keys yet\n\n")
    with pytest.raises(ValueError, match="has no keys"):
        create_app(make_settings(api_keys_file=str(keys_file)))
    with pytest.raises(FileNotFoundError):
        create_app(make_settings(api_keys_file=str(tmp_path / "missing")))


def test_probes_and_metrics_stay_open(keyed: RunningServer) -> None:
    """/healthz, /readyz and /metrics (without a metrics key) need no API key."""
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{keyed.url}{path}").status_code == 200, path


def test_a_key_in_the_query_string_is_never_accepted(keyed: RunningServer) -> None:
    """`?api_key=`, `?key=`, `?access_token=` and friends get 401: keys travel in a header only."""
    for name in ("api_key", "key", "access_token", "token", "authorization"):
        response = httpx.get(f"{keyed.url}/v1/stream", params={"message": "hi", name: KEY})
        assert response.status_code == 401, name
        assert "POST /v1/streams" in response.json()["error"]["message"]
    assert started(keyed) == 0


def test_a_browser_reads_its_stream_by_capability_and_only_the_owner_manages_it(
    keyed: RunningServer,
) -> None:
    """Events need no key; status and cancel need the creating key; another key sees 404."""
    url = keyed.url
    body = {"message": "hi", "simulation": {"delay_ms": 200}}
    created = httpx.post(f"{url}/v1/streams", json=body, headers=bearer(KEY)).json()
    stream = f"{url}/v1/streams/{created['id']}"
    missing = f"{url}/v1/streams/{'x' * len(created['id'])}"

    assert httpx.get(stream).status_code == 401
    assert httpx.delete(stream).status_code == 401
    for response, unknown in [
        (httpx.get(stream, headers=bearer(OTHER)), httpx.get(missing, headers=bearer(OTHER))),
        (httpx.delete(stream, headers=bearer(OTHER)), httpx.delete(missing, headers=bearer(OTHER))),
    ]:
        assert response.status_code == unknown.status_code == 404
        assert response.json()["error"]["code"] == unknown.json()["error"]["code"] == "not_found"
    assert httpx.get(stream, headers=bearer(KEY)).status_code == 200

    events = httpx.get(f"{url}{created['events_url']}", headers={"Accept": "text/event-stream"})
    assert events.status_code == 200
    assert events.text.count("event: token") == 6
    assert events.text.rstrip().split("\n")[-2] == "event: done"
    # Done, not cancelled: the other key's DELETE did nothing.
    assert httpx.get(stream, headers=bearer(KEY)).json()["status"] == "done"


def test_the_stream_owner_is_the_key_id_never_the_key(keyed: RunningServer) -> None:
    """A stream's recorded owner is the first 8 hex digits of the key's SHA-256."""
    created = httpx.post(
        f"{keyed.url}/v1/streams", json={"message": "hi"}, headers=bearer(OTHER)
    ).json()
    info = asyncio.run(keyed.gateway.store.info(created["id"]))
    assert info is not None
    assert info.owner == key_id(OTHER) == hashlib.sha256(OTHER.encode()).hexdigest()[:8]
    assert OTHER not in repr(info)


def test_cancel_by_the_owner_ends_the_stream(keyed: RunningServer) -> None:
    """DELETE with the creating key cancels: readers get `cancelled` as the last event."""
    headers = bearer(KEY)
    # A model that never answers: only the cancel can end it, however slow the machine.
    body = {"message": "hi", "simulation": {"fault": "hang"}}
    created = httpx.post(f"{keyed.url}/v1/streams", json=body, headers=headers).json()
    cancelled = httpx.delete(f"{keyed.url}/v1/streams/{created['id']}", headers=headers)
    assert cancelled.status_code == 202
    events = httpx.get(f"{keyed.url}{created['events_url']}", timeout=10)
    lines = events.text.rstrip().split("\n")
    assert lines[-2] == "event: error"
    assert '"code":"cancelled"' in lines[-1]


def test_metrics_key_guards_metrics_only(serve: Callable[..., RunningServer]) -> None:
    """With GEMINI_SSE_METRICS_API_KEY, /metrics needs exactly that key; API keys do not open it."""
    running = serve(api_keys=KEY, metrics_api_key="scrape-secret")
    metrics = f"{running.url}/metrics"
    for headers in ({}, bearer(KEY), bearer("scrape-secre"), bearer("scrape-secret-")):
        response = httpx.get(metrics, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthorized"
    response = httpx.get(metrics, headers=bearer("scrape-secret"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "gemini_sse_streams_in_flight" in response.text


def test_without_keys_everything_is_open(serve: Callable[..., RunningServer]) -> None:
    """No keys configured (the default): no Authorization needed, any header ignored."""
    running = serve(fake_chunks=1)
    for headers in ({}, bearer("anything")):
        response = httpx.post(f"{running.url}/v1/stream", json={"message": "hi"}, headers=headers)
        assert response.status_code == 200
        assert names(parse(response.content)) == ["token", "separator", "done"]
