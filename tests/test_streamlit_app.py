"""The Streamlit chat page under `streamlit.testing.v1.AppTest`, against a real gateway."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from langchain_core.messages import AIMessageChunk
from streamlit.proto.TextInput_pb2 import TextInput as TextInputProto
from streamlit.testing.v1 import AppTest

import gemini_sse.ui
from gemini_sse.server.app import create_app
from gemini_sse.server.providers.base import ModelRequest
from gemini_sse.server.providers.fake import FakeProvider, expected_answer
from gemini_sse.ui import launch

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
    assert assistant.text[0].value == expected
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
    texts = [
        (message.markdown if message.name == "user" else message.text)[0].value
        for message in app.chat_message
    ]
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
    partial = app.chat_message[1].text[0].value
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
    assert app.chat_message[1].text[0].value == expected_answer(
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
    assert app.chat_message[3].text[0].value == expected_answer(
        configured.gateway.settings, ["And cricket?"]
    )


LEAKY = "See ![x](http://127.0.0.1:1/leak.png) and **this**."


class Scripted(FakeProvider):
    """The simulated model, but it answers `LEAKY`, in pieces, whatever the question."""

    async def astream(self, request: ModelRequest) -> AsyncIterator[AIMessageChunk]:
        for start in range(0, len(LEAKY), 8):
            yield AIMessageChunk(content=LEAKY[start : start + 8])


def test_answer_is_shown_as_text_so_markdown_images_are_not_fetched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Markdown in an answer (an image an injected prompt asked for) stays text, then and later."""
    settings = make_settings()
    with run_in_thread(create_app(settings, provider=Scripted(settings))) as running:
        app = start_app(running.url, monkeypatch)
        ask(app, "What is baseball?")
        for _ in range(2):  # as it streams, then from the history on the next run
            assistant = app.chat_message[1]
            assert [t.value for t in assistant.text] == [LEAKY]
            assert not assistant.markdown and not app.get("image")
            assert not app.error
            app.run()


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
