"""The gateway's events as the pieces of an OpenAI chat completion.

A tool call, the sources' citations, how a generation ended and its usage, in OpenAI's
terms: shared by the whole `chat.completion` (`routes`) and its chunk stream (`encoding`).
Where OpenAI has no field for what the gateway carries, the field others use is taken:
`extra_content.google.thought_signature` on a tool call for Gemini's thought signature
(Google's own OpenAI-compatible endpoint). Errors take OpenAI's shape in `models`, beside
the error body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._models import DoneEvent, ErrorEvent, SourceEvent, ToolCallEvent, Usage
from .models import (
    CompletionAnnotation,
    CompletionFunction,
    CompletionTokensDetails,
    CompletionToolCall,
    CompletionUsage,
    PromptTokensDetails,
    URLCitation,
)


def signature_content(signature: str) -> dict[str, Any]:
    """A thought signature as Google's OpenAI-compatible endpoint attaches it to a call."""
    return {"google": {"thought_signature": signature}}


def tool_call(call: ToolCallEvent) -> CompletionToolCall:
    """A whole tool call, as a message's `tool_calls` holds it."""
    return CompletionToolCall(
        id=call.call_id,
        function=CompletionFunction(name=call.name, arguments=call.arguments),
        extra_content=signature_content(call.signature) if call.signature else None,
    )


def url_citations(sources: Sequence[SourceEvent]) -> list[CompletionAnnotation]:
    """Each span a source supports as a `url_citation`, in the order of the text.

    A source that supports no span in particular cites the empty span at 0; a source
    without a title is titled by its URL (OpenAI's `title` is never null).
    """
    found = [
        CompletionAnnotation(
            url_citation=URLCitation(
                url=source.url, title=source.title or source.url, start_index=start, end_index=end
            )
        )
        for source in sources
        for start, end in [(c.start, c.end) for c in source.cited] or [(0, 0)]
    ]
    # Stable: sources citing the same span stay in their order.
    return sorted(found, key=lambda a: (a.url_citation.start_index, a.url_citation.end_index))


_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}


def finish_reason(end: DoneEvent | ErrorEvent) -> str:
    """OpenAI's `finish_reason` for how a generation ended."""
    if isinstance(end, ErrorEvent):  # only `content_blocked` after some text ends a choice
        return "content_filter"
    return _FINISH.get(end.finish_reason, "stop")


def completion_usage(usage: Usage | None) -> CompletionUsage | None:
    if usage is None:
        return None
    return CompletionUsage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_tokens or 0),
        completion_tokens_details=CompletionTokensDetails(
            reasoning_tokens=usage.reasoning_tokens or 0
        ),
    )
