"""Log lines: one JSON object a line for collectors, plain text for a person at a terminal.

What a line carries beyond its message comes from the record's `extra` fields (the
gateway logs one `stream finished` line per generation with its request id, stream id,
key id, model, outcome, timings and counts). The request id of the request being served
is added to every line logged while serving it, through a context variable that tasks
started by the request inherit.

Prompts and answers are private: they are logged only with `GEMINI_SSE_LOG_CONTENT=true`.
uvicorn's access log would otherwise carry them in `GET /v1/stream?message=...`, so
query-string values are masked there too.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from .settings import Settings

request_id_var: ContextVar[str | None] = ContextVar("gemini_sse_request_id", default=None)

# Everything a LogRecord has of its own, and uvicorn's ANSI-coloured copy of its message;
# the rest came in `extra`.
_RECORD_FIELDS = frozenset(
    (
        *logging.LogRecord("", 0, "", 0, "", (), None).__dict__,
        "message",
        "asctime",
        "taskName",
        "color_message",
    )
)
_ACCESS = "uvicorn.access"


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields given in `extra=`, plus the request id of the request being served."""
    fields = {k: v for k, v in record.__dict__.items() if k not in _RECORD_FIELDS}
    if "request_id" not in fields and (request_id := request_id_var.get()) is not None:
        fields["request_id"] = request_id
    return fields


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ...extra fields}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(extras(record))
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...` for people."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = extras(record)
        if not fields:
            return text
        pairs = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        head, newline, rest = text.partition("\n")  # a traceback goes after the fields
        return f"{head} {pairs}{newline}{rest}"


class AccessLog(logging.Filter):
    """uvicorn's access lines, with query values masked (unless content is logged) and,
    for JSON, the request's parts as fields."""

    def __init__(self, *, content: bool, fields: bool) -> None:
        super().__init__()
        self.content = content
        self.fields = fields

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != _ACCESS or not isinstance(record.args, tuple):
            return True
        if len(record.args) != 5:  # (client, method, path, http version, status)
            return True
        client, method, path, version, status = record.args
        path = mask_stream_id(str(path))
        if not self.content:
            path = mask_query(path)
        record.args = (client, method, path, version, status)
        if self.fields:
            record.client = client
            record.method = method
            record.path = path
            record.status = status
        return True


_STREAM_PATH = re.compile(r"^(/v1/streams/[A-Za-z0-9_-]{6})[A-Za-z0-9_-]+")


def mask_stream_id(path: str) -> str:
    """`/v1/streams/Yk3xQ9…/events` keeps 6 characters of the id: enough to correlate
    lines, far too few to read the stream (the whole id is the capability to read it)."""
    return _STREAM_PATH.sub(r"\1…", path)


def mask_query(path: str) -> str:
    """`/v1/stream?message=hello&model=x` -> `/v1/stream?message=*&model=*`."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    names = [part.partition("=")[0] for part in query.split("&") if part]
    return base + "?" + "&".join(f"{name}=*" for name in names)


def wants_json(settings: Settings, stream: TextIO) -> bool:
    if settings.log_format != "auto":
        return settings.log_format == "json"
    return not (hasattr(stream, "isatty") and stream.isatty())


def log_handler(settings: Settings, stream: TextIO) -> logging.Handler:
    """A handler writing to `stream` in the format the settings ask for."""
    json_lines = wants_json(settings, stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler.addFilter(AccessLog(content=settings.log_content, fields=json_lines))
    return handler


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Send every logger (uvicorn's too) to one handler on stderr, in the chosen format."""
    handler = log_handler(settings, stream or sys.stderr)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
