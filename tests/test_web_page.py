"""The web page at `/`, driven in a real Chromium against a real gateway.

The simulated model pauses between chunks, so "the answer appears as tokens arrive" is
checked while the model is still writing, not inferred from the final text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from langchain_core.messages import AIMessageChunk

import gemini_sse.server
from gemini_sse.client import Client
from gemini_sse.server.app import create_app
from gemini_sse.server.providers.base import ModelRequest
from gemini_sse.server.providers.fake import FakeProvider
from gemini_sse.server.providers.simulated import (
    expected_answer,
    simulated_answer,
    simulated_thoughts,
)
from gemini_sse.server.web import CONTENT_SECURITY_POLICY

from .conftest import make_settings
from .emulators.relay import TcpRelay
from .servers import RunningServer, run_in_thread, wait_for

try:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Dialog,
        Page,
        Request,
        Route,
        ViewportSize,
        sync_playwright,
    )
except ImportError:  # a clear failure in the `browser` fixture, not a collection error
    sync_playwright = None  # type: ignore[assignment]

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
STATIC = Path(gemini_sse.server.__file__).with_name("static")
DESKTOP: ViewportSize = {"width": 1100, "height": 760}
PHONE: ViewportSize = {"width": 375, "height": 740}
# The model writes six chunks a quarter of a second apart: slow enough to watch.
PACED = {"fake_chunks": 6, "fake_first_delay_ms": 50, "fake_delay_ms": 250}
QUICK = {"fake_chunks": 4, "fake_first_delay_ms": 10, "fake_delay_ms": 20}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium under Playwright, headless; fails (never skips) if it is missing."""
    if sync_playwright is None:
        pytest.fail("The browser tests need Playwright: pip install -e '.[dev]'.")
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"The browser tests need Debian's Chromium at {CHROMIUM}: "
            "apt-get install chromium (or `make system-deps`)."
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """`open_page(url, viewport=..., problems=[])`: a fresh tab (own storage) showing `url`.

    JavaScript errors and console errors (a CSP violation is one) go to `problems`.
    """
    contexts: list[BrowserContext] = []

    def start(
        url: str, viewport: ViewportSize = DESKTOP, problems: list[str] | None = None
    ) -> Page:
        context = browser.new_context(viewport=viewport, color_scheme="light")
        contexts.append(context)
        page = context.new_page()
        if problems is not None:
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

            def on_console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    problems.append(message.text)

            page.on("console", on_console)
        page.goto(f"{url}/")
        return page

    yield start
    for context in contexts:
        context.close()


def ask(page: Page, question: str) -> None:
    """Type a question and press Enter, as a user does."""
    page.fill("#prompt", question)
    page.press("#prompt", "Enter")


def wait_done(page: Page, turns: int = 1) -> None:
    """Wait for the `done` footer of the `turns`-th answer."""
    page.locator(".turn").nth(turns - 1).locator(".meta").wait_for(state="visible", timeout=10_000)


def answer_text(page: Page, index: int = -1) -> str:
    """The answer's text without the separator marks (which hold no text)."""
    return str(page.locator(".turn .answer").nth(index).evaluate("el => el.textContent"))


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=False)


def test_answer_appears_while_the_model_is_still_writing(
    serve: Callable[..., RunningServer], open_page: Callable[..., Page]
) -> None:
    """Text is on the page before the model's last chunk exists; the end text is exact."""
    running = serve(**PACED)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    problems: list[str] = []
    page = open_page(running.url, problems=problems)
    ask(page, "What is baseball?")

    page.wait_for_function(
        "() => { const a = document.querySelector('.turn .answer');"
        " return a && a.textContent.length > 0; }",
        timeout=5_000,
    )
    partial = answer_text(page)
    footer_shown = page.locator(".turn .meta").is_visible()
    model_finished = stats.completed
    assert partial and not footer_shown and model_finished == 0

    wait_done(page)
    settings = running.gateway.settings
    assert answer_text(page) == expected_answer(settings, ["What is baseball?"])
    assert len(partial) < len(answer_text(page))
    # One mark between each two of the six chunks (the trailing one is hidden).
    assert page.locator(".turn .answer .sep:visible").count() == 5
    footer = page.locator(".turn .meta").inner_text()
    assert settings.model in footer
    assert re.search(r"\d+ tokens", footer) and "first token" in footer and "total" in footer
    assert page.locator("#send").is_enabled() and page.locator("#stop").is_disabled()
    assert page.evaluate("document.activeElement.id") == "prompt"
    assert problems == []  # no CSP violation, no JavaScript error


