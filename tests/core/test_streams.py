"""The stream id check that guards every read of the shared stream reader."""

from __future__ import annotations

import pytest

from core.streams import STREAM_ID_MAX, parse_stream_id, stream_id_order

MAX = str(STREAM_ID_MAX)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0-0", (0, 0)),
        ("1796166310463-0", (1796166310463, 0)),
        ("1796166310463-17", (1796166310463, 17)),
        # `<ms>` alone: XREAD reads it as `<ms>-0`.
        ("1796166310463", (1796166310463, 0)),
        (f"{MAX}-{MAX}", (STREAM_ID_MAX, STREAM_ID_MAX)),
        (MAX, (STREAM_ID_MAX, 0)),
        ("007-01", (7, 1)),
        ("0" * 20 + "-" + "0" * 20, (0, 0)),
    ],
)
def test_valid_ids_parse(value, expected):
    assert parse_stream_id(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "-",
        "+",
        "$",
        "*",
        "abc",
        "1-2-3",
        "1-",
        "-1",
        "-1-0",
        "1--1",
        "1-*",
        "+1-0",
        "1-+1",
        " 1-0",
        "1-0 ",
        "1-0\n",
        "1_000-0",
        "0x10-0",
        "1.5-0",
        # Past 64 bits, in either part.
        f"{STREAM_ID_MAX + 1}-0",
        f"0-{STREAM_ID_MAX + 1}",
        str(STREAM_ID_MAX + 1),
        "0-99999999999999999999999",
        # Over-long, even when the value would fit (Redis stops at 127 bytes).
        "0" * 21 + "1-0",
        "0" * 200,
        "1-" + "0" * 200,
        # Digits of other scripts, which `int()` and `\d` would take.
        "\u0661-\u0661",
        "\uff11-0",
    ],
)
def test_hostile_ids_are_refused(value):
    assert parse_stream_id(value) is None


def test_order_agrees_with_the_check():
    ids = ["0-0", "0-1", "1", "1-1", "2-0", f"{MAX}-{MAX}"]
    assert sorted(ids, key=stream_id_order) == ids
    assert [stream_id_order(i) for i in ids] == [parse_stream_id(i) for i in ids]
