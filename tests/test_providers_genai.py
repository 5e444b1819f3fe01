"""The `genai` provider: real ChatGoogleGenerativeAI and google-genai against the SSE emulator.

Every test runs on both backends (Vertex AI with ADC, Gemini API with a key), which between
them cover both HTTP stacks google-genai can use (aiohttp when importable, else httpx).
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
from collections.abc import AsyncIterator, Iterator

import pytest

from gemini_sse._models import ErrorCode
from gemini_sse.server.providers import create_provider
from gemini_sse.server.providers.genai import GenAIProvider
from gemini_sse.server.settings import Settings

from .emulators.adc import PROJECT
from .emulators.drive import (
    BLOCKING_PAUSE_S,
    STALL_LIMIT_S,
    drive,
    measure_loop_stalls,
    wait_until,
)
from .emulators.genai_http import GenaiHttpEmulator
from .emulators.leaks import open_pools, opened_since, still_open
from .emulators.scenario import ANSWER, RETRY_AFTER_S, USAGE, Script

pytestmark = [
    pytest.mark.anyio,
    # google-genai subclasses aiohttp.ClientSession, which aiohttp discourages.
    pytest.mark.filterwarnings(
        "ignore:Inheritance class AiohttpClientSession from ClientSession is discouraged"
        ":DeprecationWarning"
    ),
    # On an HTTP error, langchain-core's `_generate_response_from_error` calls
    # `response.json()` on the error's response; for aiohttp's that is a coroutine, which
    # nobody awaits. See `collect_unawaited_coroutines`.
    pytest.mark.filterwarnings(
        "ignore:coroutine 'ClientResponse.json' was never awaited:RuntimeWarning"
    ),
]

VERTEX_PATH = (
    f"/v1beta1/projects/{PROJECT}/locations/europe-west4/publishers/google/models/"
    "gemini-2.5-flash:streamGenerateContent"
)
GEMINI_API_PATH = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def emulator(genai_emulator: GenaiHttpEmulator) -> GenaiHttpEmulator:
    return genai_emulator


# Each backend once, each HTTP stack once: (Vertex AI + httpx), (Gemini API + aiohttp).
@pytest.fixture(params=[("vertex", "httpx"), ("api_key", "aiohttp")], ids=lambda p: "-".join(p))
def setup(request: pytest.FixtureRequest) -> tuple[str, str]:
    backend, library = request.param
    return str(backend), str(library)


@pytest.fixture
def backend(setup: tuple[str, str]) -> str:
    return setup[0]


@pytest.fixture
def http_library(setup: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Which HTTP stack google-genai streams with.

    google-genai picks aiohttp whenever it can import it, else httpx; the flag it reads is
    set here so that both real code paths run. Without aiohttp installed, httpx serves both.
    """
    from google.genai import _api_client

    library = setup[1]
    if library == "aiohttp" and importlib.util.find_spec("aiohttp") is None:
        library = "httpx"
    monkeypatch.setattr(_api_client, "has_aiohttp", library == "aiohttp")
    return library


@pytest.fixture
def settings(
    emulator: GenaiHttpEmulator,
    backend: str,
    http_library: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    """The `genai` provider's settings for the emulator, on the backend under test."""
    assert emulator.account is not None
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(emulator.account.path))
    emulator.reset()
    options: dict[str, str] = {"genai_base_url": emulator.base_url}
    if backend == "vertex":
        options |= {"vertex_project": PROJECT, "vertex_location": "europe-west4"}
    else:
        options |= {"genai_api_key": emulator.api_key}
    return Settings(_env_file=None, provider="genai", **options)  # type: ignore[call-arg]


@pytest.fixture
async def provider(settings: Settings) -> AsyncIterator[GenAIProvider]:
    created = create_provider(settings)
    assert isinstance(created, GenAIProvider)
    yield created
    await created.aclose()


@pytest.fixture
def collect_unawaited_coroutines(http_library: str) -> Iterator[None]:
    """Finalize the coroutines langchain-core leaks on aiohttp errors while this test runs.

    They hide in the exception's reference cycles; collected here, under this module's
    warning filters, they cannot surface in whichever test happens to run next.
    """
    yield
    if http_library == "aiohttp":
        gc.collect()