def test_follow_up_sends_the_conversation_so_far(
    serve: Callable[..., RunningServer], open_page: Callable[..., Page]
) -> None:
    """The second question goes with the first turn: its answer is over all three texts."""
    running = serve(**QUICK)
    settings = running.gateway.settings
    page = open_page(running.url)
    ask(page, "What is baseball?")
    wait_done(page, 1)
    first = answer_text(page, 0)
    ask(page, "And cricket?")
    wait_done(page, 2)
    assert first == expected_answer(settings, ["What is baseball?"])
    assert answer_text(page, 1) == expected_answer(
        settings, ["What is baseball?", first, "And cricket?"]
    )
    screenshot(page, "web-desktop.png")


def test_upstream_error_shows_its_code_and_message(
    serve: Callable[..., RunningServer], open_page: Callable[..., Page]
) -> None:
    """An `error` event mid-answer keeps the partial text and shows the code and message."""
    running = serve(fake_fault="rate_limit", fake_fail_after=2, **QUICK)
    page = open_page(running.url)
    ask(page, "What is baseball?")
    error = page.locator(".turn .error")
    error.wait_for(state="visible", timeout=10_000)
    assert error.get_attribute("role") == "alert"
    assert error.locator(".error-code").inner_text() == "rate_limited"
    assert "rate limit" in error.locator(".error-message").inner_text()
    assert "try again in 2 s" in error.inner_text()
    full = expected_answer(running.gateway.settings, ["What is baseball?"])
    assert answer_text(page) == full[: len(answer_text(page))] != ""
    assert page.locator("#send").is_enabled()
    screenshot(page, "web-error.png")


def test_request_rejected_before_streaming_shows_its_code(
    serve: Callable[..., RunningServer], open_page: Callable[..., Page]
) -> None:
    """An HTTP error from POST /v1/streams (here 413) is shown with the gateway's code."""
    running = serve(max_message_chars=20, **QUICK)
    page = open_page(running.url)
    ask(page, "A question well over twenty characters long")
    error = page.locator(".turn .error")
    error.wait_for(state="visible", timeout=5_000)
    assert error.locator(".error-code").inner_text() == "payload_too_large"
    assert "20" in error.locator(".error-message").inner_text()
    assert running.gateway.provider.stats.started == 0  # type: ignore[attr-defined]


def test_stop_closes_the_stream_and_cancels_the_generation(
    serve: Callable[..., RunningServer], open_page: Callable[..., Page]
) -> None:
    """Stop ends reading at once and its DELETE makes the gateway cancel the model call."""
    running = serve(fake_chunks=50, fake_first_delay_ms=10, fake_delay_ms=200)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    page = open_page(running.url)
    ask(page, "Tell me everything.")
    page.wait_for_function("() => document.querySelector('.turn .answer').textContent.length > 0")
    page.click("#stop")
    assert wait_for(lambda: stats.cancelled == 1, seconds=2)
    assert stats.completed == 0
    stopped_at = answer_text(page)
    page.wait_for_timeout(500)
    assert answer_text(page) == stopped_at  # nothing more arrives
    assert "Stopped" in page.locator(".turn .meta").inner_text()
    assert page.locator("#send").is_enabled() and page.locator("#stop").is_disabled()


def test_separator_toggle_hides_chunk_boundaries(
    serve: Callable[..., RunningServer], open_page: Callable[..., Page]
) -> None:
    """The toggle hides the chunk marks and shows them again; the text never changes."""
    running = serve(**QUICK)
    page = open_page(running.url)
    ask(page, "What is baseball?")
    wait_done(page)
    text = answer_text(page)
    marks = page.locator(".turn .answer .sep")
    assert marks.count() == 4 and marks.first.is_visible()
    page.get_by_label("Chunk boundaries").uncheck()
    assert all(not mark.is_visible() for mark in marks.all())
    assert answer_text(page) == text
    page.get_by_label("Chunk boundaries").check()
    assert marks.first.is_visible()


