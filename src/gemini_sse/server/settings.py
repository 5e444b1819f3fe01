"""Gateway configuration: read once from `GEMINI_SSE_*` variables (and `.env`), then passed in.

The variable names are a public interface: operators' scripts set them. Never rename one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .._models import Fault

ProviderName = Literal["auto", "fake", "vertex", "genai", "openai"]


def _split_commas(value: object) -> object:
    """Lists come as `a,b,c` in the environment (a JSON list also works)."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            import json

            return json.loads(stripped)
        return [item.strip() for item in stripped.split(",") if item.strip()]
    return value


CommaList = Annotated[list[str], NoDecode]
SecretList = Annotated[list[SecretStr], NoDecode]


class Settings(BaseSettings):
    """Everything the gateway can be told, with defaults for local use."""

    model_config = SettingsConfigDict(
        env_prefix="GEMINI_SSE_", env_file=".env", extra="ignore", frozen=True
    )

    # --- serving ------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "info"
    # Processes serving one port (uvicorn's supervisor); above 1 needs `redis_url`.
    workers: int = Field(default=1, ge=1, le=64)
    # uvicorn's event loop and HTTP parser. uvloop + httptools costs less CPU per token;
    # asyncio + h11 is the default (docs/benchmarks.md, "Event loop and HTTP parser").
    loop: Literal["asyncio", "uvloop"] = "asyncio"
    http: Literal["h11", "httptools"] = "h11"

    # --- which model ----------------------------------------------------------------------
    provider: ProviderName = "auto"
    model: str = "gemini-2.5-flash"
    # Models a request may ask for; `model` is always allowed. Empty: only `model`.
    models: CommaList = Field(default_factory=list)
    # Where a generation goes, in order, when its model fails with a retryable error
    # (429, 5xx, first-token timeout) before any text: `[provider:]model[@location]`.
    fallback: CommaList = Field(default_factory=list)

    # --- streams --------------------------------------------------------------------------
    first_token_timeout_s: float = Field(default=30.0, gt=0)
    idle_timeout_s: float = Field(default=30.0, gt=0)
    total_timeout_s: float = Field(default=300.0, gt=0)
    max_streams: int = Field(default=1000, ge=1)
    heartbeat_s: float = Field(default=15.0, ge=0)
    separators: bool = True
    # A client that stops reading is dropped after this long blocked on one send.
    send_timeout_s: float = Field(default=30.0, gt=0)
    # On SIGTERM: streams get a `shutting_down` event, then this long to finish.
    drain_s: float = Field(default=5.0, ge=0)
    # `retry:` hint (milliseconds) sent with `shutting_down`.
    retry_hint_ms: int = Field(default=1000, ge=0)

    # --- resumable streams (`/v1/streams`) and scale-out -----------------------------------
    # Redis shared by every replica; unset: streams live in this process's memory.
    redis_url: str | None = None
    # How long a finished stream can still be read (and an unread one lingers).
    stream_ttl_s: float = Field(default=300.0, gt=0)
    stream_max_events: int = Field(default=100_000, ge=2)
    stream_max_bytes: int = Field(default=16_000_000, ge=1024)
    # A producer renews its lease this often / 3; readers declare it lost after this long.
    stream_lease_s: float = Field(default=5.0, gt=0)
    # How long a producer keeps its generation waiting while the store (Redis) fails,
    # retrying the same write, before it gives the generation up.
    stream_store_retry_s: float = Field(default=30.0, ge=0)

    # --- request limits -------------------------------------------------------------------
    max_body_bytes: int = Field(default=1_000_000, ge=1)
    max_messages: int = Field(default=100, ge=1)
    max_message_chars: int = Field(default=100_000, ge=1)
    max_total_chars: int = Field(default=400_000, ge=1)
    max_output_tokens: int = Field(default=8192, ge=1)
    # Images and files in requests (`data:` URLs count against max_body_bytes too).
    max_media_bytes: int = Field(default=7_000_000, ge=0)
    max_media_parts: int = Field(default=16, ge=0)
    media_types: CommaList = Field(
        default_factory=lambda: [
            "image/png",
            "image/jpeg",
            "image/webp",
            "image/heic",
            "image/heif",
            "application/pdf",
            "audio/wav",
            "audio/mp3",
            "audio/mpeg",
            "audio/aac",
            "audio/ogg",
            "audio/flac",
            "video/mp4",
            "video/webm",
            "text/plain",
        ]
    )
    # Fetch by URL: the schemes a media part's `url` may use besides `data:`.
    media_url_schemes: CommaList = Field(default_factory=lambda: ["https", "gs"])

    # --- browsers -------------------------------------------------------------------------
    cors_origins: CommaList = Field(default_factory=list)

    # --- operations: who may call, how much, and what is recorded (docs/operations.md) ---
    # API keys (comma-separated) and/or a file of them, one a line. None: no key needed.
    api_keys: SecretList = Field(default_factory=list)
    api_keys_file: Path | None = None
    # Per caller (key, or client address without keys); 0: no limit.
    rate_limit_rpm: int = Field(default=0, ge=0)
    max_streams_per_key: int = Field(default=0, ge=0)
    tokens_per_minute: int = Field(default=0, ge=0)
    # `GET /metrics` in Prometheus format; open unless a scrape key is set.
    metrics: bool = True
    metrics_api_key: SecretStr | None = None
    # `auto`: JSON lines unless stderr is a terminal.
    log_format: Literal["auto", "json", "text"] = "auto"
    # Prompts and answers in logs (and query strings in access logs): off, they are private.
    log_content: bool = False

    # --- the simulated model (provider `fake`) --------------------------------------------
    fake_chunks: int = Field(default=20, ge=0)
    fake_chunk_chars: int = Field(default=12, ge=1)
    fake_delay_ms: float = Field(default=20.0, ge=0)
    fake_first_delay_ms: float = Field(default=100.0, ge=0)
    fake_jitter_ms: float = Field(default=0.0, ge=0)
    fake_fault: Fault | None = None
    fake_fail_after: int = Field(default=0, ge=0)
    # Answer in Markdown (headings, lists, code, links) instead of plain words.
    fake_markdown: bool = False

    # --- Vertex AI (provider `vertex`) ------------------------------------------------------
    vertex_project: str | None = None
    vertex_location: str = "us-central1"
    vertex_base_url: str | None = None
    vertex_transport: str | None = None

    # --- Gemini API / Vertex through google-genai (provider `genai`) ------------------------
    genai_base_url: str | None = None
    genai_api_key: SecretStr | None = None

    # --- OpenAI-compatible servers (provider `openai`) --------------------------------------
    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    # Azure OpenAI: the resource's endpoint (https://NAME.openai.azure.com); the model
    # names are then deployment names.
    openai_azure_endpoint: str | None = None
    openai_api_version: str = "2024-10-21"

    # --- the gateway's own retry of upstream errors before the first chunk ----------------
    upstream_retries: int = Field(default=2, ge=0)
    upstream_retry_budget_s: float = Field(default=10.0, ge=0)

    # --- telemetry ------------------------------------------------------------------------
    # OpenTelemetry spans and metrics per generation (docs/operations.md). `on`: exported
    # by the gateway's own SDK pipeline, set up by the standard OTEL_* variables (needs the
    # `otel` extra); `global`: through the process's global providers
    # (`opentelemetry-instrument`, or an application that embeds the gateway).
    otel: Literal["off", "on", "global"] = "off"

    # --- AI SDK ---------------------------------------------------------------------------
    # The Vercel AI SDK major version whose UI message stream `/api/chat` speaks: 5's
    # schema rejects fields it does not know, so only that version's fields are sent
    # (docs/frontends.md). 6 also serves the SDK's later versions.
    aisdk_version: int = Field(default=6, ge=5, le=6)

    @field_validator(
        "models",
        "fallback",
        "cors_origins",
        "api_keys",
        "media_types",
        "media_url_schemes",
        mode="before",
    )
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split_commas(value)

    def allowed_models(self) -> list[str]:
        """The models a request may pick, the default first."""
        return [self.model, *(m for m in self.models if m != self.model)]
