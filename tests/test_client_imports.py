"""The client-only install: the client and `gemini-sse ask` never need the server's stack."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

from .servers import RunningServer

SERVER_MODULES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "langchain_core",
    "pydantic_settings",
)


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)


def test_importing_the_client_loads_no_server_dependency() -> None:
    """In a fresh interpreter, `import gemini_sse, gemini_sse.client` loads none of them."""
    result = run_python(
        "import json, sys, gemini_sse, gemini_sse.client, gemini_sse._cli\n"
        f"print(json.dumps([m for m in {[*SERVER_MODULES, 'gemini_sse.server']!r}"
        " if m in sys.modules]))"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_ask_works_when_the_server_packages_are_missing(
    serve: Callable[..., RunningServer],
) -> None:
    """`gemini-sse ask` streams an answer with fastapi, langchain & co. made unimportable."""
    running = serve()
    result = run_python(
        "import sys\n"
        # A None entry in sys.modules makes `import name` raise ImportError.
        f"sys.modules.update(dict.fromkeys({SERVER_MODULES!r}))\n"
        "from gemini_sse._cli import main\n"
        f"sys.exit(main(['ask', '--url', {running.url!r}, 'hi']))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