def test_phone_width_has_no_horizontal_scroll(
    serve: Callable[..., RunningServer], open_page: Callable[..., Page]
) -> None:
    """At 375 px the page, a long unbroken question and the answer fit the width."""
    running = serve(**QUICK)
    page = open_page(running.url, viewport=PHONE)
    ask(page, "Is " + "supercalifragilistic" * 8 + " a word?")
    wait_done(page)
    ask(page, "What is baseball?")
    wait_done(page, 2)
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1] == 375
    screenshot(page, "web-phone.png")
    page.emulate_media(color_scheme="dark")
    screenshot(page, "web-phone-dark.png")


def test_api_key_travels_in_a_header_never_in_a_url(
    serve: Callable[..., RunningServer], open_page: Callable[..., Page]
) -> None:
    """With keys on: no key is `unauthorized`; the typed key goes in headers, never URLs."""
    running = serve(api_keys="sk-test-123", fake_chunks=50, fake_delay_ms=100)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    page = open_page(running.url)
    seen: list[tuple[str, str, str | None]] = []

    def on_request(request: Request) -> None:
        seen.append((request.method, request.url, request.all_headers().get("authorization")))

    page.on("request", on_request)
    ask(page, "What is baseball?")
    page.locator(".turn .error").wait_for(state="visible", timeout=5_000)
    assert page.locator(".turn .error-code").inner_text() == "unauthorized"
    assert page.evaluate("document.activeElement.id") == "api-key"  # where the fix goes

    page.fill("#api-key", "sk-test-123")
    ask(page, "What is baseball?")
    page.wait_for_function(
        "() => document.querySelector('.turn:last-of-type .answer').textContent.length > 0"
    )
    with page.expect_request(lambda request: request.method == "DELETE"):
        page.click("#stop")
    assert wait_for(lambda: stats.cancelled == 1, seconds=2)  # the DELETE was authorized
    sent = {(method, url.rsplit("/", 1)[-1] == "events"): auth for method, url, auth in seen}
    assert sent[("POST", False)] == "Bearer sk-test-123"
    assert sent[("DELETE", False)] == "Bearer sk-test-123"
    assert ("GET", True) in sent  # the events URL: its unguessable id is the capability
    assert all("sk-test-123" not in url for _, url, _ in seen)
    assert page.evaluate("sessionStorage.getItem('gemini-sse.api-key')") == "sk-test-123"


@dataclass
class Relay:
    """A TCP relay in front of the gateway; `cut()` drops every connection through it."""

    url: str
    cut: Callable[[], object]


