"""The gateway exactly as `gemini-sse serve` runs it, with the event loop and HTTP parser
chosen on the command line (to measure both before picking `serve()`'s default).

    python -m bench.gateway --port 8000 --loop asyncio --http h11
"""

from __future__ import annotations

from gemini_sse.server.serve import serve
from gemini_sse.server.settings import Settings

from ._serving import server_arguments

if __name__ == "__main__":
    args = server_arguments(__doc__ or "")
    serve(Settings(port=args.port, host="127.0.0.1", loop=args.loop, http=args.http))
