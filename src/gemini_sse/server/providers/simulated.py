"""What the simulated model says: answers, thoughts, tool-call arguments and sources.

All of it derives from the prompt, deterministically: tests and load generators know in
advance what an answer will be (`simulated_answer`, `expected_answer`), and the same
question gets the same answer on every replica. `fake.py` paces it and fails it.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.messages import BaseMessage

from ..settings import Settings

# Words the answers are made of; a few non-ASCII ones keep encoders honest.
_WORDS = (
    "the stream carries every token as it arrives while the gateway keeps order "
    "and time for each answer gemini answers quickly caf\u00e9 na\u00efve \u00fcber "
    "model chunk event client server browser reads writes waits"
).split()


def _seeded(prompt: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big"))


def _plain(rng: random.Random) -> Iterator[str]:
    """Words joined by single spaces."""
    yield rng.choice(_WORDS)
    while True:
        yield " " + rng.choice(_WORDS)


def _markdown(rng: random.Random) -> Iterator[str]:
    """Markdown with a bit of everything a page must render: headings, emphasis, code, links."""

    def word() -> str:
        return rng.choice(_WORDS)

    while True:
        yield f"## {word().capitalize()} {word()}\n\n"
        yield f"The {word()} {word()} **{word()}** and `{word()}` {word()}.\n\n"
        yield f"- {word()} {word()}\n- {word()} *{word()}*\n\n"
        yield f"```python\nprint({word()!r})\n```\n\n"
        yield f"See [{word()}](https://example.org/{rng.randrange(1000)}).\n\n"


def iter_answer(
    prompt: str, chunks: int, chunk_chars: int, *, markdown: bool = False
) -> Iterator[str]:
    """The chunks the simulated model streams for `prompt`, made as they are asked for.

    Same prompt, same chunks; a shorter answer is a prefix of a longer one. Lazy, so that a
    long answer costs memory for one chunk at a time, not for the whole text.
    """
    pieces = (_markdown if markdown else _plain)(_seeded(prompt))
    text = ""  # made but not yet sent
    for _ in range(max(0, chunks)):
        while len(text) < chunk_chars:
            text += next(pieces)
        yield text[:chunk_chars]
        text = text[chunk_chars:]


def simulated_answer(
    prompt: str, chunks: int, chunk_chars: int, *, markdown: bool = False
) -> list[str]:
    """Every chunk of the simulated answer to `prompt` (for tests and small answers)."""
    return list(iter_answer(prompt, chunks, chunk_chars, markdown=markdown))


def simulated_thoughts(prompt: str) -> list[str]:
    """The thought summary the simulated model streams (`thinking.include_thoughts`)."""
    rng = _seeded("thoughts\n" + prompt)
    return [
        f"Reading the question: it is about {rng.choice(_WORDS)}. ",
        f"Weighing {rng.choice(_WORDS)} against {rng.choice(_WORDS)}. ",
        "Writing the answer.",
    ]


def simulated_arguments(schema: dict[str, Any] | None, prompt: str) -> dict[str, Any]:
    """Arguments that fit a tool's JSON Schema: each required property (else each one)."""
    rng = _seeded("arguments\n" + prompt)
    schema = schema or {}
    # Any JSON may come as a schema: what does not fit is left out, as a model would.
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    required = schema.get("required")
    names = required if isinstance(required, list) else list(properties)
    arguments: dict[str, Any] = {}
    for name in names:
        if not isinstance(name, str):
            continue
        spec = properties.get(name)
        if not isinstance(spec, dict):
            spec = {}
        if isinstance(spec.get("enum"), list) and spec["enum"]:
            arguments[name] = spec["enum"][0]
            continue
        match spec.get("type"):
            case "integer":
                arguments[name] = rng.randint(1, 9)
            case "number":
                arguments[name] = rng.randint(1, 99) / 4
            case "boolean":
                arguments[name] = True
            case "array":
                arguments[name] = []
            case "object":
                arguments[name] = {}
            case _:
                arguments[name] = rng.choice(_WORDS)
    return arguments


def expected_answer(settings: Settings, messages: Sequence[str]) -> str:
    """The full text the `fake` provider answers to these message contents."""
    return "".join(
        simulated_answer("\n".join(messages), settings.fake_chunks, settings.fake_chunk_chars)
    )


def describe(message: BaseMessage) -> str:
    """A message as the simulated model reads it: its text, and what media it holds."""
    if isinstance(message.content, str):
        return message.content
    described: list[str] = [str(message.text)]
    for block in message.content:
        if isinstance(block, dict) and block.get("type") in ("image", "file"):
            size = len(block.get("base64") or "") * 3 // 4
            where = f"{size} bytes" if "base64" in block else block.get("url")
            described.append(f"[{block['type']} {block.get('mime_type')}: {where}]")
    return "\n".join(described)


def choose_call(
    tools: list[dict[str, Any]], choice: str | dict[str, Any] | None, prompt: str
) -> tuple[str, str] | None:
    """The call the simulated model makes: the named tool's, else the first tool's."""
    if not tools or choice == "none":
        return None
    functions = [tool["function"] for tool in tools]
    chosen = functions[0]
    if isinstance(choice, dict):
        name = choice.get("function", {}).get("name")
        chosen = next((f for f in functions if f["name"] == name), chosen)
    arguments = simulated_arguments(chosen.get("parameters"), prompt)
    return chosen["name"], json.dumps(arguments, ensure_ascii=False)


def grounding(prompt: str, answer: list[str]) -> dict[str, Any]:
    """Gemini's `grounding_metadata` for an answer: two sources, citing its first chunks."""
    rng = _seeded("sources\n" + prompt)
    topics = [rng.choice(_WORDS) for _ in range(2)]
    supports = []
    start = 0
    for number, text in enumerate(answer[:2]):
        end = start + len(text.encode())  # Gemini counts UTF-8 bytes
        supports.append(
            {
                "segment": {"start_index": start, "end_index": end, "text": text},
                "grounding_chunk_indices": [0] if number == 0 else [0, 1],
            }
        )
        start = end
    return {
        "web_search_queries": [prompt[:60]],
        "grounding_chunks": [
            {"web": {"uri": f"https://example.org/{topic}", "title": f"About {topic}"}}
            for topic in topics
        ],
        "grounding_supports": supports,
    }
