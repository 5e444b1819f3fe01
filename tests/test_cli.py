"""`gemini-sse ask` as a user runs it: a child process against a real gateway on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

from gemini_sse.client import Client
from gemini_sse.server.providers.simulated import expected_answer, simulated_thoughts

from .conftest import make_settings
from .servers import RunningServer, free_port, wait_for
from .sse import names, parse, text
from .test_client_errors import STREAM_HEAD, chunk, tcp_gateway

QUESTION = "What is baseball?"


def ask(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gemini_sse._cli", "ask", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, **(env or {})},
        timeout=30,
    )


def test_ask_prints_the_answer_then_a_summary(serve: Callable[..., RunningServer]) -> None:
    """Exit 0; stdout is exactly the answer (no ANSI when piped), stderr the summary line."""
    running = serve()
    result = ask("--url", running.url, QUESTION)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected_answer(make_settings(), [QUESTION]) + "\n"
    assert "tokens" in result.stderr and "first token" in result.stderr
    assert "\x1b" not in result.stdout + result.stderr


def test_ask_reads_the_url_from_the_environment_and_sends_the_system_prompt(
    serve: Callable[..., RunningServer],
) -> None:
    """GEMINI_SSE_URL picks the gateway; `--system` is a turn before the question."""
    running = serve()
    result = ask("--system", "Be brief.", QUESTION, env={"GEMINI_SSE_URL": running.url})
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected_answer(make_settings(), ["Be brief.", QUESTION]) + "\n"


def test_ask_json_prints_one_event_per_line(serve: Callable[..., RunningServer]) -> None:
    """`--json`: every event as one JSON object with its `event` and `id`."""
    running = serve()
    result = ask("--url", running.url, "--json", "--no-separators", QUESTION)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["event"] for line in lines] == ["token"] * 5 + ["done"]
    assert [line["id"] for line in lines] == list(range(1, 7))
    tokens = "".join(line["text"] for line in lines if line["event"] == "token")
    assert tokens == expected_answer(make_settings(), [QUESTION])


def test_ask_raw_prints_the_event_stream_as_received(serve: Callable[..., RunningServer]) -> None:
    """`--raw`: the SSE bytes themselves, which decode to the full stream."""
    running = serve()
    result = subprocess.run(
        [sys.executable, "-m", "gemini_sse._cli", "ask", "--url", running.url, "--raw", QUESTION],
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"id: 1\nevent: token\ndata: ")
    events = parse(result.stdout)
    assert names(events) == ["token", "separator"] * 5 + ["done"]
    assert text(events) == expected_answer(make_settings(), [QUESTION])


def test_ask_exits_1_when_the_model_fails(serve: Callable[..., RunningServer]) -> None:
    """An upstream error event: exit 1 and `error: <code>: <message>` on stderr."""
    running = serve(fake_fault="rate_limit", fake_fail_after=2)
    result = ask("--url", running.url, QUESTION)
    assert result.returncode == 1
    assert result.stdout == expected_answer(make_settings(), [QUESTION])[:24] + "\n"
    assert result.stderr.startswith("error: rate_limited: ")


def test_ask_json_prints_the_error_event_too(serve: Callable[..., RunningServer]) -> None:
    """`--json` with a failing model: the `error` event is the last line, exit 1."""
    running = serve(fake_fault="safety", fake_fail_after=1)
    result = ask("--url", running.url, "--json", QUESTION)
    assert result.returncode == 1
    last = json.loads(result.stdout.splitlines()[-1])
    assert last["event"] == "error" and last["code"] == "content_blocked"
    assert result.stderr.startswith("error: content_blocked: ")


def test_ask_exits_3_when_the_gateway_refuses(serve: Callable[..., RunningServer]) -> None:
    """A rejected request (a model not served here): exit 3 with the gateway's code."""
    running = serve()
    result = ask("--url", running.url, "--model", "gemini-0-nope", QUESTION)
    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr.startswith("error: model_not_allowed: ")


def test_ask_exits_3_on_a_gateway_error_event() -> None:
    """An `error` event with a gateway code (here `internal`) exits 3, not 1."""
    error = b'id: 1\nevent: error\ndata: {"code":"internal","message":"boom"}\n\n'
    with tcp_gateway(STREAM_HEAD + chunk(error) + chunk(b""), hang=False) as url:
        result = ask("--url", url, QUESTION)
    assert result.returncode == 3
    assert result.stderr == "error: internal: boom\n"


def test_ask_exits_4_when_nothing_listens() -> None:
    """No gateway at the URL: exit 4 and `error: connect_error: ...`."""
    result = ask("--url", f"http://127.0.0.1:{free_port()}", QUESTION)
    assert result.returncode == 4
    assert result.stderr.startswith("error: connect_error: ")


def test_ask_exits_4_on_a_broken_stream() -> None:
    """A stream that skips an event id is a protocol failure: exit 4."""
    body = b'id: 1\nevent: token\ndata: {"text":"a"}\n\nid: 3\nevent: token\ndata: {"text":"b"}\n\n'
    with tcp_gateway(STREAM_HEAD + chunk(body) + chunk(b""), hang=False) as url:
        result = ask("--url", url, QUESTION)
    assert result.returncode == 4
    assert result.stdout == "a\n"
    assert result.stderr.startswith("error: event_sequence_error: Expected event id 2")


