from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from gemini_sse.server.app import create_app
from gemini_sse.server.settings import Settings

from .redis_server import run_redis
from .servers import RunningServer, run_in_thread

pytest_plugins = ["tests.emulators.fixtures", "tests.reliability.figures"]

# Variables that would let a developer's shell change what the tests see.
_FOREIGN = (
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No GEMINI_SSE_* (or Google/OpenAI) variable or `.env` file leaks into a test."""
    for name in list(os.environ):
        if name.startswith("GEMINI_SSE_") or name in _FOREIGN:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def make_settings(**overrides: Any) -> Settings:
    """Settings for the simulated model, fast unless told otherwise."""
    values: dict[str, Any] = {
        "provider": "fake",
        "fake_chunks": 5,
        "fake_delay_ms": 5,
        "fake_first_delay_ms": 5,
        "upstream_retries": 0,
        "heartbeat_s": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningServer]]:
    """Start real uvicorn servers for the test: `serve(**settings)` returns one."""
    stack: list[Any] = []

    def start(**overrides: Any) -> RunningServer:
        cm = run_in_thread(create_app(make_settings(**overrides)))
        running = cm.__enter__()
        stack.append(cm)
        return running

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the whole session (each test uses its own keys)."""
    with run_redis(str(tmp_path_factory.mktemp("redis"))) as url:
        yield url


@pytest.fixture
def server(serve: Callable[..., RunningServer]) -> RunningServer:
    """A gateway with the simulated model, for the `openai` SDK tests."""
    return serve()


@pytest.fixture
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    """The official `openai` SDK pointed at `server`."""
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        yield client
