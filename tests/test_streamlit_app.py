"""The Streamlit chat page under `streamlit.testing.v1.AppTest`, against a real gateway."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from langchain_core.messages import AIMessageChunk
from streamlit.proto.TextInput_pb2 import TextInput as TextInputProto
from streamlit.testing.v1 import AppTest

import gemini_sse.ui
from gemini_sse.client import Client, SourceEvent
from gemini_sse.server.app import create_app
from gemini_sse.server.providers.base import ModelRequest
from gemini_sse.server.providers.fake import FakeProvider
from gemini_sse.server.providers.simulated import (
    expected_answer,
    simulated_answer,
    simulated_thoughts,
)
from gemini_sse.ui import launch
from gemini_sse.ui.streamlit_app import safe_markdown, sources_markdown

from .conftest import make_settings
from .servers import RunningServer, run_in_thread

APP = Path(gemini_sse.ui.__file__).with_name("streamlit_app.py")
QUICK = {"fake_chunks": 4, "fake_first_delay_ms": 10, "fake_delay_ms": 20}


def start_app(url: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The page, pointed at `url` the way an operator does: `GEMINI_SSE_URL`."""
    monkeypatch.setenv("GEMINI_SSE_URL", url)
    app = AppTest.from_file(str(APP), default_timeout=30)
    app.run()
    assert not app.exception
    return app


def ask(app: AppTest, question: str) -> None:
    app.chat_input[0].set_value(question).run()
    assert not app.exception


