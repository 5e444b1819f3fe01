"""The web page: a chat that reads resumable streams with the browser's own `EventSource`.

`GET /` is the page and `GET /static/{name}` its scripts and style sheet, read from the
package (`server/static/`), so the page works offline and ships in the wheel. No build
step, no CDN.

Headers, and why:

- A strict Content-Security-Policy: scripts and styles only from this origin (never
  inline), network only to this origin, and Trusted Types required, so the browser itself
  refuses any `innerHTML` of a string: model output can only ever become text.
- `Cache-Control: no-cache` with an `ETag`: the browser may keep a copy but asks every
  time (a cheap 304), so after an upgrade the page and its script never come from two
  versions of the gateway.
- Like the events URL, these routes need no API key: the page is public and asks for the
  key itself.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from fastapi import APIRouter, Request, Response

from .._exceptions import RequestRejected
from .._models import ErrorCode

router = APIRouter(include_in_schema=False)

# The only files served: a fixed list, so no path from a request ever reaches the disk.
_MEDIA_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "markdown.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        # `data:` for the empty favicon, which saves a request that would 404.
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)

_COMMON_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

_PAGE_HEADERS = {
    **_COMMON_HEADERS,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def _asset(name: str) -> tuple[bytes, str]:
    """A packaged file and its entity tag.

    Read on every request (four small files, on a worker thread): a file edited while the
    gateway runs is served as it is now, under a new entity tag, never a stale copy.
    """
    body = resources.files("gemini_sse.server").joinpath("static", name).read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _respond(request: Request, name: str, headers: dict[str, str]) -> Response:
    body, etag = _asset(name)
    headers = {**headers, "ETag": etag}
    if _matches(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=_MEDIA_TYPES[name], headers=headers)


def _matches(if_none_match: str, etag: str) -> bool:
    """`If-None-Match` against our tag: weak comparison, `*` matches (RFC 9110, 13.1.2)."""
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


# Plain `def` routes: FastAPI runs them on a worker thread, so file reads never block the
# event loop that carries the streams.


@router.get("/")
def page(request: Request) -> Response:
    """The chat page."""
    return _respond(request, "index.html", _PAGE_HEADERS)


@router.get("/static/{name}")
def asset(name: str, request: Request) -> Response:
    """The page's script or style sheet; 404 for anything else."""
    if name not in _MEDIA_TYPES or name == "index.html":
        raise RequestRejected.of(404, ErrorCode.NOT_FOUND, f"No asset {name!r}.")
    return _respond(request, name, _COMMON_HEADERS)
