"""What every emulator shares: the scenarios, the record of what it saw, its own thread.

An emulator runs its server on a private event loop in a background thread, so that a
blocked client loop cannot stall the emulator (and the emulator's pauses cannot hide a
blocked client). Tests pick the behaviour of the next calls by setting `emulator.script`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from google.auth import jwt

Scenario = Literal[
    "normal",  # the answer, in chunks, with pauses between them
    "rate_limit",  # 429 / RESOURCE_EXHAUSTED, with a retry delay
    "internal",  # 500 / INTERNAL
    "unavailable",  # 503 / UNAVAILABLE
    "bad_request",  # 400 / INVALID_ARGUMENT
    "forbidden",  # 403 / PERMISSION_DENIED
    "drop",  # two chunks, then the TCP connection is closed mid-stream
    "safety",  # one chunk, then an empty chunk: finish reason SAFETY, a blocking rating
    "prompt_block",  # no candidates at all: promptFeedback.blockReason (`BLOCK_REASON`)
    "slow_first",  # the normal answer after a long pause before the first chunk
    "hang",  # headers (if any), then nothing until the client gives up
    "thinking",  # thought-summary parts (`THOUGHTS`), then the answer
    "tool_call",  # a function call (`TOOL_CALL`) instead of text, finish reason STOP
    "grounding",  # the answer, the last chunk carrying grounding metadata (`SOURCES`)
]

SCENARIOS: tuple[Scenario, ...] = (
    "normal",
    "rate_limit",
    "internal",
    "unavailable",
    "bad_request",
    "forbidden",
    "drop",
    "safety",
    "prompt_block",
    "slow_first",
    "hang",
    "thinking",
    "tool_call",
    "grounding",
)

# The normal answer; non-ASCII on purpose.
ANSWER: tuple[str, ...] = ("Hello", ", caf\u00e9", " world", " \u2014 done.")
USAGE = {"input": 7, "output": 9, "total": 16}
# What the rich scenarios send: thoughts, one function call, two web sources.
THOUGHTS: tuple[str, ...] = ("Thinking about caf\u00e9s. ", "Checking the map.")
THOUGHT_TOKENS = 11
TOOL_CALL = {"name": "get_weather", "args": {"city": "Z\u00fcrich", "days": 2}}
THOUGHT_SIGNATURE = b"emulated-signature-\x00\x01"
SOURCES: tuple[tuple[str, str], ...] = (
    ("https://example.com/cafes", "Caf\u00e9s"),
    ("https://example.com/world", "World"),
)
# Which answer chunks the sources support: (chunk index, indices into SOURCES). The last
# chunk's span starts after an "\u00e9" and holds an em dash, so its UTF-8 byte offsets
# differ from its character offsets.
SUPPORTS: tuple[tuple[int, tuple[int, ...]], ...] = ((1, (0,)), (3, (0, 1)))
SEARCH_QUERIES = ("caf\u00e9 world",)
# What withheld the answer in `safety`, and the prompt in `prompt_block`.
SAFETY_CATEGORY = "HARM_CATEGORY_DANGEROUS_CONTENT"
BLOCK_REASON = "PROHIBITED_CONTENT"
RETRY_AFTER_S = 2.0
ERROR_MESSAGES = {
    "rate_limit": "Resource exhausted: quota exceeded (emulated).",
    "internal": "Internal error encountered (emulated).",
    "unavailable": "The service is currently unavailable (emulated).",
    "bad_request": "Request contains an invalid argument (emulated).",
    "forbidden": "Permission denied on resource project (emulated).",
}
# How long `hang` and the waits for the client last at most: every emulator stops by itself.
HANG_LIMIT_S = 10.0
CLIENT_WAIT_LIMIT_S = 5.0


@dataclass
class Script:
    """How the emulator answers the next calls."""

    scenario: Scenario = "normal"
    chunks: tuple[str, ...] = ANSWER
    delay_s: float = 0.02
    first_delay_s: float = 0.0
    # Hold the last chunk back until the test's client has read the first one: a client
    # that buffers the stream then cannot finish, which `held_too_long` records.
    hold_last: bool = False
    # `scenario` answers only the first `times` calls (None: all); later calls are normal.
    times: int | None = None

    @property
    def pause_before_first(self) -> float:
        return 0.4 if self.scenario == "slow_first" else self.first_delay_s


def supported_spans(chunks: tuple[str, ...]) -> list[tuple[int, int, str, tuple[int, ...]]]:
    """`SUPPORTS` as Gemini states them: (start, end) in UTF-8 bytes of the whole answer."""
    spans = []
    for index, sources in SUPPORTS:
        start = len("".join(chunks[:index]).encode())
        spans.append((start, start + len(chunks[index].encode()), chunks[index], sources))
    return spans


@dataclass
class Seen:
    """One call, as the emulator received it."""

    path: str
    model: str
    contents: list[tuple[str, str]]
    system: str | None
    generation_config: dict[str, Any]
    authorization: str | None = None
    api_key: str | None = None
    # Claims of the verified bearer JWT, or of the assertion exchanged for the token.
    token_claims: dict[str, Any] | None = None
    # The whole request as its JSON came (bytes in base64, enums by name). Google's JSON
    # parsing takes proto field names (`mime_type`) as well as JSON names (`mimeType`),
    # and google-genai sends nested objects with the former: the properties below read
    # both spellings as the JSON names.
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def parts(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """Each turn's role and parts, as sent (the arguments and results as they are)."""
        return [
            (content.get("role", ""), [_part(part) for part in content.get("parts", [])])
            for content in self.body.get("contents", [])
        ]

    @property
    def tools(self) -> list[dict[str, Any]]:
        return list(self.body.get("tools", []))

    @property
    def tool_config(self) -> Any:
        return _json_names(self.body.get("toolConfig"))

    @property
    def thinking_config(self) -> Any:
        return _json_names(self.body.get("generationConfig", {}).get("thinkingConfig"))


