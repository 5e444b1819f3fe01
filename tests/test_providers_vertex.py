"""The `vertex` provider: real ChatVertexAI and GAPIC gRPC client against the gRPC emulator."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gemini_sse._models import ErrorCode
from gemini_sse.server.providers import create_provider, resolve_provider_name
from gemini_sse.server.providers.vertex import VertexProvider, async_transport
from gemini_sse.server.settings import Settings

from .emulators.adc import PROJECT, write_service_account
from .emulators.certs import shared_tls_identity
from .emulators.drive import (
    BLOCKING_PAUSE_S,
    STALL_LIMIT_S,
    drive,
    measure_loop_stalls,
    wait_until,
)
from .emulators.fixtures import UNUSED_TOKEN_URI
from .emulators.genai_http import GenaiHttpEmulator
from .emulators.leaks import open_pools, opened_since, responses_holding_a_connection, still_open
from .emulators.scenario import ANSWER, BLOCK_REASON, RETRY_AFTER_S, USAGE, Script
from .emulators.vertex_grpc import VertexGrpcEmulator

pytestmark = [
    pytest.mark.anyio,
    # ChatVertexAI's typing_extensions.deprecated warning names only its successor, and is
    # attributed to our module, so the global ChatVertexAI filters do not catch it.
    pytest.mark.filterwarnings(r"ignore:Use \[`ChatGoogleGenerativeAI`\]:DeprecationWarning"),
]

MODEL_RESOURCE = (
    f"projects/{PROJECT}/locations/europe-west4/publishers/google/models/gemini-2.5-flash"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def emulator(vertex_emulator: VertexGrpcEmulator) -> VertexGrpcEmulator:
    return vertex_emulator


@pytest.fixture
def settings(emulator: VertexGrpcEmulator, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The `vertex` provider's settings for the gRPC emulator, its ADC and its certificate."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(emulator.account.path))
    monkeypatch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", str(shared_tls_identity().cert_file))
    emulator.reset()
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        provider="vertex",
        vertex_project=PROJECT,
        vertex_location="europe-west4",
        vertex_base_url=emulator.endpoint,
    )


@pytest.fixture
async def provider(settings: Settings) -> AsyncIterator[VertexProvider]:
    created = create_provider(settings)
    assert isinstance(created, VertexProvider)
    yield created
    await created.aclose()


async def test_answer_streams_incrementally_with_finish_reason_and_usage(
    provider: VertexProvider, emulator: VertexGrpcEmulator
) -> None:
    """A normal answer: every chunk's text in order, STOP last, usage from the final chunk."""
    outcome = await drive(provider, emulator)
    assert outcome.error is None
    assert outcome.texts == list(ANSWER)
    assert outcome.finish_reason == "STOP"
    assert outcome.usage == {
        "input_tokens": USAGE["input"],
        "output_tokens": USAGE["output"],
        "total_tokens": USAGE["total"],
    }
    # The emulator held the last chunk back until the test had the first one.
    assert emulator.record.held_too_long == 0
    assert outcome.first_text_at is not None
    assert outcome.first_text_at < emulator.record.sent_at[-1]


async def test_request_carries_model_resource_conversation_options_and_jwt(
    provider: VertexProvider, emulator: VertexGrpcEmulator
) -> None:
    """The emulator sees the full model resource name, all turns, every option, a signed JWT."""
    await drive(provider, emulator)
    (seen,) = emulator.record.seen
    assert seen.path == "/google.cloud.aiplatform.v1beta1.PredictionService/StreamGenerateContent"
    assert seen.model == MODEL_RESOURCE
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
    # ADC service account: a self-signed JWT, verified with the key's public half.
    assert seen.authorization is not None and seen.authorization.startswith("Bearer ")
    assert seen.token_claims is not None
    assert seen.token_claims["iss"] == emulator.account.client_email


