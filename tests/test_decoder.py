"""The SSE decoder against WHATWG HTML 9.2.6 "Interpreting an event stream".

The table of cases follows the behaviours checked by web-platform-tests `eventsource/`
(format-*), plus line-ending and chunking cases of our own. Every case is fed whole, one
byte at a time, and split in two at every offset: the decoder must not care where the
network cut the stream.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gemini_sse import EventTooLargeError, ProtocolError
from gemini_sse._decoder import DEFAULT_MAX_EVENT_SIZE, ServerSentEvent, SSEDecoder, decode

Outcome = tuple[list[ServerSentEvent], str, int | None]

COMMENT = ":" + "x" * 2048  # WPT format-comments uses long comment lines too

CASES = [
    # --- web-platform-tests eventsource/format-* behaviours -------------------------
    pytest.param(
        "\ufeffdata:1\n\n\ufeffdata:2\n\ndata:3\n\n",
        [ServerSentEvent(data="1"), ServerSentEvent(data="3")],
        "",
        None,
        id="format-bom",
    ),
    pytest.param(
        "\ufeff\ufeffdata:1\n\ndata:2\n\ndata:3\n\n",
        [ServerSentEvent(data="2"), ServerSentEvent(data="3")],
        "",
        None,
        id="format-bom-2",
    ),
    pytest.param(
        f"data:1\r:\0\n:\r\ndata:2\n{COMMENT}\rdata:3\n:data:fail\r{COMMENT}\ndata:4\n\n",
        [ServerSentEvent(data="1\n2\n3\n4")],
        "",
        None,
        id="format-comments",
    ),
    pytest.param(
        "retry:1000\ndata:test1\n\nid:test\ndata:test2",
        [ServerSentEvent(data="test1", retry=1000)],
        "",
        1000,
        id="format-data-before-final-empty-line",
    ),
    pytest.param(
        "data:\n\ndata\ndata\n\ndata:test\n\n",
        [ServerSentEvent(data=""), ServerSentEvent(data="\n"), ServerSentEvent(data="test")],
        "",
        None,
        id="format-field-data",
    ),
    pytest.param(
        "event:test\ndata:x\n\ndata:x\n\n",
        [ServerSentEvent(event="test", data="x"), ServerSentEvent(data="x")],
        "",
        None,
        id="format-field-event",
    ),
    pytest.param(
        "event: \ndata:data\n\n",
        [ServerSentEvent(data="data")],
        "",
        None,
        id="format-field-event-empty",
    ),
    pytest.param(
        "id: …\nretry: 200\ndata: hello\n\n",
        [ServerSentEvent(data="hello", id="…", retry=200)],
        "…",
        200,
        id="format-field-id",
    ),
    pytest.param(
        "id: …\ndata: hello\n\ndata: …\n\n",
        [ServerSentEvent(data="hello", id="…"), ServerSentEvent(data="…", id="…")],
        "…",
        None,
        id="format-field-id-2",
    ),
    pytest.param(
        "id: \0\0\ndata: hello\n\nid: 1\ndata: a\n\nid: x\0y\ndata: b\n\n",
        [
            ServerSentEvent(data="hello"),
            ServerSentEvent(data="a", id="1"),
            ServerSentEvent(data="b", id="1"),
        ],
        "1",
        None,
        id="format-field-id-null",
    ),
    pytest.param(
        "data:\0\ndata:  2\rData:1\ndata\0:2\ndata:1\r\0data:4\nda-ta:3\rdata_5\ndata:3\r"
        "data:\r\n data:32\ndata:4\n\n",
        [ServerSentEvent(data="\0\n 2\n1\n3\n\n4")],
        "",
        None,
        id="format-field-parsing",
    ),
    pytest.param(
        "retry:03000\ndata:x\n\n",
        [ServerSentEvent(data="x", retry=3000)],
        "",
        3000,
        id="format-field-retry",
    ),
    pytest.param(
        "retry:2000\nretry:1000x\ndata:x\n\n",
        [ServerSentEvent(data="x", retry=2000)],
        "",
        2000,
        id="format-field-retry-bogus",
    ),
    pytest.param(
        "retry: -1\nretry: 1.5\nretry: 15 \nretry: \u0663\nretry:\ndata:x\n\n",
        [ServerSentEvent(data="x")],
        "",
        None,
        id="retry-not-ascii-digits",
    ),
    pytest.param(
        "retry\ndata:test\n\n",
        [ServerSentEvent(data="test")],
        "",
        None,
        id="format-field-retry-empty",
    ),
    pytest.param(
        "data:test\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:test\n\n",
        [ServerSentEvent(data="test\n\ntest")],
        "",
        None,
        id="format-field-unknown",
    ),
    pytest.param(
        "data:\ttest\rdata: \ndata:test\n\n",
        [ServerSentEvent(data="\ttest\n\ntest")],
        "",
        None,
        id="format-leading-space",
    ),
    pytest.param(
        "data:test\r\ndata\ndata:test\r\n\r\n",
        [ServerSentEvent(data="test\n\ntest")],
        "",
        None,
        id="format-newlines",
    ),
    pytest.param(
        "data:\0\n\n",
        [ServerSentEvent(data="\0")],
        "",
        None,
        id="format-null-character",
    ),
    pytest.param(
        "data:ok…\n\n",
        [ServerSentEvent(data="ok…")],
        "",
        None,
        id="format-utf-8",
    ),
    # --- line endings --------------------------------------------------------------
    pytest.param(
        "event: a\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n",
        [ServerSentEvent(event="a", data="1"), ServerSentEvent(data="2")],
        "",
        None,
        id="crlf",
    ),
    pytest.param(
        "data: 1\r\rdata: 2\r\r",
        [ServerSentEvent(data="1"), ServerSentEvent(data="2")],
        "",
        None,
        id="cr",
    ),
    pytest.param(
        "data: a\rdata: b\ndata: c\r\ndata: d\n\r\n\rdata: e\r\n\n",
        [ServerSentEvent(data="a\nb\nc\nd"), ServerSentEvent(data="e")],
        "",
        None,
        id="cr-lf-crlf-mixed",
    ),
    pytest.param(
        "data: a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\n\n",
        [ServerSentEvent(data="a\u2028b\u2029c\x85d\x0be\x0cf\x1cg")],
        "",
        None,
        id="unicode-line-separators-are-data",
    ),
    # --- fields and dispatch -------------------------------------------------------
    pytest.param(
        "data: one\ndata: two\ndata:\ndata: four\n\n",
        [ServerSentEvent(data="one\ntwo\n\nfour")],
        "",
        None,
        id="multi-line-data",
    ),
    pytest.param(
        "data:  x\ndata:y\ndata: a:b\n\n",
        [ServerSentEvent(data=" x\ny\na:b")],
        "",
        None,
        id="one-leading-space-stripped",
    ),
    pytest.param(
        "id: 7\n\ndata: x\n\n",
        [ServerSentEvent(data="x", id="7")],
        "7",
        None,
        id="id-only-block",
    ),
    pytest.param(
        "id: 1\ndata: a\n\nid\ndata: b\n\nid: 2\ndata: c\n\nid:\n\n",
        [
            ServerSentEvent(data="a", id="1"),
            ServerSentEvent(data="b"),
            ServerSentEvent(data="c", id="2"),
        ],
        "",
        None,
        id="empty-id-resets",
    ),
    pytest.param(
        "retry: 500\n\ndata: a\n\nretry: 100\ndata: b\n\n",
        [ServerSentEvent(data="a"), ServerSentEvent(data="b", retry=100)],
        "",
        100,
        id="retry-belongs-to-its-block",
    ),
    pytest.param(
        "event: ping\n\ndata: x\n\n",
        [ServerSentEvent(data="x")],
        "",
        None,
        id="event-type-reset-without-data",
    ),
    pytest.param(
        "data: a\n\nid: 9\ndata: b\n",
        [ServerSentEvent(data="a")],
        "",
        None,
        id="unfinished-event-discarded",
    ),
    pytest.param("", [], "", None, id="empty-stream"),
    pytest.param("\n\r\n\r:\n\n", [], "", None, id="only-blank-lines-and-comments"),
]


def _run(chunks: list[bytes]) -> Outcome:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    events += decoder.close()
    return events, decoder.last_event_id, decoder.retry


@pytest.mark.parametrize(("wire", "events", "last_event_id", "retry"), CASES)
def test_case_fed_whole(
    wire: str, events: list[ServerSentEvent], last_event_id: str, retry: int | None
) -> None:
    """A stream fed in one chunk gives the spec's events, last event ID and retry."""
    assert _run([wire.encode()]) == (events, last_event_id, retry)
    assert decode(wire.encode()) == events