def _json_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def _json_names(value: Any) -> Any:
    """`value` with every key spelled as a JSON name (for objects without the user's keys)."""
    if isinstance(value, dict):
        return {_json_name(k): _json_names(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_names(v) for v in value]
    return value


def _part(part: dict[str, Any]) -> dict[str, Any]:
    """A part with its keys as JSON names; a function's arguments and result stay as sent."""
    return {
        _json_name(k): _json_names(v)
        if k in ("inline_data", "inlineData", "file_data", "fileData")
        else v
        for k, v in part.items()
    }


@dataclass
class Record:
    """Everything an emulator observed; read by the tests after a call."""

    seen: list[Seen] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    # Streams that ended because the client went away (cancelled RPC, closed socket).
    client_gone: int = 0
    held_too_long: int = 0
    token_requests: list[dict[str, Any]] = field(default_factory=list)


class Emulator:
    """Base of the emulators: script, record, a loop in a thread, and the test's signals."""

    def __init__(self) -> None:
        self.script = Script()
        self.record = Record()
        self.calls = 0
        # How many texts the test's client has read: the emulator's way to wait for it.
        self._client_texts = 0
        self._client_progress = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    # -- called from the tests' thread --------------------------------------------------

    def reset(self, script: Script | None = None) -> None:
        """Forget what was seen and answer the next calls with `script`."""
        self.script = script or Script()
        self.record = Record()
        self.calls = 0
        with self._client_progress:
            self._client_texts = 0

    def client_read_text(self) -> None:
        """The test's client tells the emulator it has read one more text."""
        with self._client_progress:
            self._client_texts += 1
            self._client_progress.notify_all()

    # -- called from the emulator's loop ----------------------------------------------

    def next_script(self) -> Script:
        """The script for the call that starts now (see `Script.times`)."""
        self.calls += 1
        script = self.script
        if script.times is not None and self.calls > script.times:
            return replace(script, scenario="normal")
        return script

    def call(self, coro: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
        """Run `coro()` on the emulator's loop and wait for its result."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(_await(coro), self._loop)
        return future.result(timeout)

    def close_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()

    # -- used by the servers on the emulator's loop --------------------------------------

    async def pause(self, seconds: float) -> None:
        """The model's own pace: the scenario's pauses between chunks."""
        if seconds:
            await asyncio.sleep(seconds)

    def client_has_read(self, texts: int) -> bool:
        """Block (a worker thread) until the client has read `texts` texts; False: not in time."""
        with self._client_progress:
            return self._client_progress.wait_for(
                lambda: self._client_texts >= texts, CLIENT_WAIT_LIMIT_S
            )

    async def wait_for_client_first(self) -> None:
        """Before the last chunk: wait (bounded) until the test has the first chunk."""
        if not await asyncio.to_thread(self.client_has_read, 1):
            self.record.held_too_long += 1

    def mark_sent(self) -> None:
        self.record.sent_at.append(time.monotonic())


async def _await(coro: Callable[[], Awaitable[Any]]) -> Any:
    return await coro()


def verify_jwt(token: str, public_key_pem: bytes) -> dict[str, Any] | None:
    """The claims of `token` if our service-account key signed it, else None."""
    try:
        claims: dict[str, Any] = jwt.decode(token, certs=public_key_pem, verify=True, audience=None)
    except ValueError:
        return None
    return claims
