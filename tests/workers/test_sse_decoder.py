"""The worker's reader of upstream server-sent events (workers/providers/sse.py):
framing, line endings and chunk boundaries anywhere in a line."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from workers.providers.sse import SseDecoder


@pytest.fixture(autouse=True)
def clean_state() -> None:
    """Overrides tests/conftest.py's: nothing here touches PostgreSQL or Redis, and
    truncating every table before each test would be most of this module's run time."""


def events(*chunks: bytes) -> list[tuple[str | None, bytes]]:
    """The pairs read from a body that arrives in exactly these chunks."""

    decoder = SseDecoder()
    found = [event for chunk in chunks for event in decoder.feed(chunk)]
    return found + decoder.end()


def split_everywhere(body: bytes) -> Iterable[tuple[bytes, ...]]:
    """The body cut in two at every position, and cut into single bytes."""
    for cut in range(len(body) + 1):
        yield body[:cut], body[cut:]
    yield tuple(body[i : i + 1] for i in range(len(body)))


OPENAI_BODY = (
    b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'
    b": keep-alive\n\n"
    b'data: {"choices":[{"delta":{"content":"lo \xc3\xa9"}}]}\n\n'
    b"data: [DONE]\n\n"
)
OPENAI_EVENTS = [
    (None, b'{"choices":[{"delta":{"content":"Hel"}}]}'),
    (None, b'{"choices":[{"delta":{"content":"lo \xc3\xa9"}}]}'),
    (None, b"[DONE]"),
]

ANTHROPIC_BODY = (
    b"event: message_start\n"
    b'data: {"type":"message_start"}\n\n'
    b"event: ping\n"
    b'data: {"type": "ping"}\n\n'
    b'data: {"type":"content_block_delta"}\n\n'
)
ANTHROPIC_EVENTS = [
    ("message_start", b'{"type":"message_start"}'),
    ("ping", b'{"type": "ping"}'),
    # The event name ends with its event: the next one without `event:` has none.
    (None, b'{"type":"content_block_delta"}'),
]


def test_openai_data_lines() -> None:
    assert events(OPENAI_BODY) == OPENAI_EVENTS


def test_named_events() -> None:
    assert events(ANTHROPIC_BODY) == ANTHROPIC_EVENTS


def test_data_lines_of_one_event_are_joined_with_line_feeds() -> None:
    assert events(b"data: first\ndata: second\ndata:\ndata: fourth\n\n") == [
        (None, b"first\nsecond\n\nfourth")
    ]


def test_comments_ids_and_retries_are_not_data() -> None:
    body = b": ping\n\nid: 7\nretry: 1000\ndata: x\n\n:\n\n"
    assert events(body) == [(None, b"x")]


def test_an_event_with_no_data_is_not_dispatched() -> None:
    assert events(b"event: lonely\n\nevent: named\ndata: y\n\n") == [("named", b"y")]


def test_the_space_after_the_colon_is_optional() -> None:
    assert events(b"data:{}\n\nevent:e\ndata:1\n\n") == [(None, b"{}"), ("e", b"1")]


@pytest.mark.parametrize(("newline", "name"), [(b"\r\n", "crlf"), (b"\r", "cr"), (b"\n", "lf")])
def test_every_line_ending_of_the_spec(newline: bytes, name: str) -> None:
    body = ANTHROPIC_BODY.replace(b"\n", newline)
    assert events(body) == ANTHROPIC_EVENTS, name


@pytest.mark.parametrize("body", [b"", b"\n\n", b": only a comment\n\n", b"event: x\n\n"])
def test_a_body_without_data_has_no_events(body: bytes) -> None:
    assert events(body) == []


@pytest.mark.parametrize(
    "tail", [b"data: last", b"data: last\n", b"data: last\r\n", b"data: last\r"]
)
def test_a_body_cut_before_its_blank_line_still_gives_its_last_event(tail: bytes) -> None:
    assert events(b"data: first\n\n" + tail) == [(None, b"first"), (None, b"last")]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (OPENAI_BODY, OPENAI_EVENTS),
        (ANTHROPIC_BODY, ANTHROPIC_EVENTS),
        (ANTHROPIC_BODY.replace(b"\n", b"\r\n"), ANTHROPIC_EVENTS),
        (ANTHROPIC_BODY.replace(b"\n", b"\r"), ANTHROPIC_EVENTS),
    ],
    ids=["openai-lf", "anthropic-lf", "anthropic-crlf", "anthropic-cr"],
)
def test_chunk_boundaries_anywhere_change_nothing(body: bytes, expected: list) -> None:
    # A CRLF split across two chunks must not read as two line endings (a blank line).
    for chunks in split_everywhere(body):
        assert events(*chunks) == expected, chunks
