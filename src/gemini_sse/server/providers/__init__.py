"""Choosing the provider the settings ask for.

A provider's module (and with it LangChain's Google or OpenAI client libraries) is imported
only when that provider is chosen, so the simulated model starts without them.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..settings import Settings
from .base import LangChainProvider, ModelRequest, Provider
from .fake import FakeProvider

__all__ = [
    "Fallback",
    "FakeProvider",
    "LangChainProvider",
    "ModelRequest",
    "Provider",
    "create_fallbacks",
    "create_provider",
    "google_credentials_found",
    "google_project",
    "resolve_provider_name",
]

logger = logging.getLogger("gemini_sse.providers")


def google_project(settings: Settings) -> str | None:
    """The Google Cloud project: `GEMINI_SSE_VERTEX_PROJECT`, else `GOOGLE_CLOUD_PROJECT`."""
    return settings.vertex_project or os.environ.get("GOOGLE_CLOUD_PROJECT") or None


def google_credentials_found() -> bool:
    """Whether Application Default Credentials are configured, judged without a network call.

    `google.auth.default()` would be the full answer, but on a machine outside Google Cloud
    it probes the metadata server and can take seconds; this looks where it looks first.
    """
    explicit = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if explicit:
        return Path(explicit).is_file()
    if _gcloud_adc_file().is_file():
        return True
    return _on_google_cloud()


def _gcloud_adc_file() -> Path:
    """Where `gcloud auth application-default login` writes its credentials."""
    config = os.environ.get("CLOUDSDK_CONFIG")
    if config:
        root = Path(config)
    elif sys.platform == "win32":
        root = Path(os.environ.get("APPDATA", "")) / "gcloud"
    else:
        root = Path.home() / ".config" / "gcloud"
    return root / "application_default_credentials.json"


def _on_google_cloud() -> bool:
    """Cloud Run, Cloud Functions, App Engine (by their variables) or a Compute Engine VM."""
    if any(os.environ.get(name) for name in ("K_SERVICE", "CLOUD_RUN_JOB", "GAE_APPLICATION")):
        return True
    try:
        # Google's documented way to recognise a GCE VM without the metadata server.
        return Path("/sys/class/dmi/id/product_name").read_text().startswith("Google")
    except OSError:
        return False


def resolve_provider_name(settings: Settings) -> str:
    """The provider that will serve: `auto` picks Vertex AI when Google Cloud is configured."""
    if settings.provider != "auto":
        return settings.provider
    if google_project(settings) and google_credentials_found():
        return "vertex"
    return "fake"


def create_provider(settings: Settings) -> Provider:
    """Build the provider the settings name."""
    name = resolve_provider_name(settings)
    if settings.provider == "auto":
        if name == "fake":
            logger.warning(
                "No Google Cloud project and credentials found: serving the SIMULATED model. "
                "Set GEMINI_SSE_PROVIDER and credentials to serve a real one."
            )
        else:
            logger.info("Google Cloud project and credentials found: serving Vertex AI.")
    match name:
        case "fake":
            return FakeProvider(settings)
        case "vertex":
            from .vertex import VertexProvider

            project = google_project(settings)
            if project is None:
                raise ValueError(
                    "The vertex provider needs a project: set GEMINI_SSE_VERTEX_PROJECT "
                    "or GOOGLE_CLOUD_PROJECT."
                )
            return VertexProvider(settings, project=project)
        case "genai":
            from .genai import GenAIProvider

            return GenAIProvider(settings, project=google_project(settings))
        case "openai":
            from .openai import OpenAIProvider

            return OpenAIProvider(settings)
    raise ValueError(f"provider {name!r} is not available")


@dataclass(frozen=True, slots=True)
class Fallback:
    """Where a generation goes when its model fails before the first token."""

    label: str  # as configured: `[provider:]model[@location]`
    provider: Provider
    model: str


_PROVIDERS = ("fake", "vertex", "genai", "openai")


def create_fallbacks(settings: Settings) -> list[Fallback]:
    """Build a provider for each `GEMINI_SSE_FALLBACK` target, in order.

    A target names its model, and optionally another provider (`openai:gpt-4o-mini`) or,
    for Vertex AI, another location (`gemini-2.5-flash@europe-west1`). Each gets a
    provider of its own, built now, so a bad target fails the start, not a request.
    """
    primary = resolve_provider_name(settings)
    fallbacks = []
    for label in settings.fallback:
        name, _, rest = label.rpartition(":") if ":" in label else ("", "", label)
        model, _, location = rest.partition("@")
        name = name or primary
        if name not in _PROVIDERS or not model:
            raise ValueError(
                f"GEMINI_SSE_FALLBACK: {label!r} is not `[provider:]model[@location]` "
                f"with a provider of {', '.join(_PROVIDERS)}"
            )
        if location and name not in ("vertex", "genai"):
            raise ValueError(f"GEMINI_SSE_FALLBACK: {label!r}: only Google's have locations")
        update: dict[str, object] = {"provider": name, "model": model, "models": []}
        if location:
            update["vertex_location"] = location
        provider = create_provider(settings.model_copy(update=update))
        fallbacks.append(Fallback(label=label, provider=provider, model=model))
    return fallbacks