async def test_finish_reason_unspecified_never_reaches_the_pipeline(
    provider: VertexProvider, emulator: VertexGrpcEmulator
) -> None:
    """Chunks before the last carry no finish reason (Vertex says FINISH_REASON_UNSPECIFIED)."""
    outcome = await drive(provider, emulator)
    reasons = [c.response_metadata.get("finish_reason") for c in outcome.chunks]
    assert [r for r in reasons if r] == ["STOP"]


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
async def test_status_errors_map_to_our_codes_without_client_retries(
    provider: VertexProvider,
    emulator: VertexGrpcEmulator,
    scenario: str,
    code: ErrorCode,
    retryable: bool,
) -> None:
    """A gRPC error status becomes our code at once: one call upstream, no retry by ChatVertexAI."""
    emulator.reset(Script(scenario=scenario))  # type: ignore[arg-type]
    outcome = await drive(provider, emulator)
    assert outcome.chunks == []
    info = outcome.info
    assert info is not None
    assert (info.code, info.retryable) == (code, retryable)
    assert len(emulator.record.seen) == 1
    if scenario == "rate_limit":
        # From the google.rpc.RetryInfo detail in the gRPC trailers.
        assert info.retry_after == RETRY_AFTER_S
    assert "emulated" not in info.message  # our words, not the upstream's


async def test_connection_cut_after_two_chunks_is_upstream_disconnected(
    provider: VertexProvider, emulator: VertexGrpcEmulator
) -> None:
    """The TCP connection closing mid-stream: two texts arrive, then upstream_disconnected."""
    emulator.reset(Script(scenario="drop"))
    outcome = await drive(provider, emulator)
    assert outcome.texts == list(ANSWER[:2])
    info = outcome.info
    assert info is not None
    assert (info.code, info.retryable) == (ErrorCode.UPSTREAM_DISCONNECTED, True)


async def test_safety_finish_is_reported_as_finish_reason(
    provider: VertexProvider, emulator: VertexGrpcEmulator
) -> None:
    """A safety-stopped answer raises nothing: the last chunk says finish_reason SAFETY."""
    emulator.reset(Script(scenario="safety"))
    outcome = await drive(provider, emulator)
    assert outcome.error is None
    assert outcome.texts == [ANSWER[0]]
    assert outcome.finish_reason == "SAFETY"


async def test_blocked_prompt_is_marked_with_finish_reason_safety(
    provider: VertexProvider, emulator: VertexGrpcEmulator
) -> None:
    """promptFeedback.blockReason becomes an empty answer, finish reason SAFETY, feedback kept."""
    emulator.reset(Script(scenario="prompt_block"))
    outcome = await drive(provider, emulator)
    assert outcome.error is None
    assert outcome.texts == []
    assert outcome.finish_reason == "SAFETY"
    assert outcome.chunks[0].response_metadata["prompt_feedback"]["block_reason"] == BLOCK_REASON
    assert outcome.usage is not None and outcome.usage["input_tokens"] == USAGE["input"]


async def test_slow_first_chunk_is_waited_for(
    provider: VertexProvider, emulator: VertexGrpcEmulator
) -> None:
    """No client-side deadline: a first chunk after 0.4 s still arrives, then the rest."""
    emulator.reset(Script(scenario="slow_first"))
    outcome = await drive(provider, emulator)
    assert outcome.error is None
    assert outcome.texts == list(ANSWER)
    assert outcome.first_text_at is not None
    assert outcome.first_text_at - outcome.started >= 0.35


async def test_giving_up_on_a_hung_stream_cancels_the_rpc(
    provider: VertexProvider, emulator: VertexGrpcEmulator
) -> None:
    """Cancelling the wait for a hung first chunk (the pipeline's timeout) ends the RPC upstream."""
    emulator.reset(Script(scenario="hang"))
    outcome = await drive(provider, emulator, give_up_after=0.3)
    assert outcome.gave_up
    assert outcome.chunks == []
    assert await wait_until(lambda: emulator.record.client_gone == 1)


async def test_concurrent_streams_do_not_block_the_event_loop(
    provider: VertexProvider, emulator: VertexGrpcEmulator
) -> None:
    """While five streams wait for the model (the first opening the client), the loop runs."""
    emulator.reset(Script(first_delay_s=BLOCKING_PAUSE_S, delay_s=0.03))
    async with measure_loop_stalls() as meter:
        outcomes = await asyncio.gather(*(drive(provider, emulator) for _ in range(5)))
    assert all(o.texts == list(ANSWER) for o in outcomes)
    # A blocking wait for the first chunk would stall the loop for the model's whole pause.
    assert meter.worst < STALL_LIMIT_S, f"the event loop stalled for {meter.worst:.3f} s"


async def test_aclose_closes_the_channel_the_streams_opened(
    settings: Settings, emulator: VertexGrpcEmulator
) -> None:
    """The gRPC channel opened on the first stream is closed by `aclose`, not left to the GC."""
    before = open_pools()
    provider = create_provider(settings)
    await drive(provider, emulator)
    opened = opened_since(before)
    assert opened, "streaming opened no channel"
    await provider.aclose()
    assert still_open(opened) == []


