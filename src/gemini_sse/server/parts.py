"""What a model's chunks carry besides answer text: thoughts, tool calls, sources, safety.

LangChain hands these over in provider-flavoured shapes: content blocks (`thinking` from
Gemini, `reasoning` in LangChain's standard blocks), `tool_call_chunks` (Gemini's without
an `index`, OpenAI's with argument pieces), and `response_metadata` (Gemini's
`grounding_metadata`, `safety_ratings`, `prompt_feedback`). `AnswerParts` reads them for
one generation and turns them into the shared event models, so the pipeline's per-chunk
path stays the plain-text one for the many chunks that carry nothing else.

Gemini's grounding: https://cloud.google.com/vertex-ai/generative-ai/docs/reference/rest/v1/GroundingMetadata
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessageChunk

from .._models import Citation, ReasoningEvent, SourceEvent, ToolCallDeltaEvent, ToolCallEvent

#: Where LangChain's Gemini models keep a function call's thought signature, by call id.
SIGNATURES_KEY = "__gemini_function_call_thought_signatures__"


@dataclass(slots=True)
class _Call:
    index: int
    call_id: str
    name: str
    arguments: list[str] = field(default_factory=list)
    signature: str | None = None


class AnswerParts:
    """One generation's non-text parts, read chunk by chunk."""

    def __init__(self, *, keep_text: bool = False) -> None:
        # The answer text, kept only when sources may cite spans of it (grounding).
        self.text: list[str] | None = [] if keep_text else None
        self._calls: dict[object, _Call] = {}
        self._grounding: Mapping[str, Any] | None = None

    @property
    def tool_calls(self) -> int:
        """How many tool calls the model made so far."""
        return len(self._calls)

    def read(self, chunk: AIMessageChunk) -> tuple[str, list[ReasoningEvent | ToolCallDeltaEvent]]:
        """The chunk's answer text, and the events it carries besides (in order)."""
        events: list[ReasoningEvent | ToolCallDeltaEvent] = []
        content = chunk.content
        if isinstance(content, str):
            text = content
        else:
            pieces = []
            for block in content:
                if isinstance(block, str):
                    pieces.append(block)
                    continue
                kind = block.get("type")
                if kind == "text":
                    pieces.append(block.get("text") or "")
                elif kind == "thinking" and block.get("thinking"):
                    events.append(ReasoningEvent(text=block["thinking"]))
                elif kind == "reasoning" and block.get("reasoning"):
                    events.append(ReasoningEvent(text=block["reasoning"]))
            text = "".join(pieces)
        if chunk.tool_call_chunks:
            events.extend(self._tool_pieces(chunk))
        return text, events

    def _tool_pieces(self, chunk: AIMessageChunk) -> Iterator[ToolCallDeltaEvent]:
        signatures = chunk.additional_kwargs.get(SIGNATURES_KEY) or {}
        for piece in chunk.tool_call_chunks:
            # OpenAI numbers its calls and streams their arguments in pieces; Gemini sends
            # each call whole, with no number: its id (or its arrival) keys it.
            key: object = piece.get("index")
            if key is None:
                key = piece.get("id") or len(self._calls)
            call = self._calls.get(key)
            first = call is None
            if call is None:
                call_id = piece.get("id") or f"call_{uuid.uuid4().hex[:24]}"
                call = _Call(len(self._calls), call_id, piece.get("name") or "")
                self._calls[key] = call
            elif not call.name and piece.get("name"):
                call.name = piece["name"] or ""
            args = piece.get("args") or ""
            call.arguments.append(args)
            if signature := signatures.get(call.call_id):
                call.signature = signature
            yield ToolCallDeltaEvent(
                index=call.index,
                call_id=call.call_id if first else None,
                name=call.name if first else None,
                arguments=args,
            )

    def note(self, metadata: Mapping[str, Any]) -> None:
        """Keep what a chunk's `response_metadata` says of grounding."""
        if grounding := metadata.get("grounding_metadata"):
            self._grounding = grounding

    def closing(self) -> list[ToolCallEvent | SourceEvent]:
        """The events that need the whole answer: each tool call, whole; each source."""
        events: list[ToolCallEvent | SourceEvent] = [
            ToolCallEvent(
                index=call.index,
                call_id=call.call_id,
                name=call.name,
                arguments="".join(call.arguments) or "{}",
                signature=call.signature,
            )
            for call in self._calls.values()
        ]
        events.extend(self._sources())
        return events

    def _sources(self) -> list[SourceEvent]:
        grounding = self._grounding
        if not grounding:
            return []
        cited: dict[int, list[Citation]] = {}
        answer = "".join(self.text or ()).encode()
        for support in grounding.get("grounding_supports") or ():
            segment = support.get("segment") or {}
            # Gemini counts UTF-8 bytes; clients index text by character.
            start = _characters(answer, segment.get("start_index") or 0)
            end = _characters(answer, segment.get("end_index") or 0)
            for index in support.get("grounding_chunk_indices") or ():
                cited.setdefault(int(index), []).append(
                    Citation(start=start, end=end, text=segment.get("text") or None)
                )
        sources = []
        for index, chunk in enumerate(grounding.get("grounding_chunks") or ()):
            origin = chunk.get("web") or chunk.get("retrieved_context") or {}
            if not origin.get("uri"):
                continue
            sources.append(
                SourceEvent(
                    index=index,
                    url=origin["uri"],
                    title=origin.get("title") or None,
                    cited=cited.get(index, []),
                )
            )
        return sources


def _characters(text: bytes, offset: int) -> int:
    """The character offset of a UTF-8 byte offset (a split character counts as before)."""
    return len(text[:offset].decode("utf-8", errors="ignore"))


def blocked_category(metadata: Mapping[str, Any], reason: str) -> str:
    """What withheld an answer: the blocking harm category, else the block reason."""
    for rating in metadata.get("safety_ratings") or ():
        if isinstance(rating, Mapping) and rating.get("blocked"):
            return _name(rating.get("category")) or reason.upper()
    feedback = metadata.get("prompt_feedback")
    if isinstance(feedback, Mapping) and (block := _name(feedback.get("block_reason"))):
        return block
    return reason.upper()


def _name(value: object) -> str | None:
    """An enum's name as Google spells it (`HARM_CATEGORY_HATE_SPEECH`), from any form."""
    if value is None or value == 0:
        return None
    name = getattr(value, "name", None) or str(value)
    return name.rsplit(".", 1)[-1] or None
