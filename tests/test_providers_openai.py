"""The `openai` provider: real ChatOpenAI and openai SDK against the chat-completions emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gemini_sse._models import ErrorCode
from gemini_sse.server.providers import create_provider
from gemini_sse.server.providers.openai import PLACEHOLDER_KEY, OpenAIProvider
from gemini_sse.server.settings import Settings

from .emulators.drive import (
    BLOCKING_PAUSE_S,
    STALL_LIMIT_S,
    drive,
    measure_loop_stalls,
    wait_until,
)
from .emulators.leaks import open_pools, opened_since, still_open
from .emulators.openai_http import OpenAIHttpEmulator
from .emulators.scenario import ANSWER, RETRY_AFTER_S, USAGE, Script

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def emulator(openai_emulator: OpenAIHttpEmulator) -> OpenAIHttpEmulator:
    return openai_emulator


@pytest.fixture
def settings(emulator: OpenAIHttpEmulator) -> Settings:
    """The `openai` provider's settings for the emulator, with its key."""
    emulator.reset()
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        provider="openai",
        openai_base_url=emulator.base_url,
        openai_api_key=emulator.api_key,
    )


@pytest.fixture
async def provider(settings: Settings) -> AsyncIterator[OpenAIProvider]:
    created = create_provider(settings)
    assert isinstance(created, OpenAIProvider)
    yield created
    await created.aclose()


async def test_answer_streams_incrementally_with_finish_reason_and_usage(
    provider: OpenAIProvider, emulator: OpenAIHttpEmulator
) -> None:
    """A normal answer: every delta in order, finish_reason stop, usage from the usage chunk."""
    outcome = await drive(provider, emulator)
    assert outcome.error is None
    assert outcome.texts == list(ANSWER)
    assert outcome.finish_reason == "stop"
    assert outcome.usage == {
        "input_tokens": USAGE["input"],
        "output_tokens": USAGE["output"],
        "total_tokens": USAGE["total"],
    }
    assert emulator.record.held_too_long == 0
    assert outcome.first_text_at is not None
    assert outcome.first_text_at < emulator.record.sent_at[-1]


async def test_request_carries_conversation_options_usage_request_and_key(
    provider: OpenAIProvider, emulator: OpenAIHttpEmulator
) -> None:
    """The server sees system/user/assistant turns, every option (the limit both ways), the key."""
    await drive(provider, emulator)
    (seen,) = emulator.record.seen
    assert seen.path == "/v1/chat/completions"
    assert seen.model == "gemini-2.5-flash"
    assert seen.system == "Answer in one short line."
    assert seen.contents == [
        ("user", "Say hello."),
        ("assistant", "Hello!"),
        ("user", "Again, in French: caf\u00e9?"),
    ]
    assert seen.generation_config == {
        "temperature": 0.25,
        "top_p": 0.5,
        "max_completion_tokens": 64,
        "max_tokens": 64,
        "stop": ["STOP-HERE"],
    }
    assert seen.authorization == f"Bearer {emulator.api_key}"


async def test_unset_key_is_sent_as_a_placeholder(emulator: OpenAIHttpEmulator) -> None:
    """Local servers need no key: without one the SDK still gets (and sends) a placeholder."""
    emulator.reset()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        provider="openai",
        openai_base_url=emulator.base_url,
    )
    provider = OpenAIProvider(settings)
    try:
        await drive(provider, emulator)
    finally:
        await provider.aclose()
    assert emulator.record.seen[0].authorization == f"Bearer {PLACEHOLDER_KEY}"


@pytest.mark.parametrize(
    ("scenario", "code", "retryable"),
    [
        ("rate_limit", ErrorCode.RATE_LIMITED, True),
        ("internal", ErrorCode.UPSTREAM_UNAVAILABLE, True),
        ("unavailable", ErrorCode.UPSTREAM_UNAVAILABLE, True),
        ("bad_request", ErrorCode.BAD_REQUEST, False),
        ("forbidden", ErrorCode.UPSTREAM_AUTH, False),
        ("prompt_block", ErrorCode.CONTENT_BLOCKED, False),
    ],
)
async def test_status_errors_map_to_our_codes_without_client_retries(
    provider: OpenAIProvider,
    emulator: OpenAIHttpEmulator,
    scenario: str,
    code: ErrorCode,
    retryable: bool,
) -> None:
    """An HTTP error becomes our code at once: one call upstream, no retry by the SDK."""
    emulator.reset(Script(scenario=scenario))  # type: ignore[arg-type]
    outcome = await drive(provider, emulator)
    assert outcome.chunks == []
    info = outcome.info
    assert info is not None
    assert (info.code, info.retryable) == (code, retryable)
    assert len(emulator.record.seen) == 1
    if scenario == "rate_limit":
        assert info.retry_after == RETRY_AFTER_S  # from the Retry-After header
    assert "emulated" not in info.message