@pytest.mark.parametrize(("wire", "events", "last_event_id", "retry"), CASES)
def test_case_fed_byte_by_byte(
    wire: str, events: list[ServerSentEvent], last_event_id: str, retry: int | None
) -> None:
    """A stream fed one byte at a time gives the same result as fed whole."""
    data = wire.encode()
    chunks = [data[i : i + 1] for i in range(len(data))]
    assert _run(chunks) == (events, last_event_id, retry)


@pytest.mark.parametrize(("wire", "events", "last_event_id", "retry"), CASES)
def test_case_fed_split_anywhere(
    wire: str, events: list[ServerSentEvent], last_event_id: str, retry: int | None
) -> None:
    """A stream cut in two at any byte offset gives the same result as fed whole."""
    data = wire.encode()
    for cut in range(len(data) + 1):
        outcome = _run([data[:cut], data[cut:]])
        assert outcome == (events, last_event_id, retry), f"cut at byte {cut}"


@pytest.mark.parametrize("char", ["é", "…", "😀"])
def test_multibyte_character_split_across_feeds(char: str) -> None:
    """A UTF-8 character cut anywhere inside its bytes still decodes to that character."""
    raw = char.encode()
    for cut in range(1, len(raw)):
        decoder = SSEDecoder()
        assert decoder.feed(b"data: " + raw[:cut]) == []
        assert decoder.feed(raw[cut:] + b"\n\n") == [ServerSentEvent(data=char)]


