"""The gemini-sse client: stream a gateway's answer as typed events.

    from gemini_sse.client import Client

    with Client("http://127.0.0.1:8000") as client:
        for text in client.stream_text("What is baseball?"):
            print(text, end="", flush=True)

Needs only httpx and pydantic: the gateway's dependencies are never imported.
"""

from . import *  # noqa: F403 - the package's own surface, nothing else
from . import __all__ as _package_all

__all__ = list(_package_all)
