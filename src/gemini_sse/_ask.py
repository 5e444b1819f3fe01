"""`gemini-sse ask`: stream one answer from a gateway to the terminal.

Client only: nothing here (or imported from here) needs the server extra.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from enum import IntEnum
from typing import TextIO

from ._client import DEFAULT_URL, Client
from ._exceptions import GeminiSSEError, RequestRejected, StreamError
from ._models import (
    UPSTREAM_CODES,
    DoneEvent,
    ErrorEvent,
    ErrorInfo,
    Event,
    ReasoningEvent,
    SourceEvent,
    TokenEvent,
    ToolCallEvent,
)
from ._protocol import StreamOptions


class ExitCode(IntEnum):
    """What `gemini-sse ask` exits with; scripts rely on these numbers."""

    OK = 0
    UPSTREAM = 1  # the model failed: an `error` event with an upstream code
    USAGE = 2  # bad command line (argparse exits with 2 too)
    GATEWAY = 3  # the gateway refused the request or failed itself
    CONNECTION = 4  # no connection, a timeout, or a stream that broke the protocol
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)


EPILOG = """\
output:
  The answer is printed on stdout as it arrives, followed on stderr by a line with the
  output tokens, the time to the first token and the duration. --json prints each
  event as one JSON object per line; --raw prints the event stream exactly as received.

  stdout carries the answer only, so that it can be piped: a tool call the model makes
  (--tool) is a line `tool call: NAME(ARGUMENTS)`, and the sources of a grounded answer
  (--search) follow it after a blank line as `[n] title <url>`. The model's thoughts
  (--think) go to stderr: dimmed on a terminal, else (a pipe, a file, or NO_COLOR set)
  each line starts with `thinking: `.

exit codes:
  0    the answer arrived in full
  1    the model failed (rate_limited, upstream_unavailable, bad_request, upstream_auth,
       timeout, content_blocked, upstream_disconnected)
  2    usage error
  3    the gateway refused the request or failed (overloaded, shutting_down,
       invalid_request, model_not_allowed, internal, ...)
  4    no connection, a timeout, or a broken stream
  130  interrupted (Ctrl-C): the stream is closed and the gateway stops the model