@contextlib.contextmanager
def relay_to(port: int) -> Iterator[Relay]:
    """Run `TcpRelay` on its own event loop in a thread while the block runs."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    relay = TcpRelay(port)
    asyncio.run_coroutine_threadsafe(relay.start(), loop).result(5)

    async def shutdown() -> None:
        await relay.stop()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        yield Relay(f"http://127.0.0.1:{relay.port}", lambda: loop.call_soon_threadsafe(relay.cut))
    finally:
        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_reconnect_mid_answer_resumes_without_repeating_text(
    serve: Callable[..., RunningServer], open_page: Callable[..., Page]
) -> None:
    """A dropped connection mid-answer: EventSource resumes after Last-Event-ID, text once."""
    running = serve(**PACED)
    port = int(running.url.rsplit(":", 1)[1])
    with relay_to(port) as relay:
        page = open_page(relay.url)
        reads: list[str | None] = []  # the Last-Event-ID of each request for the events

        def on_request(request: Request) -> None:
            if request.url.endswith("/events"):
                reads.append(request.all_headers().get("last-event-id"))

        page.on("request", on_request)
        ask(page, "What is baseball?")
        page.wait_for_function(
            "() => document.querySelector('.turn .answer').textContent.length > 0"
        )
        relay.cut()
        wait_done(page)
        text = answer_text(page)
        page.context.close()
    assert text == expected_answer(running.gateway.settings, ["What is baseball?"])
    assert len(reads) == 2 and reads[0] is None
    assert reads[1] is not None and int(reads[1]) >= 1


def test_page_and_assets_are_served_with_a_strict_policy(
    serve: Callable[..., RunningServer],
) -> None:
    """`/` has a CSP with no inline code; every file is revalidated (ETag, 304); no strays."""
    running = serve()
    page = httpx.get(f"{running.url}/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert csp == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "unsafe" not in csp and "require-trusted-types-for 'script'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    for path, media_type in [
        ("/", "text/html"),
        ("/static/app.js", "text/javascript"),
        ("/static/markdown.js", "text/javascript"),
        ("/static/style.css", "text/css"),
    ]:
        first = httpx.get(f"{running.url}{path}")
        assert first.headers["content-type"].startswith(media_type)
        assert first.headers["cache-control"] == "no-cache"
        again = httpx.get(f"{running.url}{path}", headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
    for stray in ("/static/index.html", "/static/..%2fweb.py", "/static/nope.js"):
        missing = httpx.get(f"{running.url}{stray}")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
    assert "/" not in httpx.get(f"{running.url}/openapi.json").json()["paths"]


def test_page_source_has_no_inline_code_and_no_html_sinks() -> None:
    """No inline script or style in the HTML; the script never builds HTML from strings."""
    html = (STATIC / "index.html").read_text()
    assert re.findall(r"<script\b[^>]*>", html) == [
        '<script src="/static/markdown.js" defer>',  # first: app.js uses it
        '<script src="/static/app.js" defer>',
    ]
    assert not re.search(r"\sstyle=|<style\b|\son[a-z]+=", html)
    for name in ("app.js", "markdown.js"):
        script = re.sub(r"^\s*//.*$", "", (STATIC / name).read_text(), flags=re.MULTILINE)
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in script, (name, sink)


# --- rich answers: Markdown, thoughts, tool calls, sources --------------------------------

MARKDOWN_PROMPT = "Show me Markdown."
# Seven chunks of 40 characters, a quarter of a second apart: two headings, two code
# blocks, two lists and a link, written over 1.5 s.
MARKDOWN = {"fake_markdown": True, "fake_chunks": 7, "fake_chunk_chars": 40}


def test_markdown_answer_is_rendered_while_it_streams(
    serve: Callable[..., RunningServer], open_page: Callable[..., Page]
) -> None:
    """Headings, code, lists and links are elements before the model ends, and at the end."""
    running = serve(**MARKDOWN, fake_first_delay_ms=50, fake_delay_ms=250)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    problems: list[str] = []
    page = open_page(running.url, problems=problems)
    ask(page, MARKDOWN_PROMPT)

    # The first code block ends in the third chunk of seven.
    page.wait_for_function("() => document.querySelector('.turn .answer pre > code')")
    partial = answer_text(page)
    footer_shown = page.locator(".turn .meta").is_visible()
    model_finished = stats.completed
    assert not footer_shown and model_finished == 0
    assert page.locator(".turn .answer h2").count() >= 1

    wait_done(page)
    source = "".join(simulated_answer(MARKDOWN_PROMPT, 7, 40, markdown=True))
    answer = page.locator(".turn .answer")
    assert len(partial) < len(answer_text(page))
    headings = re.findall(r"^## (.+)$", source, re.MULTILINE)
    assert answer.locator("h2").all_inner_texts() == headings and len(headings) == 2
    codes = re.findall(r"^```python\n(.*?)\n```$", source, re.MULTILINE | re.DOTALL)
    assert answer.locator("pre > code").all_text_contents() == codes and len(codes) == 2
    assert answer.locator("pre > code").first.get_attribute("data-lang") == "python"
    items = [re.sub(r"\*(\w+)\*", r"\1", item) for item in re.findall(r"^- (.+)$", source, re.M)]
    assert answer.locator("ul > li").all_inner_texts() == items and len(items) == 4
    assert answer.locator("ul > li > em").count() == 2
    assert answer.locator("p > strong").count() == 2 and answer.locator("p > code").count() == 2
    links = re.findall(r"\[(\w+)\]\((https://[^)]+)\)", source)
    anchors = answer.locator("a")
    assert anchors.count() == len(links) == 1
    for index, (label, url) in enumerate(links):
        anchor = anchors.nth(index)
        assert anchor.inner_text() == label and anchor.get_attribute("href") == url
        assert anchor.get_attribute("target") == "_blank"
        assert anchor.get_attribute("rel") == "noopener noreferrer"
    text = answer_text(page)
    assert "**" not in text and "```" not in text and "## " not in text
    # Each chunk boundary still has its mark, wherever the Markdown put its text.
    assert page.locator(".turn .answer .sep").count() == 7
    assert page.locator(".turn .answer .sep:visible").count() == 6
    assert problems == []
    screenshot(page, "web-markdown.png")


HOSTILE = (
    "Click [here](javascript:alert(document.domain)), [there](JaVaScRiPt:alert(1)), "
    "[tab](java\tscript:alert(1)), [data](data:text/html,<b>x</b>) or [home](/v1/models).\n\n"
    "<script>window.pwned = 'script'</script>\n\n"
    '<img src="http://127.0.0.1:1/x.png" onerror="window.pwned = \'img\'">\n\n'
    "![chart](http://127.0.0.1:1/leak.png?q=secret) and [docs](https://example.org/docs)."
)


class Scripted(FakeProvider):
    """The simulated model, but it answers `HOSTILE`, in pieces, whatever the question."""

    async def astream(self, request: ModelRequest) -> AsyncIterator[AIMessageChunk]:
        for start in range(0, len(HOSTILE), 16):
            yield AIMessageChunk(content=HOSTILE[start : start + 16])


def test_hostile_answer_stays_text_and_unsafe_links_are_not_links(
    open_page: Callable[..., Page],
) -> None:
    """HTML in an answer is text; only http(s) links are links; no image is ever fetched."""
    settings = make_settings()
    with run_in_thread(create_app(settings, provider=Scripted(settings))) as running:
        problems: list[str] = []
        page = open_page(running.url, problems=problems)
        outside: list[str] = []  # requests anywhere but the gateway

        def on_request(request: Request) -> None:
            if not request.url.startswith(running.url):
                outside.append(request.url)

        page.on("request", on_request)
        dialogs: list[str] = []  # an alert() that ran

        def on_dialog(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        ask(page, "Anything.")
        wait_done(page)
        answer = page.locator(".turn .answer")
        hrefs = [a.get_attribute("href") for a in answer.locator("a").all()]
        text = answer_text(page)
        pwned = page.evaluate("window.pwned")
    # Only http(s) URLs are links: the one in the <img> text, the image (a link to it,
    # never an <img>), and the https link.
    assert hrefs == [
        "http://127.0.0.1:1/x.png",
        "http://127.0.0.1:1/leak.png?q=secret",
        "https://example.org/docs",
    ]
    assert answer.locator("a.image-link").inner_text() == "chart"
    assert answer.locator("script, img, iframe, object").count() == 0
    assert "[here](javascript:alert(document.domain))" in text
    assert "[there](JaVaScRiPt:alert(1))" in text and "[tab](java\tscript:alert(1))" in text
    assert "[data](data:text/html,<b>x</b>)" in text and "[home](/v1/models)" in text
    assert "<script>window.pwned = 'script'</script>" in text
    assert '<img src="http://127.0.0.1:1/x.png" onerror="window.pwned = \'img\'">' in text
    assert pwned is None and dialogs == [] and outside == [] and problems == []


def rendered(page: Page, text: str, marks: list[int] | None = None) -> str:
    """`text` through the page's own renderer, as HTML (marks shown as `<i>|n</i>`)."""
    html: str = page.evaluate(
        """([text, marks]) => {
            const mark = (i) => { const m = document.createElement("i");
                                  m.textContent = "|" + i; return m; };
            const box = document.createElement("div");
            box.append(GeminiMarkdown.render(text, marks ? { marks, mark } : {}));
            return box.innerHTML;
        }""",
        [text, marks],
    )
    return html


