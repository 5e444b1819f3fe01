"""Helpers of the tests that drive the gateway with the official `openai` SDK.

Their fixtures, `server` and `client`, are in conftest.py.
"""

from __future__ import annotations

from typing import Any

from gemini_sse.server.providers.fake import SimulationStats

from .servers import RunningServer


def stats_of(server: RunningServer) -> SimulationStats:
    stats: SimulationStats = server.gateway.provider.stats  # type: ignore[attr-defined]
    return stats


def simulate(**options: Any) -> dict[str, Any]:
    return {"extra_body": {"simulation": options}}