def test_ask_exits_2_on_a_usage_error() -> None:
    """A malformed option is a usage error: exit 2, nothing sent."""
    result = ask("--temperature", "warm", QUESTION)
    assert result.returncode == 2
    assert "invalid float value" in result.stderr


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_exits_130_and_the_gateway_cancels(serve: Callable[..., RunningServer]) -> None:
    """SIGINT mid-answer: exit 130, and the gateway cancels the model's generation."""
    running = serve(fake_chunks=50, fake_first_delay_ms=10, fake_delay_ms=200)
    stats = running.gateway.provider.stats  # type: ignore[attr-defined]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemini_sse._cli", "ask", "--url", running.url, QUESTION],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # A shell starts background jobs with SIGINT ignored, and the child would inherit
        # that (Python then never raises KeyboardInterrupt): give it a terminal's default.
        preexec_fn=_default_sigint,
    )
    try:
        assert proc.stdout is not None
        assert os.read(proc.stdout.fileno(), 64)  # the first text is on screen
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
        _, stderr = proc.communicate()
    assert b"Traceback" not in stderr
    # The answer takes 10 s (50 chunks, 200 ms apart): cancelled within 5 s, it was
    # cancelled because the client left.
    assert wait_for(lambda: stats.cancelled == 1, seconds=5)
    assert stats.completed == 0


def test_ui_subcommand_hands_its_arguments_to_the_streamlit_launcher(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`gemini-sse ui --help` is the launcher's own help, not the top-level parser's."""
    from gemini_sse._cli import main

    with pytest.raises(SystemExit) as exited:
        main(["ui", "--help"])
    assert exited.value.code == 0
    assert "usage: gemini-sse ui" in capsys.readouterr().out


# --- rich answers: thoughts, tool calls, sources --------------------------------------------

THOUGHTS = "".join(simulated_thoughts(QUESTION))


def sources_listed(url: str) -> str:
    """The lines `ask --search` ends stdout with, from the client's own reading of them."""
    with Client(url) as client:
        sources = client.complete(QUESTION, grounding=True).sources
    assert len(sources) == 2
    return "".join(f"[{s.index + 1}] {s.title} <{s.url}>\n" for s in sources)


def test_ask_think_and_search_on_a_pipe(serve: Callable[..., RunningServer]) -> None:
    """Piped: stdout is the answer then its sources; thoughts go to stderr, prefixed, no ANSI."""
    running = serve()
    result = ask("--url", running.url, "--think", "--search", QUESTION)
    assert result.returncode == 0, result.stderr
    answer = expected_answer(make_settings(), [QUESTION])
    assert result.stdout == f"{answer}\n\n{sources_listed(running.url)}"
    thoughts, summary = result.stderr.splitlines()
    assert thoughts == f"thinking: {THOUGHTS}"
    assert re.fullmatch(r"\d+ tokens \(\d+ thinking\), first token \d+ ms, [\d.]+ s", summary)
    assert "\x1b" not in result.stdout + result.stderr


def ask_on_a_terminal(*args: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    """`ask` with stderr on a pseudo-terminal, stdout on a pipe: (stdout, stderr)."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemini_sse._cli", "ask", *args],
        stdout=subprocess.PIPE,
        stderr=terminal,
        env={**os.environ, **(env or {})},
    )
    os.close(terminal)
    received = b""
    with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
        while chunk := os.read(controller, 4096):
            received += chunk
    os.close(controller)
    assert proc.stdout is not None
    stdout = proc.stdout.read().decode()
    proc.stdout.close()
    assert proc.wait(timeout=30) == 0
    # The terminal turns each "\n" into "\r\n" on its way to the screen.
    return stdout, received.decode().replace("\r\n", "\n")


def test_ask_dims_thoughts_on_a_terminal(serve: Callable[..., RunningServer]) -> None:
    """On a terminal each piece of thought is dimmed (ANSI 2); stdout holds only the answer."""
    running = serve()
    stdout, stderr = ask_on_a_terminal("--url", running.url, "--think", QUESTION)
    assert stdout == expected_answer(make_settings(), [QUESTION]) + "\n"
    dimmed = "".join(f"\x1b[2m{piece}\x1b[0m" for piece in simulated_thoughts(QUESTION))
    assert stderr.startswith(dimmed + "\n\x1b[2m")
    assert stderr.endswith("\x1b[0m\n") and stderr.count("\n") == 2  # the thoughts, the summary


def test_ask_prefixes_thoughts_on_a_terminal_under_no_color(
    serve: Callable[..., RunningServer],
) -> None:
    """`NO_COLOR` set: no ANSI at all, the thoughts are told apart by their prefix."""
    running = serve()
    _, stderr = ask_on_a_terminal("--url", running.url, "--think", QUESTION, env={"NO_COLOR": "1"})
    assert stderr.startswith(f"thinking: {THOUGHTS}\n") and "\x1b" not in stderr


def test_ask_tool_prints_the_call(serve: Callable[..., RunningServer]) -> None:
    """`--tool NAME`: the model's call is printed as `tool call: name(arguments)`, exit 0."""
    running = serve()
    result = ask("--url", running.url, "--tool", "get_time", QUESTION)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "tool call: get_time({})\n"
    result = ask(
        "--url", running.url, "--tool", "get_time", "--tool", "get_date", "--json", QUESTION
    )
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events] == ["tool_call_delta"] * 2 + ["tool_call", "done"]
    assert events[2]["name"] == "get_time" and events[-1]["finish_reason"] == "tool_calls"


def test_ask_shows_the_category_of_a_blocked_answer(serve: Callable[..., RunningServer]) -> None:
    """`content_blocked`: exit 1 and the harm category after the message."""
    running = serve(fake_fault="safety", fake_fail_after=1)
    result = ask("--url", running.url, QUESTION)
    assert result.returncode == 1
    assert result.stderr.startswith("error: content_blocked: ")
    assert result.stderr.endswith(" (HARM_CATEGORY_DANGEROUS_CONTENT)\n")