A = 'target="_blank" rel="noopener noreferrer"'

RENDERED = {
    "# One\n###### Six ##": "<h1>One</h1><h6>Six</h6>",
    "a **b** *c* ***d*** __e__ _f_ ~~g~~ `h`": (
        "<p>a <strong>b</strong> <em>c</em> <strong><em>d</em></strong> <strong>e</strong> "
        "<em>f</em> <del>g</del> <code>h</code></p>"
    ),
    "snake_case_name, 2 * 3 and **not closed": "<p>snake_case_name, 2 * 3 and **not closed</p>",
    "line one\nline two\n\nnext": "<p>line one<br>line two</p><p>next</p>",
    "```js\nif (a < b) {}\n\n  x\n```": (
        '<pre><code data-lang="js">if (a &lt; b) {}\n\n  x</code></pre>'
    ),
    "```\nnot closed yet": "<pre><code>not closed yet</code></pre>",
    "- a\n- b\n  - c\n\n3. x\n4. y": (
        '<ul><li>a</li><li>b<ul><li>c</li></ul></li></ul><ol start="3"><li>x</li><li>y</li></ol>'
    ),
    "1. **A**\n\n   more\n2. B": (
        "<ol><li><p><strong>A</strong></p><p>more</p></li><li><p>B</p></li></ol>"
    ),
    "> quoted\n\n---": "<blockquote><p>quoted</p></blockquote><hr>",
    "| a | b |\n|:-:|--:|\n| `x|y` | 2 |": (
        '<div class="table-wrap"><table><thead><tr><th data-align="center">a</th>'
        '<th data-align="right">b</th></tr></thead><tbody><tr><td data-align="center">'
        '<code>x|y</code></td><td data-align="right">2</td></tr></tbody></table></div>'
    ),
    '[a](https://e.org/x "T") <https://e.org/y> https://e.org/z. [m](mailto:a@e.org)': (
        f'<p><a href="https://e.org/x" {A} title="T">a</a> <a href="https://e.org/y" {A}>'
        f'https://e.org/y</a> <a href="https://e.org/z" {A}>https://e.org/z</a>. '
        f'<a href="mailto:a@e.org" {A}>m</a></p>'
    ),
    "[x](javascript:alert(1)) [y]( vbscript:z) [z](/relative) <javascript:alert(1)>": (
        "<p>[x](javascript:alert(1)) [y]( vbscript:z) [z](/relative) "
        "&lt;javascript:alert(1)&gt;</p>"
    ),
    "<b onmouseover=alert(1)>hi</b> \\*not em\\*": (
        "<p>&lt;b onmouseover=alert(1)&gt;hi&lt;/b&gt; *not em*</p>"
    ),
}


