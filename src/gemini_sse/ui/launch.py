"""`gemini-sse ui`: start the Streamlit chat page with `streamlit run`.

On POSIX this process becomes `streamlit run` (exec), so signals reach Streamlit directly.
By default it listens on 127.0.0.1 only, headless (no browser is opened and no first-run
e-mail prompt waits on stdin) and without Streamlit's usage statistics, so nothing leaves
the machine. Arguments this command does not know are passed on to `streamlit run`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from ..client import DEFAULT_URL

APP = Path(__file__).with_name("streamlit_app.py")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gemini-sse ui",
        description="Open a chat page (Streamlit) that streams answers from a gateway.",
        epilog="Other options go to `streamlit run`, e.g. --theme.base dark.",
    )
    parser.add_argument("--url", help=f"the gateway (default: $GEMINI_SSE_URL, else {DEFAULT_URL})")
    parser.add_argument("--host", default="127.0.0.1", help="address the page listens on")
    parser.add_argument("--port", type=int, default=8501, help="port the page listens on")
    return parser


def command(argv: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The `streamlit run` command line and the environment for it."""
    args, rest = build_parser().parse_known_args(argv)
    env = dict(os.environ)
    if args.url:
        env["GEMINI_SSE_URL"] = args.url
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        args.host,
        "--server.port",
        str(args.port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        *rest,
    ]
    return cmd, env


def main(argv: list[str] | None = None) -> int:
    """Become `streamlit run` (on POSIX the process is replaced); 1 if Streamlit is missing."""
    cmd, env = command(argv)
    if importlib.util.find_spec("streamlit") is None:
        print("gemini-sse ui needs Streamlit: pip install 'gemini-sse[ui]'", file=sys.stderr)
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        # One process: a service manager's SIGTERM (or a closed terminal's SIGHUP) reaches
        # Streamlit itself, and no orphan is left behind as with a child process.
        os.execve(cmd[0], cmd, env)
    with subprocess.Popen(cmd, env=env) as process:
        try:
            return process.wait()
        except KeyboardInterrupt:
            # The console sent Ctrl+C to Streamlit as well: let it shut down cleanly.
            return process.wait() or 130
