"""What the two Gemini providers (`vertex`, `genai`) spell the same way.

Imports no Google library: each provider module imports its own.
"""

from __future__ import annotations

import re
from typing import Any

from ..._models import ThinkingOptions
from ..media import Media
from .base import ModelRequest

#: The Google Search tool, as both LangChain Gemini classes bind it beside functions.
GOOGLE_SEARCH: dict[str, Any] = {"google_search": {}}

#: `thinking.level` as a thinking budget, for the Gemini 2.5 models that take only a
#: budget (and ChatVertexAI, which sends only a budget): each level's tokens are within
#: what 2.5 Flash and Pro accept (Pro's least is 128, Flash's most 24,576).
LEVEL_BUDGETS: dict[str, int] = {"minimal": 128, "low": 1024, "medium": 8192, "high": 24576}


def with_search(tools: list[dict[str, Any]], request: ModelRequest) -> list[dict[str, Any]]:
    """`tools`, and Google Search when the request asks for grounding."""
    return [*tools, GOOGLE_SEARCH] if request.grounding else tools


def thinking_options(thinking: ThinkingOptions | None, *, levels: bool) -> dict[str, Any]:
    """Our thinking options as the LangChain Gemini classes' `astream` arguments.

    With `levels` (a model and class that take one), a level is sent as it is and wins
    over a budget; without, a level is sent as its budget unless a budget is set.
    """
    if thinking is None:
        return {}
    options: dict[str, Any] = {}
    if thinking.level is not None and levels:
        options["thinking_level"] = thinking.level
    elif thinking.budget is not None:
        options["thinking_budget"] = thinking.budget
    elif thinking.level is not None:
        options["thinking_budget"] = LEVEL_BUDGETS[thinking.level]
    if thinking.include_thoughts is not None:
        options["include_thoughts"] = thinking.include_thoughts
    return options


def takes_level(model: str) -> bool:
    """Whether a model takes a thinking level (Gemini 3 and later) rather than a budget."""
    version = re.match(r"gemini-(\d+)", model)
    return version is None or int(version.group(1)) >= 3


def media_part(media: Media) -> dict[str, Any]:
    """A media part as LangChain.js's `media` block: `inlineData`, or a `fileData` URL.

    Not LangChain's standard `image`/`file` blocks: given a URL, ChatGoogleGenerativeAI
    downloads it itself (a blocking `requests.get` on the event loop) and ChatVertexAI
    looks a `gs://` object's type up in Cloud Storage (a blocking call) or guesses an https
    URL's from its name. Gemini fetches a `fileData` URL itself, with the type checked here.
    """
    if media.data is not None:
        return {"type": "media", "mime_type": media.mime_type, "data": media.data}
    return {"type": "media", "mime_type": media.mime_type, "file_uri": media.url}
