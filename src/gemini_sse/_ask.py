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
from ._models import UPSTREAM_CODES, DoneEvent, ErrorEvent, Event, TokenEvent
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
  On a terminal the answer is printed as it arrives, followed on stderr by a line with
  the output tokens, the time to the first token and the duration. --json prints each
  event as one JSON object per line; --raw prints the event stream exactly as received.

exit codes:
  0    the answer arrived in full
  1    the model failed (rate_limited, upstream_unavailable, bad_request, upstream_auth,
       timeout, content_blocked, upstream_disconnected)
  2    usage error
  3    the gateway refused the request or failed (overloaded, shutting_down,
       invalid_request, model_not_allowed, internal, ...)
  4    no connection, a timeout, or a broken stream
  130  interrupted (Ctrl-C): the stream is closed and the gateway stops the model

Errors are printed on stderr as `error: <code>: <message>`.
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
                    return printer.error(str(event.code), event.message, _exit_code(event.code))
    except KeyboardInterrupt:
        printer.end_line()
        return ExitCode.INTERRUPTED
    except GeminiSSEError as exc:
        if isinstance(exc, StreamError):  # --raw only: the others get the event
            return printer.error(exc.code, exc.message, _exit_code(exc.code))
        if isinstance(exc, RequestRejected):
            return printer.error(exc.code, exc.message, ExitCode.GATEWAY)
        return printer.error(_snake(type(exc).__name__), str(exc), ExitCode.CONNECTION)
    return ExitCode.OK


def _exit_code(code: str) -> ExitCode:
    return ExitCode.UPSTREAM if code in UPSTREAM_CODES else ExitCode.GATEWAY


def _snake(name: str) -> str:
    """`ConnectTimeout` -> `connect_timeout`: client-side errors' codes."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class _Printer:
    """The answer on `out` as it arrives; the summary and errors on `err`."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self.mid_line = False  # the answer so far does not end with a newline
        # ANSI only for a terminal, and never under NO_COLOR (https://no-color.org).
        self.dim = err.isatty() and not os.environ.get("NO_COLOR")

    def show(self, event: Event) -> None:
        if isinstance(event, TokenEvent):
            self.out.write(event.text)
            self.out.flush()
            self.mid_line = not event.text.endswith("\n")
        elif isinstance(event, DoneEvent):
            self.end_line()
            self.note(_summary(event))

    def end_line(self) -> None:
        if self.mid_line:
            self.out.write("\n")
            self.out.flush()
            self.mid_line = False

    def note(self, line: str) -> None:
        print(f"\x1b[2m{line}\x1b[0m" if self.dim else line, file=self.err, flush=True)

    def error(self, code: str, message: str, exit_code: ExitCode) -> ExitCode:
        self.end_line()
        print(f"error: {code}: {message}", file=self.err, flush=True)
        return exit_code


def _summary(done: DoneEvent) -> str:
    parts = []
    if done.usage is not None:
        parts.append(f"{done.usage.output_tokens} tokens")
    if done.ttft_ms is not None:
        parts.append(f"first token {done.ttft_ms:.0f} ms")
    parts.append(f"{done.duration_ms / 1000:.2f} s")
    return ", ".join(parts)