def test_invalid_utf8_becomes_replacement_character() -> None:
    """Bytes that are not UTF-8 decode to U+FFFD instead of raising."""
    events = decode(b"data: a\xffb\ndata: \xe2\x80\n\n")
    assert events == [ServerSentEvent(data="a\ufffdb\n\ufffd")]


def test_bom_split_across_feeds_is_stripped() -> None:
    """A leading BOM arriving one byte per chunk is still dropped."""
    decoder = SSEDecoder()
    chunks = [b"\xef", b"\xbb", b"\xbf", b"data: x\n\n"]
    assert [event for chunk in chunks for event in decoder.feed(chunk)] == [
        ServerSentEvent(data="x")
    ]


def test_crlf_split_across_feeds_is_one_line_ending() -> None:
    """A CR ending one chunk and an LF starting the next end only one line."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\r") == [ServerSentEvent(data="a\nb")]
    assert decoder.feed(b"\n") == []


def test_event_is_returned_as_soon_as_its_blank_line_arrives() -> None:
    """The decoder returns an event from the feed that completes it, not later."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\n") == [ServerSentEvent(data="a")]


def test_close_discards_unfinished_event() -> None:
    """At end of stream an event without its blank line is dropped and nothing returned."""
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 1\ndata: a\n") == []
    assert decoder.close() == []
    assert decoder.last_event_id == ""


def test_next_stream_keeps_last_event_id_and_retry() -> None:
    """After close, a new stream (a reconnection) starts clean but keeps ID and retry."""
    decoder = SSEDecoder()
    decoder.feed(b"id: 5\nretry: 300\ndata: a\n\ndata: cut")
    decoder.close()
    events = decoder.feed(b"\xef\xbb\xbfdata: b\n\n")
    assert events == [ServerSentEvent(data="b", id="5")]
    assert (decoder.last_event_id, decoder.retry) == ("5", 300)


def test_retry_too_long_for_int_is_ignored() -> None:
    """A retry value past Python's int-parsing digit limit is ignored, not raised."""
    decoder = SSEDecoder()
    assert decoder.feed(b"retry: " + b"9" * 5000 + b"\ndata: x\n\n") == [ServerSentEvent(data="x")]
    assert decoder.retry is None


def test_server_sent_event_defaults() -> None:
    """An event built without arguments is an empty "message" with no id or retry."""
    assert ServerSentEvent() == ServerSentEvent(event="message", data="", id="", retry=None)


# --- the size limit (ours, not the spec's: see the module docstring) ----------------------