Errors are printed on stderr as `error: <code>: <message>`, and a blocked answer's
category after it, e.g. `(HARM_CATEGORY_DANGEROUS_CONTENT)`.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("message", help="what to ask")
    parser.add_argument("--url", help=f"the gateway (default: $GEMINI_SSE_URL, else {DEFAULT_URL})")
    parser.add_argument("--api-key", help="sent as a bearer token (default: $GEMINI_SSE_API_KEY)")
    parser.add_argument("--model", help="a model the gateway allows (default: the gateway's)")
    parser.add_argument("--temperature", type=float, help="sampling temperature, 0 to 2")
    parser.add_argument("--system", help="a system prompt sent before the message")
    parser.add_argument("--max-output-tokens", type=int, help="cap on the answer's length")
    parser.add_argument(
        "--no-separators", action="store_true", help="ask for no `separator` events"
    )
    parser.add_argument(
        "--think", action="store_true", help="show the model's thought summary (on stderr)"
    )
    parser.add_argument(
        "--search", action="store_true", help="ground the answer in Google Search; list sources"
    )
    parser.add_argument(
        "--tool",
        action="append",
        metavar="NAME",
        help="a function the model may call (repeatable); its call is printed, not run",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON event per line")
    output.add_argument("--raw", action="store_true", help="print the SSE bytes as received")


def run(args: argparse.Namespace) -> int:
    """Ask, print, and return the exit code."""
    url = args.url or os.environ.get("GEMINI_SSE_URL") or DEFAULT_URL
    api_key = args.api_key or os.environ.get("GEMINI_SSE_API_KEY") or None
    messages = [{"role": "system", "content": args.system}] if args.system is not None else []
    messages.append({"role": "user", "content": args.message})
    options: StreamOptions = {
        "model": args.model,
        "temperature": args.temperature,
        "max_output_tokens": args.max_output_tokens,
        "separators": False if args.no_separators else None,
        "thinking": {"include_thoughts": True} if args.think else None,
        "grounding": True if args.search else None,
        "tools": [{"name": name} for name in args.tool] if args.tool else None,
    }
    printer = _Printer(sys.stdout, sys.stderr)
    try:
        with Client(url, api_key=api_key) as client:
            if args.raw:
                for chunk in client.stream_raw(messages, **options):
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.buffer.flush()
                return ExitCode.OK
            for event in client.stream(messages, raise_on_error=False, **options):
                if args.json:
                    print(event.model_dump_json(exclude_none=True), flush=True)
                else:
                    printer.show(event)
                if isinstance(event, ErrorEvent):
                    return printer.error(event.info, _exit_code(event.code))
    except KeyboardInterrupt:
        printer.end_line()
        return ExitCode.INTERRUPTED
    except GeminiSSEError as exc:
        if isinstance(exc, StreamError):  # --raw only: the others get the event
            return printer.error(exc.info, _exit_code(exc.code))
        if isinstance(exc, RequestRejected):
            return printer.error(exc.info, ExitCode.GATEWAY)
        info = ErrorInfo(code=_snake(type(exc).__name__), message=str(exc))
        return printer.error(info, ExitCode.CONNECTION)
    return ExitCode.OK


def _exit_code(code: str) -> ExitCode:
    return ExitCode.UPSTREAM if code in UPSTREAM_CODES else ExitCode.GATEWAY


def _snake(name: str) -> str:
    """`ConnectTimeout` -> `connect_timeout`: client-side errors' codes."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class _Printer:
    """The answer (tool calls, sources) on `out` as it arrives; thoughts, summary, errors on `err`.

    `out` holds what the model answered and nothing else, so that a script can pipe it.
    """

    THINKING = "thinking: "  # starts each line of thoughts where they cannot be dimmed

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self.mid_line = False  # the answer so far does not end with a newline
        self.wrote = False  # some of the answer is on `out`
        self.thinking = False  # a line of thoughts on `err` is not ended yet
        self.listing = False  # the sources have begun
        # ANSI only for a terminal, and never under NO_COLOR (https://no-color.org).
        self.dim = err.isatty() and not os.environ.get("NO_COLOR")

    def show(self, event: Event) -> None:
        if isinstance(event, ReasoningEvent):
            self.think(event.text)
            return
        self.end_thoughts()
        if isinstance(event, TokenEvent):
            self.out.write(event.text)
            self.out.flush()
            self.mid_line = not event.text.endswith("\n")
            self.wrote = self.wrote or bool(event.text)
        elif isinstance(event, ToolCallEvent):
            self.line(f"tool call: {event.name}({event.arguments})")
        elif isinstance(event, SourceEvent):
            if self.wrote and not self.listing:
                self.line("")  # a blank line between the answer and its sources
            self.listing = True
            self.line(f"[{event.index + 1}] {event.title or event.url} <{event.url}>")
        elif isinstance(event, DoneEvent):
            self.end_line()
            self.note(_summary(event))

    def think(self, text: str) -> None:
        if self.dim:
            # Each piece dimmed on its own: an interrupted stream leaves no dim behind.
            self.err.write(f"\x1b[2m{text}\x1b[0m")
            self.thinking = not text.endswith("\n")
        else:
            for piece in text.splitlines(keepends=True):
                self.err.write(piece if self.thinking else self.THINKING + piece)
                self.thinking = not piece.endswith("\n")
        self.err.flush()

    def end_thoughts(self) -> None:
        if self.thinking:
            self.err.write("\n")
            self.err.flush()
            self.thinking = False

    def line(self, text: str) -> None:
        self.end_line()
        print(text, file=self.out, flush=True)
        self.wrote = True

    def end_line(self) -> None:
        if self.mid_line:
            self.out.write("\n")
            self.out.flush()
            self.mid_line = False

    def note(self, line: str) -> None:
        print(f"\x1b[2m{line}\x1b[0m" if self.dim else line, file=self.err, flush=True)

    def error(self, info: ErrorInfo, exit_code: ExitCode) -> ExitCode:
        self.end_thoughts()
        self.end_line()
        category = f" ({info.category})" if info.category else ""
        print(f"error: {info.code}: {info.message}{category}", file=self.err, flush=True)
        return exit_code


def _summary(done: DoneEvent) -> str:
    parts = []
    if done.usage is not None:
        thinking = done.usage.reasoning_tokens
        extra = f" ({thinking} thinking)" if thinking else ""
        parts.append(f"{done.usage.output_tokens} tokens{extra}")
    if done.ttft_ms is not None:
        parts.append(f"first token {done.ttft_ms:.0f} ms")
    parts.append(f"{done.duration_ms / 1000:.2f} s")
    return ", ".join(parts)