def test_transport_names_are_served_by_async_transports() -> None:
    """grpc/rest are served by their asyncio transports; gRPC is the default; others fail."""
    assert async_transport(None) == "grpc_asyncio"
    assert async_transport("grpc") == "grpc_asyncio"
    assert async_transport("REST") == "rest_asyncio"
    with pytest.raises(ValueError, match="GEMINI_SSE_VERTEX_TRANSPORT"):
        async_transport("carrier-pigeon")


# --- the REST transport (`GEMINI_SSE_VERTEX_TRANSPORT=rest`): GAPIC's rest_asyncio ---------


@pytest.fixture
def rest_emulator(genai_emulator: GenaiHttpEmulator) -> GenaiHttpEmulator:
    return genai_emulator


@pytest.fixture
def rest_settings(rest_emulator: GenaiHttpEmulator, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The `vertex` provider's settings for the REST emulator and its ADC."""
    pytest.importorskip("aiohttp")
    assert rest_emulator.account is not None
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(rest_emulator.account.path))
    rest_emulator.reset()
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        provider="vertex",
        vertex_project=PROJECT,
        vertex_location="europe-west4",
        vertex_base_url=rest_emulator.base_url,
        vertex_transport="rest",
    )


@pytest.fixture
async def rest_provider(rest_settings: Settings) -> AsyncIterator[VertexProvider]:
    created = create_provider(rest_settings)
    assert isinstance(created, VertexProvider)
    assert created.transport == "rest_asyncio"
    yield created
    await created.aclose()


async def test_rest_transport_streams_the_json_array_incrementally(
    rest_provider: VertexProvider, rest_emulator: GenaiHttpEmulator
) -> None:
    """Over REST the answer is one JSON array; each element still arrives as it is sent."""
    outcome = await drive(rest_provider, rest_emulator)
    assert outcome.error is None
    assert outcome.texts == list(ANSWER)
    assert outcome.finish_reason == "STOP"
    assert rest_emulator.record.held_too_long == 0
    (seen,) = rest_emulator.record.seen
    assert seen.model == MODEL_RESOURCE
    assert seen.system == "Answer in one short line."
    assert len(seen.contents) == 3
    assert seen.generation_config["max_output_tokens"] == 64
    assert seen.generation_config["stop_sequences"] == ["STOP-HERE"]
    # google-auth exchanged the service account's JWT for the bearer token sent.
    assert seen.authorization is not None
    assert seen.authorization.startswith("Bearer emulated-access-token-")


@pytest.mark.parametrize(
    ("scenario", "code", "retry_after"),
    [
        ("rate_limit", ErrorCode.RATE_LIMITED, RETRY_AFTER_S),
        ("forbidden", ErrorCode.UPSTREAM_AUTH, None),
        ("drop", ErrorCode.UPSTREAM_DISCONNECTED, None),
    ],
)
async def test_rest_transport_failures_map_like_grpc(
    rest_provider: VertexProvider,
    rest_emulator: GenaiHttpEmulator,
    scenario: str,
    code: ErrorCode,
    retry_after: float | None,
) -> None:
    """REST errors and a cut array map to the same codes as their gRPC twins."""
    rest_emulator.reset(Script(scenario=scenario))  # type: ignore[arg-type]
    outcome = await drive(rest_provider, rest_emulator)
    info = outcome.info
    assert info is not None
    assert (info.code, info.retry_after) == (code, retry_after)
    # google-auth's AsyncAuthorizedSession, under GAPIC's REST transport, retries 408, 429
    # and 5xx by itself (three attempts), whatever ChatVertexAI is told: see providers.md.
    assert len(rest_emulator.record.seen) == (3 if scenario == "rate_limit" else 1)


async def test_rest_transport_does_not_block_the_event_loop(
    rest_provider: VertexProvider, rest_emulator: GenaiHttpEmulator
) -> None:
    """While five REST streams wait for the model (the first fetching a token), the loop runs."""
    rest_emulator.reset(Script(first_delay_s=BLOCKING_PAUSE_S, delay_s=0.03))
    async with measure_loop_stalls() as meter:
        outcomes = await asyncio.gather(*(drive(rest_provider, rest_emulator) for _ in range(5)))
    assert all(o.texts == list(ANSWER) for o in outcomes)
    # A blocking wait for the first chunk would stall the loop for the model's whole pause.
    assert meter.worst < STALL_LIMIT_S, f"the event loop stalled for {meter.worst:.3f} s"