async def test_answer_streams_incrementally_with_finish_reason_and_usage(
    provider: GenAIProvider, emulator: GenaiHttpEmulator
) -> None:
    """A normal answer: every SSE event's text in order, STOP last, usage from the last event."""
    outcome = await drive(provider, emulator)
    assert outcome.error is None
    assert outcome.texts == list(ANSWER)
    assert outcome.finish_reason == "STOP"
    assert outcome.usage == {
        "input_tokens": USAGE["input"],
        "output_tokens": USAGE["output"],
        "total_tokens": USAGE["total"],
    }
    assert emulator.record.held_too_long == 0
    assert outcome.first_text_at is not None
    assert outcome.first_text_at < emulator.record.sent_at[-1]


async def test_request_carries_path_conversation_options_and_credentials(
    provider: GenAIProvider, emulator: GenaiHttpEmulator, backend: str
) -> None:
    """The emulator sees the backend's URL, all turns, every option, and the right credential."""
    await drive(provider, emulator)
    (seen,) = emulator.record.seen
    assert seen.system == "Answer in one short line."
    assert seen.contents == [
        ("user", "Say hello."),
        ("model", "Hello!"),
        ("user", "Again, in French: caf\u00e9?"),
    ]
    config = seen.generation_config
    assert config["temperature"] == 0.25
    assert config["top_p"] == 0.5
    assert config["max_output_tokens"] == 64
    assert config["stop_sequences"] == ["STOP-HERE"]
    if backend == "vertex":
        assert seen.path == VERTEX_PATH
        assert seen.api_key is None
        # ADC: the service account's signed JWT was exchanged for the bearer token sent.
        (exchange,) = emulator.record.token_requests
        assert exchange["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        assert seen.authorization is not None
        assert seen.authorization.startswith("Bearer emulated-access-token-")
        assert seen.token_claims is not None
        assert seen.token_claims["iss"] == emulator.account.client_email  # type: ignore[union-attr]
    else:
        assert seen.path == GEMINI_API_PATH
        assert seen.api_key == emulator.api_key
        assert seen.authorization is None
        assert emulator.record.token_requests == []


@pytest.mark.parametrize(
    ("scenario", "code", "retryable"),
    [
        ("rate_limit", ErrorCode.RATE_LIMITED, True),
        ("internal", ErrorCode.UPSTREAM_UNAVAILABLE, True),
        ("unavailable", ErrorCode.UPSTREAM_UNAVAILABLE, True),
        ("bad_request", ErrorCode.BAD_REQUEST, False),
        ("forbidden", ErrorCode.UPSTREAM_AUTH, False),
    ],
)
@pytest.mark.usefixtures("collect_unawaited_coroutines")
async def test_status_errors_map_to_our_codes_without_client_retries(
    provider: GenAIProvider,
    emulator: GenaiHttpEmulator,
    scenario: str,
    code: ErrorCode,
    retryable: bool,
) -> None:
    """An HTTP error status becomes our code at once: one call upstream, no SDK retry."""
    emulator.reset(Script(scenario=scenario))  # type: ignore[arg-type]
    outcome = await drive(provider, emulator)
    assert outcome.chunks == []
    info = outcome.info
    assert info is not None
    assert (info.code, info.retryable) == (code, retryable)
    assert len(emulator.record.seen) == 1
    if scenario == "rate_limit":
        # From the google.rpc.RetryInfo detail of the JSON error body.
        assert info.retry_after == RETRY_AFTER_S
    assert "emulated" not in info.message


async def test_connection_cut_after_two_chunks_is_upstream_disconnected(
    provider: GenAIProvider, emulator: GenaiHttpEmulator
) -> None:
    """The connection closing inside the chunked body: two texts, then upstream_disconnected."""
    emulator.reset(Script(scenario="drop"))
    outcome = await drive(provider, emulator)
    assert outcome.texts == list(ANSWER[:2])
    info = outcome.info
    assert info is not None
    assert (info.code, info.retryable) == (ErrorCode.UPSTREAM_DISCONNECTED, True)
    assert len(emulator.record.seen) == 1


async def test_safety_finish_is_reported_as_finish_reason(
    provider: GenAIProvider, emulator: GenaiHttpEmulator
) -> None:
    """A safety-stopped answer raises nothing: the last event says finish_reason SAFETY."""
    emulator.reset(Script(scenario="safety"))
    outcome = await drive(provider, emulator)
    assert outcome.error is None
    assert outcome.texts == [ANSWER[0]]
    assert outcome.finish_reason == "SAFETY"


async def test_blocked_prompt_is_marked_with_finish_reason_safety(
    provider: GenAIProvider, emulator: GenaiHttpEmulator
) -> None:
    """promptFeedback.blockReason becomes an empty answer whose finish reason is SAFETY."""
    emulator.reset(Script(scenario="prompt_block"))
    outcome = await drive(provider, emulator)
    assert outcome.error is None
    assert outcome.texts == []
    assert outcome.finish_reason == "SAFETY"


async def test_slow_first_chunk_is_waited_for(
    provider: GenAIProvider, emulator: GenaiHttpEmulator
) -> None:
    """No client-side timeout: a first event after 0.4 s still arrives, then the rest."""
    emulator.reset(Script(scenario="slow_first"))
    outcome = await drive(provider, emulator)
    assert outcome.error is None
    assert outcome.texts == list(ANSWER)
    assert outcome.first_text_at is not None
    assert outcome.first_text_at - outcome.started >= 0.35


async def test_giving_up_on_a_hung_stream_closes_the_connection(
    provider: GenAIProvider, emulator: GenaiHttpEmulator
) -> None:
    """Cancelling the wait for a hung first event (the pipeline's timeout) closes the socket."""
    emulator.reset(Script(scenario="hang"))
    outcome = await drive(provider, emulator, give_up_after=0.3)
    assert outcome.gave_up
    assert outcome.chunks == []
    assert await wait_until(lambda: emulator.record.client_gone == 1)


async def test_concurrent_streams_do_not_block_the_event_loop(
    provider: GenAIProvider, emulator: GenaiHttpEmulator
) -> None:
    """While five streams wait for the model (the first fetching a token), the loop runs."""
    emulator.reset(Script(first_delay_s=BLOCKING_PAUSE_S, delay_s=0.03))
    async with measure_loop_stalls() as meter:
        outcomes = await asyncio.gather(*(drive(provider, emulator) for _ in range(5)))
    assert all(o.texts == list(ANSWER) for o in outcomes)
    # A blocking wait for the first chunk would stall the loop for the model's whole pause.
    assert meter.worst < STALL_LIMIT_S, f"the event loop stalled for {meter.worst:.3f} s"


async def test_aclose_closes_the_clients_the_provider_opened(
    settings: Settings, emulator: GenaiHttpEmulator
) -> None:
    """After `aclose` none of google-genai's HTTP clients (sync and async) is left open."""
    before = open_pools()
    provider = create_provider(settings)
    await drive(provider, emulator)
    opened = opened_since(before)
    assert opened, "the provider opened no HTTP client"
    await provider.aclose()
    assert still_open(opened) == []


async def test_an_api_key_in_the_environment_does_not_leave_vertex_ai(
    emulator: GenaiHttpEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a project and no GEMINI_SSE_GENAI_API_KEY, a stray GOOGLE_API_KEY changes nothing."""
    assert emulator.account is not None
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(emulator.account.path))
    monkeypatch.setenv("GOOGLE_API_KEY", "stray-key-from-the-shell")
    emulator.reset()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        provider="genai",
        vertex_project=PROJECT,
        vertex_location="europe-west4",
        genai_base_url=emulator.base_url,
    )
    provider = create_provider(settings)
    try:
        outcome = await drive(provider, emulator)
    finally:
        await provider.aclose()
    assert outcome.texts == list(ANSWER)
    (seen,) = emulator.record.seen
    assert seen.path == VERTEX_PATH
    assert seen.api_key is None
    assert seen.authorization is not None and seen.authorization.startswith("Bearer ")


def test_genai_needs_an_api_key_or_a_project() -> None:
    """Without a key or a project the provider refuses to start, naming both settings."""
    settings = Settings(_env_file=None, provider="genai")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="GEMINI_SSE_GENAI_API_KEY"):
        create_provider(settings)
