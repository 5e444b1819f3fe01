"""Hostile and malformed requests: each gets a clear 4xx (or a closed connection), never a
5xx, nothing is reflected raw, and the gateway serves the next request as before.

The gateway runs as `gemini-sse serve` (uvicorn with h11, as deployed). Requests that
httpx would refuse to send, or would send differently, go over raw sockets.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from ..sse import parse
from .gateway_process import GatewayProcess, cleared_environment, run_gateway
from .raw_http import RawResponse, exchange, request_bytes

KEY_A, KEY_B = "key-of-tenant-a", "key-of-tenant-b"
MAX_BODY = 1_000_000  # the default
JSON_ROUTES = ("/v1/stream", "/v1/streams", "/v1/chat/completions")
FRESH_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    """One gateway for the module, with two API keys."""
    settings = {"fake_chunks": 5, "fake_delay_ms": 1, "fake_first_delay_ms": 1}
    keys = f"{KEY_A},{KEY_B}"
    with (
        cleared_environment(),
        run_gateway(api_keys=keys, max_body_bytes=MAX_BODY, **settings) as running,
    ):
        yield running
        assert not running.problems(), running.problems()[:5]


def _auth(key: str = KEY_A) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {key}")]


def _post(gateway: GatewayProcess, path: str, body: bytes) -> RawResponse:
    headers = [*_auth(), ("Content-Type", "application/json")]
    return exchange(
        gateway.port, request_bytes("POST", path, port=gateway.port, body=body, headers=headers)
    )


def _alive(gateway: GatewayProcess) -> None:
    """The gateway still answers, and a stream still works."""
    headers = {"Authorization": f"Bearer {KEY_A}"}
    response = httpx.post(
        f"{gateway.url}/v1/stream", json={"message": "still there?"}, headers=headers, timeout=10
    )
    assert response.status_code == 200
    assert parse(response.content)[-1].event == "done"


def _error_code(response: RawResponse) -> str:
    """The error code of a JSON error body, in our shape or OpenAI's."""
    assert (response.header("content-type") or "").startswith("application/json")
    code: str = response.json()["error"]["code"]
    return code


# --- bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize("chunks", [1, 40], ids=["one-chunk", "many-chunks"])
def test_a_chunked_body_over_the_limit_is_a_413(
    gateway: GatewayProcess, path: str, chunks: int
) -> None:
    """A body with no Content-Length is capped as it arrives: 413 `payload_too_large`."""
    size = MAX_BODY + 1000
    piece = size // chunks + 1
    head = request_bytes(
        "POST",
        path,
        port=gateway.port,
        headers=[*_auth(), ("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")],
    )
    body = b'{"message": "' + b"a" * size
    # Never the last (empty) chunk: the gateway must not wait for the end to refuse.
    framed = b"".join(
        f"{len(part):x}\r\n".encode() + part + b"\r\n"
        for part in (body[i : i + piece] for i in range(0, len(body), piece))
    )
    response = exchange(gateway.port, head + framed)
    assert response.status == 413, response
    assert _error_code(response) == "payload_too_large"
    _alive(gateway)


DEEP = 100_000


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEEP,
        b"[" * DEEP + b"]" * DEEP,
        b'{"a":' * DEEP + b"1" + b"}" * DEEP,
        b'{"message": "hi", "messages": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    ],
    ids=["unclosed-arrays", "deep-arrays", "deep-objects", "deep-field"],
)
def test_deeply_nested_json_is_a_4xx(gateway: GatewayProcess, path: str, body: bytes) -> None:
    """100,000 levels of nesting are refused as invalid JSON, not a crash or a 500."""
    response = _post(gateway, path, body)
    assert response.status in (400, 422), response
    assert _error_code(response) == "invalid_request"
    _alive(gateway)


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize(
    "text",
    [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"caf\xe9", b"\xe2\x82"],
    ids=["ff-fe", "overlong", "encoded-surrogate", "latin-1", "truncated"],
)
def test_a_body_that_is_not_utf8_is_a_4xx(gateway: GatewayProcess, path: str, text: bytes) -> None:
    """Bytes that are not UTF-8 in a JSON body are refused as an invalid request."""
    if path == "/v1/chat/completions":
        body = b'{"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "'
        body += text + b'"}]}'
    else:
        body = b'{"message": "' + text + b'"}'
    response = _post(gateway, path, body)
    assert response.status in (400, 422), response
    assert _error_code(response) == "invalid_request"
    _alive(gateway)


@pytest.mark.parametrize(
    "body",
    [
        b'{"message": "a\\u0000b"}',
        b'{"message": "\\u0000"}',
        b'{"message": "a\x00b"}',
        b'{"messages": [{"role": "user\\u0000", "content": "hi"}]}',
    ],
    ids=["escaped-nul", "only-nul", "raw-nul", "nul-in-role"],
)
def test_nul_in_a_message_is_answered_or_refused_never_a_500(
    gateway: GatewayProcess, body: bytes
) -> None:
    """NUL characters either stream an answer to its `done` or are refused with a 4xx."""
    response = _post(gateway, "/v1/stream", body)
    assert response.status in (200, 400, 422), response
    if response.status == 200:
        assert parse(response.payload)[-1].event == "done"
    else:
        assert _error_code(response) == "invalid_request"
    _alive(gateway)


