"""The emulators as pytest fixtures, one of each per test module (`tests/conftest.py`
loads this plugin).

Each Google emulator comes with a service-account ADC file (`.account`) for the client to
sign in with; tests point `GOOGLE_APPLICATION_CREDENTIALS` at it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .adc import write_service_account
from .certs import shared_tls_identity
from .genai_http import GenaiHttpEmulator
from .openai_http import OpenAIHttpEmulator
from .vertex_grpc import VertexGrpcEmulator

# Vertex over gRPC signs in with a self-signed JWT: the token endpoint is never called.
UNUSED_TOKEN_URI = "http://127.0.0.1:9/token"


@pytest.fixture(scope="module")
def vertex_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VertexGrpcEmulator]:
    """Vertex AI's PredictionService over gRPC + TLS."""
    account = write_service_account(tmp_path_factory.mktemp("vertex-adc"), UNUSED_TOKEN_URI)
    running = VertexGrpcEmulator(shared_tls_identity(), account)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def genai_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GenaiHttpEmulator]:
    """Gemini's REST API: google-genai's SSE, and the GAPIC REST transport's JSON array."""
    running = GenaiHttpEmulator()
    running.account = write_service_account(tmp_path_factory.mktemp("genai-adc"), running.token_uri)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def openai_emulator() -> Iterator[OpenAIHttpEmulator]:
    """An OpenAI-compatible chat completions server."""
    running = OpenAIHttpEmulator()
    yield running
    running.stop()