def test_renderer_makes_elements_from_markdown_and_text_from_everything_else(
    serve: Callable[..., RunningServer], open_page: Callable[..., Page]
) -> None:
    """The page's renderer, under the page's own policy: each case renders to exact HTML."""
    running = serve()
    problems: list[str] = []
    page = open_page(running.url, problems=problems)
    assert {text: rendered(page, text) for text in RENDERED} == RENDERED
    assert problems == []


def test_renderer_puts_each_chunk_mark_after_the_text_before_it(
    serve: Callable[..., RunningServer], open_page: Callable[..., Page]
) -> None:
    """A mark inside Markdown syntax lands after the last character shown before it."""
    running = serve()
    page = open_page(running.url)
    # Chunks: "## Ti" | "tle\n\nA **b" | "old** c" | "" (the answer's end)
    text = "## Title\n\nA **bold** c"
    assert rendered(page, text, [5, 15, 22]) == (
        "<h2>Ti<i>|0</i>tle</h2><p>A <strong>b<i>|1</i>old</strong> c<i>|2</i></p>"
    )
    # Nothing shown before it: the mark goes before the first character shown.
    assert rendered(page, "**a**", [2]) == "<p><strong><i>|0</i>a</strong></p>"


def test_thinking_shows_the_thought_summary_closed_above_the_answer(
    serve: Callable[..., RunningServer], open_page: Callable[..., Page]
) -> None:
    """With "Show thinking" the POST asks for thoughts; they stream into a closed <details>."""
    running = serve(**QUICK)
    problems: list[str] = []
    page = open_page(running.url, problems=problems)
    page.get_by_label("Show thinking").check()
    # How the turn looks the moment the thoughts appear (an observer runs right after the
    # change, whatever the timing): before any answer text, and still "Thinking…".
    page.evaluate(
        """() => {
            new MutationObserver((_, observer) => {
                const thoughts = document.querySelector(".turn .thoughts:not([hidden])");
                if (!thoughts) return;
                window.firstThoughts = {
                    summary: thoughts.querySelector("summary").textContent,
                    open: thoughts.open,
                    answer: document.querySelector(".turn .answer").textContent,
                };
                observer.disconnect();
            }).observe(document.getElementById("log"),
                       { subtree: true, attributes: true, childList: true });
        }"""
    )
    with page.expect_request(lambda r: r.url.endswith("/v1/streams")) as posted:
        ask(page, "What is baseball?")
    wait_done(page)
    assert posted.value.post_data_json == {
        "messages": [{"role": "user", "content": "What is baseball?"}],
        "separators": True,
        "thinking": {"include_thoughts": True},
    }
    assert page.evaluate("window.firstThoughts") == {
        "summary": "Thinking…",
        "open": False,
        "answer": "",
    }
    thoughts = page.locator(".turn details.thoughts")
    assert thoughts.get_attribute("open") is None
    assert thoughts.locator("summary").inner_text() == "Thoughts"
    reasoning = thoughts.locator(".reasoning").evaluate("el => el.textContent")
    assert reasoning == "".join(simulated_thoughts("What is baseball?"))
    # Above the answer, and not part of it.
    order = page.evaluate(
        "() => [...document.querySelector('.turn').children].map((el) => el.className)"
    )
    assert order.index("thoughts") < order.index("answer")
    assert answer_text(page) == expected_answer(running.gateway.settings, ["What is baseball?"])
    assert "thinking)" in page.locator(".turn .meta").inner_text()
    thoughts.locator("summary").click()
    assert thoughts.locator(".reasoning").is_visible()
    assert problems == []


