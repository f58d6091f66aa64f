"""The input rules as pure functions: what each refuses, and where it says it was."""

from __future__ import annotations

import pytest

from core.chat import clean_title
from core.input_rules import InputRejected, check_strings, parse_json, storable_text


@pytest.mark.parametrize(
    ("raw", "loc", "kind"),
    [
        (b'{"a": "x\\u0000"}', ["body", "a"], "string_nul"),
        (b'{"a": [1, "\\ud800"]}', ["body", "a", 1], "string_surrogate"),
        (b'{"a": "\\udc00\\ud800"}', ["body", "a"], "string_surrogate"),
        (b'{"t": NaN}', ["body", "t"], "finite_number"),
        (b'{"t": -Infinity}', ["body", "t"], "finite_number"),
        (b'{"t": 1e999}', ["body", "t"], "finite_number"),
        (b'{"m": 18446744073709551616}', ["body", "m"], "int_range"),
        (b'{"m": -9223372036854775809}', ["body", "m"], "int_range"),
        (b'{"m": ' + b"9" * 5000 + b"}", ["body", "m"], "int_range"),
        (b'{"k\\u0000": 1}', ["body", "k\x00"], "string_nul"),
        (b"[" * 100_000, ["body"], "too_deep"),
        (b"[" * 65 + b"]" * 65, ["body", *[0] * 64], "too_deep"),
        (b"\xff\xfe garbage", ["body"], "utf8_invalid"),
        (b'{"a": 1', ["body"], "json_invalid"),
        (b'{"a": 1} x', ["body"], "json_invalid"),
        (b"", ["body"], "json_invalid"),
    ],
)
def test_refusals_name_their_place(raw: bytes, loc: list, kind: str) -> None:
    with pytest.raises(InputRejected) as refused:
        parse_json(raw)
    assert refused.value.issues[0]["loc"] == loc
    assert refused.value.issues[0]["type"] == kind


def test_every_refused_place_is_listed_up_to_ten() -> None:
    with pytest.raises(InputRejected) as refused:
        parse_json(b'{"a": NaN, "b": "\\u0000", "c": ["\\ud800"]}')
    assert [i["loc"] for i in refused.value.issues] == [
        ["body", "a"],
        ["body", "b"],
        ["body", "c", 0],
    ]
    with pytest.raises(InputRejected) as many:
        parse_json(b"[" + b",".join([b"NaN"] * 50) + b"]")
    assert len(many.value.issues) == 10


def test_what_the_rules_accept_reads_as_json_does() -> None:
    raw = ' {"ok": [1, -9223372036854775808, 2.5e3, "\\ud83d\\ude00", null, true]} '
    assert parse_json(raw) == {"ok": [1, -(2**63), 2500.0, "😀", None, True]}
    assert parse_json(b"[" * 64 + b"]" * 64) is not None


def test_query_and_form_strings() -> None:
    check_strings([("q", "fine"), ("x", "")], ("query",))
    with pytest.raises(InputRejected) as refused:
        check_strings([("q", "fine"), ("offset", "1\x00")], ("query",))
    assert refused.value.issues == [
        {
            "loc": ["query", "offset"],
            "msg": "The text contains a NUL character.",
            "type": "string_nul",
        }
    ]


def test_provider_text_is_made_storable() -> None:
    assert storable_text("a\x00b\ud800c") == "ab\ufffdc"
    assert storable_text("plain") == "plain"
    assert clean_title('Title: "Trip\x00 to Lisbon"') == "Trip to Lisbon"