def _splits(data: bytes) -> Iterator[list[bytes]]:
    """`data` whole, one byte at a time, and cut in two at every offset."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    for cut in range(len(data) + 1):
        yield [data[:cut], data[cut:]]


def _run_limited(chunks: list[bytes], limit: int) -> list[ServerSentEvent]:
    decoder = SSEDecoder(max_event_size=limit)
    return [event for chunk in chunks for event in decoder.feed(chunk)] + decoder.close()


@pytest.mark.parametrize(
    ("wire", "events"),
    [
        pytest.param("data: " + "x" * 10 + "\n\n", [ServerSentEvent(data="x" * 10)], id="line"),
        pytest.param("data: ab\ndata: cd\n\n", [ServerSentEvent(data="ab\ncd")], id="data"),
        pytest.param(
            "data: abcdefghij\n\ndata: abcdefghij\n\n",
            [ServerSentEvent(data="abcdefghij")] * 2,
            id="each-event-counted-alone",
        ),
        pytest.param(
            ":" + "x" * 15 + "\nevent: 123456789\nid: 12345678901\ndata: x\n\n",
            [ServerSentEvent(event="123456789", data="x", id="12345678901")],
            id="other-lines-not-counted-as-data",
        ),
        pytest.param("data: x\r\n\r\n" * 3, [ServerSentEvent(data="x")] * 3, id="crlf"),
    ],
)
def test_lines_and_events_at_the_limit_pass(wire: str, events: list[ServerSentEvent]) -> None:
    """A line of exactly `max_event_size` characters, or data adding up to it, is decoded."""
    for chunks in _splits(wire.encode()):
        assert _run_limited(chunks, 16) == events, chunks


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param("data: " + "x" * 11 + "\n\n", id="data-line"),
        pytest.param(":" + "x" * 16 + "\ndata: x\n\n", id="comment-line"),
        pytest.param("event: " + "x" * 10 + "\ndata: x\n\n", id="event-line"),
        pytest.param("data: " + "x" * 40, id="line-without-end"),
        pytest.param("data: ab\ndata: cde\n\n", id="short-lines-long-data"),
        pytest.param("data: abcdefgh\n" * 8, id="event-without-end"),
        pytest.param("data\n" * 5, id="empty-data-lines"),
        pytest.param("data: a\n\n" + "data: " + "x" * 11 + "\r\n\r\n", id="second-event"),
    ],
)
def test_a_line_or_event_over_the_limit_raises_wherever_the_chunks_split(wire: str) -> None:
    """Too long a line, or too much data in one event, raises however the bytes arrive."""
    for chunks in _splits(wire.encode()):
        with pytest.raises(EventTooLargeError, match=r"max_event_size \(16 characters\)"):
            _run_limited(chunks, 16)


def test_events_before_the_oversized_one_are_returned_from_earlier_chunks() -> None:
    """What earlier chunks completed reaches the caller; only the oversized event is lost."""
    decoder = SSEDecoder(max_event_size=16)
    assert decoder.feed(b"id: 1\ndata: a\n\n") == [ServerSentEvent(data="a", id="1")]
    with pytest.raises(EventTooLargeError) as caught:
        decoder.feed(b"data: " + b"x" * 100)
    assert isinstance(caught.value, ProtocolError)
    assert (caught.value.code, caught.value.retryable) == ("event_too_large_error", False)


def test_after_the_error_the_decoder_holds_nothing_of_the_cut_stream() -> None:
    """The decoder drops the oversized line; a next stream decodes cleanly, same last ID."""
    decoder = SSEDecoder(max_event_size=16)
    decoder.feed(b"id: 7\ndata: a\n\ndata: b\n")
    with pytest.raises(EventTooLargeError):
        decoder.feed(b"data: " + b"x" * 100)
    assert decoder.feed(b"data: c\n\n") == [ServerSentEvent(data="c", id="7")]


def test_the_default_limit_is_4_mib_and_none_turns_it_off() -> None:
    """By default a line over 4 MiB raises; with `max_event_size=None` it is decoded."""
    assert DEFAULT_MAX_EVENT_SIZE == 4 * 1024 * 1024
    at_limit = b"data: " + b"x" * (DEFAULT_MAX_EVENT_SIZE - 6) + b"\n\n"
    assert decode(at_limit)[0].data == "x" * (DEFAULT_MAX_EVENT_SIZE - 6)
    over = b"data: " + b"x" * DEFAULT_MAX_EVENT_SIZE + b"\n\n"
    with pytest.raises(EventTooLargeError):
        decode(over)
    assert decode(over, max_event_size=None) == [ServerSentEvent(data="x" * DEFAULT_MAX_EVENT_SIZE)]