async def test_connection_cut_after_two_chunks_is_upstream_disconnected(
    provider: OpenAIProvider, emulator: OpenAIHttpEmulator
) -> None:
    """The connection closing inside the chunked body: two texts, then upstream_disconnected."""
    emulator.reset(Script(scenario="drop"))
    outcome = await drive(provider, emulator)
    assert outcome.texts == list(ANSWER[:2])
    info = outcome.info
    assert info is not None
    assert (info.code, info.retryable) == (ErrorCode.UPSTREAM_DISCONNECTED, True)
    assert len(emulator.record.seen) == 1


async def test_content_filter_finish_is_reported_as_finish_reason(
    provider: OpenAIProvider, emulator: OpenAIHttpEmulator
) -> None:
    """A filtered answer raises nothing: the last chunk says finish_reason content_filter."""
    emulator.reset(Script(scenario="safety"))
    outcome = await drive(provider, emulator)
    assert outcome.error is None
    assert outcome.texts == [ANSWER[0]]
    assert outcome.finish_reason == "content_filter"


async def test_slow_first_chunk_is_waited_for(
    provider: OpenAIProvider, emulator: OpenAIHttpEmulator
) -> None:
    """No client-side timeout: a first chunk after 0.4 s still arrives, then the rest."""
    emulator.reset(Script(scenario="slow_first"))
    outcome = await drive(provider, emulator)
    assert outcome.error is None
    assert outcome.texts == list(ANSWER)
    assert outcome.first_text_at is not None
    assert outcome.first_text_at - outcome.started >= 0.35


async def test_giving_up_on_a_hung_stream_closes_the_connection(
    provider: OpenAIProvider, emulator: OpenAIHttpEmulator
) -> None:
    """Cancelling the wait for a hung first chunk (the pipeline's timeout) closes the socket."""
    emulator.reset(Script(scenario="hang"))
    outcome = await drive(provider, emulator, give_up_after=0.3)
    assert outcome.gave_up
    assert outcome.chunks == []
    assert await wait_until(lambda: emulator.record.client_gone == 1)


async def test_concurrent_streams_do_not_block_the_event_loop(
    provider: OpenAIProvider, emulator: OpenAIHttpEmulator
) -> None:
    """While five streams wait for the model, the event loop runs."""
    emulator.reset(Script(first_delay_s=BLOCKING_PAUSE_S, delay_s=0.03))
    async with measure_loop_stalls() as meter:
        outcomes = await asyncio.gather(*(drive(provider, emulator) for _ in range(5)))
    assert all(o.texts == list(ANSWER) for o in outcomes)
    # A blocking wait for the first chunk would stall the loop for the model's whole pause.
    assert meter.worst < STALL_LIMIT_S, f"the event loop stalled for {meter.worst:.3f} s"


@pytest.mark.parametrize("azure", [False, True], ids=["openai", "azure"])
async def test_aclose_closes_the_clients_the_provider_opened(
    emulator: OpenAIHttpEmulator, azure: bool
) -> None:
    """After `aclose` no HTTP client of the provider's (sync or async) is left open.

    The provider's own: ChatOpenAI's default clients are shared by the whole process.
    """
    emulator.reset()
    target = (
        {"openai_azure_endpoint": emulator.azure_endpoint, "model": "gpt-4o-prod"}
        if azure
        else {"openai_base_url": emulator.base_url}
    )
    settings = Settings(_env_file=None, provider="openai", **target)  # type: ignore[arg-type]
    before = open_pools()
    provider = create_provider(settings)
    await drive(provider, emulator, model=settings.model)
    opened = opened_since(before)
    assert len(opened) == 2, opened  # the sync and the async client
    await provider.aclose()
    assert still_open(opened) == []


async def test_azure_openai_streams_from_the_deployment_with_its_key(
    emulator: OpenAIHttpEmulator,
) -> None:
    """With an Azure endpoint: AzureChatOpenAI, the deployment in the path, `api-key` sent."""
    emulator.reset()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        provider="openai",
        openai_azure_endpoint=emulator.azure_endpoint,
        openai_api_key=emulator.api_key,
        model="gpt-4o-prod",
    )
    provider = create_provider(settings)
    try:
        outcome = await drive(provider, emulator, model="gpt-4o-prod")
    finally:
        await provider.aclose()
    assert outcome.error is None
    assert outcome.texts == list(ANSWER)
    (seen,) = emulator.record.seen
    assert seen.path == "/openai/deployments/gpt-4o-prod/chat/completions"
    assert seen.api_key == emulator.api_key
    assert seen.authorization is None
