"""Locust users for the gateway: streams opened, read as they arrive, and timed.

    locust -f loadtest/locustfile.py --headless -u 50 -r 10 -t 30s \\
        --host http://127.0.0.1:8000 --csv results/run

Two users: `StreamUser` posts `/v1/stream` and reads the answer on that connection;
`ResumableStreamUser` posts `/v1/streams` and reads the stream at its `events_url`. Each
reads incrementally with the package's own decoder and reports three kinds of entries to
locust (web UI and CSV), as request type `sse` or `sse-resumable`:

- `ttft`: from sending the request to the first `token` event (ms);
- `gap`: between consecutive `token` events of one stream (ms), one entry per gap;
- `stream`: one per stream, its duration (ms); the "size" column is the number of
  tokens it delivered. A stream fails with its error code when it ends in an `error`
  event (`rate_limited`, `timeout`, ...) or ends without `done` or `error`
  (`no_terminal`). A refused request (HTTP 4xx/5xx) fails the HTTP request's own entry
  with `http_<status> <code>` instead, so that every failure is counted once.

Options (command line or environment): `--sse-message` / `LOCUST_SSE_MESSAGE`,
`--sse-model` / `LOCUST_SSE_MODEL`, `--sse-separators` / `LOCUST_SSE_SEPARATORS`
(`true`, `false`, or `default`: the gateway's setting), `--sse-api-key` /
`LOCUST_SSE_API_KEY`, `--sse-read-timeout` / `LOCUST_SSE_READ_TIMEOUT` (seconds).
"""

from __future__ import annotations

import json
import time
from typing import Any

from locust import HttpUser, constant, events, task
from locust.env import Environment

from gemini_sse._decoder import SSEDecoder


class StreamFailed(Exception):
    """A stream that did not end in `done`; the argument is its error code."""


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def _arguments(parser: Any) -> None:
    parser.add_argument(
        "--sse-message",
        default="Explain server-sent events in a few sentences.",
        env_var="LOCUST_SSE_MESSAGE",
        help="the user message of every stream",
    )
    parser.add_argument(
        "--sse-model", default="", env_var="LOCUST_SSE_MODEL", help="model (default: the gateway's)"
    )
    parser.add_argument(
        "--sse-separators",
        default="default",
        choices=["default", "true", "false"],
        env_var="LOCUST_SSE_SEPARATORS",
        help="ask for separator events (default: the gateway's setting)",
    )
    parser.add_argument(
        "--sse-api-key", default="", env_var="LOCUST_SSE_API_KEY", help="sent as a Bearer token"
    )
    parser.add_argument(
        "--sse-read-timeout",
        type=float,
        default=120.0,
        env_var="LOCUST_SSE_READ_TIMEOUT",
        help="seconds without a byte before a stream is given up",
    )


def _options(environment: Environment) -> Any:
    """The parsed command line, with the `--sse-*` options above."""
    return environment.parsed_options


def _request_body(environment: Environment, index: int) -> dict[str, Any]:
    options = _options(environment)
    body: dict[str, Any] = {"message": f"{options.sse_message} ({index})"}
    if options.sse_model:
        body["model"] = options.sse_model
    if options.sse_separators != "default":
        body["separators"] = options.sse_separators == "true"
    return body


def _headers(environment: Environment) -> dict[str, str]:
    headers = {"Accept": "text/event-stream"}
    if key := _options(environment).sse_api_key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def _http_error(response: Any) -> str:
    """`http_<status> <code>` from a gateway error body (`{"error": {"code": ...}}`)."""
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = "?"
    return f"http_{response.status_code} {code}"


class _SSEUser(HttpUser):
    abstract = True
    wait_time = constant(0)  # closed loop: each user keeps one stream open at a time
    request_type = "sse"

    def on_start(self) -> None:
        self._streams = 0

    def _next_body(self) -> dict[str, Any]:
        self._streams += 1
        return _request_body(self.environment, self._streams)

    def _report(self, name: str, ms: float, length: int = 0, failure: str | None = None) -> None:
        self.environment.events.request.fire(
            request_type=self.request_type,
            name=name,
            response_time=ms,
            response_length=length,
            exception=StreamFailed(failure) if failure is not None else None,
            context={},
        )

    def _read(self, response: Any, sent: float) -> None:
        """Read an open event stream to its end, reporting ttft, gaps and the outcome."""
        decoder = SSEDecoder()
        tokens = 0
        last: float | None = None
        outcome: str | None = None
        try:
            for chunk in response.iter_content(chunk_size=None):
                now = time.perf_counter()
                for event in decoder.feed(chunk):
                    if event.event == "token":
                        if last is None:
                            self._report("ttft", (now - sent) * 1000)
                        else:
                            self._report("gap", (now - last) * 1000)
                        last = now
                        tokens += 1
                    elif event.event == "done":
                        outcome = "done"
                    elif event.event == "error":
                        outcome = _error_code(event.data)
        except OSError as exc:  # requests' ConnectionError and ChunkedEncodingError too
            outcome = outcome or f"connection_error {type(exc).__name__}"
        duration = (time.perf_counter() - sent) * 1000
        if outcome == "done":
            self._report("stream", duration, tokens)
        else:
            self._report("stream", duration, tokens, failure=outcome or "no_terminal")


def _error_code(data: str) -> str:
    try:
        return str(json.loads(data)["code"])
    except (ValueError, KeyError, TypeError):
        return "error_event"


class StreamUser(_SSEUser):
    """Opens `POST /v1/stream` and reads the answer on the same connection."""

    weight = 3

    @task
    def stream(self) -> None:
        sent = time.perf_counter()
        with self.client.post(
            "/v1/stream",
            json=self._next_body(),
            headers=_headers(self.environment),
            stream=True,
            catch_response=True,
            timeout=(10, _options(self.environment).sse_read_timeout),
            name="POST /v1/stream",
        ) as response:
            if response.status_code != 200:
                response.failure(_http_error(response))
                return
            response.success()
            self._read(response, sent)


class ResumableStreamUser(_SSEUser):
    """Creates a stream with `POST /v1/streams`, then reads it at its `events_url`."""

    weight = 1
    request_type = "sse-resumable"

    @task
    def stream(self) -> None:
        sent = time.perf_counter()
        headers = _headers(self.environment)
        with self.client.post(
            "/v1/streams",
            json=self._next_body(),
            headers=headers,
            catch_response=True,
            name="POST /v1/streams",
        ) as created:
            if created.status_code != 201:
                created.failure(_http_error(created))
                return
            events_url = created.json()["events_url"]
        with self.client.get(
            events_url,
            headers=headers,
            stream=True,
            catch_response=True,
            timeout=(10, _options(self.environment).sse_read_timeout),
            name="GET /v1/streams/[id]/events",
        ) as response:
            if response.status_code != 200:
                response.failure(_http_error(response))
                return
            response.success()
            self._read(response, sent)
