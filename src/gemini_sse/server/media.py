"""Images and files in requests: checked once, before any model is called.

A media part names its bytes by URL: a `data:` URL carries them (base64), an `https://`
or `gs://` URL is fetched by the provider, never by the gateway (a gateway that fetched
URLs for its callers would be a server-side request forgery waiting to happen, and a
stall of the event loop). What is checked here: the scheme, the type (`media_types`),
the size of inline data (`max_media_bytes`), and the count (`max_media_parts`).

`data:` URLs: https://www.rfc-editor.org/rfc/rfc2397
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from dataclasses import dataclass
from urllib.parse import urlsplit

from .._models import MediaPart

# The types a `type: image` part may have whatever `media_types` allows besides.
_IMAGE_PREFIX = "image/"


@dataclass(frozen=True, slots=True)
class Media:
    """One checked media part: inline bytes (`data`) or a URL for the provider."""

    kind: str  # "image" or "file"
    mime_type: str
    data: bytes | None = None
    url: str | None = None

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else 0

    def data_url(self) -> str:
        """The part as a URL again: `data:` for inline bytes, else its own."""
        if self.data is None:
            assert self.url is not None
            return self.url
        return f"data:{self.mime_type};base64,{base64.b64encode(self.data).decode()}"


class MediaError(ValueError):
    """A media part the gateway does not accept; `too_large` says which status."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def check_media(part: MediaPart, *, types: list[str], schemes: list[str], max_bytes: int) -> Media:
    """Check one part against the limits and decode its inline data."""
    url = part.url
    scheme = urlsplit(url).scheme.lower() if ":" in url else ""
    if scheme == "data":
        mime_type, data = _decode_data_url(url, max_bytes)
        if part.mime_type is not None and part.mime_type != mime_type:
            raise MediaError(f"`mime_type` {part.mime_type!r} contradicts the data URL's.")
        media = Media(kind=part.type, mime_type=mime_type, data=data)
    elif scheme in schemes:
        if not urlsplit(url).netloc:
            raise MediaError(f"A media URL needs a host: {url[:80]!r}.")
        mime_type = part.mime_type or mimetypes.guess_type(urlsplit(url).path)[0] or ""
        if not mime_type:
            raise MediaError("Say the `mime_type` of a media URL whose name does not show it.")
        media = Media(kind=part.type, mime_type=mime_type, url=url)
    else:
        allowed = ", ".join(["data", *schemes])
        raise MediaError(f"A media URL must use one of these schemes: {allowed}.")
    if media.mime_type not in types:
        raise MediaError(f"Media of type {media.mime_type!r} is not accepted here.")
    if part.type == "image" and not media.mime_type.startswith(_IMAGE_PREFIX):
        raise MediaError(f"An `image` part cannot be {media.mime_type!r}; send it as `file`.")
    return media


def _decode_data_url(url: str, max_bytes: int) -> tuple[str, bytes]:
    header, comma, payload = url[len("data:") :].partition(",")
    params = header.split(";")
    if not comma or params[-1].lower() != "base64" or not params[0]:
        raise MediaError("A media `data:` URL must be `data:<type>;base64,<data>`.")
    # Checked before decoding: base64 takes 4 characters for 3 bytes.
    if len(payload) // 4 * 3 > max_bytes + 2:
        raise MediaError(f"Media may be at most {max_bytes} bytes each.", too_large=True)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise MediaError("A media `data:` URL does not hold valid base64.") from None
    if len(data) > max_bytes:
        raise MediaError(f"Media may be at most {max_bytes} bytes each.", too_large=True)
    return params[0].lower(), data
