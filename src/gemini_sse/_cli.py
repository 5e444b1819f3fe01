"""The `gemini-sse` command: `serve` runs the gateway, `ask` streams one answer from it,
`ui` opens the Streamlit chat page."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import _ask


def _serve(args: argparse.Namespace) -> int:
    try:
        from .server.serve import serve
        from .server.settings import Settings
    except ImportError as exc:  # the client-only install
        print(
            f"gemini-sse serve needs the server extra: pip install 'gemini-sse[server]' ({exc})",
            file=sys.stderr,
        )
        return 2
    given = (
        ("host", args.host),
        ("port", args.port),
        ("workers", args.workers),
        ("loop", args.loop),
        ("http", args.http),
    )
    overrides = {k: v for k, v in given if v is not None}
    serve(Settings(**overrides))
    return 0


def _ui(argv: Sequence[str]) -> int:
    from .ui.launch import main as launch

    return launch(list(argv))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gemini-sse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway (settings from GEMINI_SSE_*)")
    serve.add_argument("--host", help="address to listen on (GEMINI_SSE_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (GEMINI_SSE_PORT)")
    serve.add_argument(
        "--workers", type=int, help="processes serving the port (GEMINI_SSE_WORKERS)"
    )
    serve.add_argument("--loop", choices=["asyncio", "uvloop"], help="event loop (GEMINI_SSE_LOOP)")
    serve.add_argument("--http", choices=["h11", "httptools"], help="HTTP parser (GEMINI_SSE_HTTP)")
    serve.set_defaults(run=_serve)
    ask = commands.add_parser(
        "ask",
        help="stream one answer from a gateway",
        description="Ask a gateway one question and print the answer as it streams.",
        epilog=_ask.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _ask.add_arguments(ask)
    ask.set_defaults(run=_ask.run)
    # `ui` passes its arguments on to `streamlit run`: `main` hands them over unparsed.
    commands.add_parser(
        "ui", help="open the Streamlit chat page (needs gemini-sse[ui]); see `gemini-sse ui -h`"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["ui"]:
        return _ui(argv[1:])
    args = build_parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