async def test_rest_transport_gives_back_the_connection_of_a_cut_stream(
    rest_provider: VertexProvider, rest_emulator: GenaiHttpEmulator
) -> None:
    """A stream cut mid-answer releases its connection when it fails, not when the GC runs.

    The failed read leaves the response in a reference cycle; were it still holding its
    connection, the collector could finalise the connection first, and aiohttp would
    report it unclosed in whatever test runs then.
    """
    rest_emulator.reset(Script(scenario="drop"))
    gc.collect()  # what earlier tests left behind is not this test's
    gc.disable()  # the cycle must still be there when it is looked at
    try:
        outcome = await drive(rest_provider, rest_emulator)
        assert outcome.info is not None
        assert outcome.info.code == ErrorCode.UPSTREAM_DISCONNECTED
        assert responses_holding_a_connection() == []
    finally:
        gc.enable()


async def test_rest_transport_aclose_closes_the_sessions_the_streams_opened(
    rest_settings: Settings, rest_emulator: GenaiHttpEmulator
) -> None:
    """The aiohttp session opened on the first REST stream is closed by `aclose`."""
    before = open_pools()
    provider = create_provider(rest_settings)
    await drive(provider, rest_emulator)
    opened = opened_since(before)
    assert opened, "streaming opened no session"
    await provider.aclose()
    assert still_open(opened) == []


# --- choosing the provider ---------------------------------------------------------------


@pytest.fixture
def no_ambient_google(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No gcloud login and no Google serverless variables; the gcloud config dir is returned."""
    config = tmp_path / "gcloud"
    config.mkdir()
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(config))
    for name in ("K_SERVICE", "CLOUD_RUN_JOB", "GAE_APPLICATION"):
        monkeypatch.delenv(name, raising=False)
    return config


def _auto(**values: str) -> Settings:
    return Settings(_env_file=None, **{"provider": "auto", **values})  # type: ignore[arg-type]


@pytest.mark.usefixtures("no_ambient_google")
def test_auto_is_vertex_with_a_project_and_an_adc_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`auto` serves Vertex AI when a project and GOOGLE_APPLICATION_CREDENTIALS are set."""
    account = write_service_account(tmp_path, UNUSED_TOKEN_URI)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(account.path))
    assert resolve_provider_name(_auto(vertex_project=PROJECT)) == "vertex"
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    provider = create_provider(_auto())
    assert isinstance(provider, VertexProvider)
    assert provider.project == PROJECT


def test_auto_is_vertex_with_a_gcloud_login(
    monkeypatch: pytest.MonkeyPatch, no_ambient_google: Path
) -> None:
    """`gcloud auth application-default login` credentials count as found."""
    (no_ambient_google / "application_default_credentials.json").write_text("{}")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    assert resolve_provider_name(_auto()) == "vertex"


@pytest.mark.usefixtures("no_ambient_google")
def test_auto_is_vertex_on_cloud_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Cloud Run (K_SERVICE) the metadata server has credentials: a project is enough."""
    monkeypatch.setenv("K_SERVICE", "gateway")
    assert resolve_provider_name(_auto(vertex_project=PROJECT)) == "vertex"


@pytest.mark.usefixtures("no_ambient_google")
def test_auto_is_fake_without_credentials_or_without_a_project(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A project without credentials, a missing ADC file, or credentials alone: simulated."""
    assert resolve_provider_name(_auto(vertex_project=PROJECT)) == "fake"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    assert resolve_provider_name(_auto(vertex_project=PROJECT)) == "fake"
    account = write_service_account(tmp_path, UNUSED_TOKEN_URI)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(account.path))
    assert resolve_provider_name(_auto()) == "fake"
    assert resolve_provider_name(_auto(provider="openai")) == "openai"


def test_choosing_the_simulated_model_imports_no_provider_library() -> None:
    """`fake` (and `auto` without Google) never imports the Google or OpenAI LangChain packages."""
    code = (
        "import sys\n"
        "from gemini_sse.server.providers import create_provider\n"
        "from gemini_sse.server.settings import Settings\n"
        "create_provider(Settings(_env_file=None, provider='fake'))\n"
        "heavy = ('langchain_google_vertexai', 'langchain_google_genai', 'langchain_openai')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""
