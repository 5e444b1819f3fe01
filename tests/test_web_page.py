"""The web page at `/`, driven in a real Chromium against a real gateway.

The simulated model pauses between chunks, so "the answer appears as tokens arrive" is
checked while the model is still writing, not inferred from the final text.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import gemini_sse.server
from gemini_sse.server.providers.fake import expected_answer
from gemini_sse.server.web import CONTENT_SECURITY_POLICY

from .emulators.relay import TcpRelay
from .servers import RunningServer
from .test_stream_live import wait_for

try:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Page,
        Request,
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
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/static/app.js" defer>']
    assert not re.search(r"\sstyle=|<style\b|\son[a-z]+=", html)
    script = re.sub(r"^\s*//.*$", "", (STATIC / "app.js").read_text(), flags=re.MULTILINE)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script