@pytest.mark.parametrize(
    "target",
    [
        "/v1/stream?message=a%00b",
        "/v1/stream?message=%FF%FE",
        "/v1/stream?message=%ED%A0%80",
        "/v1/stream?message=%00",
    ],
    ids=["nul", "not-utf8", "encoded-surrogate", "only-nul"],
)
def test_odd_query_strings_are_answered_or_refused_never_a_500(
    gateway: GatewayProcess, target: str
) -> None:
    """`GET /v1/stream` with NUL or non-UTF-8 in its message: an answer or a 4xx."""
    data = request_bytes("GET", target, port=gateway.port, headers=_auth())
    response = exchange(gateway.port, data)
    assert response.status in (200, 400, 422), response
    if response.status == 200:
        assert parse(response.payload)[-1].event == "done"
    _alive(gateway)


# --- headers ------------------------------------------------------------------------------


MB = 1_000_000


@pytest.mark.parametrize(
    ("headers", "piece"),
    [
        ([("X-Big", "a" * MB)], None),
        ([(f"X-Many-{i}", "b" * 100) for i in range(10_000)], None),
        ([("X-Request-ID", "c" * MB)], None),
        ([("X-Big", "d" * 100_000)], 4096),
    ],
    ids=["one-huge-header", "many-headers", "huge-request-id", "trickled-header"],
)
def test_huge_headers_are_refused_and_the_gateway_lives_on(
    gateway: GatewayProcess, headers: list[tuple[str, str]], piece: int | None
) -> None:
    """Headers past the HTTP parser's limit get a 4xx or a closed connection, nothing else."""
    data = request_bytes("GET", "/healthz", port=gateway.port, headers=headers)
    response = exchange(gateway.port, data, piece=piece)
    assert response.status is None or 400 <= response.status < 500, response
    _alive(gateway)


# Ways to smuggle a line break (or another control character) into X-Request-ID, and the
# ids that may come back: what the HTTP parser took as the header's whole value (it split
# or folded the line), or FRESH, a new id of the gateway's. Never the value as sent.
FRESH = "fresh"
REQUEST_IDS = {
    "crlf": ("abc\r\nX-Injected: yes", ("abc",)),
    "bare-lf": ("abc\nX-Injected: yes", ("abc",)),
    "bare-cr": ("abc\rX-Injected: yes", (FRESH,)),
    "obs-fold": ("abc\r\n X-Injected: yes", ("abc X-Injected: yes", FRESH)),
    "tab": ("abc\tX-Injected: yes", (FRESH,)),
    "nul": ("abc\x00X-Injected: yes", (FRESH,)),
    "del": ("abc\x7fdef", (FRESH,)),
    "nel": ("abc\x85def", (FRESH,)),
    "encoded": ("abc%0D%0AX-Injected: yes", ("abc%0D%0AX-Injected: yes",)),
    "too-long": ("d" * 200, (FRESH,)),
}


@pytest.mark.parametrize(("value", "allowed"), REQUEST_IDS.values(), ids=REQUEST_IDS.keys())
def test_line_breaks_in_x_request_id_are_never_reflected(
    gateway: GatewayProcess, value: str, allowed: tuple[str, ...]
) -> None:
    """A doubtful X-Request-ID is refused or replaced by a fresh id, never sent back raw."""
    data = request_bytes("GET", "/healthz", port=gateway.port, headers=[("X-Request-ID", value)])
    response = exchange(gateway.port, data)
    _alive(gateway)
    if response.status is None:
        return  # the connection was closed: nothing was answered, so nothing reflected
    assert "x-injected" not in [name.lower() for name, _ in response.headers]
    echoed = response.header("x-request-id")
    if echoed is None:
        # Refused by the HTTP parser before the gateway saw it.
        assert 400 <= response.status < 500, response
        return
    assert echoed.isascii() and echoed.isprintable(), repr(echoed)
    fresh = FRESH in allowed and FRESH_ID.fullmatch(echoed) is not None
    assert fresh or echoed in allowed, repr(echoed)


# --- someone else's stream ----------------------------------------------------------------


def test_another_keys_stream_is_not_found_and_tells_nothing(gateway: GatewayProcess) -> None:
    """Key B reading or cancelling key A's stream gets the 404 of a stream that never was."""
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        a = {"Authorization": f"Bearer {KEY_A}"}
        b = {"Authorization": f"Bearer {KEY_B}"}
        body = {"message": "tenant a's secret question", "simulation": {"delay_ms": 100}}
        created = client.post("/v1/streams", json=body, headers=a)
        assert created.status_code == 201
        stream_id = created.json()["id"]
        never = "x" * len(stream_id)

        answers = {
            "read": client.get(f"/v1/streams/{stream_id}", headers=b),
            "cancel": client.delete(f"/v1/streams/{stream_id}", headers=b),
        }
        unknown = {
            "read": client.get(f"/v1/streams/{never}", headers=b),
            "cancel": client.delete(f"/v1/streams/{never}", headers=b),
        }
        for action, response in answers.items():
            assert response.status_code == 404, (action, response.text)
            error = response.json()["error"]
            assert error["code"] == "not_found"
            # Word for word the answer about an id that never existed.
            expected = unknown[action].json()["error"]
            assert {**error, "request_id": None} == {
                **expected,
                "message": expected["message"].replace(never, stream_id),
                "request_id": None,
            }
            assert "secret" not in response.text and "running" not in response.text
            assert dict(response.headers).keys() == dict(unknown[action].headers).keys()

        # Key B's cancel did nothing: key A's stream ends with `done`.
        events = parse(client.get(created.json()["events_url"]).content)
        assert events[-1].event == "done"
        assert client.get(f"/v1/streams/{stream_id}", headers=a).json()["status"] == "done"