def test_question_streams_the_answer_into_the_chat(
    serve: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A question gets the gateway's exact answer as the assistant's chat message."""
    running = serve(**QUICK)
    app = start_app(running.url, monkeypatch)
    ask(app, "What is baseball?")
    user, assistant = app.chat_message
    assert user.name == "user" and user.markdown[0].value == "What is baseball?"
    assert assistant.name == "assistant"
    expected = expected_answer(running.gateway.settings, ["What is baseball?"])
    assert [m.value for m in assistant.markdown] == [expected]
    assert not app.error


def test_follow_up_sends_the_conversation_so_far(
    serve: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second answer is the model's answer to the first turn plus the new question."""
    running = serve(**QUICK)
    settings = running.gateway.settings
    app = start_app(running.url, monkeypatch)
    ask(app, "What is baseball?")
    ask(app, "And cricket?")
    first = expected_answer(settings, ["What is baseball?"])
    texts = [message.markdown[0].value for message in app.chat_message]
    assert texts == [
        "What is baseball?",
        first,
        "And cricket?",
        expected_answer(settings, ["What is baseball?", first, "And cricket?"]),
    ]


def test_upstream_error_is_shown_with_its_code(
    serve: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An `error` event mid-answer becomes `st.error` with the code; the partial text stays."""
    running = serve(fake_fault="rate_limit", fake_fail_after=2, **QUICK)
    app = start_app(running.url, monkeypatch)
    ask(app, "What is baseball?")
    (error,) = app.error
    assert error.value.startswith("`rate_limited` The model's rate limit")
    assert "try again in 2 s" in error.value
    partial = app.chat_message[1].markdown[0].value
    full = expected_answer(running.gateway.settings, ["What is baseball?"])
    assert partial and full.startswith(partial) and partial != full
    ask(app, "Again?")  # the failed turn is still shown after a rerun, and not sent
    assert [e.value for e in app.error][0] == error.value


def test_rejected_request_is_shown_with_its_code(
    serve: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model the gateway does not serve (set in the sidebar) shows `model_not_allowed`."""
    running = serve(**QUICK)
    app = start_app(running.url, monkeypatch)
    app.sidebar.text_input(key="model").set_value("gpt-4o").run()
    ask(app, "What is baseball?")
    (error,) = app.error
    assert error.value.startswith("`model_not_allowed` ")
    assert running.gateway.provider.stats.started == 0  # type: ignore[attr-defined]


def test_api_key_from_the_environment_is_used_but_never_put_in_a_widget(
    serve: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`GEMINI_SSE_API_KEY` opens a keyed gateway; the password field (sent out) stays empty."""
    running = serve(api_keys="sk-from-env", **QUICK)
    monkeypatch.setenv("GEMINI_SSE_API_KEY", "sk-from-env")
    app = start_app(running.url, monkeypatch)
    field = app.sidebar.text_input(key="api_key")
    assert field.value == "" and field.proto.type == TextInputProto.Type.PASSWORD
    ask(app, "What is baseball?")
    assert not app.error
    assert app.chat_message[1].markdown[0].value == expected_answer(
        running.gateway.settings, ["What is baseball?"]
    )
    # A typed key wins over the environment's (widgets are looked up anew after each run).
    app.sidebar.text_input(key="api_key").set_value("sk-wrong").run()
    ask(app, "And cricket?")
    (error,) = app.error
    assert error.value.startswith("`unauthorized` ")


def test_api_key_from_the_environment_is_not_sent_to_a_url_typed_in_the_page(
    serve: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`GEMINI_SSE_API_KEY` goes to `GEMINI_SSE_URL` only, never to a URL a visitor types."""
    configured = serve(api_keys="sk-from-env", **QUICK)
    theirs = serve(api_keys="sk-from-env", **QUICK)  # would accept the key, were it sent
    monkeypatch.setenv("GEMINI_SSE_API_KEY", "sk-from-env")
    app = start_app(configured.url, monkeypatch)
    app.sidebar.text_input(key="url").set_value(theirs.url).run()
    ask(app, "What is baseball?")
    stats = theirs.gateway.provider.stats  # type: ignore[attr-defined]
    assert stats.started == 0, "the page sent the environment's key to the typed URL"
    (error,) = app.error
    # The gateway's message for a request without `Authorization` (a wrong key is "not valid").
    assert error.value.startswith("`unauthorized` An API key is required"), error.value
    # Back to the configured gateway (a trailing slash is the same URL): the key is sent.
    app.sidebar.text_input(key="url").set_value(configured.url + "/").run()
    ask(app, "And cricket?")
    assert [e.value for e in app.error] == [error.value]  # only the first turn's
    assert app.chat_message[3].markdown[0].value == expected_answer(
        configured.gateway.settings, ["And cricket?"]
    )


LEAKY = "See ![x](http://127.0.0.1:1/leak.png) and **this**."


class Scripted(FakeProvider):
    """The simulated model, but it answers `LEAKY`, in pieces, whatever the question."""

    async def astream(self, request: ModelRequest) -> AsyncIterator[AIMessageChunk]:
        for start in range(0, len(LEAKY), 8):
            yield AIMessageChunk(content=LEAKY[start : start + 8])


def test_answer_is_markdown_but_its_images_stay_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An image in an answer (an injected prompt's way out) is escaped, then and later."""
    settings = make_settings()
    with run_in_thread(create_app(settings, provider=Scripted(settings))) as running:
        app = start_app(running.url, monkeypatch)
        ask(app, "What is baseball?")
        for _ in range(2):  # as it streams, then from the history on the next run
            assistant = app.chat_message[1]
            escaped = "See !\\[x](http://127.0.0.1:1/leak.png) and **this**."
            assert [m.value for m in assistant.markdown] == [escaped]
            assert not assistant.text and not app.get("image")
            assert not app.error
            app.run()


def test_safe_markdown_escapes_images_outside_code_only() -> None:
    """`![` is escaped in text; code spans and fenced code keep it as written."""
    text = "![a](u) `![b](u)` ``x ![c](u)``\n```md\n![d](u)\n```\n![e](u) \\![f](u)"
    assert safe_markdown(text) == (
        "!\\[a](u) `![b](u)` ``x ![c](u)``\n```md\n![d](u)\n```\n!\\[e](u) \\!\\[f](u)"
    )
    # An unclosed fence (an answer still streaming) keeps the rest as code.
    assert safe_markdown("~~~\n![g](u)") == "~~~\n![g](u)"


def test_sources_are_links_to_web_pages_only_with_their_titles_as_text() -> None:
    """A source's title cannot make Markdown; a URL that is not http(s) is not a link."""
    sources = [
        SourceEvent(index=0, url="https://e.org/a b>(c)", title="[x](javascript:y) *b* :red[c]"),
        SourceEvent(index=1, url="javascript:alert(1)", title="Trap"),
        SourceEvent(index=2, url="http://e.org/plain"),
    ]
    assert sources_markdown(sources) == (
        "**Sources**\n\n"
        "1. [\\[x\\]\\(javascript\\:y\\) \\*b\\* \\:red\\[c\\]](<https://e.org/a b%3E(c)>)\n"
        "2. Trap\n"
        "3. [http\\://e\\.org/plain](<http://e.org/plain>)"
    )


def test_markdown_answer_is_rendered_as_markdown(
    serve: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulated model's Markdown answer goes to `st.markdown` exactly as it came."""
    running = serve(fake_markdown=True, fake_chunks=8, fake_chunk_chars=40)
    app = start_app(running.url, monkeypatch)
    ask(app, "Show me Markdown.")
    source = "".join(simulated_answer("Show me Markdown.", 8, 40, markdown=True))
    assert "```python" in source and "](https://" in source
    # Streamlit strips the text it is given (here the start of a heading, "\n\n## ").
    assert [m.value for m in app.chat_message[1].markdown] == [source.strip()]


def test_thinking_and_search_show_thoughts_and_sources(
    serve: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sidebar toggles: thoughts in a closed status box above the answer, sources below."""
    running = serve(**QUICK)
    app = start_app(running.url, monkeypatch)
    app.sidebar.toggle(key="thinking").set_value(True).run()
    app.sidebar.toggle(key="grounding").set_value(True).run()
    ask(app, "What is baseball?")
    with Client(running.url) as client:  # the same question, the same sources
        sources = client.complete("What is baseball?", grounding=True).sources
    # Titles of plain words: `sources_markdown` has nothing to escape in them.
    assert len(sources) == 2
    thought = "".join(simulated_thoughts("What is baseball?"))
    assert all(re.fullmatch(r"About \w+", source.title or "") for source in sources)
    for _ in range(2):  # as it streams, then from the history on the next run
        assistant = app.chat_message[1]
        (thoughts,) = assistant.status
        assert thoughts.label == "Thoughts" and thoughts.state == "complete"
        assert not thoughts.proto.expanded
        assert [m.value for m in thoughts.markdown] == [thought]
        listed = "\n".join(
            f"{n}. [{source.title}](<{source.url}>)" for n, source in enumerate(sources, 1)
        )
        assert [m.value for m in assistant.markdown] == [
            thought,
            expected_answer(running.gateway.settings, ["What is baseball?"]),
            "**Sources**\n\n" + listed,
        ]
        assert not app.error
        app.run()


class Calling(FakeProvider):
    """The simulated model, but it answers with a tool call and no text."""

    async def astream(self, request: ModelRequest) -> AsyncIterator[AIMessageChunk]:
        yield AIMessageChunk(
            content="",
            tool_call_chunks=[
                {"id": "call_1", "name": "get_weather", "args": '{"city": "Paris"}', "index": 0}
            ],
        )


def test_tool_call_is_shown_as_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """A `tool_call` shows as `name(arguments)`; the turn is not sent with the next question."""
    settings = make_settings()
    with run_in_thread(create_app(settings, provider=Calling(settings))) as running:
        app = start_app(running.url, monkeypatch)
        ask(app, "Weather in Paris?")
        for _ in range(2):
            assistant = app.chat_message[1]
            assert [c.value for c in assistant.code] == ['get_weather({"city": "Paris"})']
            (caption,) = assistant.caption
            assert caption.value == "Tool call (this page cannot run tools)"
            assert not assistant.markdown and not app.error
            app.run()


def test_content_blocked_error_shows_its_category(
    serve: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `content_blocked` error shows the harm category after the message."""
    running = serve(fake_fault="safety", fake_fail_after=1, **QUICK)
    app = start_app(running.url, monkeypatch)
    ask(app, "What is baseball?")
    (error,) = app.error
    assert error.value.startswith("`content_blocked` ")
    assert error.value.endswith(" (HARM_CATEGORY_DANGEROUS_CONTENT)")


def test_launch_runs_the_packaged_app_on_localhost_only() -> None:
    """`gemini-sse ui` runs `streamlit run` on the packaged file, local, headless, no stats."""
    cmd, env = launch.command(["--url", "http://gw:9000", "--port", "9999", "--theme.base", "dark"])
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(APP)]
    options = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert options == {
        "--server.address": "127.0.0.1",
        "--server.port": "9999",
        "--server.headless": "true",
        "--browser.gatherUsageStats": "false",
        "--theme.base": "dark",
    }
    assert env["GEMINI_SSE_URL"] == "http://gw:9000"


def test_importing_the_ui_package_does_not_import_streamlit() -> None:
    """Streamlit is an optional extra: only the app file Streamlit runs imports it."""
    code = (
        "import sys, gemini_sse.ui, gemini_sse.ui.launch; "
        "assert 'streamlit' not in sys.modules, 'streamlit was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
