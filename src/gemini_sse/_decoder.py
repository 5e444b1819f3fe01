"""An incremental, I/O-free decoder for `text/event-stream` bytes.

Bytes go in, in chunks of any size split anywhere; whole events come out. The rules are
those of WHATWG HTML "9.2.6 Interpreting an event stream", cited inline as [spec]:
https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

Where this module leaves the spec, it says so where it happens:
- `ServerSentEvent.retry` reports a `retry` field of the event's own block, so a caller
  that only sees events still learns the reconnection time (the spec only updates the
  event source; `SSEDecoder.retry` does that here).
- After `close()` the decoder is ready for the next stream, and seeds that stream's last
  event ID buffer with `last_event_id`, as browsers do on reconnection.
- A `retry` value too long for Python's int parser (over 4300 digits) is ignored.
- The spec sets no size limit; we do, as h11 bounds an incomplete HTTP event: a line, or
  the `data` lines of one event, longer than `max_event_size` characters raise
  `EventTooLargeError`, so that a stream that never ends a line (or an event) cannot
  take all memory. Sizes count characters, which for the gateway's ASCII-only JSON are
  bytes; the check costs a few integer operations per chunk and per `data` line.
"""

from __future__ import annotations

import codecs
import sys
from dataclasses import dataclass
from typing import NoReturn

from ._exceptions import EventTooLargeError

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "SSEDecoder", "ServerSentEvent", "decode"]

#: The longest line, and the most `data` of one event, a decoder holds by default. A
#: token event carries one model chunk, a few dozen characters; `done` and `error` are
#: smaller still. The largest event a gateway can send is a whole answer in one chunk
#: (a model that does not stream): 65,536 output tokens (Gemini 2.5's most) of non-ASCII
#: text, each character JSON-escaped to 6 bytes, is at most about 1.5 MB. 4 MiB leaves
#: room to spare and still bounds what a broken or hostile stream can make us hold.
DEFAULT_MAX_EVENT_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event, as a `MessageEvent` would carry it."""

    event: str = "message"  # the event type; "message" when the block named none
    data: str = ""
    id: str = ""  # the last event ID in force when the event was dispatched
    retry: int | None = None  # reconnection time (ms) set by this event's own block


def _utf8_decoder() -> codecs.IncrementalDecoder:
    # [spec] "Streams must be decoded using the UTF-8 decode algorithm": always UTF-8,
    # invalid bytes become U+FFFD, and one leading BOM (EF BB BF) is dropped. Python's
    # "utf-8-sig" is exactly that algorithm, and waits for a BOM split across chunks.
    return codecs.getincrementaldecoder("utf-8-sig")(errors="replace")


class SSEDecoder:
    """Turn the bytes of one event stream into `ServerSentEvent`s, chunk by chunk.

    `last_event_id` and `retry` are the event source's state: they persist across
    events, and across streams when one decoder reads every reconnection.

    A line longer than `max_event_size` characters, or an event whose `data` lines (as
    received, field name included) add up to more, raises `EventTooLargeError` wherever
    the chunks split; None turns the limit off. Events completed earlier in the same
    chunk are lost with the stream, and the decoder drops what it held.
    """

    def __init__(self, *, max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE) -> None:
        # Compared on the hot path: an int, never None.
        self._limit = sys.maxsize if max_event_size is None else max_event_size
        self.last_event_id = ""
        self.retry: int | None = None
        self._start_stream()

    def _start_stream(self) -> None:
        self._utf8 = _utf8_decoder()
        self._pending: list[str] = []  # pieces of a line whose end has not arrived
        self._pending_size = 0
        self._after_cr = False  # the last text seen ended in CR: a leading LF is its CRLF
        # [spec] "a data buffer, an event type buffer, and a last event ID buffer";
        # the data buffer is kept as its lines, so "empty" means no `data` field seen.
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""
        self._block_retry: int | None = None
        self._id_buffer = self.last_event_id

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode the next chunk and return the events it completes, in order."""
        text = self._utf8.decode(chunk)
        if not text:
            return []
        if self._after_cr:
            self._after_cr = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return []
        # [spec] Lines end with CRLF, a lone LF or a lone CR, and nothing else: not
        # U+0085, U+2028 or U+2029, so no str.splitlines(). A CR is a line end at once;
        # a following LF, even in the next chunk, belongs to it.
        if "\r" in text:
            self._after_cr = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        # Only a chunk longer than the limit can hold a whole line that is; the usual
        # chunk (a few KiB) skips the scan.
        if len(text) > self._limit and max(map(len, lines)) > self._limit:
            self._too_large("A line of the event stream")
        if len(lines) == 1:
            self._pending.append(text)
            self._pending_size += len(text)
            if self._pending_size > self._limit:
                self._too_large("A line of the event stream")
            return []
        if self._pending:
            self._pending.append(lines[0])
            lines[0] = "".join(self._pending)
            self._pending = []
            self._pending_size = 0
            if len(lines[0]) > self._limit:
                self._too_large("A line of the event stream")
        tail = lines.pop()
        if tail:
            self._pending.append(tail)
            self._pending_size = len(tail)
        return self._process(lines)

    def close(self) -> list[ServerSentEvent]:
        """End the stream; return what it completes, which by the spec is always nothing.

        [spec] "Once the end of the file is reached, any pending data must be discarded":
        an unfinished line and an event without its blank line are dropped, not
        dispatched. The decoder is then ready for the next stream.
        """
        self._start_stream()
        return []

    def _too_large(self, what: str) -> NoReturn:
        # The stream cannot go on past a cut line or event: drop what it made us hold.
        self._start_stream()
        raise EventTooLargeError(
            f"{what} is longer than max_event_size ({self._limit:,} characters)."
        )

    def _process(self, lines: list[str]) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        data = self._data
        size = self._data_size
        limit = self._limit
        for line in lines:
            if not line:
                # [spec] Empty line: dispatch. The last event ID is set even if the
                # block carried no data and so dispatches nothing.
                self.last_event_id = self._id_buffer
                if data:
                    # [spec] Each `data` appended value + LF and one trailing LF is
                    # removed: that is the values joined by LF. No type means "message".
                    event_type = self._event or "message"
                    event = ServerSentEvent(
                        event_type, "\n".join(data), self._id_buffer, self._block_retry
                    )
                    events.append(event)
                    data = self._data = []
                    size = 0
                self._event = ""
                self._block_retry = None
                continue
            # [spec] A line starting with a colon is a comment; otherwise the field name
            # is up to the first colon (or the whole line), and the value after it loses
            # one leading space.
            name, _, value = line.partition(":")
            if value[:1] == " ":
                value = value[1:]
            if name == "data":
                data.append(value)
                size += len(line)
                if size > limit:
                    self._too_large("The data of one event")
            elif name == "event":
                self._event = value
            elif name == "id":
                # [spec] An id containing U+0000 is ignored; an empty one resets it.
                if "\0" not in value:
                    self._id_buffer = value
            elif name == "retry":
                # [spec] Only ASCII digits count (str.isdigit alone accepts "٣").
                if value.isascii() and value.isdigit():
                    try:
                        self.retry = self._block_retry = int(value)
                    except ValueError:
                        pass  # over Python's 4300-digit int limit: see module docstring
            # [spec] Comments (empty name) and any other field are ignored.
        self._data_size = size
        return events


def decode(
    data: bytes, *, max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE
) -> list[ServerSentEvent]:
    """Decode a complete event stream held in memory."""
    decoder = SSEDecoder(max_event_size=max_event_size)
    return decoder.feed(data) + decoder.close()