def test_search_lists_the_sources_as_links_under_the_answer(
    serve: Callable[..., RunningServer], open_page: Callable[..., Page]
) -> None:
    """With "Search the web" the POST asks for grounding; each `source` is a link below."""
    running = serve(**QUICK)
    page = open_page(running.url)
    page.get_by_label("Search the web").check()
    with page.expect_request(lambda r: r.url.endswith("/v1/streams")) as posted:
        ask(page, "What is baseball?")
    wait_done(page)
    assert posted.value.post_data_json == {
        "messages": [{"role": "user", "content": "What is baseball?"}],
        "separators": True,
        "grounding": True,
    }
    with Client(running.url) as client:  # the same question, the same sources
        expected = client.complete("What is baseball?", grounding=True).sources
    assert len(expected) == 2
    links = page.locator(".turn .sources li a")
    assert links.all_inner_texts() == [source.title for source in expected]
    for index, source in enumerate(expected):
        assert links.nth(index).get_attribute("href") == source.url
        assert links.nth(index).get_attribute("target") == "_blank"
        assert links.nth(index).get_attribute("rel") == "noopener noreferrer"
    order = page.evaluate(
        "() => [...document.querySelector('.turn').children].map((el) => el.className)"
    )
    assert order.index("answer") < order.index("sources") < order.index("meta")
    # The choice is remembered for the next visit.
    page.reload()
    assert page.get_by_label("Search the web").is_checked()
    assert not page.get_by_label("Show thinking").is_checked()


WEATHER = {
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def test_tool_call_is_shown_in_a_box_instead_of_an_answer(
    serve: Callable[..., RunningServer], open_page: Callable[..., Page]
) -> None:
    """A `tool_call` shows as "Tool call: name(arguments)"; the turn is not sent again."""
    running = serve(**QUICK)
    page = open_page(running.url)
    sent: list[dict[str, object]] = []

    def with_tools(route: Route) -> None:
        # The page offers no tools: this adds one to its first request.
        body = json.loads(route.request.post_data or "{}")
        sent.append(body)
        if len(sent) == 1:
            body["tools"] = [WEATHER]
        route.continue_(post_data=json.dumps(body))

    page.route("**/v1/streams", with_tools)
    ask(page, "Weather in Paris?")
    wait_done(page)
    with Client(running.url) as client:
        (call,) = client.complete("Weather in Paris?", tools=[WEATHER]).tool_calls
    box = page.locator(".turn .tool-call")
    assert box.count() == 1
    assert box.inner_text() == f"Tool call: get_weather({call.arguments})"
    assert page.locator(".turn .answer").is_hidden()
    assert "finished: tool_calls" in page.locator(".turn .meta").inner_text()
    ask(page, "And cricket?")
    wait_done(page, 2)
    assert sent[1]["messages"] == [{"role": "user", "content": "And cricket?"}]


def test_content_blocked_error_shows_its_category(
    serve: Callable[..., RunningServer], open_page: Callable[..., Page]
) -> None:
    """A `content_blocked` error shows the harm category the model gave."""
    running = serve(fake_fault="safety", fake_fail_after=1, **QUICK)
    page = open_page(running.url)
    ask(page, "What is baseball?")
    error = page.locator(".turn .error")
    error.wait_for(state="visible", timeout=10_000)
    assert error.locator(".error-code").inner_text() == "content_blocked"
    assert error.locator(".error-category").inner_text() == "HARM_CATEGORY_DANGEROUS_CONTENT"
